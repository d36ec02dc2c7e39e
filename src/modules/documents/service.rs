//! Documents of an avatar: upload (streamed, sniffed, de-duplicated), durable scheduling of
//! their processing, the processing itself (parse → chunk → embed → store), reprocess, delete,
//! and the hybrid search over their chunks (see `retrieval.rs`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, Statement,
};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::auth::Actor;
use crate::core::config::{DocumentSettings, RetrievalSettings};
use crate::core::db::{Db, UnitOfWork, is_unique_violation, new_id, now};
use crate::core::events::EventBus;
use crate::core::jobs::{enqueue_in, enqueue_unique_in};
use crate::core::pagination::{Page, PageParams, fetch_page};
use crate::core::storage::{BlobStore, StorageError};
use crate::modules::avatars::AvatarsService;
use crate::modules::avatars::domain::errors::AvatarsError;
use crate::modules::avatars::service::AvatarView;
use crate::modules::events::DomainEvent;

use super::chunking::Chunk;
use super::domain::entities::document;
use super::domain::errors::DocumentsError;
use super::domain::events::DocumentsEvent;
use super::embedding::EmbedderSource;
use super::parsing::{self, DocumentFormat};
use super::retrieval::{self, SearchHit, SearchRequest};
use super::sandbox::{ParseRequest, Parsed, Sandbox, SandboxError};
use super::store;
use super::tasks::{BuildVectorIndex, ProcessDocument};
use super::vector_index::{self, BuildOutcome};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentStatus {
    Uploaded,
    Processing,
    Ready,
    Failed,
}

impl DocumentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentStatus::Uploaded => "uploaded",
            DocumentStatus::Processing => "processing",
            DocumentStatus::Ready => "ready",
            DocumentStatus::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "uploaded" => Some(DocumentStatus::Uploaded),
            "processing" => Some(DocumentStatus::Processing),
            "ready" => Some(DocumentStatus::Ready),
            "failed" => Some(DocumentStatus::Failed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DocumentView {
    pub id: Uuid,
    pub avatar_id: Uuid,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub status: DocumentStatus,
    /// Why processing failed, for people.
    pub error: Option<String>,
    pub chunks_count: i32,
    pub tokens_count: i32,
    /// For a waiting document: 1 = next of its project.
    pub queue_position: Option<i64>,
    #[schema(value_type = Object)]
    pub document_metadata: Value,
    pub created_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
}

/// An upload received to a local temporary file (the request body is never held in memory).
#[derive(Debug)]
pub struct ReceivedFile {
    pub path: PathBuf,
    pub filename: String,
    pub size_bytes: u64,
    pub sha256: String,
    /// The first bytes, for sniffing the type.
    pub head: Vec<u8>,
}

/// Asked before a document is stored; billing answers per plan. Until then: unlimited.
#[async_trait]
pub trait DocumentQuota: Send + Sync + 'static {
    /// May `project_id` store one more document of `size_bytes`?
    async fn may_store_document(&self, project_id: Uuid, size_bytes: u64) -> Result<(), String>;
}

/// The quota in force until billing provides one.
pub struct Unlimited;

#[async_trait]
impl DocumentQuota for Unlimited {
    async fn may_store_document(&self, _project_id: Uuid, _size_bytes: u64) -> Result<(), String> {
        Ok(())
    }
}

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
    document_id: Uuid,
    run_id: Uuid,
}

/// Why a run stopped early.
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

/// The module's settings, where uploads wait, and the parser's sandbox.
pub struct DocumentsConfig {
    pub settings: DocumentSettings,
    pub retrieval: RetrievalSettings,
    pub upload_dir: PathBuf,
    pub sandbox: Sandbox,
}

pub struct DocumentsService {
    db: Db,
    bus: EventBus<DomainEvent>,
    blobs: Arc<dyn BlobStore>,
    avatars: Arc<AvatarsService>,
    embedders: EmbedderSource,
    quota: Arc<dyn DocumentQuota>,
    settings: DocumentSettings,
    retrieval: RetrievalSettings,
    upload_dir: PathBuf,
    sandbox: Sandbox,
}

/// `projects/{pid}/avatars/{aid}/documents/{did}/<safe name>`.
fn blob_key(project_id: Uuid, avatar_id: Uuid, document_id: Uuid, filename: &str) -> String {
    format!(
        "projects/{project_id}/avatars/{avatar_id}/documents/{document_id}/{}",
        safe_filename(filename)
    )
}

/// The name kept in storage keys: letters, digits, `.`, `-`, `_`; at most 100 characters.
pub fn safe_filename(filename: &str) -> String {
    let base = filename.rsplit(['/', '\\']).next().unwrap_or(filename);
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cleaned = cleaned.trim_matches('.');
    let cleaned: String = cleaned
        .chars()
        .rev()
        .take(100)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if cleaned.is_empty() {
        "document".to_owned()
    } else {
        cleaned
    }
}

/// Queues a build of the avatar's vector index, unless one is queued or running already.
async fn queue_index_build<C: ConnectionTrait>(
    conn: &C,
    avatar_id: Uuid,
) -> Result<Option<Uuid>, sea_orm::DbErr> {
    enqueue_unique_in(
        conn,
        &BuildVectorIndex::now(avatar_id),
        &format!("documents.build_vector_index:{avatar_id}"),
    )
    .await
}

/// The avatar a route names is missing (404), or could not be read.
fn avatar_error(error: AvatarsError) -> DocumentsError {
    match error {
        AvatarsError::NotFound => DocumentsError::NotFound("avatar"),
        AvatarsError::Unavailable(unavailable) => DocumentsError::Unavailable(unavailable),
        other => DocumentsError::Internal(other.to_string()),
    }
}

fn status_of(model: &document::Model) -> DocumentStatus {
    DocumentStatus::parse(&model.status).unwrap_or(DocumentStatus::Failed)
}

impl DocumentsService {
    pub fn new(
        db: Db,
        bus: EventBus<DomainEvent>,
        blobs: Arc<dyn BlobStore>,
        avatars: Arc<AvatarsService>,
        embedders: EmbedderSource,
        config: DocumentsConfig,
    ) -> Self {
        let DocumentsConfig {
            settings,
            retrieval,
            upload_dir,
            sandbox,
        } = config;
        DocumentsService {
            db,
            bus,
            blobs,
            avatars,
            embedders,
            quota: Arc::new(Unlimited),
            settings,
            retrieval,
            upload_dir,
            sandbox,
        }
    }

    /// Whether the avatar has more ready chunks than are searched exactly, and no index yet.
    async fn needs_index<C: ConnectionTrait>(
        &self,
        conn: &C,
        project_id: Uuid,
        avatar_id: Uuid,
    ) -> Result<bool, sea_orm::DbErr> {
        let (size, indexed) = retrieval::avatar_size(conn, project_id, avatar_id).await?;
        Ok(size > self.retrieval.exact_scan_max_chunks && !indexed)
    }

    /// Where uploads wait (as temporary files) until they are in the blob store.
    pub fn upload_dir(&self) -> &std::path::Path {
        &self.upload_dir
    }

    /// The passages of the avatar's ready documents that best answer `query` (hybrid search
    /// with the avatar's `top_k` and `similarity_threshold` unless `top_k` is given).
    pub async fn search(
        &self,
        project_id: Uuid,
        avatar_id: Uuid,
        query: &str,
        top_k: Option<usize>,
    ) -> Result<Vec<SearchHit>, DocumentsError> {
        let avatar = self
            .avatars
            .get(project_id, avatar_id)
            .await
            .map_err(avatar_error)?;
        let top_k = top_k.unwrap_or(usize::try_from(avatar.rag.top_k).unwrap_or(5));
        self.search_avatar(&avatar, query, top_k).await
    }

    /// [`search`](Self::search) for a caller that already holds the avatar (the chat
    /// pipeline): its `similarity_threshold`, `top_k` passages.
    pub async fn search_avatar(
        &self,
        avatar: &AvatarView,
        query: &str,
        top_k: usize,
    ) -> Result<Vec<SearchHit>, DocumentsError> {
        let embedder = self
            .embedders
            .current()
            .await
            .map_err(DocumentsError::Internal)?;
        let mut vectors = embedder.embed(&[query.to_owned()]).await.map_err(|error| {
            DocumentsError::Internal(format!("embedding the question failed: {error}"))
        })?;
        let embedding = vectors.pop().unwrap_or_default();
        let request = SearchRequest {
            project_id: avatar.project_id,
            avatar_id: avatar.id,
            query,
            embedding,
            top_k,
            similarity_threshold: f64::from(avatar.rag.similarity_threshold),
        };
        Ok(retrieval::search(&self.db, &self.retrieval, &request).await?)
    }

    /// Replaces the quota check (billing).
    pub fn with_quota(mut self, quota: Arc<dyn DocumentQuota>) -> Self {
        self.quota = quota;
        self
    }

    pub fn retrieval_settings(&self) -> &RetrievalSettings {
        &self.retrieval
    }

    pub fn settings(&self) -> &DocumentSettings {
        &self.settings
    }

    pub fn embedders(&self) -> &EmbedderSource {
        &self.embedders
    }

    pub(super) fn db(&self) -> &Db {
        &self.db
    }

    async fn view(&self, model: &document::Model) -> Result<DocumentView, DocumentsError> {
        let status = status_of(model);
        let queue_position = if status == DocumentStatus::Uploaded {
            let ahead = document::Entity::find()
                .filter(document::Column::ProjectId.eq(model.project_id))
                .filter(document::Column::Status.eq(DocumentStatus::Uploaded.as_str()))
                .filter(document::Column::CreatedAt.lt(model.created_at))
                .count(self.db.connection())
                .await?;
            Some(i64::try_from(ahead).unwrap_or(i64::MAX) + 1)
        } else {
            None
        };
        Ok(DocumentView {
            id: model.id,
            avatar_id: model.avatar_id,
            filename: model.filename.clone(),
            content_type: model.content_type.clone(),
            size_bytes: model.size_bytes,
            status,
            error: model.error.clone(),
            chunks_count: model.chunks_count,
            tokens_count: model.tokens_count,
            queue_position,
            document_metadata: model.document_metadata.clone(),
            created_at: model.created_at,
            processed_at: model.processed_at,
        })
    }

    /// The avatar must be live in the project (404 otherwise).
    pub async fn ensure_avatar(
        &self,
        project_id: Uuid,
        avatar_id: Uuid,
    ) -> Result<(), DocumentsError> {
        self.avatars
            .get(project_id, avatar_id)
            .await
            .map(|_| ())
            .map_err(avatar_error)
    }

    /// Stores a received file and schedules its processing in the same transaction as its
    /// row: a 202 means it will be processed even if the process dies right after.
    pub async fn upload(
        &self,
        project_id: Uuid,
        avatar_id: Uuid,
        file: ReceivedFile,
        actor: Actor,
    ) -> Result<DocumentView, DocumentsError> {
        self.ensure_avatar(project_id, avatar_id).await?;
        let format = parsing::sniff(&file.filename, &file.head)
            .map_err(|error| DocumentsError::UnsupportedType(error.to_string()))?;
        self.quota
            .may_store_document(project_id, file.size_bytes)
            .await
            .map_err(DocumentsError::QuotaExceeded)?;
        if let Some(existing) = self.find_by_hash(avatar_id, &file.sha256).await? {
            return Err(DocumentsError::Duplicate {
                existing_id: existing,
            });
        }

        let document_id = new_id();
        let key = blob_key(project_id, avatar_id, document_id, &file.filename);
        let mut reader = tokio::fs::File::open(&file.path).await?;
        self.blobs
            .put_stream(&key, &mut reader, format.content_type())
            .await?;

        match self
            .insert_uploaded(
                project_id,
                avatar_id,
                document_id,
                &key,
                &file,
                format,
                actor,
            )
            .await
        {
            Ok(model) => self.view(&model).await,
            Err(error) => {
                // The row never existed: the stored file must not outlive it.
                self.delete_blob_now_or_later(&key).await;
                match error {
                    DocumentsError::Internal(message) if message.contains("duplicate key") => {
                        let existing = self.find_by_hash(avatar_id, &file.sha256).await?;
                        Err(existing
                            .map(|existing_id| DocumentsError::Duplicate { existing_id })
                            .unwrap_or(DocumentsError::Conflict(
                                "a duplicate upload is in progress",
                            )))
                    }
                    other => Err(other),
                }
            }
        }
    }

    async fn find_by_hash(
        &self,
        avatar_id: Uuid,
        sha256: &str,
    ) -> Result<Option<Uuid>, DocumentsError> {
        Ok(document::Entity::find()
            .filter(document::Column::AvatarId.eq(avatar_id))
            .filter(document::Column::Sha256.eq(sha256))
            .one(self.db.connection())
            .await?
            .map(|existing| existing.id))
    }

    #[allow(clippy::too_many_arguments)]
    async fn insert_uploaded(
        &self,
        project_id: Uuid,
        avatar_id: Uuid,
        document_id: Uuid,
        key: &str,
        file: &ReceivedFile,
        format: DocumentFormat,
        actor: Actor,
    ) -> Result<document::Model, DocumentsError> {
        let timestamp = now();
        let mut uow = self.db.begin().await?;
        let model = document::ActiveModel {
            id: Set(document_id),
            project_id: Set(project_id),
            avatar_id: Set(avatar_id),
            filename: Set(file.filename.clone()),
            content_type: Set(format.content_type().to_owned()),
            format: Set(format.as_str().to_owned()),
            size_bytes: Set(i64::try_from(file.size_bytes).unwrap_or(i64::MAX)),
            sha256: Set(file.sha256.clone()),
            blob_key: Set(key.to_owned()),
            status: Set(DocumentStatus::Uploaded.as_str().to_owned()),
            error: Set(None),
            chunks_count: Set(0),
            tokens_count: Set(0),
            attempts: Set(0),
            document_metadata: Set(json!({})),
            uploaded_by: Set(actor.user_id),
            created_at: Set(timestamp),
            updated_at: Set(timestamp),
            processing_started_at: Set(None),
            processed_at: Set(None),
            processing_run_id: Set(None),
            heartbeat_at: Set(None),
        }
        .insert(&*uow)
        .await
        .map_err(|error| {
            if is_unique_violation(&error) {
                DocumentsError::Internal(format!("duplicate key: {error}"))
            } else {
                DocumentsError::from(error)
            }
        })?;
        enqueue_in(&*uow, &ProcessDocument::now(document_id)).await?;
        self.publish(
            &mut uow,
            DocumentsEvent::DocumentUploaded {
                project_id,
                avatar_id,
                document_id,
                filename: model.filename.clone(),
                size_bytes: model.size_bytes,
                actor,
            },
        )
        .await?;
        uow.commit().await?;
        Ok(model)
    }

    async fn publish(
        &self,
        uow: &mut UnitOfWork,
        event: DocumentsEvent,
    ) -> Result<(), DocumentsError> {
        self.bus
            .publish(uow, &DomainEvent::Documents(event))
            .await?;
        Ok(())
    }

    pub async fn list(
        &self,
        project_id: Uuid,
        avatar_id: Uuid,
        status: Option<DocumentStatus>,
        page: &PageParams,
    ) -> Result<Page<DocumentView>, DocumentsError> {
        self.ensure_avatar(project_id, avatar_id).await?;
        let mut select = document::Entity::find()
            .filter(document::Column::ProjectId.eq(project_id))
            .filter(document::Column::AvatarId.eq(avatar_id));
        if let Some(status) = status {
            select = select.filter(document::Column::Status.eq(status.as_str()));
        }
        let (rows, total) = fetch_page(
            self.db.connection(),
            select.order_by_asc(document::Column::CreatedAt),
            page,
        )
        .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            items.push(self.view(row).await?);
        }
        Ok(Page::new(items, total, page))
    }

    async fn find(
        &self,
        project_id: Uuid,
        avatar_id: Uuid,
        document_id: Uuid,
    ) -> Result<document::Model, DocumentsError> {
        document::Entity::find_by_id(document_id)
            .filter(document::Column::ProjectId.eq(project_id))
            .filter(document::Column::AvatarId.eq(avatar_id))
            .one(self.db.connection())
            .await?
            .ok_or(DocumentsError::NotFound("document"))
    }

    pub async fn get(
        &self,
        project_id: Uuid,
        avatar_id: Uuid,
        document_id: Uuid,
    ) -> Result<DocumentView, DocumentsError> {
        self.ensure_avatar(project_id, avatar_id).await?;
        let model = self.find(project_id, avatar_id, document_id).await?;
        self.view(&model).await
    }

    /// Queues a ready or failed document for processing again.
    pub async fn reprocess(
        &self,
        project_id: Uuid,
        avatar_id: Uuid,
        document_id: Uuid,
    ) -> Result<DocumentView, DocumentsError> {
        self.ensure_avatar(project_id, avatar_id).await?;
        self.find(project_id, avatar_id, document_id).await?;
        let uow = self.db.begin().await?;
        let requeued = document::Entity::update_many()
            .col_expr(
                document::Column::Status,
                Expr::value(DocumentStatus::Uploaded.as_str()),
            )
            .col_expr(document::Column::Error, Expr::value(Option::<String>::None))
            .col_expr(document::Column::Attempts, Expr::value(0))
            .col_expr(document::Column::UpdatedAt, Expr::value(now()))
            .filter(document::Column::Id.eq(document_id))
            .filter(document::Column::Status.is_in([
                DocumentStatus::Ready.as_str(),
                DocumentStatus::Failed.as_str(),
            ]))
            .exec_with_returning(&*uow)
            .await?;
        let Some(model) = requeued.into_iter().next() else {
            return Err(DocumentsError::Conflict(
                "the document is already waiting or processing",
            ));
        };
        enqueue_in(&*uow, &ProcessDocument::now(document_id)).await?;
        uow.commit().await?;
        self.view(&model).await
    }

    /// Removes the document and its chunks; its stored file follows right after the commit
    /// (or, if that fails, from the recovery job's queue — never before the row is gone).
    pub async fn delete(
        &self,
        project_id: Uuid,
        avatar_id: Uuid,
        document_id: Uuid,
        actor: Actor,
    ) -> Result<(), DocumentsError> {
        let mut uow = self.db.begin().await?;
        let deleted = document::Entity::delete_many()
            .filter(document::Column::Id.eq(document_id))
            .filter(document::Column::ProjectId.eq(project_id))
            .filter(document::Column::AvatarId.eq(avatar_id))
            .exec_with_returning(&*uow)
            .await?;
        let Some(model) = deleted.into_iter().next() else {
            return Err(DocumentsError::NotFound("document"));
        };
        uow.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO blob_deletions (key) VALUES ($1) ON CONFLICT (key) DO NOTHING",
            [model.blob_key.clone().into()],
        ))
        .await?;
        self.publish(
            &mut uow,
            DocumentsEvent::DocumentDeleted {
                project_id,
                avatar_id,
                document_id,
                size_bytes: model.size_bytes,
                actor,
            },
        )
        .await?;
        uow.commit().await?;
        self.delete_blob_now_or_later(&model.blob_key).await;
        Ok(())
    }

    /// Deletes every document of an avatar (it was deleted).
    pub async fn delete_for_avatar(
        &self,
        project_id: Uuid,
        avatar_id: Uuid,
        actor: Actor,
    ) -> Result<usize, DocumentsError> {
        let ids: Vec<Uuid> = document::Entity::find()
            .filter(document::Column::ProjectId.eq(project_id))
            .filter(document::Column::AvatarId.eq(avatar_id))
            .all(self.db.connection())
            .await?
            .into_iter()
            .map(|model| model.id)
            .collect();
        for id in &ids {
            match self.delete(project_id, avatar_id, *id, actor.clone()).await {
                Ok(()) | Err(DocumentsError::NotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        // Its index goes too — in a job, under the build lock, so the drop never waits here
        // behind another avatar's build.
        queue_index_build(self.db.connection(), avatar_id).await?;
        Ok(ids.len())
    }

    /// Builds the avatar's own vector index if it is (still) large enough to need one, or drops
    /// it if the avatar has no ready chunks left.
    pub async fn build_vector_index(
        &self,
        avatar_id: Uuid,
    ) -> Result<BuildOutcome, DocumentsError> {
        let started = std::time::Instant::now();
        let outcome = vector_index::build(&self.db, &self.retrieval, avatar_id).await?;
        match outcome {
            BuildOutcome::Built => tracing::info!(
                %avatar_id,
                seconds = started.elapsed().as_secs_f64(),
                "built the avatar's vector index"
            ),
            BuildOutcome::Dropped => {
                tracing::info!(%avatar_id, "dropped the avatar's vector index")
            }
            _ => {}
        }
        Ok(outcome)
    }

    /// Queues an index build for every large avatar without a valid index (a build that
    /// failed, or one never queued), and a drop for every index whose avatar has no ready
    /// chunks left. Returns how many were queued.
    pub async fn ensure_vector_indexes(&self) -> Result<usize, DocumentsError> {
        let mut avatars =
            vector_index::unindexed_large_avatars(&self.db, self.retrieval.exact_scan_max_chunks)
                .await?;
        avatars.extend(vector_index::orphaned_indexes(&self.db).await?);
        let mut queued = 0;
        for avatar_id in avatars {
            if queue_index_build(self.db.connection(), avatar_id)
                .await?
                .is_some()
            {
                queued += 1;
            }
        }
        Ok(queued)
    }

    async fn delete_blob_now_or_later(&self, key: &str) {
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
        let rows = uow
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                "UPDATE documents SET status = 'uploaded', attempts = 0, error = NULL, \
                 chunks_count = 0, tokens_count = 0, updated_at = now() \
                 WHERE status IN ('ready', 'processing', 'failed') RETURNING id",
            ))
            .await?;
        for row in &rows {
            let id: Uuid = row.try_get("", "id")?;
            enqueue_in(&*uow, &ProcessDocument::now(id)).await?;
        }
        uow.commit().await?;
        Ok(rows.len())
    }

    /// Recovers what a dead worker left: a `processing` document whose run has not shown a
    /// heartbeat for `documents.stale_after_secs` goes back to the queue — or fails, once it
    /// used its `documents.max_attempts` — and an `uploaded` one without progress for
    /// `documents.stuck_after_secs` (its task lost) is queued again. Returns how many were
    /// requeued.
    pub async fn recover_stuck(&self) -> Result<usize, DocumentsError> {
        let stale_after = self.settings.stale_after_secs as f64;
        let stuck_after = self.settings.stuck_after_secs as f64;
        let mut uow = self.db.begin().await?;
        let given_up = uow
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE documents SET status = 'failed', processing_run_id = NULL, \
                 chunks_count = 0, tokens_count = 0, \
                 error = 'processing stopped ' || attempts || ' times without finishing (its \
                 worker was lost); giving up', updated_at = now() \
                 WHERE status = 'processing' AND attempts >= $2 \
                   AND COALESCE(heartbeat_at, processing_started_at, updated_at) \
                       < now() - make_interval(secs => $1) \
                 RETURNING id, project_id, avatar_id, error",
                [stale_after.into(), self.settings.max_attempts.into()],
            ))
            .await?;
        for row in &given_up {
            let document_id: Uuid = row.try_get("", "id")?;
            store::delete_chunks(&*uow, document_id).await?;
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
                 updated_at = now() \
                 WHERE (status = 'processing' AND COALESCE(heartbeat_at, processing_started_at, \
                        updated_at) < now() - make_interval(secs => $1)) \
                    OR (status = 'uploaded' AND updated_at < now() - make_interval(secs => $2)) \
                 RETURNING id",
                [stale_after.into(), stuck_after.into()],
            ))
            .await?;
        for row in &rows {
            let id: Uuid = row.try_get("", "id")?;
            enqueue_in(&*uow, &ProcessDocument::now(id)).await?;
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
        document_id: Uuid,
    ) -> Result<Result<document::Model, ProcessOutcome>, DocumentsError> {
        let Some(waiting) = document::Entity::find_by_id(document_id)
            .one(self.db.connection())
            .await?
        else {
            return Ok(Err(ProcessOutcome::Skipped));
        };
        if status_of(&waiting) != DocumentStatus::Uploaded {
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
            .filter(document::Column::Status.eq(DocumentStatus::Processing.as_str()))
            .count(&*uow)
            .await?;
        if i64::try_from(running).unwrap_or(i64::MAX) >= self.settings.max_processing_per_project {
            return Ok(Err(ProcessOutcome::Deferred));
        }
        // The database's clock, like the recovery that compares against it: a worker whose
        // clock runs behind cannot make its live runs look dead.
        let claimed = document::Entity::update_many()
            .col_expr(
                document::Column::Status,
                Expr::value(DocumentStatus::Processing.as_str()),
            )
            .col_expr(document::Column::ProcessingStartedAt, Expr::cust("now()"))
            .col_expr(document::Column::HeartbeatAt, Expr::cust("now()"))
            .col_expr(document::Column::ProcessingRunId, Expr::value(new_id()))
            .col_expr(document::Column::UpdatedAt, Expr::cust("now()"))
            .col_expr(
                document::Column::Attempts,
                Expr::col(document::Column::Attempts).add(1),
            )
            .filter(document::Column::Id.eq(document_id))
            .filter(document::Column::Status.eq(DocumentStatus::Uploaded.as_str()))
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
        document_id: Uuid,
        stopping: impl std::future::Future<Output = ()>,
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
        let result = tokio::select! {
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
                document::Entity::update_many()
                    .col_expr(
                        document::Column::Status,
                        Expr::value(DocumentStatus::Uploaded.as_str()),
                    )
                    .col_expr(
                        document::Column::ProcessingRunId,
                        Expr::value(Option::<Uuid>::None),
                    )
                    .col_expr(document::Column::UpdatedAt, Expr::value(now()))
                    .filter(document::Column::Id.eq(model.id))
                    .filter(document::Column::ProcessingRunId.eq(run.run_id))
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
                .col_expr(document::Column::HeartbeatAt, Expr::cust("now()"))
                .filter(document::Column::Id.eq(run.document_id))
                .filter(document::Column::ProcessingRunId.eq(run.run_id))
                .filter(document::Column::Status.eq(DocumentStatus::Processing.as_str()))
                .exec(self.db.connection())
                .await;
            match beat {
                Ok(result) if result.rows_affected == 0 => return,
                Ok(_) => {}
                // The database is away: the run itself will notice; keep trying.
                Err(error) => {
                    tracing::warn!(document_id = %run.document_id, "document heartbeat failed: {error}")
                }
            }
        }
    }

    /// The run was stopped by a shutdown: the document waits again, the attempt not counted,
    /// with a task queued in the same transaction.
    async fn interrupted(&self, run: Run) -> Result<(), DocumentsError> {
        let uow = self.db.begin().await?;
        let released = document::Entity::update_many()
            .col_expr(
                document::Column::Status,
                Expr::value(DocumentStatus::Uploaded.as_str()),
            )
            .col_expr(
                document::Column::ProcessingRunId,
                Expr::value(Option::<Uuid>::None),
            )
            .col_expr(
                document::Column::Attempts,
                Expr::col(document::Column::Attempts).sub(1),
            )
            .col_expr(document::Column::UpdatedAt, Expr::value(now()))
            .filter(document::Column::Id.eq(run.document_id))
            .filter(document::Column::ProcessingRunId.eq(run.run_id))
            .exec(&*uow)
            .await?;
        if released.rows_affected > 0 {
            enqueue_in(&*uow, &ProcessDocument::now(run.document_id)).await?;
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
                Expr::value(DocumentStatus::Failed.as_str()),
            )
            .col_expr(document::Column::Error, Expr::value(reason))
            .col_expr(document::Column::ChunksCount, Expr::value(0))
            .col_expr(document::Column::TokensCount, Expr::value(0))
            .col_expr(
                document::Column::ProcessingRunId,
                Expr::value(Option::<Uuid>::None),
            )
            .col_expr(document::Column::UpdatedAt, Expr::value(now()))
            .filter(document::Column::Id.eq(model.id))
            .filter(document::Column::ProcessingRunId.eq(run.run_id))
            .exec(&*uow)
            .await?;
        if failed.rows_affected == 0 {
            return Ok(());
        }
        store::delete_chunks(&*uow, model.id).await?;
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
    /// removing whatever an earlier, interrupted run left, and the document turns `ready` in
    /// the last transaction — each write only while the run still owns the document.
    async fn run(&self, model: &document::Model, run: Run) -> Result<(i32, i32), RunError> {
        let avatar = self
            .avatars
            .get(model.project_id, model.avatar_id)
            .await
            .map_err(|error| match error {
                AvatarsError::NotFound => RunError::Gone,
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
        let format = DocumentFormat::parse(&model.format)
            .ok_or_else(|| RunError::Permanent(format!("unknown format {}", model.format)))?;
        let request = ParseRequest {
            format,
            chunk_size: usize::try_from(avatar.rag.chunk_size).unwrap_or(512),
            chunk_overlap: usize::try_from(avatar.rag.chunk_overlap).unwrap_or(0),
            max_chunks: self.settings.max_chunks_per_document,
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

        let embedder = self
            .embedders
            .current()
            .await
            .map_err(RunError::Permanent)?;
        let uow = self.owned(run).await?;
        store::delete_chunks(&*uow, model.id).await?;
        uow.commit().await?;
        for batch in chunks.chunks(self.settings.embed_batch_size) {
            let texts: Vec<String> = batch.iter().map(|chunk| chunk.text.clone()).collect();
            let vectors = embedder.embed(&texts).await.map_err(|error| {
                if error.is_transient() {
                    RunError::Transient(format!("embedding failed: {error}"))
                } else {
                    RunError::Permanent(format!("embedding failed: {error}"))
                }
            })?;
            let rows: Vec<(&Chunk, Vec<f32>)> = batch.iter().zip(vectors).collect();
            let uow = self.owned(run).await?;
            for rows in rows.chunks(self.settings.insert_batch_size) {
                let owner = store::ChunkOwner {
                    document_id: model.id,
                    project_id: model.project_id,
                    avatar_id: model.avatar_id,
                };
                store::insert_chunks(&*uow, owner, rows, &embedder.model_id()).await?;
            }
            uow.commit().await?;
        }

        let chunks_count = i32::try_from(chunks.len()).unwrap_or(i32::MAX);
        let tokens_count = chunks.iter().map(|chunk| chunk.token_count).sum::<i32>();
        let mut uow = self.db.begin().await?;
        let finished = document::Entity::update_many()
            .col_expr(
                document::Column::Status,
                Expr::value(DocumentStatus::Ready.as_str()),
            )
            .col_expr(document::Column::ChunksCount, Expr::value(chunks_count))
            .col_expr(document::Column::TokensCount, Expr::value(tokens_count))
            .col_expr(document::Column::Error, Expr::value(Option::<String>::None))
            .col_expr(
                document::Column::DocumentMetadata,
                Expr::value(Value::Object(document_metadata)),
            )
            .col_expr(
                document::Column::ProcessingRunId,
                Expr::value(Option::<Uuid>::None),
            )
            .col_expr(document::Column::ProcessedAt, Expr::value(now()))
            .col_expr(document::Column::UpdatedAt, Expr::value(now()))
            .filter(document::Column::Id.eq(model.id))
            .filter(document::Column::ProcessingRunId.eq(run.run_id))
            .filter(document::Column::Status.eq(DocumentStatus::Processing.as_str()))
            .exec(&*uow)
            .await?;
        if finished.rows_affected == 0 {
            return Err(RunError::Gone);
        }
        // Past the exact-scan size, the avatar needs its own index: queued with the commit.
        if self
            .needs_index(&*uow, model.project_id, model.avatar_id)
            .await?
        {
            queue_index_build(&*uow, model.avatar_id).await?;
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
        Ok((chunks_count, tokens_count))
    }
}
