//! `POST /api/v1/openai/embeddings`: the deployment's embedder, as OpenAI's embeddings
//! endpoint (float or base64 vectors, usage), for a key with the `embeddings` scope.

use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::core::llm::count_tokens;
use crate::core::tokens::cl100k;

use super::errors::OpenAiError;

/// Texts in one request, at most.
pub const MAX_INPUTS: usize = 256;
/// Tokens (cl100k) of one text, at most: what OpenAI's embedding models read.
pub const MAX_INPUT_TOKENS: u32 = 8_191;

/// Texts, or texts as cl100k token ids (what LangChain's `OpenAIEmbeddings` sends by default).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
    Tokens(Vec<u32>),
    ManyTokens(Vec<Vec<u32>>),
}

/// OpenAI's embeddings request; fields it has that are not listed are ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EmbeddingRequest {
    /// A text, a list of texts, or either as cl100k token ids.
    pub input: EmbeddingInput,
    /// The deployment's embedder: its id (`local:all-MiniLM-L6-v2`) or its name after the
    /// provider (`all-MiniLM-L6-v2`).
    pub model: String,
    /// `float` (the default) or `base64` (little-endian `f32`s).
    pub encoding_format: Option<String>,
    /// Must be the embedder's own length when given.
    pub dimensions: Option<usize>,
}

/// The texts, checked.
pub fn texts(request: EmbeddingRequest) -> Result<(Vec<String>, bool), OpenAiError> {
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return Err(OpenAiError::invalid(
                "encoding_format",
                "must be `float` or `base64`",
            ));
        }
    };
    let texts = match request.input {
        EmbeddingInput::One(text) => vec![text],
        EmbeddingInput::Many(texts) => texts,
        EmbeddingInput::Tokens(tokens) => vec![decoded("input", tokens)?],
        EmbeddingInput::ManyTokens(lists) => lists
            .into_iter()
            .enumerate()
            .map(|(index, tokens)| decoded(&format!("input[{index}]"), tokens))
            .collect::<Result<_, _>>()?,
    };
    if texts.is_empty() || texts.len() > MAX_INPUTS {
        return Err(OpenAiError::invalid(
            "input",
            format!("give 1 to {MAX_INPUTS} texts"),
        ));
    }
    if let Some(index) = texts
        .iter()
        .position(|text| text.trim().is_empty() || count_tokens(text) > MAX_INPUT_TOKENS)
    {
        return Err(OpenAiError::invalid(
            format!("input[{index}]"),
            format!("each text must hold 1 to {MAX_INPUT_TOKENS} tokens"),
        ));
    }
    Ok((texts, base64))
}

/// Token ids back to their text.
fn decoded(param: &str, tokens: Vec<u32>) -> Result<String, OpenAiError> {
    let bpe = cl100k().map_err(|error| OpenAiError::invalid(param, error))?;
    bpe.decode(&tokens)
        .map_err(|error| OpenAiError::invalid(param, format!("not cl100k token ids: {error}")))
}

/// Whether `model` names the embedder `model_id` (`provider:name`): either whole or its name.
pub fn names(model: &str, model_id: &str) -> bool {
    model == model_id
        || model_id
            .split_once(':')
            .is_some_and(|(_, name)| name == model)
}

/// OpenAI's response: the vectors in order, the model as asked, the usage.
pub fn response(model: &str, vectors: Vec<Vec<f32>>, tokens: u32, base64: bool) -> Value {
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })
}
