//! Billing's tables. Visible to this module only.

pub(in crate::modules::billing) mod plan {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "plans")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub code: String,
        pub name: String,
        pub monthly_token_limit: i64,
        pub max_avatars: i32,
        pub max_documents: i32,
        pub max_storage_mb: i32,
        pub requests_per_minute: i32,
        pub is_default: bool,
        pub is_public: bool,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(in crate::modules::billing) mod subscription {
    use sea_orm::entity::prelude::*;

    use crate::core::ids::ProjectId;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "subscriptions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub project_id: ProjectId,
        pub plan_code: String,
        pub period_anchor: DateTimeUtc,
        pub period_start: DateTimeUtc,
        pub period_end: DateTimeUtc,
        pub tokens_used: i64,
        pub tokens_reserved: i64,
        pub threshold_announced: i16,
        pub avatars_count: i32,
        pub documents_count: i32,
        pub storage_bytes: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(in crate::modules::billing) mod usage {
    use sea_orm::entity::prelude::*;

    use crate::core::ids::{AvatarId, ConversationId, DocumentId, ProjectId};
    use crate::modules::billing::UsageKind;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "usage_ledger")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub project_id: ProjectId,
        pub kind: UsageKind,
        pub model: String,
        pub prompt_tokens: i64,
        pub completion_tokens: i64,
        pub total_tokens: i64,
        pub counted: bool,
        pub avatar_id: Option<AvatarId>,
        pub conversation_id: Option<ConversationId>,
        pub document_id: Option<DocumentId>,
        pub tokens_used_after: i64,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
