//! Housekeeping: the avatars' own vector indexes, stored files whose deletion is pending, an
//! avatar's full text after its language changed, and re-embedding every document after a
//! model or dimension change.

use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::core::ids::{AvatarId, DocumentId, ProjectId};
use crate::core::jobs::enqueue_in;

use crate::modules::documents::chunk_store;

use crate::modules::documents::domain::errors::DocumentsError;
use crate::modules::documents::tasks::{ProcessDocument, ReindexText};
use crate::modules::documents::vector_index::{self, BuildOutcome};

use super::indexing::queue_indexing;
use super::{DocumentsService, live_avatar, queue_index_build};

impl DocumentsService {
    /// Builds the avatar's own vector index if it is (still) large enough to need one, or drops
    /// it if the avatar has no ready chunks left.
    pub async fn build_vector_index(
        &self,
        avatar_id: AvatarId,
    ) -> Result<BuildOutcome, DocumentsError> {
        let started = std::time::Instant::now();
        let outcome = vector_index::build(&self.db, self.retriever.settings(), avatar_id).await?;
        match outcome {
            BuildOutcome::Built => tracing::info!(
                %avatar_id,
                seconds = started.elapsed().as_secs_f64(),
                "built the avatar's vector index"
            ),
            BuildOutcome::Dropped => {
                tracing::info!(%avatar_id, "dropped the avatar's vector index");
            }
            _ => {}
        }
        Ok(outcome)
    }

    /// Queues an index build for every large avatar without a valid index (a build that
    /// failed, or one never queued), and a drop for every index whose avatar has no ready
    /// chunks left. Returns how many were queued.
    pub async fn ensure_vector_indexes(&self) -> Result<usize, DocumentsError> {
        let mut avatars = vector_index::unindexed_large_avatars(
            &self.db,
            self.retriever.settings().exact_scan_max_chunks,
        )
        .await?;
        avatars.extend(vector_index::orphaned_indexes(&self.db).await?);
        let mut queued = 0;
        for avatar_id in avatars {
            if queue_index_build(self.db.connection(), avatar_id, self.clock.now())
                .await?
                .is_some()
            {
                queued += 1;
            }
        }
        Ok(queued)
    }

    pub(super) async fn delete_blob_now_or_later(&self, key: &str) {
        match self.blobs.delete(key).await {
            Ok(()) => {
                let forgotten = self
                    .db
                    .execute_raw(Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        "DELETE FROM blob_deletions WHERE key = $1",
                        [key.into()],
                    ))
                    .await;
                if let Err(error) = forgotten {
                    tracing::warn!(key, "blob deleted but its queue entry stays: {error}");
                }
            }
            Err(error) => {
                tracing::warn!(
                    key,
                    "deleting a stored file failed, the recovery job will retry: {error}"
                );
                let _ = self
                    .db
                    .execute_raw(Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        "INSERT INTO blob_deletions (key, attempts, last_error) VALUES ($1, 1, $2) \
                         ON CONFLICT (key) DO UPDATE SET attempts = blob_deletions.attempts + 1, \
                         last_error = EXCLUDED.last_error",
                        [key.into(), error.to_string().into()],
                    ))
                    .await;
            }
        }
    }

    /// Retries stored-file deletions that failed; returns how many went through.
    pub async fn retry_blob_deletions(&self) -> Result<usize, DocumentsError> {
        let rows = self
            .db
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT key FROM blob_deletions ORDER BY requested_at LIMIT 500",
            ))
            .await?;
        let mut done = 0;
        for row in rows {
            let key: String = row.try_get("", "key")?;
            self.delete_blob_now_or_later(&key).await;
            if self
                .blobs
                .head(&key)
                .await
                .map(|meta| meta.is_none())
                .unwrap_or(false)
            {
                done += 1;
            }
        }
        Ok(done)
    }

    /// Queues the re-indexing of an avatar's full text (its language changed).
    pub async fn queue_text_reindex(
        &self,
        project_id: ProjectId,
        avatar_id: AvatarId,
    ) -> Result<(), DocumentsError> {
        enqueue_in(
            self.db.connection(),
            &ReindexText {
                project_id,
                avatar_id,
            },
            self.clock.now(),
        )
        .await?;
        Ok(())
    }

    /// Computes the full-text vectors of the avatar's chunks again with its language as it is
    /// now (read here, so that jobs of several changes in any order end the same), a document
    /// per transaction. With an embedder whose vectors depend on the language (the lexical
    /// one's stopwords), the chunks' vectors are dropped in the same transaction and the
    /// document queued for indexing: it stays searchable by its text meanwhile. Returns how
    /// many chunks were re-indexed.
    pub async fn reindex_text(
        &self,
        project_id: ProjectId,
        avatar_id: AvatarId,
    ) -> Result<u64, DocumentsError> {
        let Some(avatar) = live_avatar(&self.avatars, project_id, avatar_id).await? else {
            return Ok(0);
        };
        let language = &avatar.rag.language;
        let vectors_follow = self
            .embedders
            .current()
            .await
            .map_err(DocumentsError::internal)?
            .for_language(language)
            .is_some();
        let documents = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT id FROM documents WHERE project_id = $1 AND avatar_id = $2",
                [project_id.into(), avatar_id.into()],
            ))
            .await?;
        let mut reindexed = 0;
        for row in documents {
            let document_id: DocumentId = row.try_get("", "id")?;
            let chunks = chunk_store::DocumentChunks {
                document_id,
                avatar_id,
            };
            let uow = self.db.begin().await?;
            reindexed += chunk_store::reindex_text(&*uow, chunks, language).await?;
            if vectors_follow && chunk_store::forget_vectors(&*uow, chunks).await? > 0 {
                queue_indexing(&*uow, document_id, self.clock.now()).await?;
            }
            uow.commit().await?;
        }
        tracing::info!(%avatar_id, reindexed, %language, vectors_follow, "re-indexed the avatar's full text");
        Ok(reindexed)
    }

    /// Changes the chunks' vector dimension: drops every chunk (they cannot be converted),
    /// alters the column (which rebuilds the vector indexes) and queues every processed document again, all
    /// in one transaction. Returns how many documents were queued.
    pub async fn reembed_all(&self, dimension: usize) -> Result<usize, DocumentsError> {
        let uow = self.db.begin().await?;
        for statement in [
            "LOCK TABLE document_chunks IN ACCESS EXCLUSIVE MODE".to_owned(),
            "DELETE FROM document_chunks".to_owned(),
            // Rebuilds the avatars' vector indexes too (empty now; they fill as documents
            // are processed again).
            format!("ALTER TABLE document_chunks ALTER COLUMN embedding TYPE vector({dimension})"),
        ] {
            uow.execute_unprepared(&statement).await?;
        }
        let now = self.clock.now();
        let rows = uow
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE documents SET status = 'uploaded', attempts = 0, error = NULL, \
                 chunks_count = 0, tokens_count = 0, semantic_indexed_chunks = 0, updated_at = $1 \
                 WHERE status IN ('ready', 'processing', 'failed') RETURNING id",
                [now.into()],
            ))
            .await?;
        for row in &rows {
            let id: DocumentId = row.try_get("", "id")?;
            enqueue_in(&*uow, &ProcessDocument::now(id), now).await?;
        }
        uow.commit().await?;
        Ok(rows.len())
    }
}
