//! Semantic indexing in the background. With an embedder that runs on this machine's CPU (the
//! local model), a document turns `ready` with its chunks' full text and no vectors, and a
//! job fills the vectors in: batch by batch, each batch committed with the document's
//! progress (`semantic_indexed_chunks`) and its usage, so an interrupted job loses at most a
//! batch and the next one goes on where it stopped. Retrieval's vector list uses the chunks
//! that have a vector (`retrieval.rs`); the full-text list finds the rest meanwhile.
//!
//! One document is indexed at a time per process: the model's documents session runs one
//! batch at a time anyway, and a job waiting for it would hold a worker that other jobs
//! (events, Telegram) need. A job runs for a slice of time and then queues its continuation,
//! for the same reason.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, Statement};

use crate::core::db::UnitOfWork;
use crate::core::embeddings::in_language;
use crate::core::error::Failure;
use crate::core::ids::DocumentId;
use crate::core::jobs::{enqueue_in, pending_task_keys};
use crate::modules::billing::{UsageKind, UsageRecord};

use super::{DocumentStatus, DocumentsService, live_avatar, queue_index_build};
use crate::modules::documents::chunk_store;
use crate::modules::documents::domain::entities::document;
use crate::modules::documents::domain::errors::DocumentsError;
use crate::modules::documents::tasks::IndexDocument;

/// Chunks embedded and committed together.
const BATCH: u64 = 32;

/// How long one job embeds before it queues its continuation and frees its worker.
const SLICE: Duration = Duration::from_secs(20);

/// How an indexing job ended.
#[derive(Debug, PartialEq, Eq)]
pub enum IndexOutcome {
    /// Every chunk of the document has its vector (or the document is gone or not ready:
    /// a processing run that makes it ready queues a new job).
    Done,
    /// Its slice is used up, or the workers are stopping: a continuation is queued.
    Continues,
    /// Another document is being indexed in this process: try again shortly.
    Busy,
}

/// Queues the semantic indexing of a document (in the transaction that made it `ready`).
pub(super) async fn queue_indexing<C: ConnectionTrait>(
    conn: &C,
    document_id: DocumentId,
    now: DateTime<Utc>,
) -> Result<(), sea_orm::DbErr> {
    enqueue_in(conn, &IndexDocument { document_id }, now).await?;
    Ok(())
}

impl DocumentsService {
    /// Embeds the document's chunks that have no vector yet, for at most a slice of time.
    pub async fn index_semantically(
        &self,
        document_id: DocumentId,
        stopping: impl Future<Output = ()>,
    ) -> Result<IndexOutcome, DocumentsError> {
        let Ok(_turn) = self.indexing.try_lock() else {
            return Ok(IndexOutcome::Busy);
        };
        let Some(model) = document::Entity::find_by_id(document_id)
            .one(self.db.connection())
            .await?
        else {
            return Ok(IndexOutcome::Done);
        };
        if model.status != DocumentStatus::Ready {
            return Ok(IndexOutcome::Done);
        }
        let Some(avatar) = live_avatar(&self.avatars, model.project_id, model.avatar_id).await?
        else {
            return Ok(IndexOutcome::Done);
        };
        let embedder = in_language(
            self.embedders
                .current()
                .await
                .map_err(|error| Failure::internal(format!("no embedder: {error}")))?,
            &avatar.rag.language,
        );
        let started = Instant::now();
        let mut indexed = 0;
        tokio::pin!(stopping);
        loop {
            let pending = chunk_store::pending_chunks(
                self.db.connection(),
                chunk_store::DocumentChunks::of(&model),
                BATCH,
            )
            .await?;
            if pending.is_empty() {
                break;
            }
            let texts: Vec<String> = pending.iter().map(|chunk| chunk.text.clone()).collect();
            let vectors = tokio::select! {
                vectors = embedder.embed(&texts) => vectors
                    .map_err(|error| Failure::internal(format!("embedding failed: {error}")))?,
                () = &mut stopping => return self.continue_later(document_id).await,
            };
            let vectors: Vec<_> = pending.iter().map(|chunk| chunk.id).zip(vectors).collect();
            let mut uow = self.db.begin().await?;
            let stored = chunk_store::store_vectors(
                &*uow,
                chunk_store::DocumentChunks::of(&model),
                &vectors,
            )
            .await?;
            let tokens: Vec<i32> = pending.iter().map(|chunk| chunk.token_count).collect();
            self.record_embedding_usage(&mut uow, &model, &embedder.model_id(), &tokens)
                .await?;
            uow.commit().await?;
            indexed += stored;
            if started.elapsed() >= SLICE {
                return self.continue_later(document_id).await;
            }
        }
        // Past the exact-scan size, the avatar needs its own index, built over the vectors.
        if self
            .needs_index(self.db.connection(), model.project_id, model.avatar_id)
            .await?
        {
            queue_index_build(self.db.connection(), model.avatar_id, self.clock.now()).await?;
        }
        tracing::info!(%document_id, indexed, "document indexed semantically");
        Ok(IndexOutcome::Done)
    }

    async fn continue_later(
        &self,
        document_id: DocumentId,
    ) -> Result<IndexOutcome, DocumentsError> {
        queue_indexing(self.db.connection(), document_id, self.clock.now()).await?;
        Ok(IndexOutcome::Continues)
    }

    /// Queues the indexing of every `ready` document that still lacks vectors and has no
    /// indexing task waiting or running (its task was lost). Returns how many were queued.
    pub async fn ensure_semantic_indexing(&self) -> Result<usize, DocumentsError> {
        let pending =
            pending_task_keys(self.db.connection(), IndexDocument::NAME, "document_id").await?;
        let lacking = self
            .db
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT id FROM documents \
                 WHERE status = 'ready' AND semantic_indexed_chunks < chunks_count LIMIT 500",
            ))
            .await?;
        let mut queued = 0;
        for row in &lacking {
            let id: DocumentId = row.try_get("", "id")?;
            if !pending.contains(&id.to_string()) {
                queue_indexing(self.db.connection(), id, self.clock.now()).await?;
                queued += 1;
            }
        }
        if queued > 0 {
            tracing::warn!(
                count = queued,
                "queued the semantic indexing of documents whose task was lost"
            );
        }
        Ok(queued)
    }

    /// Records the tokens of embedded chunks in the usage ledger, with their vectors.
    pub(super) async fn record_embedding_usage(
        &self,
        uow: &mut UnitOfWork,
        model: &document::Model,
        embedding_model: &str,
        token_counts: &[i32],
    ) -> Result<(), DocumentsError> {
        let tokens: i32 = token_counts.iter().map(|count| Ord::max(*count, 0)).sum();
        self.billing
            .record_usage_in(
                uow,
                model.project_id,
                UsageRecord {
                    kind: UsageKind::Embedding,
                    model: embedding_model.to_owned(),
                    prompt_tokens: u32::try_from(tokens).unwrap_or(0),
                    completion_tokens: 0,
                    own_key: false,
                    avatar_id: Some(model.avatar_id),
                    conversation_id: None,
                    document_id: Some(model.id),
                },
            )
            .await
            .map_err(Failure::from)?;
        Ok(())
    }
}
