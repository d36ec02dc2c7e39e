//! Tracing (pretty or JSON logs), request ids, panic containment and Prometheus metrics.
//!
//! Every request runs inside a span carrying its `request_id` (taken from `X-Request-Id` when
//! the caller sends a sane one, else a new UUID v7) and echoed in the response header, so each
//! log line of the request can be found by that id.

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::Error;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use futures_util::FutureExt;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::core::config::{LogFormat, TelemetrySettings};
use crate::core::error::{AppError, ErrorCode};
use crate::core::openapi::RouteTable;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Longest accepted incoming request id; longer or odd ones are replaced, not trusted.
const MAX_REQUEST_ID_LEN: usize = 128;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled on this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Installs the global tracing subscriber. Later calls (tests) are no-ops.
pub fn init_tracing(settings: &TelemetrySettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match settings.log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().compact())
            .try_init(),
    };
    // Err means a subscriber is already installed (several apps in one test process).
    drop(result);
}

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets in seconds, from 1 ms to 60 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    METRICS
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let builder = builder
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            handle
        })
        .clone()
}

fn request_id_from(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| {
            !value.is_empty()
                && value.len() <= MAX_REQUEST_ID_LEN
                && value
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"-_.:".contains(&byte))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// The envelope's code for an error status raised outside the platform's code; `None` for a
/// server error (internal).
fn code_for(status: u16) -> Option<ErrorCode> {
    Some(match status {
        401 => ErrorCode::AuthenticationRequired,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        413 => ErrorCode::PayloadTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        429 => ErrorCode::RateLimited,
        503 => ErrorCode::ServiceUnavailable,
        400..=499 => ErrorCode::BadRequest,
        _ => return None,
    })
}

/// An error raised outside the platform's code (an actix extractor's, a middleware's) in the
/// documented envelope, with its status and message, instead of actix's plain text.
fn in_envelope(error: Error) -> Error {
    if error.as_error::<AppError>().is_some() {
        return error;
    }
    let status = error.as_response_error().status_code().as_u16();
    match code_for(status) {
        Some(code) => AppError::new(code, error.to_string()).into(),
        None => AppError::internal(anyhow::anyhow!("{error}")).into(),
    }
}

/// An error response a middleware wrote itself in plain text (actix-cors refusing a preflight
/// from another origin), rewritten in the envelope with its status and text.
async fn response_in_envelope(response: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    // Successes (most responses) leave at once.
    let Some(code) = code_for(response.status().as_u16()) else {
        return response;
    };
    // (actix-cors writes its refusal with no content type at all.)
    let plain = response
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_none_or(|value| value.starts_with("text/plain"));
    if !plain {
        return response;
    }
    let (request, response) = response.into_parts();
    let text = actix_web::body::to_bytes_limited(response.into_body(), 4096)
        .await
        .ok()
        .and_then(Result::ok)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let rewritten = actix_web::ResponseError::error_response(&AppError::new(code, text));
    ServiceResponse::new(request, rewritten)
}

/// The request's route template: the documented path it is an instance of (a lookup in the
/// app's [`RouteTable`]), else the pattern actix matches it to (the service endpoints), else
/// `unmatched`. (Asking actix first would match the path against every route a second time:
/// a sixth of the webhook's CPU, docs/benchmarks.md.)
fn route_of(req: &ServiceRequest) -> String {
    req.app_data::<actix_web::web::Data<RouteTable>>()
        .and_then(|routes| routes.template(req.path()))
        .map(str::to_owned)
        .or_else(|| req.match_pattern())
        .unwrap_or_else(|| "unmatched".to_owned())
}

/// Outermost middleware: request id, request span, access log, metrics, and a 500 envelope
/// instead of a dropped connection when a handler panics.
pub async fn observe_request(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let started = Instant::now();
    let request_id = request_id_from(&req);
    let method = req.method().to_string();
    let route = route_of(&req);
    let span =
        tracing::info_span!("request", request_id = %request_id, method = %method, route = %route);

    let outcome = REQUEST_ID
        .scope(
            request_id.clone(),
            std::panic::AssertUnwindSafe(next.call(req))
                .catch_unwind()
                .instrument(span.clone()),
        )
        .await;

    let status_of = |outcome: &Result<ServiceResponse<BoxBody>, Error>| match outcome {
        Ok(response) => response.status().as_u16(),
        Err(error) => error.as_response_error().status_code().as_u16(),
    };
    // The request cannot be kept to build a response after a panic (routing needs it
    // unshared), so a panic becomes an error that actix turns into the response.
    let result = match outcome {
        Ok(Ok(response)) => Ok(response_in_envelope(response.map_into_boxed_body()).await),
        Ok(Err(error)) => Err(in_envelope(error)),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            span.in_scope(|| tracing::error!(panic = %message, "handler panicked"));
            Err(AppError::new(ErrorCode::Internal, "internal error")
                .with_details(serde_json::json!({ "request_id": request_id }))
                .into())
        }
    };
    let status = status_of(&result);
    let elapsed = started.elapsed();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status.to_string()).increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method.clone(), "route" => route.clone()).record(elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            status,
            elapsed_ms = elapsed.as_secs_f64() * 1000.0,
            "{method} {route} -> {status}"
        );
    });
    let mut response = result?;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    Ok(response)
}

/// What the code under test logs, as JSON lines (for tests that check what never gets logged).
#[cfg(test)]
pub(crate) fn captured_logs(log: impl FnOnce()) -> String {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, log);
    let bytes = captured
        .0
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    String::from_utf8_lossy(&bytes).into_owned()
}
