//! Request bodies of the avatars routes.

use serde::Deserialize;
use utoipa::ToSchema;
use validator::Validate;

use crate::core::extract::nullable;
use crate::modules::avatars::service::{AvatarStatus, LlmInput, RagInput};

#[derive(Debug, Default, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LlmRequest {
    #[validate(length(min = 1, max = 200))]
    pub model: Option<String>,
    #[validate(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f32>,
    #[validate(range(min = 1, max = 32768))]
    pub max_tokens: Option<i32>,
}

#[derive(Debug, Default, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RagRequest {
    #[validate(range(min = 1, max = 50))]
    pub top_k: Option<i32>,
    #[validate(range(min = 0.0, max = 1.0))]
    pub similarity_threshold: Option<f32>,
    #[validate(range(min = 32, max = 8192))]
    pub chunk_size: Option<i32>,
    #[validate(range(min = 0, max = 4096))]
    pub chunk_overlap: Option<i32>,
    /// A PostgreSQL text search configuration: `english` (default), `simple` (mixed
    /// languages, no stemming), `russian`, `german`, ... Changing it re-indexes the avatar's
    /// documents in the background.
    #[validate(length(min = 1, max = 63))]
    pub language: Option<String>,
}

impl From<LlmRequest> for LlmInput {
    fn from(request: LlmRequest) -> Self {
        LlmInput {
            model: request.model,
            temperature: request.temperature,
            max_tokens: request.max_tokens,
        }
    }
}

impl From<RagRequest> for RagInput {
    fn from(request: RagRequest) -> Self {
        RagInput {
            top_k: request.top_k,
            similarity_threshold: request.similarity_threshold,
            chunk_size: request.chunk_size,
            chunk_overlap: request.chunk_overlap,
            language: request.language,
        }
    }
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAvatarRequest {
    #[validate(length(min = 1, max = 200))]
    pub name: String,
    /// Lowercase letters and digits in words joined by dashes, unique in the project (409
    /// otherwise); taken from the name when missing.
    #[validate(length(min = 1, max = 64))]
    pub slug: Option<String>,
    #[validate(length(max = 2000))]
    pub description: Option<String>,
    #[validate(length(min = 1, max = 20000))]
    pub system_prompt: String,
    #[validate(length(max = 2000))]
    pub greeting: Option<String>,
    #[validate(nested)]
    #[serde(default)]
    pub llm: LlmRequest,
    #[validate(nested)]
    #[serde(default)]
    pub rag: RagRequest,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAvatarRequest {
    #[validate(length(min = 1, max = 200))]
    pub name: Option<String>,
    /// A new slug, unique in the project (409 otherwise). Renaming keeps the slug.
    #[validate(length(min = 1, max = 64))]
    pub slug: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[validate(length(min = 1, max = 20000))]
    pub system_prompt: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub greeting: Option<Option<String>>,
    #[validate(nested)]
    #[serde(default)]
    pub llm: LlmRequest,
    #[validate(nested)]
    #[serde(default)]
    pub rag: RagRequest,
    pub status: Option<AvatarStatus>,
}
