//! Chat models: the [`ChatModel`] trait the chat pipeline talks to, [`OpenAiChat`] (any
//! OpenAI-compatible `POST /chat/completions`, streamed), [`RetrievalOnly`] (the answer when
//! no LLM is configured: the best passages, said to be just that), and [`count_tokens`].
//!
//! A model answers with a stream of [`StreamEvent`]s: text deltas as they come, the usage when
//! the server reports it (`stream_options.include_usage`), and the finish reason. Failures
//! before the first byte of the answer are retried (429, 408, 5xx, timeouts, connection errors,
//! with backoff and `Retry-After`); a stream that breaks after it started is not (the user has
//! seen part of an answer), it ends with [`LlmError::Interrupted`]. The stream itself is read
//! in `llm/sse.rs`.

mod sse;

/// The stream reader, for the fuzz targets (feature `testkit`, off in every build that serves).
#[cfg(feature = "testkit")]
pub mod testkit {
    pub use super::sse::decode_sse;
}

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::Stream;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::core::outbound::{BaseUrl, SecretBinding, find_refusal};
use crate::core::upstream::{
    AttemptFailure, RetryPolicy, error_chain, error_message, redact, retry_after, with_retries,
};
use sse::decode_sse;

/// The project secrets that override the platform's LLM endpoint and key, the key bound to
/// the endpoint (a key entered for one URL never travels to another).
pub const LLM_SECRETS: SecretBinding = SecretBinding {
    credential: "LLM_API_KEY",
    endpoint: "LLM_BASE_URL",
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: content.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub temperature: f32,
    /// Nucleus sampling, when the client asked for it (OpenAI-compatible API).
    pub top_p: Option<f32>,
    pub max_tokens: u32,
}

/// Tokens a request used, as the server counted them (or, when it did not say, as
/// [`count_tokens`] does).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl Usage {
    pub fn total(&self) -> u32 {
        self.prompt_tokens + self.completion_tokens
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    Delta(String),
    Usage(Usage),
    /// `stop`, `length`, `content_filter`, ...
    Finish(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// No answer could be started: the endpoint failed (after retries) or refused.
    #[error("{0}")]
    Unavailable(String),
    /// The answer broke off after it started.
    #[error("{0}")]
    Interrupted(String),
}

pub type ChatStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, LlmError>> + Send>>;

#[async_trait]
pub trait ChatModel: Send + Sync {
    /// What is stored with each answer, e.g. `gpt-4o-mini` or `retrieval-only`.
    fn model_id(&self) -> String;

    /// Starts an answer. Dropping the stream stops it (and the upstream request).
    async fn stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError>;
}

pub use crate::core::tokens::count_tokens;

/// Tokens of a whole prompt: the messages plus OpenAI's few tokens of framing per message.
pub fn count_prompt_tokens(messages: &[ChatMessage]) -> u32 {
    const PER_MESSAGE: u32 = 4;
    messages
        .iter()
        .map(|message| count_tokens(&message.content) + PER_MESSAGE)
        .sum::<u32>()
        + 3
}

// ------------------------------------------------------------------------------------------------

/// Where and how to reach an OpenAI-compatible chat endpoint.
#[derive(Clone)]
pub struct OpenAiChatConfig {
    /// The API root, e.g. `https://api.openai.com/v1`; requests go to
    /// `{base_url}/chat/completions`.
    pub base_url: BaseUrl,
    pub api_key: Option<SecretString>,
    /// Until the response headers arrive (per attempt).
    pub timeout: Duration,
    /// Longest silence between two pieces of a streamed answer.
    pub idle_timeout: Duration,
    /// Further attempts after a transient failure, before the answer starts.
    pub max_retries: u32,
    /// First backoff delay; it doubles with each retry (with jitter).
    pub retry_base: Duration,
}

impl fmt::Debug for OpenAiChatConfig {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("OpenAiChatConfig")
            .field("base_url", &self.base_url.identity())
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .field("timeout", &self.timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

/// A client of an OpenAI-compatible `POST /chat/completions` with `stream: true` (OpenAI,
/// vLLM, Ollama, LiteLLM, ...).
///
/// Its errors say what failed in our words (the status code, "cannot reach", "refused by the
/// outbound policy"); what the endpoint said goes to the log only, never to the person asking:
/// an endpoint a tenant chose could be an internal service answering with its secrets.
///
/// Metrics: `llm_requests_total{outcome}` per attempt and `llm_tokens_total{kind}`.
#[derive(Debug, Clone)]
pub struct OpenAiChat {
    config: OpenAiChatConfig,
    endpoint: url::Url,
    model: String,
    client: reqwest::Client,
}

#[derive(Serialize)]
struct CompletionRequest<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    temperature: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    max_tokens: u32,
    stream: bool,
    stream_options: StreamOptions,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

impl OpenAiChat {
    /// A client for `model` at `config.base_url`, sending through `client` (from
    /// [`crate::core::outbound::OutboundClients`], which enforces the outbound policy, and
    /// shared: a new reqwest client loads the TLS roots again, which costs more than a whole
    /// answer's bookkeeping).
    pub fn new(
        config: OpenAiChatConfig,
        model: impl Into<String>,
        client: reqwest::Client,
    ) -> Self {
        let endpoint = config.base_url.endpoint("chat/completions");
        OpenAiChat {
            config,
            endpoint,
            model: model.into(),
            client,
        }
    }

    async fn attempt(
        &self,
        body: &CompletionRequest<'_>,
    ) -> Result<reqwest::Response, AttemptFailure> {
        let mut request = self.client.post(self.endpoint.clone()).json(body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let response = match tokio::time::timeout(self.config.timeout, request.send()).await {
            Err(_) => {
                return Err(AttemptFailure::transient(
                    "timeout",
                    format!(
                        "the LLM endpoint did not answer within {:?}",
                        self.config.timeout
                    ),
                ));
            }
            Ok(Err(error)) => {
                if let Some(refused) = find_refusal(&error) {
                    return Err(AttemptFailure::permanent(
                        "refused",
                        format!("the LLM endpoint {refused}"),
                    ));
                }
                let permanent = error.is_builder();
                let detail = self.redact(&error_chain(&error.without_url()));
                tracing::warn!(endpoint = %self.config.base_url, "cannot reach the LLM endpoint: {detail}");
                let message = "cannot reach the LLM endpoint";
                return Err(if permanent {
                    AttemptFailure::permanent("connection_error", message)
                } else {
                    AttemptFailure::transient("connection_error", message)
                });
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = retry_after(response.headers());
        let body = tokio::time::timeout(self.config.timeout, error_body(response))
            .await
            .unwrap_or_default();
        tracing::warn!(
            endpoint = %self.config.base_url,
            %status,
            "the LLM endpoint refused a request: {}",
            self.redact(&error_message(&body))
        );
        Err(AttemptFailure::of_status(
            "the LLM endpoint",
            status,
            retry_after,
        ))
    }

    /// Removes the API key from text that came from elsewhere (a server may echo it back).
    fn redact(&self, text: &str) -> String {
        redact(text, self.config.api_key.as_ref())
    }
}

#[async_trait]
impl ChatModel for OpenAiChat {
    fn model_id(&self) -> String {
        self.model.clone()
    }

    async fn stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        let body = CompletionRequest {
            model: &self.model,
            messages: &request.messages,
            temperature: request.temperature,
            top_p: request.top_p,
            max_tokens: request.max_tokens,
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
        };
        let policy = RetryPolicy {
            max_retries: self.config.max_retries,
            retry_base: self.config.retry_base,
        };
        let response = with_retries(policy, "llm_requests_total", || self.attempt(&body))
            .await
            .map_err(|gave_up| LlmError::Unavailable(gave_up.message))?;
        Ok(Box::pin(decode_sse(
            response.bytes_stream(),
            self.config.idle_timeout,
        )))
    }
}

/// The start of an error response's body: enough to explain, never the whole of a huge one.
async fn error_body(mut response: reqwest::Response) -> Vec<u8> {
    const MAX_ERROR_BODY_BYTES: usize = 16 * 1024;
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BODY_BYTES);
    body
}

// ------------------------------------------------------------------------------------------------

/// A passage the retrieval-only answer quotes.
#[derive(Debug, Clone)]
pub struct Passage {
    /// How the passage is cited, e.g. `manual.pdf, page 3`.
    pub label: String,
    pub text: String,
}

/// The answer when no LLM is configured: the best passages, numbered like the sources, under
/// a sentence saying that this is what they are. Uses no tokens.
#[derive(Debug, Clone)]
pub struct RetrievalOnly {
    pub passages: Vec<Passage>,
}

/// Model id stored with retrieval-only answers.
pub const RETRIEVAL_ONLY_MODEL: &str = "retrieval-only";

impl RetrievalOnly {
    pub fn answer(&self) -> String {
        if self.passages.is_empty() {
            return "No language model is configured for this avatar, so it can only quote its \
                    documents — and none of them matches this question."
                .to_owned();
        }
        let mut answer = String::from(
            "No language model is configured for this avatar, so here are the passages from \
             its documents that best match the question:\n",
        );
        for (index, passage) in self.passages.iter().enumerate() {
            answer.push_str(&format!(
                "\n[{}] {}\n{}\n",
                index + 1,
                passage.label,
                passage.text.trim()
            ));
        }
        answer
    }
}

#[async_trait]
impl ChatModel for RetrievalOnly {
    fn model_id(&self) -> String {
        RETRIEVAL_ONLY_MODEL.to_owned()
    }

    async fn stream(&self, _request: ChatRequest) -> Result<ChatStream, LlmError> {
        // Line by line, so a streaming client sees it arrive like any answer.
        let answer = self.answer();
        let mut events: Vec<Result<StreamEvent, LlmError>> = answer
            .split_inclusive('\n')
            .map(|line| Ok(StreamEvent::Delta(line.to_owned())))
            .collect();
        events.push(Ok(StreamEvent::Usage(Usage::default())));
        events.push(Ok(StreamEvent::Finish("stop".to_owned())));
        Ok(Box::pin(futures_util::stream::iter(events)))
    }
}
