//! `POST /api/v1/openai/chat/completions`: the request as OpenAI defines it, turned into an
//! end user's question with the client's history and options, and the answer as a
//! `chat.completion` or a stream of `chat.completion.chunk`s ending with `data: [DONE]`.

use std::convert::Infallible;

use actix_web::HttpResponse;
use actix_web::http::header::{self, HeaderValue};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use utoipa::ToSchema;

use crate::core::error::{AppError, ErrorCode, UNAVAILABLE_RETRY_AFTER_SECS};
use crate::core::llm::{ChatMessage, Role};
use crate::modules::chat::pipeline::{ClientOptions, TurnEvent, TurnFailure};
use crate::modules::chat::service::{MessageView, SourceRef};

use super::errors::OpenAiError;

#[derive(Debug, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a last chunk with the usage (and `"usage": null` in the others).
    pub include_usage: Option<bool>,
}

/// A message's content: a string, or parts of which only `text` ones are taken.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RequestMessage {
    /// `system` (or `developer`), `user` or `assistant`.
    pub role: String,
    pub content: Option<MessageContent>,
}

/// OpenAI's chat completion request; fields it has that are not listed are ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// The avatar: its slug or its id.
    pub model: String,
    /// The conversation, oldest first; the last one is the user's question.
    pub messages: Vec<RequestMessage>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// At most the avatar's temperature.
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// At most the avatar's `max_tokens`.
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    /// The client's id for the person asking: their end user (channel `api`). Without it,
    /// the key's own end user asks.
    pub user: Option<String>,
    /// What OpenAI now calls `user`; taken when `user` is missing.
    pub safety_identifier: Option<String>,
    pub n: Option<u32>,
    #[schema(value_type = Option<Object>)]
    pub tools: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub functions: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<Value>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u32>,
}

/// What a request asks of the platform, checked.
pub struct Asked {
    pub question: String,
    pub history: Vec<ChatMessage>,
    pub options: ClientOptions,
}

/// The longest `user`, as the public API's `external_id`.
const MAX_USER_CHARS: usize = 200;

/// How a key's own end user is named (`api-key:<key id>`); a client's `user` may not start so.
pub const KEY_USER_PREFIX: &str = "api-key:";

/// Parses a request body; a field missing or of the wrong type is named in `param`.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, OpenAiError> {
    // A body is an object (serde would also read a struct from an array of its fields).
    if body.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
        return Err(OpenAiError::invalid(
            "body",
            "the body must be a JSON object",
        ));
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    let parsed = serde_path_to_error::deserialize(&mut *deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return OpenAiError::invalid("body", format!("the body is not valid JSON: {inner}"));
        }
        let message = inner.to_string();
        // A missing field is reported at its parent's path.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let param = match (path.as_str(), missing) {
            (".", Some(field)) => field.to_owned(),
            (parent, Some(field)) => format!("{parent}.{field}"),
            (".", None) => "body".to_owned(),
            (_, None) => path,
        };
        OpenAiError::invalid(param, message)
    })?;
    deserializer.end().map_err(|error| {
        OpenAiError::invalid("body", format!("the body is not valid JSON: {error}"))
    })?;
    Ok(parsed)
}

fn text_of(index: usize, content: Option<MessageContent>) -> Result<String, OpenAiError> {
    match content {
        None => Ok(String::new()),
        Some(MessageContent::Text(text)) => Ok(text),
        Some(MessageContent::Parts(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (part.kind.as_str(), part.text) {
                    ("text", Some(part)) => {
                        if !text.is_empty() {
                            text.push('\n');
                        }
                        text.push_str(&part);
                    }
                    (kind, _) => {
                        return Err(OpenAiError::invalid(
                            format!("messages[{index}].content"),
                            format!("only text content is supported, not `{kind}`"),
                        ));
                    }
                }
            }
            Ok(text)
        }
    }
}

/// A parameter set to something this endpoint does not do.
fn unsupported(request: &ChatCompletionRequest) -> Option<(&'static str, &'static str)> {
    let present = |value: &Option<Value>| {
        value.as_ref().is_some_and(|value| match value {
            Value::Null => false,
            Value::Array(items) => !items.is_empty(),
            _ => true,
        })
    };
    if present(&request.tools) {
        return Some((
            "tools",
            "tools are not supported: an avatar answers from its documents",
        ));
    }
    if present(&request.functions) {
        return Some(("functions", "functions are not supported"));
    }
    if request.n.is_some_and(|n| n > 1) {
        return Some(("n", "only one choice (`n` = 1) is supported"));
    }
    if let Some(format) = &request.response_format
        && !format.is_null()
        && format.get("type").and_then(Value::as_str) != Some("text")
    {
        return Some((
            "response_format",
            "only `{\"type\": \"text\"}` is supported",
        ));
    }
    if request.logprobs == Some(true) || request.top_logprobs.is_some_and(|n| n > 0) {
        return Some(("logprobs", "log probabilities are not supported"));
    }
    None
}

/// The question (the last message, the user's), the history before it, the client's system
/// messages and sampling.
pub fn check(request: &mut ChatCompletionRequest, max_chars: usize) -> Result<Asked, OpenAiError> {
    if let Some((param, message)) = unsupported(request) {
        return Err(OpenAiError::invalid(param, message));
    }
    if let Some(temperature) = request.temperature
        && !(0.0..=2.0).contains(&temperature)
    {
        return Err(OpenAiError::invalid(
            "temperature",
            "must be between 0 and 2",
        ));
    }
    if let Some(top_p) = request.top_p
        && !(top_p > 0.0 && top_p <= 1.0)
    {
        return Err(OpenAiError::invalid(
            "top_p",
            "must be above 0 and at most 1",
        ));
    }
    if request.user.is_none() {
        request.user = request.safety_identifier.take();
    }
    if request
        .user
        .as_ref()
        .is_some_and(|user| user.is_empty() || user.chars().count() > MAX_USER_CHARS)
    {
        return Err(OpenAiError::invalid(
            "user",
            format!("must be 1 to {MAX_USER_CHARS} characters"),
        ));
    }
    if request
        .user
        .as_ref()
        .is_some_and(|user| user.starts_with(KEY_USER_PREFIX))
    {
        return Err(OpenAiError::invalid(
            "user",
            format!("`{KEY_USER_PREFIX}` names the keys' own end users"),
        ));
    }
    let mut instructions: Vec<String> = Vec::new();
    let mut history: Vec<ChatMessage> = Vec::new();
    let messages = std::mem::take(&mut request.messages);
    let count = messages.len();
    let mut question = None;
    for (index, message) in messages.into_iter().enumerate() {
        let text = text_of(index, message.content)?;
        match message.role.as_str() {
            "system" | "developer" => instructions.push(text),
            "user" if index + 1 == count => question = Some(text),
            "user" => history.push(ChatMessage::new(Role::User, text)),
            "assistant" => history.push(ChatMessage::new(Role::Assistant, text)),
            other => {
                return Err(OpenAiError::invalid(
                    format!("messages[{index}].role"),
                    format!("the role `{other}` is not supported (system, user, assistant)"),
                ));
            }
        }
    }
    let question = question
        .filter(|text| !text.trim().is_empty())
        .ok_or_else(|| {
            OpenAiError::invalid("messages", "the last message must be the user's, with text")
        })?;
    if question.chars().count() > max_chars {
        return Err(OpenAiError::invalid(
            format!("messages[{}].content", count - 1),
            format!("the question is longer than {max_chars} characters"),
        ));
    }
    let instructions = instructions.join("\n\n");
    if instructions.chars().count() > max_chars {
        return Err(OpenAiError::invalid(
            "messages",
            format!("the system messages hold more than {max_chars} characters"),
        ));
    }
    Ok(Asked {
        question,
        history,
        options: ClientOptions {
            instructions: Some(instructions).filter(|text| !text.trim().is_empty()),
            temperature: request.temperature,
            top_p: request.top_p,
            max_tokens: request.max_completion_tokens.or(request.max_tokens),
        },
    })
}

/// The chunks' and the completion's common fields.
pub struct Completion {
    pub id: String,
    pub created: i64,
    /// As the client named it.
    pub model: String,
}

/// OpenAI's finish reasons; the platform's others (`client_disconnected`, `error`) end as
/// `stop`.
fn finish_reason(message: &MessageView) -> &'static str {
    match message.finish_reason.as_deref() {
        Some("length") => "length",
        Some("content_filter") => "content_filter",
        _ => "stop",
    }
}

fn usage(message: &MessageView) -> Value {
    let (prompt, completion) = (message.usage.prompt_tokens, message.usage.completion_tokens);
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

/// A failed answer as the platform's error (then OpenAI's).
fn failure_error(failure: TurnFailure) -> OpenAiError {
    let mut error = AppError::new(failure.code, failure.message);
    if failure.code == ErrorCode::ServiceUnavailable {
        error = error.with_retry_after(UNAVAILABLE_RETRY_AFTER_SECS);
    }
    OpenAiError::from(error)
}

impl Completion {
    /// The whole answer as one `chat.completion`; the passages used in `sources`.
    pub async fn json(
        self,
        mut events: mpsc::Receiver<TurnEvent>,
    ) -> Result<HttpResponse, OpenAiError> {
        while let Some(event) = events.recv().await {
            match event {
                TurnEvent::Delta(_) | TurnEvent::Sources(_) => {}
                TurnEvent::Done(completed) => {
                    let message = &completed.message;
                    return Ok(HttpResponse::Ok().json(json!({
                        "id": self.id,
                        "object": "chat.completion",
                        "created": self.created,
                        "model": self.model,
                        "choices": [{
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": message.content,
                                "refusal": null,
                            },
                            "logprobs": null,
                            "finish_reason": finish_reason(message),
                        }],
                        "usage": usage(message),
                        "system_fingerprint": null,
                        "sources": message.sources,
                    })));
                }
                TurnEvent::Error(failure) => return Err(failure_error(failure)),
            }
        }
        Err(AppError::internal(anyhow::anyhow!("the answer ended without a result")).into())
    }

    fn chunk(&self, delta: Value, finish: Option<&str>, include_usage: bool) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish,
            }],
        });
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    }

    /// The answer as it is written: a first chunk with the role, one per delta, one with the
    /// finish reason (and the `sources`), the usage chunk when asked, then `[DONE]`. A failure
    /// before anything was streamed is an error response; after, an `error` event ends it.
    pub async fn stream(
        self,
        mut events: mpsc::Receiver<TurnEvent>,
        include_usage: bool,
    ) -> Result<HttpResponse, OpenAiError> {
        let first = match events.recv().await {
            Some(TurnEvent::Error(failure)) => return Err(failure_error(failure)),
            Some(event) => event,
            None => {
                return Err(AppError::internal(anyhow::anyhow!(
                    "the answer ended without a result"
                ))
                .into());
            }
        };
        let opening = self.chunk(
            json!({"role": "assistant", "content": ""}),
            None,
            include_usage,
        );
        let state = StreamState {
            completion: self,
            include_usage,
            pending: vec![data(&opening)],
            first: Some(first),
            events,
            sources: Vec::new(),
            ended: false,
        };
        let body = futures_util::stream::unfold(state, |mut state| async move {
            loop {
                if !state.pending.is_empty() {
                    let frame = state.pending.remove(0);
                    return Some((Ok::<_, Infallible>(frame), state));
                }
                if state.ended {
                    return None;
                }
                let event = match state.first.take() {
                    Some(event) => Some(event),
                    None => state.events.recv().await,
                };
                state.handle(event);
            }
        });
        Ok(HttpResponse::Ok()
            .insert_header((
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ))
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
            .insert_header(("X-Accel-Buffering", HeaderValue::from_static("no")))
            .streaming(body))
    }
}

fn data(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

struct StreamState {
    completion: Completion,
    include_usage: bool,
    pending: Vec<Bytes>,
    first: Option<TurnEvent>,
    events: mpsc::Receiver<TurnEvent>,
    sources: Vec<SourceRef>,
    ended: bool,
}

impl StreamState {
    /// The frames `event` makes.
    fn handle(&mut self, event: Option<TurnEvent>) {
        let include_usage = self.include_usage;
        match event {
            Some(TurnEvent::Delta(text)) => {
                let chunk = self
                    .completion
                    .chunk(json!({"content": text}), None, include_usage);
                self.pending.push(data(&chunk));
            }
            Some(TurnEvent::Sources(sources)) => self.sources = sources,
            Some(TurnEvent::Done(completed)) => {
                let message = &completed.message;
                let mut last =
                    self.completion
                        .chunk(json!({}), Some(finish_reason(message)), include_usage);
                last["sources"] = json!(std::mem::take(&mut self.sources));
                self.pending.push(data(&last));
                if include_usage {
                    let mut usage_chunk = self.completion.chunk(json!({}), None, true);
                    usage_chunk["choices"] = json!([]);
                    usage_chunk["usage"] = usage(message);
                    self.pending.push(data(&usage_chunk));
                }
                self.pending.push(Bytes::from_static(b"data: [DONE]\n\n"));
                self.ended = true;
            }
            Some(TurnEvent::Error(failure)) => {
                let error = failure_error(failure);
                self.pending
                    .push(Bytes::from(format!("data: {}\n\n", error.sse_data())));
                self.ended = true;
            }
            None => self.ended = true,
        }
    }
}
