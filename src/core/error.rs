//! The error envelope of API.md and the table of stable error codes.
//!
//! Every failure a client sees is `{"error": {"code", "message", "field", "details"}}`.
//! Each module keeps one `thiserror` enum and converts it into [`AppError`]; handlers return
//! `Result<_, AppError>` and use `?`. Codes are part of the API contract: never rename one.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::core::telemetry::current_request_id;

mod validation;

/// Stable error codes and the HTTP status each one answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    BadRequest,
    ValidationError,
    AuthenticationRequired,
    InvalidToken,
    TokenLimitExceeded,
    PlanLimitReached,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimited,
    Internal,
    ExternalServiceError,
    ServiceUnavailable,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::ValidationError => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::AuthenticationRequired | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
            ErrorCode::TokenLimitExceeded | ErrorCode::PlanLimitReached => {
                StatusCode::PAYMENT_REQUIRED
            }
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::ExternalServiceError => StatusCode::BAD_GATEWAY,
            ErrorCode::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::ValidationError => "VALIDATION_ERROR",
            ErrorCode::AuthenticationRequired => "AUTHENTICATION_REQUIRED",
            ErrorCode::InvalidToken => "INVALID_TOKEN",
            ErrorCode::TokenLimitExceeded => "TOKEN_LIMIT_EXCEEDED",
            ErrorCode::PlanLimitReached => "PLAN_LIMIT_REACHED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::ExternalServiceError => "EXTERNAL_SERVICE_ERROR",
            ErrorCode::ServiceUnavailable => "SERVICE_UNAVAILABLE",
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// The request field at fault (dotted path for nested fields), when there is one.
    pub field: Option<String>,
    #[schema(value_type = Object)]
    pub details: Value,
}

/// An error on its way to the client. Built with the constructors below; an internal cause is
/// logged with its whole chain but never shown.
pub struct AppError {
    code: ErrorCode,
    message: String,
    field: Option<String>,
    details: Value,
    /// `Retry-After` and `Allow`, for the few errors that have them (boxed: errors travel in
    /// every `Result`).
    headers: Option<Box<ErrorHeaders>>,
    cause: Option<anyhow::Error>,
}

#[derive(Debug, Default)]
struct ErrorHeaders {
    retry_after_secs: Option<u64>,
    allow: Option<String>,
}

/// Modules implement this for their error enum; `From<E> for AppError` follows.
pub trait ErrorKind: std::error::Error {
    fn code(&self) -> ErrorCode;
    /// The [`Failure`] this error is, when it is the shared kind: the defaults of `field`
    /// and `retry_after_secs` ask it.
    fn common(&self) -> Option<&Failure> {
        None
    }
    fn field(&self) -> Option<&str> {
        self.common().and_then(ErrorKind::field)
    }
    fn details(&self) -> Value {
        self.common()
            .map(ErrorKind::details)
            .unwrap_or_else(|| Value::Object(Default::default()))
    }
    /// Seconds for `Retry-After`, for errors the client should retry later.
    fn retry_after_secs(&self) -> Option<u64> {
        self.common().and_then(ErrorKind::retry_after_secs)
    }
}

/// How long a client is asked to wait after a 503 before trying again.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

/// A dependency a request needs does not answer now (the database, the blob store): 503
/// `SERVICE_UNAVAILABLE` with `Retry-After`, never 500. Every module's error enum carries it,
/// so the answer is the same whichever module met the outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {0} is unavailable; try again shortly")]
pub struct Unavailable(pub &'static str);

impl Unavailable {
    pub const DATABASE: Unavailable = Unavailable("database");
    pub const BLOB_STORE: Unavailable = Unavailable("file storage");

    /// `Some` when `error` is the database being unreachable (see `db::is_unavailable`),
    /// logged (at most every few seconds, so an outage does not flood the log).
    pub fn of_database(error: &sea_orm::DbErr) -> Option<Unavailable> {
        if !crate::core::db::is_unavailable(error) {
            return None;
        }
        log_outage("database", error);
        Some(Unavailable::DATABASE)
    }
}

/// A boxed error cause, for [`Failure::Internal`].
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What every module's error enum has in common, and all a module sees of another module's
/// failure: a missing resource, a field the client got wrong, a dependency that does not
/// answer (503) or an unexpected failure with its cause. Each module's enum carries it as its
/// `Common` variant (see [`module_error!`]) and converts into it for its callers.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{field}: {message}")]
    InvalidField {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// The project's plan allows no more of something (`limit`, e.g. `max_avatars`, is
    /// `value`): 402 `PLAN_LIMIT_REACHED`.
    #[error("the plan's limit {limit} ({value}) is reached")]
    PlanLimit { limit: &'static str, value: i64 },
    /// The project's tokens for the period are spent or reserved: 402 `TOKEN_LIMIT_EXCEEDED`.
    #[error(
        "the project's token budget for this period is exhausted ({used} used and {reserved} reserved of {limit}; {needed} needed)"
    )]
    TokenLimit {
        limit: i64,
        used: i64,
        reserved: i64,
        needed: i64,
    },
    /// Logged with its whole cause chain; the client sees only `INTERNAL` and the request id.
    #[error("internal error: {0}")]
    Internal(#[source] Cause),
}

impl Failure {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Failure {
        Failure::InvalidField {
            field,
            message: message.into(),
        }
    }

    pub fn internal(cause: impl Into<Cause>) -> Failure {
        Failure::Internal(cause.into())
    }
}

impl From<sea_orm::DbErr> for Failure {
    /// [`Unavailable`] when the database cannot be reached, else internal with the cause.
    fn from(error: sea_orm::DbErr) -> Failure {
        match Unavailable::of_database(&error) {
            Some(unavailable) => Failure::Unavailable(unavailable),
            None => Failure::Internal(Box::new(error)),
        }
    }
}

impl From<crate::core::crypto::CryptoError> for Failure {
    fn from(error: crate::core::crypto::CryptoError) -> Failure {
        Failure::Internal(Box::new(error))
    }
}

impl ErrorKind for Failure {
    fn code(&self) -> ErrorCode {
        match self {
            Failure::NotFound(_) => ErrorCode::NotFound,
            Failure::InvalidField { .. } => ErrorCode::ValidationError,
            Failure::Unavailable(unavailable) => unavailable.code(),
            Failure::PlanLimit { .. } => ErrorCode::PlanLimitReached,
            Failure::TokenLimit { .. } => ErrorCode::TokenLimitExceeded,
            Failure::Internal(_) => ErrorCode::Internal,
        }
    }

    fn details(&self) -> Value {
        match self {
            Failure::PlanLimit { limit, value } => {
                serde_json::json!({ "limit": limit, "value": value })
            }
            Failure::TokenLimit {
                limit,
                used,
                reserved,
                needed,
            } => serde_json::json!({
                "tokens_limit": limit, "tokens_used": used,
                "tokens_reserved": reserved, "tokens_needed": needed,
            }),
            _ => Value::Object(Default::default()),
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Failure::InvalidField { field, .. } => Some(field),
            _ => None,
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Failure::Unavailable(unavailable) => unavailable.retry_after_secs(),
            _ => None,
        }
    }
}

/// The shared part of a module's error enum `$name`, which must have the variant
/// `#[error(transparent)] Common(#[from] Failure)`: conversions from database, crypto and
/// outage errors, and the constructors `invalid` and `internal`.
macro_rules! module_error {
    ($name:ident) => {
        impl From<sea_orm::DbErr> for $name {
            fn from(error: sea_orm::DbErr) -> Self {
                $name::Common($crate::core::error::Failure::from(error))
            }
        }

        impl From<$crate::core::crypto::CryptoError> for $name {
            fn from(error: $crate::core::crypto::CryptoError) -> Self {
                $name::Common($crate::core::error::Failure::from(error))
            }
        }

        impl From<$crate::core::error::Unavailable> for $name {
            fn from(unavailable: $crate::core::error::Unavailable) -> Self {
                $name::Common($crate::core::error::Failure::Unavailable(unavailable))
            }
        }

        #[allow(dead_code)]
        impl $name {
            /// The client sent a bad value for `field`.
            pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
                $name::Common($crate::core::error::Failure::invalid(field, message))
            }

            /// An unexpected failure, its cause kept for the log.
            pub fn internal(cause: impl Into<$crate::core::error::Cause>) -> Self {
                $name::Common($crate::core::error::Failure::internal(cause))
            }
        }
    };
}
pub(crate) use module_error;

impl ErrorKind for Unavailable {
    fn code(&self) -> ErrorCode {
        ErrorCode::ServiceUnavailable
    }

    fn retry_after_secs(&self) -> Option<u64> {
        Some(UNAVAILABLE_RETRY_AFTER_SECS)
    }
}

/// One warning per dependency every [`OUTAGE_LOG_INTERVAL_SECS`].
fn log_outage(dependency: &'static str, error: &dyn fmt::Display) {
    use std::sync::Mutex;
    use std::time::Instant;
    static LOGGED: Mutex<Vec<(&'static str, Instant)>> = Mutex::new(Vec::new());
    let mut logged = LOGGED.lock().unwrap_or_else(|poison| poison.into_inner());
    let now = Instant::now();
    let due = match logged.iter_mut().find(|(name, _)| *name == dependency) {
        Some((_, at)) if now.duration_since(*at).as_secs() < OUTAGE_LOG_INTERVAL_SECS => false,
        Some((_, at)) => {
            *at = now;
            true
        }
        None => {
            logged.push((dependency, now));
            true
        }
    };
    if due {
        tracing::warn!(
            dependency,
            "{dependency} unavailable, answering 503: {error}"
        );
    }
}

/// Repeated outage warnings are at least this far apart.
const OUTAGE_LOG_INTERVAL_SECS: u64 = 10;

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError {
            code,
            message: message.into(),
            field: None,
            details: Value::Object(Default::default()),
            headers: None,
            cause: None,
        }
    }

    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationError, message).with_field(field)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut error = Self::new(
            ErrorCode::RateLimited,
            format!("too many requests, retry in {retry_after_secs} s"),
        );
        error.headers_mut().retry_after_secs = Some(retry_after_secs.max(1));
        error
    }

    /// The path exists, not with this method: 405, `Allow` in the header and the details.
    pub fn method_not_allowed(method: &str, allowed: &[&str]) -> Self {
        let allow = allowed.join(", ");
        let mut error = Self::new(
            ErrorCode::MethodNotAllowed,
            format!("{method} is not allowed here; allowed: {allow}"),
        )
        .with_details(serde_json::json!({ "allow": allowed }));
        error.headers_mut().allow = Some(allow);
        error
    }

    /// An unexpected failure: the client sees only `INTERNAL` and the request id.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        let mut error = Self::new(ErrorCode::Internal, "internal error");
        error.cause = Some(cause.into());
        error
    }

    fn headers_mut(&mut self) -> &mut ErrorHeaders {
        self.headers.get_or_insert_with(Default::default)
    }

    /// Asks the client to wait `seconds` before trying again (`Retry-After`).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.headers_mut().retry_after_secs = Some(seconds.max(1));
        self
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// Seconds the client is asked to wait (`Retry-After`), if any.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.headers
            .as_deref()
            .and_then(|headers| headers.retry_after_secs)
    }

    /// Logs an unexpected failure's cause (rendering the error does it; other renderings of it
    /// call this).
    pub fn log_cause(&self) {
        if let Some(cause) = &self.cause {
            tracing::error!(error.code = self.code.as_str(), "request failed: {cause:?}");
        }
    }

    pub fn envelope(&self) -> ErrorEnvelope {
        let mut details = self.details.clone();
        if self.code == ErrorCode::Internal
            && let (Value::Object(map), Some(request_id)) = (&mut details, current_request_id())
        {
            map.insert("request_id".into(), Value::String(request_id));
        }
        ErrorEnvelope {
            error: ErrorBody {
                code: self.code,
                message: self.message.clone(),
                field: self.field.clone(),
                details,
            },
        }
    }
}

impl<E: ErrorKind + Send + Sync + 'static> From<E> for AppError {
    fn from(error: E) -> Self {
        let code = error.code();
        let mut app_error = AppError::new(code, error.to_string()).with_details(error.details());
        if let Some(field) = error.field() {
            app_error = app_error.with_field(field);
        }
        if let Some(seconds) = error.retry_after_secs() {
            app_error = app_error.with_retry_after(seconds);
        }
        if code == ErrorCode::Internal {
            app_error.message = "internal error".into();
            app_error.cause = Some(anyhow::Error::new(error));
        }
        app_error
    }
}

impl From<sea_orm::DbErr> for AppError {
    fn from(error: sea_orm::DbErr) -> Self {
        match Unavailable::of_database(&error) {
            Some(unavailable) => unavailable.into(),
            None => AppError::internal(error),
        }
    }
}

impl fmt::Debug for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)?;
        if let Some(cause) = &self.cause {
            write!(f, "\nCaused by: {cause:?}")?;
        }
        Ok(())
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for AppError {}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        self.log_cause();
        let mut response = HttpResponse::build(self.status_code());
        let headers = self.headers.as_deref();
        if let Some(seconds) = headers.and_then(|headers| headers.retry_after_secs)
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.insert_header((header::RETRY_AFTER, value));
        }
        if let Some(allow) = headers.and_then(|headers| headers.allow.as_deref())
            && let Ok(value) = HeaderValue::from_str(allow)
        {
            response.insert_header((header::ALLOW, value));
        }
        response.json(self.envelope())
    }
}
