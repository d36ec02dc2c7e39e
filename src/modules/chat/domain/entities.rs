//! The conversations and messages tables. Visible to this module only.

pub(in crate::modules::chat) mod conversation {
    use sea_orm::entity::prelude::*;

    use crate::core::ids::{AvatarId, ConversationId, EndUserId, ProjectId, UserId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "conversations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: ConversationId,
        pub project_id: ProjectId,
        pub avatar_id: AvatarId,
        pub channel: crate::core::channel::Channel,
        pub end_user_id: Option<EndUserId>,
        pub created_by: Option<UserId>,
        pub title: Option<String>,
        pub messages_count: i32,
        pub last_message_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(in crate::modules::chat) mod message {
    use sea_orm::entity::prelude::*;

    use crate::core::ids::{ConversationId, MessageId, ProjectId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "messages")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: MessageId,
        pub project_id: ProjectId,
        pub conversation_id: ConversationId,
        pub role: crate::modules::chat::domain::MessageRole,
        pub content: String,
        pub sources: Json,
        pub prompt_tokens: i32,
        pub completion_tokens: i32,
        pub model: Option<String>,
        pub finish_reason: Option<String>,
        pub retrieval_ms: Option<i32>,
        pub time_to_first_token_ms: Option<i32>,
        pub total_ms: Option<i32>,
        pub message_metadata: Json,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
