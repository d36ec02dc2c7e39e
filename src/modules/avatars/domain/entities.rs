//! The avatars table. Visible to this module only.

pub(in crate::modules::avatars) mod avatar {
    use sea_orm::entity::prelude::*;

    use crate::core::ids::{AvatarId, ProjectId};

    use crate::core::db::SoftDelete;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "avatars")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: AvatarId,
        pub project_id: ProjectId,
        pub name: String,
        /// Unique among the project's live avatars (`avatars::slugs`).
        pub slug: String,
        pub description: Option<String>,
        pub system_prompt: String,
        pub greeting: Option<String>,
        pub llm_model: String,
        pub llm_temperature: f32,
        pub llm_max_tokens: i32,
        pub rag_top_k: i32,
        pub rag_similarity_threshold: f32,
        pub rag_chunk_size: i32,
        pub rag_chunk_overlap: i32,
        /// A PostgreSQL text search configuration (`english`, `simple`, `russian`, ...).
        pub rag_language: String,
        pub status: crate::modules::avatars::AvatarStatus,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub deleted_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl SoftDelete for Entity {
        fn deleted_at() -> Column {
            Column::DeletedAt
        }
    }
}
