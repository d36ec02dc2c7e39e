//! Helpers shared by the clients of OpenAI-compatible endpoints (embeddings, chat): backoff
//! with jitter, `Retry-After`, readable error bodies, error chains and API-key redaction.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

/// Longest wait between two attempts, whether computed or asked for by `Retry-After`: a
/// server asking for minutes is better answered by failing transiently (and letting a job
/// retry later, or the user ask again) than by holding a worker or a request.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// How much of an unparseable error body goes into a message.
const MAX_ERROR_BODY_CHARS: usize = 300;

/// `retry_base * 2^retries`, at most [`MAX_RETRY_DELAY`], then scaled by a random factor in
/// `[0.5, 1)` so that clients that failed together do not retry together.
pub fn backoff(retry_base: Duration, retries: u32) -> Duration {
    let exponential = retry_base
        .saturating_mul(2_u32.saturating_pow(retries))
        .min(MAX_RETRY_DELAY);
    exponential.mul_f64(0.5 + rand::random::<f64>() / 2.0)
}

/// `Retry-After` given in seconds (the HTTP-date form is ignored: backoff applies).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| Duration::from_secs_f64(seconds.min(MAX_RETRY_DELAY.as_secs_f64())))
}

/// The server's explanation from an error body: OpenAI's `{"error": {"message": ...}}`, the
/// `{"error": "..."}`, `{"message": ...}` and `{"detail": ...}` shapes of other compatible
/// servers, else the start of the body.
pub fn error_message(body: &[u8]) -> String {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
        let candidates = [
            json.pointer("/error/message"),
            json.get("error"),
            json.get("message"),
            json.get("detail"),
        ];
        if let Some(message) = candidates
            .into_iter()
            .flatten()
            .find_map(serde_json::Value::as_str)
        {
            return message.to_owned();
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "no details".to_owned();
    }
    let mut shortened: String = text.chars().take(MAX_ERROR_BODY_CHARS).collect();
    if shortened.len() < text.len() {
        shortened.push('…');
    }
    shortened
}

/// An error and its sources on one line (reqwest's own message alone is often just
/// "error sending request").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `text` (from a server, an error chain) with the API key replaced: servers may echo it back.
pub fn redact(text: &str, api_key: Option<&SecretString>) -> String {
    match api_key {
        Some(key) if !key.expose_secret().is_empty() => {
            text.replace(key.expose_secret(), "[REDACTED]")
        }
        _ => text.to_owned(),
    }
}

/// One failed attempt at an OpenAI-compatible endpoint: what went wrong (in our words), the
/// metrics label it counts under, whether another attempt may succeed, and the server's
/// `Retry-After` if it sent one.
#[derive(Debug)]
pub struct AttemptFailure {
    pub message: String,
    pub outcome: &'static str,
    pub transient: bool,
    pub retry_after: Option<Duration>,
}

impl AttemptFailure {
    pub fn transient(outcome: &'static str, message: impl Into<String>) -> Self {
        AttemptFailure {
            message: message.into(),
            outcome,
            transient: true,
            retry_after: None,
        }
    }

    pub fn permanent(outcome: &'static str, message: impl Into<String>) -> Self {
        AttemptFailure {
            message: message.into(),
            outcome,
            transient: false,
            retry_after: None,
        }
    }

    /// An error status from `endpoint` (e.g. "the LLM endpoint"): 429, 408 and 5xx may pass
    /// on another attempt, any other status will not.
    pub fn of_status(
        endpoint: &str,
        status: reqwest::StatusCode,
        retry_after: Option<Duration>,
    ) -> Self {
        let (transient, outcome) = if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            (true, "rate_limited")
        } else if status == reqwest::StatusCode::REQUEST_TIMEOUT {
            (true, "timeout")
        } else if status.is_server_error() {
            (true, "server_error")
        } else {
            (false, "client_error")
        };
        AttemptFailure {
            message: format!("{endpoint} answered {status}"),
            outcome,
            transient,
            retry_after,
        }
    }
}

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_retries: u32,
    /// First backoff delay; it doubles with each retry (with jitter).
    pub retry_base: Duration,
}

/// The last failure once no more attempts are made; `message` says how many were.
#[derive(Debug)]
pub struct GaveUp {
    pub message: String,
    pub transient: bool,
}

/// Runs `attempt` until it succeeds, fails for good, or `policy` allows no more retries —
/// waiting the server's `Retry-After` (capped) or a jittered backoff in between. Each
/// attempt's outcome is counted in the counter `metric` (label `outcome`).
pub async fn with_retries<T, F, Fut>(
    policy: RetryPolicy,
    metric: &'static str,
    mut attempt: F,
) -> Result<T, GaveUp>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AttemptFailure>>,
{
    let mut retries = 0;
    loop {
        let failure = match attempt().await {
            Ok(value) => {
                metrics::counter!(metric, "outcome" => "success").increment(1);
                return Ok(value);
            }
            Err(failure) => failure,
        };
        metrics::counter!(metric, "outcome" => failure.outcome).increment(1);
        if !failure.transient || retries >= policy.max_retries {
            let message = if retries > 0 {
                format!(
                    "gave up after {} attempts: {}",
                    retries + 1,
                    failure.message
                )
            } else {
                failure.message
            };
            return Err(GaveUp {
                message,
                transient: failure.transient,
            });
        }
        let delay = match failure.retry_after {
            Some(requested) => requested.min(MAX_RETRY_DELAY),
            None => backoff(policy.retry_base, retries),
        };
        tracing::warn!(
            metric,
            attempt = retries + 1,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            outcome = failure.outcome,
            error = %failure.message,
            "request failed; retrying"
        );
        tokio::time::sleep(delay).await;
        retries += 1;
    }
}
