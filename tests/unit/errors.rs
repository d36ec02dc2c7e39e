//! The error envelope, through a real actix service built in-process (no network).

use actix_web::middleware::from_fn;
use actix_web::{App, HttpResponse, test as actix_test, web};
use avatar_platform::core::error::{AppError, ErrorCode};
use avatar_platform::core::extract::{ValidJson, configure_extractors};
use avatar_platform::core::telemetry::observe_request;
use serde::Deserialize;
use serde_json::{Value, json};
use validator::Validate;

#[derive(Debug, Deserialize, Validate)]
struct NewThing {
    #[validate(length(min = 2, max = 20))]
    name: String,
    #[validate(range(min = 0.0, max = 2.0))]
    temperature: Option<f32>,
    #[validate(nested)]
    settings: Option<Nested>,
}

#[derive(Debug, Deserialize, Validate)]
struct Nested {
    #[validate(range(min = 1, max = 50))]
    top_k: u32,
}

async fn create(body: ValidJson<NewThing>) -> HttpResponse {
    HttpResponse::Created().json(json!({"name": body.name}))
}

async fn explode() -> HttpResponse {
    panic!("secret internals: password=hunter2");
}

async fn fail_internally() -> Result<HttpResponse, AppError> {
    Err(AppError::internal(anyhow::anyhow!(
        "db at 10.0.0.1 refused"
    )))
}

async fn limited() -> Result<HttpResponse, AppError> {
    Err(AppError::rate_limited(17))
}

async fn call(
    method: &str,
    path: &str,
    body: Option<(&str, Vec<u8>)>,
) -> (u16, Value, Option<String>) {
    let app = actix_test::init_service(
        App::new()
            .configure(|cfg| configure_extractors(cfg, 256))
            .route("/things", web::post().to(create))
            .route("/explode", web::get().to(explode))
            .route("/internal", web::get().to(fail_internally))
            .route("/limited", web::get().to(limited))
            .wrap(from_fn(observe_request)),
    )
    .await;
    let mut request = actix_test::TestRequest::default()
        .method(method.parse().unwrap())
        .uri(path);
    if let Some((content_type, bytes)) = body {
        request = request
            .insert_header(("content-type", content_type))
            .set_payload(bytes);
    }
    // An error escaping the middleware is turned into its response by actix's dispatcher.
    let response = match actix_test::try_call_service(&app, request.to_request()).await {
        Ok(response) => response.into_parts().1.map_into_boxed_body(),
        Err(error) => error.error_response(),
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_owned());
    let bytes = actix_web::body::to_bytes(response.into_body())
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        retry_after,
    )
}

fn json_body(value: &str) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/json", value.as_bytes().to_vec()))
}

#[actix_web::test]
async fn a_valid_body_passes() {
    let (status, body, _) = call("POST", "/things", json_body(r#"{"name": "ok"}"#)).await;
    assert_eq!((status, body), (201, json!({"name": "ok"})));
}

#[actix_web::test]
async fn a_validator_failure_names_the_field() {
    let (status, body, _) = call("POST", "/things", json_body(r#"{"name": "x"}"#)).await;
    assert_eq!(status, 422);
    assert_eq!(
        body,
        json!({"error": {
            "code": "VALIDATION_ERROR",
            "message": "name: length must be between 2 and 20",
            "field": "name",
            "details": {"fields": {"name": "length must be between 2 and 20"}}
        }})
    );
}

#[actix_web::test]
async fn a_nested_validator_failure_names_the_dotted_path() {
    let (status, body, _) = call(
        "POST",
        "/things",
        json_body(r#"{"name": "fine", "temperature": 3.5, "settings": {"top_k": 0}}"#),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["field"], "settings.top_k");
    assert_eq!(
        body["error"]["details"]["fields"],
        json!({"settings.top_k": "must be between 1 and 50", "temperature": "must be between 0.0 and 2.0"})
    );
}

#[actix_web::test]
async fn a_missing_field_is_named() {
    let (status, body, _) = call("POST", "/things", json_body(r#"{"temperature": 1}"#)).await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
    assert_eq!(body["error"]["field"], "name");
    assert_eq!(body["error"]["message"], "name: is required");
}

#[actix_web::test]
async fn a_wrong_type_is_named_with_its_path() {
    let (status, body, _) = call(
        "POST",
        "/things",
        json_body(r#"{"name": "fine", "settings": {"top_k": "ten"}}"#),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["field"], "settings.top_k");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("settings.top_k: invalid type: string \"ten\"")
    );
}

#[actix_web::test]
async fn malformed_json_is_a_bad_request() {
    let (status, body, _) = call("POST", "/things", json_body(r#"{"name": "#)).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "BAD_REQUEST");
    assert_eq!(body["error"]["field"], Value::Null);
}

#[actix_web::test]
async fn a_body_that_is_not_json_is_unsupported() {
    let (status, body, _) = call("POST", "/things", Some(("text/plain", b"name=x".to_vec()))).await;
    assert_eq!(status, 415);
    assert_eq!(body["error"]["code"], "UNSUPPORTED_MEDIA_TYPE");
}

#[actix_web::test]
async fn an_oversized_body_is_refused() {
    let big = format!(r#"{{"name": "{}"}}"#, "a".repeat(1000));
    let (status, body, _) = call("POST", "/things", json_body(&big)).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "PAYLOAD_TOO_LARGE");
    assert_eq!(body["error"]["details"]["limit_bytes"], 256);
}

#[actix_web::test]
async fn a_panic_answers_500_without_internals_but_with_the_request_id() {
    let (status, body, _) = call("GET", "/explode", None).await;
    assert_eq!(status, 500);
    assert_eq!(body["error"]["code"], "INTERNAL");
    assert_eq!(body["error"]["message"], "internal error");
    let text = body.to_string();
    assert!(
        !text.contains("hunter2") && !text.contains("secret internals"),
        "{text}"
    );
    let request_id = body["error"]["details"]["request_id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(request_id).is_ok());
}

#[actix_web::test]
async fn an_internal_error_hides_its_cause() {
    let (status, body, _) = call("GET", "/internal", None).await;
    assert_eq!(status, 500);
    assert_eq!(body["error"]["message"], "internal error");
    assert!(!body.to_string().contains("10.0.0.1"));
    assert!(body["error"]["details"]["request_id"].is_string());
}

#[actix_web::test]
async fn rate_limited_carries_retry_after() {
    let (status, body, retry_after) = call("GET", "/limited", None).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    assert_eq!(retry_after.as_deref(), Some("17"));
}

#[test]
fn every_code_has_its_documented_status() {
    let expected = [
        (ErrorCode::ValidationError, 422, "VALIDATION_ERROR"),
        (
            ErrorCode::AuthenticationRequired,
            401,
            "AUTHENTICATION_REQUIRED",
        ),
        (ErrorCode::InvalidToken, 401, "INVALID_TOKEN"),
        (ErrorCode::Forbidden, 403, "FORBIDDEN"),
        (ErrorCode::NotFound, 404, "NOT_FOUND"),
        (ErrorCode::Conflict, 409, "CONFLICT"),
        (ErrorCode::PayloadTooLarge, 413, "PAYLOAD_TOO_LARGE"),
        (
            ErrorCode::UnsupportedMediaType,
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (ErrorCode::TokenLimitExceeded, 402, "TOKEN_LIMIT_EXCEEDED"),
        (ErrorCode::RateLimited, 429, "RATE_LIMITED"),
        (
            ErrorCode::ExternalServiceError,
            502,
            "EXTERNAL_SERVICE_ERROR",
        ),
        (ErrorCode::Internal, 500, "INTERNAL"),
    ];
    for (code, status, name) in expected {
        assert_eq!(code.status().as_u16(), status, "{name}");
        assert_eq!(code.as_str(), name);
        assert_eq!(serde_json::to_value(code).unwrap(), json!(name));
    }
}
