//! The documents table. Visible to this module only (chunks are written and read with SQL in
//! `store.rs` and `retrieval.rs`: bulk inserts and vector queries).

pub(in crate::modules::documents) mod document {
    use sea_orm::entity::prelude::*;

    use crate::core::ids::{AvatarId, DocumentId, ProjectId, UserId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "documents")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: DocumentId,
        pub project_id: ProjectId,
        pub avatar_id: AvatarId,
        pub filename: String,
        pub content_type: String,
        pub format: crate::modules::documents::DocumentFormat,
        pub size_bytes: i64,
        pub sha256: String,
        pub blob_key: String,
        pub status: crate::modules::documents::DocumentStatus,
        pub error: Option<String>,
        pub chunks_count: i32,
        pub tokens_count: i32,
        /// Chunks whose semantic vector is stored (filled after `ready` by a local model).
        pub semantic_indexed_chunks: i32,
        pub attempts: i32,
        pub document_metadata: Json,
        pub uploaded_by: Option<UserId>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub processing_started_at: Option<DateTimeUtc>,
        pub processed_at: Option<DateTimeUtc>,
        /// The run that owns the document while it is `processing`.
        pub processing_run_id: Option<Uuid>,
        /// Refreshed by that run while it is alive.
        pub heartbeat_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
