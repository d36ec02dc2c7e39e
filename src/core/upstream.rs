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
