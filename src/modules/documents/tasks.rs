//! The documents module's fang tasks. They carry ids only and re-read state when they run,
//! so a task run twice (or after a crash) is harmless: the claim on the document's status
//! lets one run through.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fang::asynk::async_queue::AsyncQueueable;
use fang::{AsyncRunnable, FangError, Scheduled};
use serde::{Deserialize, Serialize};

use crate::core::ids::{AvatarId, DocumentId, ProjectId};
use crate::core::jobs::{JobContext, enqueue_in, task_error};

use super::service::{DocumentsService, IndexOutcome, ProcessOutcome};
use super::vector_index::BuildOutcome;

fn service(context: &JobContext) -> Result<Arc<DocumentsService>, FangError> {
    context
        .get::<DocumentsService>()
        .ok_or_else(|| task_error("the documents service is not in the job context"))
}

/// Processes one document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessDocument {
    pub document_id: DocumentId,
    /// Not before this time (a deferred turn), else now.
    #[serde(default)]
    pub not_before: Option<DateTime<Utc>>,
}

impl ProcessDocument {
    /// The task type, for its own run-time limit (`documents.processing_timeout_secs` and a
    /// margin: the run stops itself first).
    pub const NAME: &'static str = "documents.process";

    pub fn now(document_id: DocumentId) -> Self {
        ProcessDocument {
            document_id,
            not_before: None,
        }
    }
}

#[typetag::serde(name = "documents.process")]
#[async_trait]
impl AsyncRunnable for ProcessDocument {
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        let context = JobContext::current()?;
        let documents = service(&context)?;
        match documents
            .process(self.document_id, context.stopping())
            .await
            .map_err(task_error)?
        {
            ProcessOutcome::Retry(reason) => Err(task_error(reason)),
            ProcessOutcome::Deferred => {
                // The project has its share running: take a later turn.
                let now = context.clock.now();
                let later = now
                    + chrono::Duration::seconds(
                        i64::try_from(documents.settings().defer_secs).unwrap_or(1),
                    );
                let next = ProcessDocument {
                    document_id: self.document_id,
                    not_before: Some(later),
                };
                enqueue_in(documents.db().connection(), &next, now)
                    .await
                    .map_err(task_error)?;
                Ok(())
            }
            ProcessOutcome::Ready { .. } | ProcessOutcome::Failed(_) | ProcessOutcome::Skipped => {
                Ok(())
            }
        }
    }

    fn cron(&self) -> Option<Scheduled> {
        self.not_before.map(Scheduled::ScheduleOnce)
    }

    /// The document's own attempt counter decides when to give up (`documents.max_attempts`).
    fn max_retries(&self) -> i32 {
        i32::MAX
    }

    fn backoff(&self, attempt: u32) -> u32 {
        2u32.saturating_pow(attempt.min(8))
    }
}

/// Fills in the vectors of a ready document's chunks (`service/indexing.rs`), for a slice of
/// time; it queues its own continuation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexDocument {
    pub document_id: DocumentId,
}

impl IndexDocument {
    /// The task type, for its run-time limit and for finding a document's waiting job.
    pub const NAME: &'static str = "documents.index";
}

#[typetag::serde(name = "documents.index")]
#[async_trait]
impl AsyncRunnable for IndexDocument {
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        let context = JobContext::current()?;
        let documents = service(&context)?;
        let outcome = documents
            .index_semantically(self.document_id, context.stopping())
            .await
            .map_err(task_error)?;
        if outcome == IndexOutcome::Busy {
            // One document at a time per process; this one waits its turn (with backoff).
            return Err(task_error(
                "another document is being indexed in this process; this one waits its turn",
            ));
        }
        Ok(())
    }

    /// Waiting turns count as retries; the recovery job queues a document whose job gave up.
    fn max_retries(&self) -> i32 {
        20
    }

    fn backoff(&self, attempt: u32) -> u32 {
        5 * 2u32.saturating_pow(attempt.min(3))
    }
}

/// Brings an avatar's own vector index in line with its size (`vector_index.rs`): built for a
/// large avatar, dropped for a deleted or emptied one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildVectorIndex {
    pub avatar_id: AvatarId,
}

impl BuildVectorIndex {
    /// The task type, for its own run-time limit.
    pub const NAME: &'static str = "documents.build_vector_index";

    pub fn now(avatar_id: AvatarId) -> Self {
        BuildVectorIndex { avatar_id }
    }
}

#[typetag::serde(name = "documents.build_vector_index")]
#[async_trait]
impl AsyncRunnable for BuildVectorIndex {
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        let context = JobContext::current()?;
        let documents = service(&context)?;
        let outcome = documents
            .build_vector_index(self.avatar_id)
            .await
            .map_err(task_error)?;
        if outcome == BuildOutcome::Busy {
            // One build at a time. Retrying this same row (with backoff) keeps its uniqueness
            // key, so the periodic check does not queue a second request meanwhile.
            return Err(task_error(
                "another vector index build is running; this one waits its turn",
            ));
        }
        Ok(())
    }

    /// A build that waited this long is queued afresh by the periodic check.
    fn max_retries(&self) -> i32 {
        8
    }

    fn backoff(&self, attempt: u32) -> u32 {
        30 * 2u32.saturating_pow(attempt.min(6))
    }
}

/// Computes an avatar's chunks' full-text vectors again with its language (it changed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReindexText {
    pub project_id: ProjectId,
    pub avatar_id: AvatarId,
}

#[typetag::serde(name = "documents.reindex_text")]
#[async_trait]
impl AsyncRunnable for ReindexText {
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        let context = JobContext::current()?;
        let documents = service(&context)?;
        documents
            .reindex_text(self.project_id, self.avatar_id)
            .await
            .map_err(task_error)?;
        Ok(())
    }

    fn max_retries(&self) -> i32 {
        8
    }
}

/// Periodic recovery: stuck documents back to the queue, failed file deletions retried, lost
/// semantic indexing and missing vector indexes queued.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoverDocuments {
    pub cron: String,
}

#[typetag::serde(name = "documents.recover")]
#[async_trait]
impl AsyncRunnable for RecoverDocuments {
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        let context = JobContext::current()?;
        let documents = service(&context)?;
        documents.recover_stuck().await.map_err(task_error)?;
        documents.retry_blob_deletions().await.map_err(task_error)?;
        documents
            .ensure_semantic_indexing()
            .await
            .map_err(task_error)?;
        documents
            .ensure_vector_indexes()
            .await
            .map_err(task_error)?;
        Ok(())
    }

    fn cron(&self) -> Option<Scheduled> {
        Some(Scheduled::CronPattern(self.cron.clone()))
    }

    fn uniq(&self) -> bool {
        true
    }

    fn max_retries(&self) -> i32 {
        0
    }
}
