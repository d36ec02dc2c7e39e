//! Text embeddings: the [`Embedder`] trait and its two implementations, [`LocalEmbedder`] (the
//! default: no network, no downloads) and [`OpenAiEmbedder`] (any OpenAI-compatible
//! `/v1/embeddings` endpoint), plus [`cosine`].
//!
//! Every vector an embedder returns is L2-normalised (or all zeros, see below), so cosine
//! similarity is a dot product and pgvector's `<=>` (cosine distance) ranks them correctly.
//! Each embedder names itself with a stable [`Embedder::model_id`] that is stored with every
//! chunk: vectors from different models are not comparable, and a changed model or dimension
//! must be handled by re-embedding, never by mixing.
//!
//! # The local embedder is lexical, not semantic
//! [`LocalEmbedder`] hashes words and character trigrams into a fixed number of buckets
//! ("feature hashing"). Two texts are close when they share words or word stems: it finds the
//! passage for "How do I install R packages?" because that passage says "install" and
//! "packages", and it tolerates inflections ("installing", "packages" vs "package"). It does
//! not know that "car" and "automobile" mean the same thing, nor anything about word order.
//! It is good for keyword-heavy questions over one's own documents and needs nothing else to
//! run; configure an [`OpenAiEmbedder`] for semantic search.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::core::outbound::{BaseUrl, find_refusal};
use crate::core::upstream::{
    MAX_RETRY_DELAY, backoff, error_chain, error_message, redact, retry_after,
};

/// Identifier of the local embedder's algorithm; change it whenever its vectors change.
pub const LOCAL_MODEL_ID: &str = "local-lexical-v1";

/// Computes embeddings. Implementations are cheap to share (`Arc<dyn Embedder>`).
#[async_trait]
pub trait Embedder: Send + Sync + fmt::Debug {
    /// Length of every vector this embedder returns.
    fn dimension(&self) -> usize;

    /// Stable identifier stored with each chunk, e.g. `"local-lexical-v1"` or
    /// `"openai:text-embedding-3-small"`, so that a model change is detectable.
    fn model_id(&self) -> String;

    /// Embeds `texts` in order: one L2-normalised vector of [`Self::dimension`] values per text
    /// (all zeros for a text with nothing to embed). Implementations batch internally.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbeddingError>;
}

/// Why embedding failed, split by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmbeddingError {
    /// Worth retrying later: timeouts, rate limits (429), server errors (5xx), connection errors.
    #[error("embedding failed, temporarily: {0}")]
    Transient(String),
    /// Retrying will not help: a rejected request (4xx other than 408 and 429), a dimension
    /// mismatch, a malformed response, an invalid configuration.
    #[error("embedding failed: {0}")]
    Permanent(String),
}

impl EmbeddingError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }

    /// The explanation, without the "embedding failed" prefix.
    pub fn message(&self) -> &str {
        match self {
            Self::Transient(message) | Self::Permanent(message) => message,
        }
    }
}

/// Cosine similarity of two vectors, in `[-1, 1]`. It is 0 when either vector is all zeros
/// (e.g. the local embedding of an empty text) or when their lengths differ, never NaN.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut dot, mut norm_a, mut norm_b) = (0.0_f64, 0.0_f64, 0.0_f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        norm_a += x * x;
        norm_b += y * y;
    }
    if norm_a == 0.0 || norm_b == 0.0 {
        return 0.0;
    }
    (dot / (norm_a.sqrt() * norm_b.sqrt())).clamp(-1.0, 1.0) as f32
}

/// Scales `vector` to unit length in place; an all-zero vector stays all zeros.
fn normalize(vector: &mut [f32]) {
    let norm = vector
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 && norm.is_finite() {
        for x in vector.iter_mut() {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
}

fn check_dimension(dimension: usize) -> Result<(), EmbeddingError> {
    if dimension == 0 {
        return Err(EmbeddingError::Permanent(
            "the embedding dimension must be at least 1".to_owned(),
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Local lexical embedder
// ------------------------------------------------------------------------------------------------

/// Batches above either size are embedded on tokio's blocking pool so that they do not hold an
/// executor thread for long (a few milliseconds of hashing per 64 chunks is fine inline).
const INLINE_MAX_TEXTS: usize = 64;
const INLINE_MAX_BYTES: usize = 64 * 1024;

/// Weight of each character trigram relative to its word: enough to pull inflections of a
/// stem together, small enough that whole-word matches still dominate.
const TRIGRAM_WEIGHT: f64 = 0.5;

/// Namespaces keep a word and a trigram with the same letters in different buckets.
const WORD_FEATURE: u8 = b'w';
const TRIGRAM_FEATURE: u8 = b't';

/// The default embedder: deterministic lexical feature hashing, no network, no model files.
/// See the module documentation for what it can and cannot find.
///
/// A text becomes tokens (lowercased runs of Unicode letters and digits, at least two
/// characters, minus a short English stopword list). Each distinct token adds
/// `1 + ln(term frequency)` to the bucket its hash selects, with a sign taken from another bit
/// of the hash so that collisions cancel out on average rather than pile up; each trigram of
/// the token (with a start-of-word marker: `<in`, `ins`, `nst`, ...) adds half that weight. The
/// hash is FNV-1a with a 64-bit finaliser, fixed here, so vectors are identical across
/// processes, machines and Rust releases. The result is L2-normalised; a text without any
/// token (empty, punctuation, only stopwords) gives the zero vector, whose cosine with
/// anything is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalEmbedder {
    dimension: usize,
}

impl LocalEmbedder {
    /// A local embedder producing `dimension`-long vectors (at least 1; a few hundred keeps
    /// collisions rare for chunk-sized texts).
    pub fn new(dimension: usize) -> Result<Self, EmbeddingError> {
        check_dimension(dimension)?;
        Ok(Self { dimension })
    }

    /// The embedding of one text, computed on the calling thread (fast: microseconds for a
    /// chunk). [`Embedder::embed`] is the same per text.
    pub fn embed_text(&self, text: &str) -> Vec<f32> {
        let lowercase = text.to_lowercase();
        // Sorted, so that floating-point sums happen in the same order every time.
        let mut term_frequencies: BTreeMap<&str, u32> = BTreeMap::new();
        for token in tokens(&lowercase) {
            *term_frequencies.entry(token).or_default() += 1;
        }

        let mut accumulator = vec![0.0_f64; self.dimension];
        let mut trigram = [0_u8; 12];
        for (token, frequency) in term_frequencies {
            let weight = 1.0 + f64::from(frequency).ln();
            self.add_feature(&mut accumulator, WORD_FEATURE, token.as_bytes(), weight);

            let characters: Vec<char> = std::iter::once('<').chain(token.chars()).collect();
            for window in characters.windows(3) {
                let mut length = 0;
                for character in window {
                    length += character.encode_utf8(&mut trigram[length..]).len();
                }
                self.add_feature(
                    &mut accumulator,
                    TRIGRAM_FEATURE,
                    &trigram[..length],
                    weight * TRIGRAM_WEIGHT,
                );
            }
        }

        let norm = accumulator.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 {
            return vec![0.0; self.dimension];
        }
        accumulator.iter().map(|x| (x / norm) as f32).collect()
    }

    fn add_feature(&self, accumulator: &mut [f64], namespace: u8, bytes: &[u8], weight: f64) {
        let hash = stable_hash(namespace, bytes);
        // The bucket comes from the low bits, the sign from the top one.
        let bucket = (hash % self.dimension as u64) as usize;
        let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
        accumulator[bucket] += sign * weight;
    }

    fn embed_all(&self, texts: &[String]) -> Vec<Vec<f32>> {
        texts.iter().map(|text| self.embed_text(text)).collect()
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn dimension(&self) -> usize {
        self.dimension
    }

    fn model_id(&self) -> String {
        LOCAL_MODEL_ID.to_owned()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        let total_bytes: usize = texts.iter().map(String::len).sum();
        if texts.len() <= INLINE_MAX_TEXTS && total_bytes <= INLINE_MAX_BYTES {
            return Ok(self.embed_all(texts));
        }
        let embedder = *self;
        let texts = texts.to_vec();
        tokio::task::spawn_blocking(move || embedder.embed_all(&texts))
            .await
            .map_err(|error| {
                EmbeddingError::Permanent(format!("the local embedding task failed: {error}"))
            })
    }
}

/// Lowercased text split into runs of letters and digits, without short tokens and stopwords.
fn tokens(lowercase: &str) -> impl Iterator<Item = &str> {
    lowercase
        .split(|character: char| !character.is_alphanumeric())
        .filter(|token| token.chars().nth(1).is_some() && !is_stopword(token))
}

/// Words too common in English to tell passages apart. Kept short on purpose: with a lexical
/// embedder every dropped word is a keyword nobody can search for.
fn is_stopword(token: &str) -> bool {
    matches!(
        token,
        "about"
            | "above"
            | "after"
            | "again"
            | "all"
            | "also"
            | "am"
            | "an"
            | "and"
            | "any"
            | "are"
            | "as"
            | "at"
            | "be"
            | "because"
            | "been"
            | "before"
            | "being"
            | "below"
            | "between"
            | "both"
            | "but"
            | "by"
            | "can"
            | "could"
            | "did"
            | "do"
            | "does"
            | "doing"
            | "during"
            | "each"
            | "for"
            | "from"
            | "further"
            | "had"
            | "has"
            | "have"
            | "having"
            | "he"
            | "her"
            | "here"
            | "hers"
            | "him"
            | "his"
            | "how"
            | "if"
            | "in"
            | "into"
            | "is"
            | "it"
            | "its"
            | "itself"
            | "just"
            | "me"
            | "more"
            | "most"
            | "my"
            | "no"
            | "nor"
            | "not"
            | "of"
            | "off"
            | "on"
            | "once"
            | "only"
            | "or"
            | "other"
            | "our"
            | "ours"
            | "out"
            | "over"
            | "own"
            | "same"
            | "she"
            | "should"
            | "so"
            | "some"
            | "such"
            | "than"
            | "that"
            | "the"
            | "their"
            | "theirs"
            | "them"
            | "then"
            | "there"
            | "these"
            | "they"
            | "this"
            | "those"
            | "through"
            | "to"
            | "too"
            | "under"
            | "until"
            | "up"
            | "very"
            | "was"
            | "we"
            | "were"
            | "what"
            | "when"
            | "where"
            | "which"
            | "while"
            | "who"
            | "whom"
            | "why"
            | "will"
            | "with"
            | "would"
            | "you"
            | "your"
            | "yours"
    )
}

/// FNV-1a over a namespace byte and `bytes`, then the SplitMix64 finaliser so that every bit
/// of the result (the bucket's low bits, the sign's top bit) depends on every input byte.
/// Fixed forever for [`LOCAL_MODEL_ID`]: changing it changes every stored vector.
fn stable_hash(namespace: u8, bytes: &[u8]) -> u64 {
    const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = FNV_OFFSET_BASIS;
    for &byte in std::iter::once(&namespace).chain(bytes) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

// ------------------------------------------------------------------------------------------------
// OpenAI-compatible client
// ------------------------------------------------------------------------------------------------

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

/// One failed HTTP attempt: the error, the label it is counted under, the server's
/// `Retry-After` if it sent one.
struct AttemptFailure {
    error: EmbeddingError,
    outcome: &'static str,
    retry_after: Option<Duration>,
}

impl AttemptFailure {
    fn transient(outcome: &'static str, message: String) -> Self {
        Self {
            error: EmbeddingError::Transient(message),
            outcome,
            retry_after: None,
        }
    }

    fn permanent(outcome: &'static str, message: String) -> Self {
        Self {
            error: EmbeddingError::Permanent(message),
            outcome,
            retry_after: None,
        }
    }
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
        let mut retries = 0;
        loop {
            let started = Instant::now();
            let result = self.attempt(batch).await;
            metrics::histogram!("embedding_request_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            let failure = match result {
                Ok(vectors) => {
                    metrics::counter!("embedding_requests_total", "outcome" => "success")
                        .increment(1);
                    return Ok(vectors);
                }
                Err(failure) => failure,
            };
            metrics::counter!("embedding_requests_total", "outcome" => failure.outcome)
                .increment(1);
            if !failure.error.is_transient() {
                return Err(failure.error);
            }
            if retries >= self.config.max_retries {
                return Err(EmbeddingError::Transient(format!(
                    "gave up after {} attempts: {}",
                    retries + 1,
                    failure.error.message()
                )));
            }
            let delay = match failure.retry_after {
                Some(requested) => requested.min(MAX_RETRY_DELAY),
                None => backoff(self.config.retry_base, retries),
            };
            tracing::warn!(
                attempt = retries + 1,
                retry_in_ms = delay.as_millis() as u64,
                outcome = failure.outcome,
                error = failure.error.message(),
                "embedding request failed; retrying"
            );
            tokio::time::sleep(delay).await;
            retries += 1;
        }
    }

    /// One HTTP request for one batch.
    async fn attempt(&self, batch: &[&str]) -> Result<Vec<Vec<f32>>, AttemptFailure> {
        let body = EmbeddingsRequest {
            model: &self.config.model,
            input: batch.to_vec(),
            encoding_format: "float",
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
            let message = format!("the embedding endpoint answered {status}");
            let failure = if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                AttemptFailure::transient("rate_limited", message)
            } else if status == reqwest::StatusCode::REQUEST_TIMEOUT {
                AttemptFailure::transient("timeout", message)
            } else if status.is_server_error() {
                AttemptFailure::transient("server_error", message)
            } else {
                AttemptFailure::permanent("client_error", message)
            };
            return Err(AttemptFailure {
                retry_after,
                ..failure
            });
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
            .map_err(|error| AttemptFailure {
                error,
                outcome: "bad_response",
                retry_after: None,
            })
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
