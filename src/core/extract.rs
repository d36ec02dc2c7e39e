//! Request-body extraction that answers in the error envelope.
//!
//! [`ValidJson`] reads a JSON body, names the field at fault when it cannot be deserialized
//! (`serde_path_to_error`), and runs `validator` rules. [`configure_extractors`] makes actix's
//! own extractors (`web::Json`, `web::Query`, `web::Path`) answer in the same envelope.
//!
//! Text with a NUL character (`\u0000` in JSON, `%00` in a query) is refused here, for every
//! field of every route, with a 422 naming the field: PostgreSQL cannot store it in `text`, and
//! a request that fails half-way through its writes because of it must never get that far.

use std::ops::Deref;

use actix_web::dev::Payload;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use validator::Validate;

use crate::core::error::{AppError, ErrorCode};

/// Largest JSON body, set from `server.json_body_limit_bytes` by the app.
#[derive(Debug, Clone, Copy)]
pub struct JsonLimit(pub usize);

/// A JSON body that deserialized and passed its `validator` rules.
#[derive(Debug)]
pub struct ValidJson<T>(pub T);

impl<T> ValidJson<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for ValidJson<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + Validate + 'static> FromRequest for ValidJson<T> {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<JsonLimit>()
            .map(|limit| limit.0)
            .unwrap_or(DEFAULT_JSON_LIMIT);
        let content_type_ok = req
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|value| {
                let essence = value.split(';').next().unwrap_or("").trim();
                essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")
            })
            .unwrap_or(false);
        let declared_too_large = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<usize>().ok())
            .is_some_and(|length| length > limit);
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if declared_too_large {
                return Err(too_large(limit));
            }
            if !content_type_ok {
                return Err(AppError::new(
                    ErrorCode::UnsupportedMediaType,
                    "the request body must be JSON (Content-Type: application/json)",
                ));
            }
            let bytes = body.await.map_err(|error| body_error(&error.to_string()))?;
            if bytes.len() > limit {
                return Err(too_large(limit));
            }
            reject_nul_in_json(&bytes)?;
            // Every body of this API is an object; serde would also read a struct from an
            // array of its fields in order (`[null, null]`), which no client means.
            if bytes.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
                return Err(AppError::validation("body", "body: must be a JSON object"));
            }
            let value = parse_json::<T>(&bytes)?;
            value.validate()?;
            Ok(ValidJson(value))
        })
    }
}

/// A [`ValidJson`] body read when the handler asks ([`DeferredJson::read`]), not before it
/// runs: for a route that must first check the ids in its path against the caller (a key's
/// project), so that a body error can never answer before the tenancy check does.
pub struct DeferredJson<T> {
    request: HttpRequest,
    payload: web::Payload,
    body: std::marker::PhantomData<T>,
}

impl<T: 'static> FromRequest for DeferredJson<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let request = req.clone();
        let payload = web::Payload::from_request(req, payload);
        Box::pin(async move {
            Ok(DeferredJson {
                request,
                payload: payload.await?,
                body: std::marker::PhantomData,
            })
        })
    }
}

impl<T: DeserializeOwned + Validate + 'static> DeferredJson<T> {
    /// The body, checked exactly as [`ValidJson`] checks it.
    pub async fn read(self) -> Result<T, AppError> {
        let mut payload = self.payload.into_inner();
        ValidJson::<T>::from_request(&self.request, &mut payload)
            .await
            .map(ValidJson::into_inner)
    }
}

/// 422 naming `field` when `text` holds a NUL character.
pub fn reject_nul(field: &str, text: &str) -> Result<(), AppError> {
    if text.contains('\0') {
        return Err(nul_error(field));
    }
    Ok(())
}

fn nul_error(field: &str) -> AppError {
    AppError::validation(
        field,
        format!("{field}: must not contain NUL characters (\\u0000)"),
    )
}

/// A NUL can only reach a JSON string as the escape `\u0000`: bodies without that sequence
/// (nearly all) cost one scan; the others are walked to name the field.
fn reject_nul_in_json(bytes: &[u8]) -> Result<(), AppError> {
    const ESCAPE: &[u8] = b"\\u0000";
    if !bytes.windows(ESCAPE.len()).any(|window| window == ESCAPE) {
        return Ok(());
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        // Not JSON: the typed parse says so.
        return Ok(());
    };
    match nul_path(&value, String::new()) {
        Some(path) => Err(nul_error(if path.is_empty() { "body" } else { &path })),
        None => Ok(()),
    }
}

/// The dotted path (`end_user.name`, `messages[1].content`) of the first string or key that
/// holds a NUL.
fn nul_path(value: &serde_json::Value, path: String) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::String(text) if text.contains('\0') => Some(path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, item)| nul_path(item, format!("{path}[{index}]"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            let nested = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            if key.contains('\0') {
                return Some(nested.replace('\0', "\\u0000"));
            }
            nul_path(item, nested)
        }),
        _ => None,
    }
}

/// The query parameter whose name or value holds a NUL (`%00`), if any.
fn nul_in_query(query: &str) -> Option<String> {
    let lowercase = query.to_ascii_lowercase();
    if !lowercase.contains("%00") && !query.contains('\0') {
        return None;
    }
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, value)| name.contains('\0') || value.contains('\0'))
        .map(|(name, _)| name.replace('\0', "\\u0000"))
}

/// Reads a raw body of at most `limit` bytes (a webhook's, before it is authenticated or
/// parsed): more is `PAYLOAD_TOO_LARGE` in the envelope, as soon as the limit is passed.
pub async fn capped_body(mut payload: web::Payload, limit: usize) -> Result<web::Bytes, AppError> {
    use futures_util::StreamExt;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|error| AppError::new(ErrorCode::BadRequest, error.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(AppError::new(
                ErrorCode::PayloadTooLarge,
                format!("the body may be at most {limit} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Default JSON limit when the app did not register one (tests of single handlers).
const DEFAULT_JSON_LIMIT: usize = 1024 * 1024;

/// Deserializes `bytes`, turning failures into `BAD_REQUEST` (not JSON) or `VALIDATION_ERROR`
/// naming the field (wrong type, missing field, unknown variant).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                AppError::new(
                    ErrorCode::BadRequest,
                    format!("the request body is not valid JSON: {inner}"),
                )
            }
            serde_json::error::Category::Io => {
                AppError::new(ErrorCode::BadRequest, inner.to_string())
            }
            serde_json::error::Category::Data => {
                let message = strip_position(&inner.to_string());
                let nested = |field: String| {
                    if path == "." {
                        field
                    } else {
                        format!("{path}.{field}")
                    }
                };
                if let Some(field) = unknown_field(&message) {
                    // The path already ends at the unknown field.
                    let field = if path == "." { field } else { path.clone() };
                    return AppError::validation(field.clone(), format!("{field}: unknown field"));
                }
                match missing_field(&message) {
                    Some(field) => {
                        let field = nested(field);
                        AppError::validation(field.clone(), format!("{field}: is required"))
                    }
                    None if path == "." => AppError::new(ErrorCode::ValidationError, message),
                    None => AppError::validation(path.clone(), format!("{path}: {message}")),
                }
            }
        }
    })
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next().map(str::to_owned)
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next().map(str::to_owned)
}

/// For PATCH bodies: an absent field is `None`, an explicit `null` is `Some(None)`.
/// Use with `#[serde(default, deserialize_with = "nullable")]`.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

fn too_large(limit: usize) -> AppError {
    AppError::new(
        ErrorCode::PayloadTooLarge,
        format!("the request body is larger than {limit} bytes"),
    )
    .with_details(serde_json::json!({ "limit_bytes": limit }))
}

fn body_error(message: &str) -> AppError {
    if message.contains("overflow") || message.contains("too large") {
        AppError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
    } else {
        AppError::new(
            ErrorCode::BadRequest,
            format!("the request body could not be read: {message}"),
        )
    }
}

/// Registers error handlers so actix's standard extractors answer in the envelope too.
pub fn configure_extractors(cfg: &mut web::ServiceConfig, json_limit: usize) {
    cfg.app_data(JsonLimit(json_limit))
        .app_data(
            web::JsonConfig::default()
                .limit(json_limit)
                .error_handler(|error, _req| json_error(error).into()),
        )
        .app_data(
            web::QueryConfig::default().error_handler(|error, _req| query_error(error).into()),
        )
        .app_data(web::PathConfig::default().error_handler(|error, _req| path_error(error).into()));
}

fn json_error(error: JsonPayloadError) -> AppError {
    match error {
        JsonPayloadError::OverflowKnownLength { limit, .. }
        | JsonPayloadError::Overflow { limit } => too_large(limit),
        JsonPayloadError::ContentType => AppError::new(
            ErrorCode::UnsupportedMediaType,
            "the request body must be JSON (Content-Type: application/json)",
        ),
        JsonPayloadError::Deserialize(inner) => {
            let message = strip_position(&inner.to_string());
            match missing_field(&message) {
                Some(field) => AppError::validation(field.clone(), format!("{field}: is required")),
                None if inner.is_data() => AppError::new(ErrorCode::ValidationError, message),
                None => AppError::new(
                    ErrorCode::BadRequest,
                    format!("the request body is not valid JSON: {message}"),
                ),
            }
        }
        other => AppError::new(ErrorCode::BadRequest, other.to_string()),
    }
}

fn query_error(error: QueryPayloadError) -> AppError {
    let message = error.to_string();
    let field = message
        .split('`')
        .nth(1)
        .filter(|_| message.contains("field"))
        .map(str::to_owned);
    let error = AppError::new(
        ErrorCode::ValidationError,
        format!("invalid query string: {message}"),
    );
    match field {
        Some(field) => error.with_field(field),
        None => error,
    }
}

fn path_error(error: PathError) -> AppError {
    // A malformed id in the path names nothing that exists.
    AppError::new(ErrorCode::NotFound, format!("not found: {error}"))
}

/// Query parameters that deserialized and passed their `validator` rules.
#[derive(Debug)]
pub struct ValidQuery<T>(pub T);

impl<T> ValidQuery<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for ValidQuery<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + Validate + 'static> FromRequest for ValidQuery<T> {
    type Error = AppError;
    type Future = std::future::Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        if let Some(field) = nul_in_query(req.query_string()) {
            return std::future::ready(Err(nul_error(&field)));
        }
        let result = web::Query::<T>::from_query(req.query_string())
            .map_err(query_error)
            .and_then(|query| {
                let value = query.into_inner();
                value.validate()?;
                Ok(ValidQuery(value))
            });
        std::future::ready(result)
    }
}
