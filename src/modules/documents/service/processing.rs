//! Processing one document: claim it under a run id, parse and chunk it in the sandbox, embed
//! and store its chunks while the run still owns it, with a heartbeat; and recovering what a
//! dead worker left.

use std::time::Duration;

use chrono::{DateTime, Utc};

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, Statement,
};
use serde_json::Value;
use uuid::Uuid;

use crate::core::db::{UnitOfWork, new_id};
use crate::core::embeddings::{fit_chunk, in_language};
use crate::core::error::Failure;
use crate::core::ids::DocumentId;
use crate::core::jobs::enqueue_in;
use crate::core::storage::StorageError;
use crate::modules::events::DomainEvent;

use super::indexing::queue_indexing;
use super::{DocumentStatus, DocumentsService, queue_index_build};
use crate::modules::documents::chunk_store;
use crate::modules::documents::chunking::Chunk;
use crate::modules::documents::domain::entities::document;
use crate::modules::documents::domain::errors::DocumentsError;
use crate::modules::documents::domain::events::DocumentsEvent;
use crate::modules::documents::parsing::ParseLimits;
use crate::modules::documents::sandbox::{ParseRequest, Parsed, SandboxError};
use crate::modules::documents::tasks::ProcessDocument;

/// How one processing run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ProcessOutcome {
    Ready {
        chunks: i32,
        tokens: i32,
    },
    Failed(String),
    /// Another run owns it, it is gone, or it is not waiting.
    Skipped,
    /// Its project is at its limit of documents processing at once: try again later.
    Deferred,
    /// A transient failure: the task should be retried.
    Retry(String),
}

/// A processing run: the document and the id under which it owns it.
#[derive(Debug, Clone, Copy)]
struct Run {
    document_id: DocumentId,
    run_id: Uuid,
}

/// Why a run stopped early.
/// What a run stored, for the transaction that makes the document `ready`.
struct Stored {
    chunks_count: i32,
    tokens_count: i32,
    metadata: serde_json::Map<String, Value>,
    /// The vectors come later, from the indexing job.
    background: bool,
}

enum RunError {
    Permanent(String),
    Transient(String),
    Gone,
}

impl From<sea_orm::DbErr> for RunError {
    fn from(error: sea_orm::DbErr) -> Self {
        RunError::Transient(format!("database: {error}"))
    }
}

impl DocumentsService {
    /// Recovers what a dead worker left: a `processing` document whose run has not shown a
    /// heartbeat for `documents.stale_after_secs` goes back to the queue — or fails, once it
    /// used its `documents.max_attempts` — and an `uploaded` one without progress for
    /// `documents.stuck_after_secs` (its task lost) is queued again. Returns how many were
    /// requeued.
    pub async fn recover_stuck(&self) -> Result<usize, DocumentsError> {
        let now = self.clock.now();
        let stale_before = now - seconds(self.settings.stale_after_secs);
        let stuck_before = now - seconds(self.settings.stuck_after_secs);
        let mut uow = self.db.begin().await?;
        let given_up = uow
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE documents SET status = 'failed', processing_run_id = NULL, \
                 chunks_count = 0, tokens_count = 0, semantic_indexed_chunks = 0, \
                 error = 'processing stopped ' || attempts || ' times without finishing (its \
                 worker was lost); giving up', updated_at = $3 \
                 WHERE status = 'processing' AND attempts >= $2 \
                   AND COALESCE(heartbeat_at, processing_started_at, updated_at) < $1 \
                 RETURNING id, project_id, avatar_id, error",
                [
                    stale_before.into(),
                    self.settings.max_attempts.into(),
                    now.into(),
                ],
            ))
            .await?;
        for row in &given_up {
            let document_id: DocumentId = row.try_get("", "id")?;
            let chunks = chunk_store::DocumentChunks {
                document_id,
                avatar_id: row.try_get("", "avatar_id")?,
            };
            chunk_store::delete_chunks(&*uow, chunks).await?;
            self.publish(
                &mut uow,
                DocumentsEvent::DocumentFailed {
                    project_id: row.try_get("", "project_id")?,
                    avatar_id: row.try_get("", "avatar_id")?,
                    document_id,
                    reason: row.try_get("", "error")?,
                },
            )
            .await?;
        }
        let rows = uow
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE documents SET status = 'uploaded', processing_run_id = NULL, \
                 updated_at = $3 \
                 WHERE (status = 'processing' AND COALESCE(heartbeat_at, processing_started_at, \
                        updated_at) < $1) \
                    OR (status = 'uploaded' AND updated_at < $2) \
                 RETURNING id",
                [stale_before.into(), stuck_before.into(), now.into()],
            ))
            .await?;
        for row in &rows {
            let id: DocumentId = row.try_get("", "id")?;
            enqueue_in(&*uow, &ProcessDocument::now(id), now).await?;
        }
        uow.commit().await?;
        if !given_up.is_empty() {
            tracing::warn!(
                count = given_up.len(),
                "failed documents whose runs kept dying"
            );
        }
        if !rows.is_empty() {
            tracing::warn!(
                count = rows.len(),
                "requeued documents whose run or task was lost"
            );
        }
        Ok(rows.len())
    }

    /// Takes a waiting document for processing under a new run id, unless its project
    /// already has its share running. The advisory lock serializes claims per project, so the
    /// cap holds.
    async fn claim(
        &self,
        document_id: DocumentId,
    ) -> Result<Result<document::Model, ProcessOutcome>, DocumentsError> {
        let Some(waiting) = document::Entity::find_by_id(document_id)
            .one(self.db.connection())
            .await?
        else {
            return Ok(Err(ProcessOutcome::Skipped));
        };
        if waiting.status != DocumentStatus::Uploaded {
            return Ok(Err(ProcessOutcome::Skipped));
        }
        let uow = self.db.begin().await?;
        uow.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtext('documents:' || $1::text))",
            [waiting.project_id.into()],
        ))
        .await?;
        let running = document::Entity::find()
            .filter(document::Column::ProjectId.eq(waiting.project_id))
            .filter(document::Column::Status.eq(DocumentStatus::Processing))
            .count(&*uow)
            .await?;
        if i64::try_from(running).unwrap_or(i64::MAX) >= self.settings.max_processing_per_project {
            return Ok(Err(ProcessOutcome::Deferred));
        }
        // Stamped by the app's clock, which the recovery compares against too. Processes'
        // clocks differ by milliseconds (NTP); the staleness limits are tens of seconds.
        let now = self.clock.now();
        let claimed = document::Entity::update_many()
            .col_expr(
                document::Column::Status,
                Expr::value(DocumentStatus::Processing),
            )
            .col_expr(document::Column::ProcessingStartedAt, Expr::value(now))
            .col_expr(document::Column::HeartbeatAt, Expr::value(now))
            .col_expr(document::Column::ProcessingRunId, Expr::value(new_id()))
            .col_expr(document::Column::UpdatedAt, Expr::value(now))
            .col_expr(
                document::Column::Attempts,
                Expr::col(document::Column::Attempts).add(1),
            )
            .filter(document::Column::Id.eq(document_id))
            .filter(document::Column::Status.eq(DocumentStatus::Uploaded))
            .exec_with_returning(&*uow)
            .await?;
        uow.commit().await?;
        Ok(claimed.into_iter().next().ok_or(ProcessOutcome::Skipped))
    }

    /// One processing run of a document (called by the `ProcessDocument` task). When
    /// `stopping` resolves first (the workers shut down), the run stops at once — its parser
    /// child is killed — and the document goes back to the queue without counting the attempt.
    pub async fn process(
        &self,
        document_id: DocumentId,
        stopping: impl Future<Output = ()>,
    ) -> Result<ProcessOutcome, DocumentsError> {
        let model = match self.claim(document_id).await? {
            Ok(model) => model,
            Err(outcome) => return Ok(outcome),
        };
        let run = Run {
            document_id: model.id,
            run_id: model.processing_run_id.unwrap_or_default(),
        };
        let limit = Duration::from_secs(self.settings.processing_timeout_secs);
        let stored = tokio::select! {
            result = tokio::time::timeout(limit, self.run(&model, run)) => match result {
                Ok(result) => result,
                Err(_) => Err(RunError::Permanent(format!(
                    "processing took longer than {} s and was stopped",
                    limit.as_secs()
                ))),
            },
            // Ends only when the run lost the document to another one.
            () = self.heartbeat(run) => Err(RunError::Gone),
            () = stopping => {
                self.interrupted(run).await?;
                return Ok(ProcessOutcome::Skipped);
            }
        };
        // Past the heartbeat: `ready` ends the run's ownership, which the heartbeat would take
        // for the document lost and drop the run in the middle of its own commit.
        let result = match stored {
            Ok(stored) => self.finish(&model, run, stored).await,
            Err(error) => Err(error),
        };
        match result {
            Ok((chunks, tokens)) => Ok(ProcessOutcome::Ready { chunks, tokens }),
            Err(RunError::Gone) => Ok(ProcessOutcome::Skipped),
            Err(RunError::Permanent(reason)) => {
                self.fail(&model, run, &reason).await?;
                Ok(ProcessOutcome::Failed(reason))
            }
            Err(RunError::Transient(reason)) if model.attempts >= self.settings.max_attempts => {
                let reason = format!("gave up after {} attempts: {reason}", model.attempts);
                self.fail(&model, run, &reason).await?;
                Ok(ProcessOutcome::Failed(reason))
            }
            Err(RunError::Transient(reason)) => {
                // Back to the queue; the task is retried with backoff.
                back_to_queue(model.id, run.run_id, self.clock.now())
                    .exec(self.db.connection())
                    .await?;
                tracing::warn!(document_id = %model.id, attempt = model.attempts, "document processing will be retried: {reason}");
                Ok(ProcessOutcome::Retry(reason))
            }
        }
    }

    /// Shows the run is alive every `documents.heartbeat_secs`; returns only when the
    /// document no longer belongs to the run (the recovery gave it to another).
    async fn heartbeat(&self, run: Run) {
        let every = Duration::from_secs(Ord::max(self.settings.heartbeat_secs, 1));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            ticks.tick().await;
            let beat = document::Entity::update_many()
                .col_expr(document::Column::HeartbeatAt, Expr::value(self.clock.now()))
                .filter(document::Column::Id.eq(run.document_id))
                .filter(document::Column::ProcessingRunId.eq(run.run_id))
                .filter(document::Column::Status.eq(DocumentStatus::Processing))
                .exec(self.db.connection())
                .await;
            match beat {
                Ok(result) if result.rows_affected == 0 => return,
                Ok(_) => {}
                // The database is away: the run itself will notice; keep trying.
                Err(error) => {
                    tracing::warn!(document_id = %run.document_id, "document heartbeat failed: {error}");
                }
            }
        }
    }

    /// The run was stopped by a shutdown: the document waits again, the attempt not counted,
    /// with a task queued in the same transaction.
    async fn interrupted(&self, run: Run) -> Result<(), DocumentsError> {
        let uow = self.db.begin().await?;
        let released = back_to_queue(run.document_id, run.run_id, self.clock.now())
            .col_expr(
                document::Column::Attempts,
                Expr::col(document::Column::Attempts).sub(1),
            )
            .exec(&*uow)
            .await?;
        if released.rows_affected > 0 {
            enqueue_in(
                &*uow,
                &ProcessDocument::now(run.document_id),
                self.clock.now(),
            )
            .await?;
            tracing::info!(document_id = %run.document_id, "document processing interrupted by shutdown; queued again");
        }
        uow.commit().await?;
        Ok(())
    }

    async fn fail(
        &self,
        model: &document::Model,
        run: Run,
        reason: &str,
    ) -> Result<(), DocumentsError> {
        let mut uow = self.db.begin().await?;
        let failed = document::Entity::update_many()
            .col_expr(
                document::Column::Status,
                Expr::value(DocumentStatus::Failed),
            )
            .col_expr(document::Column::Error, Expr::value(reason))
            .col_expr(document::Column::ChunksCount, Expr::value(0))
            .col_expr(document::Column::SemanticIndexedChunks, Expr::value(0))
            .col_expr(document::Column::TokensCount, Expr::value(0))
            .col_expr(
                document::Column::ProcessingRunId,
                Expr::value(Option::<Uuid>::None),
            )
            .col_expr(document::Column::UpdatedAt, Expr::value(self.clock.now()))
            .filter(document::Column::Id.eq(model.id))
            .filter(document::Column::ProcessingRunId.eq(run.run_id))
            .exec(&*uow)
            .await?;
        if failed.rows_affected == 0 {
            return Ok(());
        }
        chunk_store::delete_chunks(&*uow, chunk_store::DocumentChunks::of(model)).await?;
        self.publish(
            &mut uow,
            DocumentsEvent::DocumentFailed {
                project_id: model.project_id,
                avatar_id: model.avatar_id,
                document_id: model.id,
                reason: reason.to_owned(),
            },
        )
        .await?;
        uow.commit().await?;
        Ok(())
    }

    /// Starts a transaction in which `run` still owns its document (the row is share-locked,
    /// so a recovery handing it to another run waits for this transaction): chunks written
    /// in it can never mix with another run's.
    async fn owned(&self, run: Run) -> Result<UnitOfWork, RunError> {
        let uow = self.db.begin().await?;
        let owned = uow
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT 1 AS owned FROM documents WHERE id = $1 AND processing_run_id = $2 \
                 AND status = 'processing' FOR SHARE",
                [run.document_id.into(), run.run_id.into()],
            ))
            .await?;
        if owned.is_none() {
            return Err(RunError::Gone);
        }
        Ok(uow)
    }

    /// parse and chunk (in the sandboxed child) → embed in batches → store; chunks are
    /// written batch by batch (a large document never sits whole in memory as vectors), after
    /// removing whatever an earlier, interrupted run left — each write only while the run
    /// still owns the document. [`Self::finish`] then makes it `ready`.
    async fn run(&self, model: &document::Model, run: Run) -> Result<Stored, RunError> {
        let avatar = self
            .avatars
            .get(model.project_id, model.avatar_id)
            .await
            .map_err(|error| match Failure::from(error) {
                Failure::NotFound(_) => RunError::Gone,
                other => RunError::Transient(format!("reading the avatar failed: {other}")),
            })?;
        let bytes = self
            .blobs
            .get(&model.blob_key)
            .await
            .map_err(|error| match error {
                StorageError::NotFound(_) => {
                    RunError::Permanent("the stored file is missing".into())
                }
                other => RunError::Transient(format!("reading the stored file failed: {other}")),
            })?;
        // Its stopwords, for an embedder whose vectors depend on the language.
        let embedder = in_language(
            self.embedders
                .current()
                .await
                .map_err(RunError::Permanent)?,
            &avatar.rag.language,
        );
        // Sized for the embedder: in its tokens, each chunk read whole.
        let (chunk_size, chunk_overlap) = fit_chunk(
            usize::try_from(avatar.rag.chunk_size).unwrap_or(512),
            usize::try_from(avatar.rag.chunk_overlap).unwrap_or(0),
            embedder.max_chunk_tokens(),
        );
        let request = ParseRequest {
            format: model.format,
            chunk_size,
            chunk_overlap,
            max_chunks: self.settings.max_chunks_per_document,
            limits: ParseLimits::from(&self.settings),
            unit: embedder.token_unit(),
        };
        let Parsed {
            chunks,
            metadata: document_metadata,
        } = self
            .sandbox
            .parse(&request, bytes.to_vec())
            .await
            .map_err(|error| match error {
                SandboxError::Document(reason) => RunError::Permanent(reason),
                SandboxError::Failed(reason) => RunError::Transient(reason),
            })?;

        let uow = self.owned(run).await?;
        chunk_store::delete_chunks(&*uow, chunk_store::DocumentChunks::of(model)).await?;
        uow.commit().await?;
        // A local model's vectors come after `ready`, from a job (`indexing.rs`): the
        // document is searchable by its full text meanwhile.
        let background = embedder.embeds_in_background();
        for batch in chunks.chunks(self.settings.embed_batch_size) {
            let vectors: Vec<Option<Vec<f32>>> = if background {
                vec![None; batch.len()]
            } else {
                let texts: Vec<String> = batch.iter().map(|chunk| chunk.text.clone()).collect();
                let vectors = embedder.embed(&texts).await.map_err(|error| {
                    if error.is_transient() {
                        RunError::Transient(format!("embedding failed: {error}"))
                    } else {
                        RunError::Permanent(format!("embedding failed: {error}"))
                    }
                })?;
                vectors.into_iter().map(Some).collect()
            };
            let rows: Vec<(&Chunk, Option<Vec<f32>>)> = batch.iter().zip(vectors).collect();
            let mut uow = self.owned(run).await?;
            if !background {
                // The batch's tokens, in the ledger with the chunks they made.
                let tokens = batch
                    .iter()
                    .map(|chunk| chunk.token_count)
                    .collect::<Vec<_>>();
                self.record_embedding_usage(&mut uow, model, &embedder.model_id(), &tokens)
                    .await
                    .map_err(|error| {
                        RunError::Transient(format!("recording usage failed: {error}"))
                    })?;
            }
            for rows in rows.chunks(self.settings.insert_batch_size) {
                let owner = chunk_store::ChunkOwner {
                    document_id: model.id,
                    project_id: model.project_id,
                    avatar_id: model.avatar_id,
                };
                chunk_store::insert_chunks(
                    &*uow,
                    owner,
                    rows,
                    &embedder.model_id(),
                    &avatar.rag.language,
                    self.clock.now(),
                )
                .await?;
            }
            uow.commit().await?;
        }
        Ok(Stored {
            chunks_count: i32::try_from(chunks.len()).unwrap_or(i32::MAX),
            tokens_count: chunks.iter().map(|chunk| chunk.token_count).sum::<i32>(),
            metadata: document_metadata,
            background,
        })
    }

    /// The document turns `ready`, with its `DocumentProcessed` event, if `run` still owns it.
    async fn finish(
        &self,
        model: &document::Model,
        run: Run,
        stored: Stored,
    ) -> Result<(i32, i32), RunError> {
        let Stored {
            chunks_count,
            tokens_count,
            metadata: document_metadata,
            background,
        } = stored;
        let mut uow = self.db.begin().await?;
        let finished = document::Entity::update_many()
            .col_expr(document::Column::Status, Expr::value(DocumentStatus::Ready))
            .col_expr(document::Column::ChunksCount, Expr::value(chunks_count))
            .col_expr(document::Column::TokensCount, Expr::value(tokens_count))
            .col_expr(
                document::Column::SemanticIndexedChunks,
                Expr::value(if background { 0 } else { chunks_count }),
            )
            .col_expr(document::Column::Error, Expr::value(Option::<String>::None))
            .col_expr(
                document::Column::DocumentMetadata,
                Expr::value(Value::Object(document_metadata)),
            )
            .col_expr(
                document::Column::ProcessingRunId,
                Expr::value(Option::<Uuid>::None),
            )
            .col_expr(document::Column::ProcessedAt, Expr::value(self.clock.now()))
            .col_expr(document::Column::UpdatedAt, Expr::value(self.clock.now()))
            .filter(document::Column::Id.eq(model.id))
            .filter(document::Column::ProcessingRunId.eq(run.run_id))
            .filter(document::Column::Status.eq(DocumentStatus::Processing))
            .exec(&*uow)
            .await?;
        if finished.rows_affected == 0 {
            return Err(RunError::Gone);
        }
        if background {
            queue_indexing(&*uow, model.id, self.clock.now()).await?;
        } else if self
            .needs_index(&*uow, model.project_id, model.avatar_id)
            .await?
        {
            // Past the exact-scan size, the avatar needs its own index: queued with the
            // commit (after the background indexing, when there is one).
            queue_index_build(&*uow, model.avatar_id, self.clock.now()).await?;
        }
        self.bus
            .publish(
                &mut uow,
                &DomainEvent::Documents(DocumentsEvent::DocumentProcessed {
                    project_id: model.project_id,
                    avatar_id: model.avatar_id,
                    document_id: model.id,
                    chunks_count,
                    tokens_count,
                }),
            )
            .await?;
        uow.commit().await?;
        tracing::info!(document_id = %model.id, chunks_count, tokens_count, "document processed");
        Ok((chunks_count, tokens_count))
    }
}

/// Puts the document back in the queue (`uploaded`, no run), if `run_id` still owns it.
fn back_to_queue(
    document_id: DocumentId,
    run_id: Uuid,
    at: DateTime<Utc>,
) -> sea_orm::UpdateMany<document::Entity> {
    document::Entity::update_many()
        .col_expr(
            document::Column::Status,
            Expr::value(DocumentStatus::Uploaded),
        )
        .col_expr(
            document::Column::ProcessingRunId,
            Expr::value(Option::<Uuid>::None),
        )
        .col_expr(document::Column::UpdatedAt, Expr::value(at))
        .filter(document::Column::Id.eq(document_id))
        .filter(document::Column::ProcessingRunId.eq(run_id))
}

/// `secs` as a chrono duration (for arithmetic on the clock's readings).
fn seconds(secs: u64) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX))
}
