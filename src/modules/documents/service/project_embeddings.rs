//! A project's own texts embedded by the deployment's embedder (the OpenAI-compatible
//! `embeddings` endpoint): budgeted and recorded in the usage ledger like an answer — tokens
//! reserved first (refused when the project's budget is spent), the usage settled after.

use std::sync::Arc;

use crate::core::embeddings::{Embedder, EmbeddingError};
use crate::core::error::{Failure, Unavailable};
use crate::core::ids::ProjectId;
use crate::core::llm::count_tokens;
use crate::modules::billing::{UsageKind, UsageRecord};

use super::DocumentsService;
use crate::modules::documents::domain::errors::DocumentsError;

/// Vectors of a project's texts, in order.
#[derive(Debug)]
pub struct ProjectEmbeddings {
    pub vectors: Vec<Vec<f32>>,
    /// The embedder's id (`local:all-MiniLM-L6-v2`, `openai:<model>`, ...).
    pub model_id: String,
    /// The texts' tokens (cl100k, as OpenAI's embedding models count them).
    pub tokens: u32,
}

impl DocumentsService {
    /// The deployment's embedder in force now (its id and length tell a client's request
    /// apart; [`DocumentsService::embed_for_project`] then embeds with it).
    pub async fn embedder(&self) -> Result<Arc<dyn Embedder>, DocumentsError> {
        self.embedders
            .current()
            .await
            .map_err(DocumentsError::internal)
    }

    /// Embeds `texts` for `project_id` with `embedder` (from [`DocumentsService::embedder`]),
    /// in one batch.
    pub async fn embed_for_project(
        &self,
        project_id: ProjectId,
        embedder: &dyn Embedder,
        texts: &[String],
    ) -> Result<ProjectEmbeddings, DocumentsError> {
        let tokens = texts
            .iter()
            .map(|text| count_tokens(text))
            .fold(0u32, u32::saturating_add);
        let reservation = self
            .billing
            .reserve(project_id, tokens)
            .await
            .map_err(Failure::from)?;
        let vectors = match embedder.embed(texts).await {
            Ok(vectors) => vectors,
            Err(error) => {
                if let Err(release) = self.billing.release(&reservation).await {
                    tracing::error!(reservation = %reservation.id, "releasing a token reservation failed: {release}");
                }
                return Err(match error {
                    EmbeddingError::Transient(_) => {
                        tracing::warn!(%project_id, "embedding for the API failed: {error}");
                        Failure::Unavailable(Unavailable("embedder")).into()
                    }
                    EmbeddingError::Permanent(_) => {
                        DocumentsError::internal(format!("embedding failed: {error}"))
                    }
                });
            }
        };
        let model_id = embedder.model_id();
        self.billing
            .settle(
                &reservation,
                Some(UsageRecord {
                    kind: UsageKind::Embedding,
                    model: model_id.clone(),
                    prompt_tokens: tokens,
                    completion_tokens: 0,
                    own_key: false,
                    avatar_id: None,
                    conversation_id: None,
                    document_id: None,
                }),
            )
            .await
            .map_err(Failure::from)?;
        Ok(ProjectEmbeddings {
            vectors,
            model_id,
            tokens,
        })
    }
}
