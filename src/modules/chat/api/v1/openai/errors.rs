//! Errors on the OpenAI-compatible routes, in OpenAI's shape
//! `{"error": {"message", "type", "param", "code"}}` and with the statuses its SDKs map to
//! their exception classes: 400 invalid request, 401 bad key, 403 permission, 404 unknown
//! model, 429 rate limit or quota (`Retry-After`), 5xx server errors.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::core::error::{AppError, ErrorCode};

#[derive(Debug)]
pub struct OpenAiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    param: Option<String>,
    code: Option<&'static str>,
    retry_after_secs: Option<u64>,
    /// The platform's error, when this is one (its cause is logged).
    source: Option<Box<AppError>>,
}

impl std::fmt::Display for OpenAiError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl OpenAiError {
    /// 400 `invalid_request_error` about the request parameter `param`.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        OpenAiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param.into()),
            code: None,
            retry_after_secs: None,
            source: None,
        }
    }

    /// 404 `model_not_found`: no active avatar of the key's project is called `model`.
    pub fn unknown_model(model: &str) -> Self {
        OpenAiError {
            status: StatusCode::NOT_FOUND,
            message: format!("The model `{model}` does not exist or you do not have access to it."),
            kind: "invalid_request_error",
            param: Some("model".into()),
            code: Some("model_not_found"),
            retry_after_secs: None,
            source: None,
        }
    }

    /// 413: a body longer than `limit` bytes.
    pub fn too_large(limit: usize) -> Self {
        OpenAiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("the request body is larger than {limit} bytes"),
            kind: "invalid_request_error",
            param: None,
            code: None,
            retry_after_secs: None,
            source: None,
        }
    }

    fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }

    /// The error as an SSE event, for a failure after the stream started.
    pub fn sse_data(&self) -> String {
        self.body().to_string()
    }
}

impl From<AppError> for OpenAiError {
    fn from(error: AppError) -> Self {
        let (status, kind, code) = match error.code() {
            ErrorCode::AuthenticationRequired | ErrorCode::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                Some("invalid_api_key"),
            ),
            ErrorCode::Forbidden => (StatusCode::FORBIDDEN, "permission_error", None),
            ErrorCode::NotFound => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("not_found"),
            ),
            // An exhausted budget is what OpenAI calls quota (SDKs show it as such).
            ErrorCode::TokenLimitExceeded | ErrorCode::PlanLimitReached => (
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                Some("insufficient_quota"),
            ),
            ErrorCode::RateLimited => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                Some("rate_limit_exceeded"),
            ),
            ErrorCode::BadRequest
            | ErrorCode::ValidationError
            | ErrorCode::Conflict
            | ErrorCode::UnsupportedMediaType
            | ErrorCode::MethodNotAllowed => {
                (StatusCode::BAD_REQUEST, "invalid_request_error", None)
            }
            ErrorCode::PayloadTooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", None)
            }
            ErrorCode::ExternalServiceError => (StatusCode::BAD_GATEWAY, "api_error", None),
            ErrorCode::ServiceUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "api_error", None),
            ErrorCode::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", None),
        };
        OpenAiError {
            status,
            message: error.message().to_owned(),
            kind,
            param: error.field().map(str::to_owned),
            code,
            retry_after_secs: error.retry_after_secs(),
            source: Some(Box::new(error)),
        }
    }
}

impl ResponseError for OpenAiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(source) = &self.source {
            source.log_cause();
        }
        let mut response = HttpResponse::build(self.status);
        // OpenAI's SDKs retry every 429 unless told not to: a spent budget stays spent.
        if self.kind == "insufficient_quota" {
            response.insert_header(("x-should-retry", HeaderValue::from_static("false")));
        }
        if let Some(seconds) = self.retry_after_secs
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.insert_header((header::RETRY_AFTER, value));
        }
        response.json(self.body())
    }
}
