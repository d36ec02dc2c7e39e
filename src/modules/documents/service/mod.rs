//! Documents of an avatar: upload (streamed, sniffed, de-duplicated), durable scheduling of
//! their processing, the processing itself (parse → chunk → embed → store), reprocess, delete,
//! and the hybrid search over their chunks (see `retrieval.rs`).
//!
//! Processing runs (claim, parse in the sandbox, embed, store, heartbeat, recovery) are in
//! `processing.rs`; the avatars' vector indexes, pending file deletions and re-embedding in
//! `maintenance.rs`.

mod indexing;
mod maintenance;
mod processing;
mod project_embeddings;
mod upload;

pub use indexing::IndexOutcome;
pub use processing::ProcessOutcome;
pub use project_embeddings::ProjectEmbeddings;

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DeriveActiveEnum, EntityTrait, EnumIter,
    PaginatorTrait, QueryFilter, QueryOrder, Statement,
};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::auth::Actor;
use crate::core::cache::ExactCaches;
use crate::core::clock::Clock;
use crate::core::config::{DocumentSettings, RetrievalSettings};
use crate::core::db::{Db, UnitOfWork};
use crate::core::embeddings::in_language;
use crate::core::error::Failure;
use crate::core::events::EventBus;
use crate::core::ids::{AvatarId, DocumentId, ProjectId};
use crate::core::jobs::{enqueue_in, enqueue_unique_in};
use crate::core::pagination::{Page, PageParams, fetch_page};
use crate::core::storage::BlobStore;
use crate::modules::avatars::AvatarView;
use crate::modules::avatars::AvatarsService;
use crate::modules::billing::{BillingService, Slot};
use crate::modules::events::DomainEvent;

use super::domain::entities::document;
use super::domain::errors::DocumentsError;
use super::domain::events::DocumentsEvent;
use super::embedding::EmbedderSource;
use super::retrieval::{self, Retriever, SearchHit, SearchRequest};
use super::sandbox::Sandbox;
use super::tasks::{BuildVectorIndex, ProcessDocument};

// Where a document is in its processing. Stored as text; a value this version does not know
// is an error when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema, EnumIter, DeriveActiveEnum)]
#[serde(rename_all = "snake_case")]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum DocumentStatus {
    #[sea_orm(string_value = "uploaded")]
    Uploaded,
    #[sea_orm(string_value = "processing")]
    Processing,
    #[sea_orm(string_value = "ready")]
    Ready,
    #[sea_orm(string_value = "failed")]
    Failed,
}

impl DocumentStatus {
    /// The status a client names (`?status=ready`), by its stored name.
    pub fn parse(value: &str) -> Option<Self> {
        <Self as sea_orm::ActiveEnum>::try_from_value(&value.to_owned()).ok()
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DocumentView {
    #[schema(value_type = uuid::Uuid)]
    pub id: DocumentId,
    #[schema(value_type = uuid::Uuid)]
    pub avatar_id: AvatarId,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub status: DocumentStatus,
    /// Why processing failed, for people.
    pub error: Option<String>,
    pub chunks_count: i32,
    pub tokens_count: i32,
    /// Chunks whose semantic vector is stored. A document is searchable as soon as it is
    /// `ready` (full text); with the local model its vectors are filled in afterwards by a
    /// background job, and this reaches `chunks_count` when they all are.
    pub semantic_indexed_chunks: i32,
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

/// The module's settings, where uploads wait, and the parser's sandbox.
pub struct DocumentsConfig {
    pub settings: DocumentSettings,
    pub retrieval: RetrievalSettings,
    pub upload_dir: PathBuf,
    pub sandbox: Sandbox,
    pub clock: Arc<dyn Clock>,
    pub billing: Arc<BillingService>,
    /// Keeps small avatars' vectors in memory for retrieval.
    pub caches: ExactCaches,
}

/// What a search found, and the embedder that embedded the question (for the usage ledger).
#[derive(Debug, Clone)]
pub struct AvatarSearch {
    pub hits: Vec<SearchHit>,
    pub embedding_model: String,
}

pub struct DocumentsService {
    db: Db,
    bus: EventBus<DomainEvent>,
    blobs: Arc<dyn BlobStore>,
    avatars: Arc<AvatarsService>,
    embedders: EmbedderSource,
    /// Each document takes a slot (and its bytes) of the project's plan.
    billing: Arc<BillingService>,
    settings: DocumentSettings,
    retriever: Retriever,
    caches: ExactCaches,
    upload_dir: PathBuf,
    sandbox: Sandbox,
    clock: Arc<dyn Clock>,
    /// Held by the document being indexed semantically in this process (`indexing.rs`).
    indexing: tokio::sync::Mutex<()>,
}

/// Queues a build of the avatar's vector index, unless one is queued or running already.
async fn queue_index_build<C: ConnectionTrait>(
    conn: &C,
    avatar_id: AvatarId,
    now: DateTime<Utc>,
) -> Result<Option<Uuid>, sea_orm::DbErr> {
    enqueue_unique_in(
        conn,
        &BuildVectorIndex::now(avatar_id),
        &format!("documents.build_vector_index:{avatar_id}"),
        now,
    )
    .await
}

/// The avatar a route names is missing (404), or could not be read.
/// The avatar if it is still live (`None` if it was deleted), for background work on its
/// documents.
async fn live_avatar(
    avatars: &AvatarsService,
    project_id: ProjectId,
    avatar_id: AvatarId,
) -> Result<Option<AvatarView>, DocumentsError> {
    match avatars.get(project_id, avatar_id).await {
        Ok(avatar) => Ok(Some(avatar)),
        Err(error) => match Failure::from(error) {
            Failure::NotFound(_) => Ok(None),
            other => Err(other.into()),
        },
    }
}

fn avatar_error(error: impl Into<Failure>) -> DocumentsError {
    match error.into() {
        Failure::NotFound(_) => DocumentsError::NotFound("avatar"),
        other => other.into(),
    }
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
            clock,
            billing,
            caches,
        } = config;
        let retriever = Retriever::new(db.clone(), retrieval, &caches);
        DocumentsService {
            db,
            bus,
            blobs,
            avatars,
            embedders,
            billing,
            settings,
            retriever,
            caches,
            upload_dir,
            sandbox,
            clock,
            indexing: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether the avatar has more ready chunks than are searched exactly, and no index yet.
    async fn needs_index<C: ConnectionTrait>(
        &self,
        conn: &C,
        project_id: ProjectId,
        avatar_id: AvatarId,
    ) -> Result<bool, sea_orm::DbErr> {
        let (size, indexed) = retrieval::avatar_size(conn, project_id, avatar_id).await?;
        Ok(size > self.retriever.settings().exact_scan_max_chunks && !indexed)
    }

    /// Where uploads wait (as temporary files) until they are in the blob store.
    pub fn upload_dir(&self) -> &std::path::Path {
        &self.upload_dir
    }

    /// The passages of the avatar's ready documents that best answer `query` (hybrid search
    /// with the avatar's `top_k` and `similarity_threshold` unless `top_k` is given).
    pub async fn search(
        &self,
        project_id: ProjectId,
        avatar_id: AvatarId,
        query: &str,
        top_k: Option<usize>,
    ) -> Result<Vec<SearchHit>, DocumentsError> {
        let avatar = self
            .avatars
            .get(project_id, avatar_id)
            .await
            .map_err(avatar_error)?;
        let top_k = top_k.unwrap_or(usize::try_from(avatar.rag.top_k).unwrap_or(5));
        Ok(self.search_avatar(&avatar, query, top_k).await?.hits)
    }

    /// [`search`](Self::search) for a caller that already holds the avatar (the chat
    /// pipeline): its `similarity_threshold`, `top_k` passages.
    pub async fn search_avatar(
        &self,
        avatar: &AvatarView,
        query: &str,
        top_k: usize,
    ) -> Result<AvatarSearch, DocumentsError> {
        let embedder = in_language(
            self.embedders
                .current()
                .await
                .map_err(DocumentsError::internal)?,
            &avatar.rag.language,
        );
        let embedding = embedder.embed_query(query).await.map_err(|error| {
            DocumentsError::internal(format!("embedding the question failed: {error}"))
        })?;
        let request = SearchRequest {
            project_id: avatar.project_id,
            avatar_id: avatar.id,
            query,
            embedding,
            top_k,
            similarity_threshold: f64::from(avatar.rag.similarity_threshold),
            language: &avatar.rag.language,
        };
        Ok(AvatarSearch {
            hits: self.retriever.search(&request).await?,
            embedding_model: embedder.model_id(),
        })
    }

    pub fn retrieval_settings(&self) -> &RetrievalSettings {
        self.retriever.settings()
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
        let status = model.status;
        let queue_position = if status == DocumentStatus::Uploaded {
            let ahead = document::Entity::find()
                .filter(document::Column::ProjectId.eq(model.project_id))
                .filter(document::Column::Status.eq(DocumentStatus::Uploaded))
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
            semantic_indexed_chunks: model.semantic_indexed_chunks,
            queue_position,
            document_metadata: model.document_metadata.clone(),
            created_at: model.created_at,
            processed_at: model.processed_at,
        })
    }

    /// The avatar must be live in the project (404 otherwise).
    pub async fn ensure_avatar(
        &self,
        project_id: ProjectId,
        avatar_id: AvatarId,
    ) -> Result<(), DocumentsError> {
        self.avatars
            .get(project_id, avatar_id)
            .await
            .map(|_| ())
            .map_err(avatar_error)
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
        project_id: ProjectId,
        avatar_id: AvatarId,
        status: Option<DocumentStatus>,
        page: &PageParams,
    ) -> Result<Page<DocumentView>, DocumentsError> {
        self.ensure_avatar(project_id, avatar_id).await?;
        let mut select = document::Entity::find()
            .filter(document::Column::ProjectId.eq(project_id))
            .filter(document::Column::AvatarId.eq(avatar_id));
        if let Some(status) = status {
            select = select.filter(document::Column::Status.eq(status));
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
        project_id: ProjectId,
        avatar_id: AvatarId,
        document_id: DocumentId,
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
        project_id: ProjectId,
        avatar_id: AvatarId,
        document_id: DocumentId,
    ) -> Result<DocumentView, DocumentsError> {
        self.ensure_avatar(project_id, avatar_id).await?;
        let model = self.find(project_id, avatar_id, document_id).await?;
        self.view(&model).await
    }

    /// Queues a ready or failed document for processing again.
    pub async fn reprocess(
        &self,
        project_id: ProjectId,
        avatar_id: AvatarId,
        document_id: DocumentId,
    ) -> Result<DocumentView, DocumentsError> {
        self.ensure_avatar(project_id, avatar_id).await?;
        self.find(project_id, avatar_id, document_id).await?;
        let uow = self.db.begin().await?;
        let requeued = document::Entity::update_many()
            .col_expr(
                document::Column::Status,
                Expr::value(DocumentStatus::Uploaded),
            )
            .col_expr(document::Column::Error, Expr::value(Option::<String>::None))
            .col_expr(document::Column::Attempts, Expr::value(0))
            .col_expr(document::Column::UpdatedAt, Expr::value(self.clock.now()))
            .filter(document::Column::Id.eq(document_id))
            .filter(document::Column::Status.is_in([DocumentStatus::Ready, DocumentStatus::Failed]))
            .exec_with_returning(&*uow)
            .await?;
        let Some(model) = requeued.into_iter().next() else {
            return Err(DocumentsError::Conflict(
                "the document is already waiting or processing",
            ));
        };
        enqueue_in(&*uow, &ProcessDocument::now(document_id), self.clock.now()).await?;
        uow.commit().await?;
        self.caches.settle().await;
        self.view(&model).await
    }

    /// Removes the document and its chunks; its stored file follows right after the commit
    /// (or, if that fails, from the recovery job's queue — never before the row is gone). When
    /// it answers, no process searches the chunks any more.
    pub async fn delete(
        &self,
        project_id: ProjectId,
        avatar_id: AvatarId,
        document_id: DocumentId,
        actor: Actor,
    ) -> Result<(), DocumentsError> {
        self.delete_unsettled(project_id, avatar_id, document_id, actor)
            .await?;
        self.caches.settle().await;
        Ok(())
    }

    /// [`Self::delete`], answering before other processes' caches are known to have dropped
    /// the chunks (a caller deleting many settles once).
    async fn delete_unsettled(
        &self,
        project_id: ProjectId,
        avatar_id: AvatarId,
        document_id: DocumentId,
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
        self.billing
            .free_slot_in(&uow, project_id, document_slot(model.size_bytes))
            .await
            .map_err(Failure::from)?;
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
        project_id: ProjectId,
        avatar_id: AvatarId,
        actor: Actor,
    ) -> Result<usize, DocumentsError> {
        let ids: Vec<DocumentId> = document::Entity::find()
            .filter(document::Column::ProjectId.eq(project_id))
            .filter(document::Column::AvatarId.eq(avatar_id))
            .all(self.db.connection())
            .await?
            .into_iter()
            .map(|model| model.id)
            .collect();
        for id in &ids {
            match self
                .delete_unsettled(project_id, avatar_id, *id, actor.clone())
                .await
            {
                Ok(()) | Err(DocumentsError::NotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        self.caches.settle().await;
        // Its index goes too — in a job, under the build lock, so the drop never waits here
        // behind another avatar's build.
        queue_index_build(self.db.connection(), avatar_id, self.clock.now()).await?;
        Ok(ids.len())
    }
}

/// The plan slot a document of `size_bytes` takes.
fn document_slot(size_bytes: i64) -> Slot {
    Slot::Document {
        bytes: u64::try_from(size_bytes).unwrap_or(0),
    }
}

/// Figures for analytics.
impl DocumentsService {
    /// Documents on the platform (deleted ones are gone).
    pub async fn count_all(&self) -> Result<u64, DocumentsError> {
        Ok(document::Entity::find().count(self.db.connection()).await?)
    }
}
