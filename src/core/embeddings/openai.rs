//! The client of an OpenAI-compatible `/v1/embeddings` endpoint.

use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{Embedder, EmbeddingError, check_dimension, normalize};
use crate::core::outbound::{BaseUrl, find_refusal};
use crate::core::upstream::{
    AttemptFailure, RetryPolicy, error_chain, error_message, redact, retry_after, with_retries,
};

pub const DEFAULT_BATCH_SIZE: usize = 64;
pub const DEFAULT_MAX_RETRIES: u32 = 4;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_millis(500);

/// Where and how to reach an OpenAI-compatible embeddings endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiEmbedderConfig {
    /// The API root, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8080/v1`; requests
    /// go to `{base_url}/embeddings`.
    pub base_url: String,
    pub model: String,
    /// Sent as `Authorization: Bearer ...` when set. Never printed (`SecretString`).
    pub api_key: Option<SecretString>,
    /// The deployment's vector length; a response of any other length is refused.
    pub dimension: usize,
    /// Texts per request.
    pub batch_size: usize,
    /// Further attempts after a transient failure, per batch.
    pub max_retries: u32,
    /// Per request, from connecting to the last byte of the response.
    pub timeout: Duration,
    /// First backoff delay; it doubles with each retry (with jitter), up to 30 seconds.
    pub retry_base: Duration,
}

impl OpenAiEmbedderConfig {
    /// A configuration with the default batch size (64), retries (4), timeout (30 s) and retry
    /// base (500 ms), and no API key.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>, dimension: usize) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            dimension,
            batch_size: DEFAULT_BATCH_SIZE,
            max_retries: DEFAULT_MAX_RETRIES,
            timeout: DEFAULT_TIMEOUT,
            retry_base: DEFAULT_RETRY_BASE,
        }
    }
}

/// A client of an OpenAI-compatible `POST /embeddings` (OpenAI, Azure-style proxies, vLLM,
/// text-embeddings-inference, Ollama's OpenAI API, ...).
///
/// Texts are sent in batches of `batch_size`, in order; each batch is retried with exponential
/// backoff and jitter on timeouts, connection errors, 408, 429 and 5xx (a `Retry-After` in
/// seconds is honoured, capped at 30 s), up to `max_retries` times. Other 4xx answers fail at
/// once. Errors name the status in our words; what the server said goes to the log only. Blank
/// texts are not sent (OpenAI rejects empty input): they
/// get the zero vector.
///
/// Metrics: `embedding_requests_total{outcome}` per HTTP attempt (`success`, `rate_limited`,
/// `server_error`, `timeout`, `connection_error`, `client_error`, `bad_response`),
/// `embedding_request_duration_seconds` and `embedding_tokens_total` (from `usage`).
#[derive(Clone)]
pub struct OpenAiEmbedder {
    config: OpenAiEmbedderConfig,
    endpoint: url::Url,
    client: reqwest::Client,
}

impl fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("OpenAiEmbedder")
            .field("endpoint", &self.endpoint)
            .field("model", &self.config.model)
            .field(
                "api_key",
                &self.config.api_key.as_ref().map(|_| "[REDACTED]"),
            )
            .field("dimension", &self.config.dimension)
            .field("batch_size", &self.config.batch_size)
            .field("max_retries", &self.config.max_retries)
            .field("timeout", &self.config.timeout)
            .field("retry_base", &self.config.retry_base)
            .finish()
    }
}

#[derive(Serialize)]
struct EmbeddingsRequest<'a> {
    model: &'a str,
    input: Vec<&'a str>,
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

/// OpenAI's models that shorten their vectors on request (`dimensions`), with their own size.
const SHORTENABLE: [(&str, usize); 2] = [
    ("text-embedding-3-small", 1536),
    ("text-embedding-3-large", 3072),
];

/// The `dimensions` to ask `model` for: the deployment's, when the model is one that takes the
/// parameter and its own size differs. Other models are not sent it (many servers refuse
/// unknown parameters); a size that does not match is reported by the dimension check.
fn dimensions_parameter(model: &str, dimension: usize) -> Option<usize> {
    // Served under a prefix by some gateways ("openai/text-embedding-3-small").
    let name = model.rsplit('/').next().unwrap_or(model);
    SHORTENABLE
        .iter()
        .find(|(shortenable, _)| *shortenable == name)
        .filter(|(_, native)| *native != dimension)
        .map(|_| dimension)
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    total_tokens: Option<u64>,
}

impl OpenAiEmbedder {
    /// Checks the configuration and builds an HTTP client of its own (no redirects); nothing
    /// is sent yet.
    pub fn new(config: OpenAiEmbedderConfig) -> Result<Self, EmbeddingError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| {
                EmbeddingError::Permanent(format!(
                    "cannot build the embedding HTTP client: {}",
                    error_chain(&error.without_url())
                ))
            })?;
        Self::with_client(config, client)
    }

    /// As [`OpenAiEmbedder::new`], sending through `client` (one of
    /// [`crate::core::outbound::OutboundClients`]).
    pub fn with_client(
        config: OpenAiEmbedderConfig,
        client: reqwest::Client,
    ) -> Result<Self, EmbeddingError> {
        check_dimension(config.dimension)?;
        if config.batch_size == 0 {
            return Err(EmbeddingError::Permanent(
                "the embedding batch size must be at least 1".to_owned(),
            ));
        }
        if config.model.trim().is_empty() {
            return Err(EmbeddingError::Permanent(
                "no embedding model is configured".to_owned(),
            ));
        }
        let base_url = BaseUrl::parse(&config.base_url).map_err(|error| {
            EmbeddingError::Permanent(format!("the embedding base URL {error}"))
        })?;
        Ok(Self {
            endpoint: base_url.endpoint("embeddings"),
            config,
            client,
        })
    }

    pub fn config(&self) -> &OpenAiEmbedderConfig {
        &self.config
    }

    /// Embeds one batch, retrying transient failures.
    async fn embed_batch(&self, batch: &[&str]) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        let policy = RetryPolicy {
            max_retries: self.config.max_retries,
            retry_base: self.config.retry_base,
        };
        with_retries(policy, "embedding_requests_total", || async {
            let started = Instant::now();
            let result = self.attempt(batch).await;
            metrics::histogram!("embedding_request_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            result
        })
        .await
        .map_err(|gave_up| {
            if gave_up.transient {
                EmbeddingError::Transient(gave_up.message)
            } else {
                EmbeddingError::Permanent(gave_up.message)
            }
        })
    }

    /// One HTTP request for one batch.
    async fn attempt(&self, batch: &[&str]) -> Result<Vec<Vec<f32>>, AttemptFailure> {
        let body = EmbeddingsRequest {
            model: &self.config.model,
            input: batch.to_vec(),
            encoding_format: "float",
            dimensions: dimensions_parameter(&self.config.model, self.config.dimension),
        };
        let mut request = self
            .client
            .post(self.endpoint.clone())
            .timeout(self.config.timeout)
            .json(&body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let response = request
            .send()
            .await
            .map_err(|error| self.transport_failure(error))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = response
            .bytes()
            .await
            .map_err(|error| self.transport_failure(error))?;

        if !status.is_success() {
            tracing::warn!(
                endpoint = %self.endpoint,
                %status,
                "the embedding endpoint refused a request: {}",
                self.redact(&error_message(&bytes))
            );
            return Err(AttemptFailure::of_status(
                "the embedding endpoint",
                status,
                retry_after,
            ));
        }

        let parsed: EmbeddingsResponse = serde_json::from_slice(&bytes).map_err(|error| {
            AttemptFailure::permanent(
                "bad_response",
                format!("the embedding endpoint sent an unreadable response: {error}"),
            )
        })?;
        if let Some(tokens) = parsed.usage.and_then(|usage| usage.total_tokens) {
            metrics::counter!("embedding_tokens_total").increment(tokens);
        }
        self.order_and_check(batch.len(), parsed.data)
            .map_err(|error| AttemptFailure::permanent("bad_response", error.message()))
    }

    /// Puts the vectors in input order (servers may answer in any order, keyed by `index`),
    /// checks that there is exactly one per input and of the deployment's dimension, and
    /// normalises them.
    fn order_and_check(
        &self,
        expected: usize,
        items: Vec<EmbeddingItem>,
    ) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        if items.len() != expected {
            return Err(EmbeddingError::Permanent(format!(
                "the embedding endpoint returned {} embeddings for {expected} inputs",
                items.len()
            )));
        }
        let mut ordered: Vec<Option<Vec<f32>>> = vec![None; expected];
        for item in items {
            let actual = item.embedding.len();
            if actual != self.config.dimension {
                return Err(EmbeddingError::Permanent(format!(
                    "dimension mismatch: the model returned {actual}, the deployment stores {}; \
                     change embeddings.dimension and run the re-embed command",
                    self.config.dimension
                )));
            }
            let slot = ordered.get_mut(item.index).ok_or_else(|| {
                EmbeddingError::Permanent(format!(
                    "the embedding endpoint returned index {} for {expected} inputs",
                    item.index
                ))
            })?;
            if slot.is_some() {
                return Err(EmbeddingError::Permanent(format!(
                    "the embedding endpoint returned index {} twice",
                    item.index
                )));
            }
            let mut vector = item.embedding;
            normalize(&mut vector);
            *slot = Some(vector);
        }
        // Every slot is filled: as many items as inputs, each index in range and unique.
        Ok(ordered.into_iter().flatten().collect())
    }

    fn transport_failure(&self, error: reqwest::Error) -> AttemptFailure {
        if error.is_timeout() {
            return AttemptFailure::transient(
                "timeout",
                format!(
                    "the embedding endpoint did not answer within {:?}",
                    self.config.timeout
                ),
            );
        }
        if error.is_builder() {
            return AttemptFailure::permanent(
                "client_error",
                format!(
                    "cannot build the embedding request: {}",
                    self.redact(&error_chain(&error.without_url()))
                ),
            );
        }
        if let Some(refused) = find_refusal(&error) {
            return AttemptFailure::permanent(
                "refused",
                format!("the embedding endpoint {refused}"),
            );
        }
        tracing::warn!(
            endpoint = %self.endpoint,
            "cannot reach the embedding endpoint: {}",
            self.redact(&error_chain(&error.without_url()))
        );
        AttemptFailure::transient(
            "connection_error",
            "cannot reach the embedding endpoint".to_owned(),
        )
    }

    /// Removes the API key from text that came from elsewhere (a server may echo it back).
    fn redact(&self, text: &str) -> String {
        redact(text, self.config.api_key.as_ref())
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn dimension(&self) -> usize {
        self.config.dimension
    }

    fn model_id(&self) -> String {
        format!("openai:{}", self.config.model)
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        let mut vectors = vec![vec![0.0; self.config.dimension]; texts.len()];
        let to_send: Vec<(usize, &str)> = texts
            .iter()
            .enumerate()
            .filter(|(_, text)| !text.trim().is_empty())
            .map(|(position, text)| (position, text.as_str()))
            .collect();
        for batch in to_send.chunks(self.config.batch_size) {
            let inputs: Vec<&str> = batch.iter().map(|&(_, text)| text).collect();
            let embedded = self.embed_batch(&inputs).await?;
            for (&(position, _), vector) in batch.iter().zip(embedded) {
                vectors[position] = vector;
            }
        }
        Ok(vectors)
    }
}
