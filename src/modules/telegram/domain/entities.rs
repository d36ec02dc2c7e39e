//! The telegram_bots table. Visible to this module only (updates and chats are read with SQL).

pub(in crate::modules::telegram) mod bot {
    use sea_orm::entity::prelude::*;

    use crate::core::ids::{AvatarId, ProjectId};
    use crate::modules::telegram::domain::{BotMode, BotStatus};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "telegram_bots")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub project_id: ProjectId,
        pub bot_id: i64,
        pub bot_username: String,
        pub avatar_id: AvatarId,
        pub mode: BotMode,
        pub status: BotStatus,
        pub last_error: Option<String>,
        /// Sealed; what Telegram sends in `X-Telegram-Bot-Api-Secret-Token`.
        pub webhook_secret: Option<String>,
        /// Polling: the process polling this bot, its lease, and the next `update_id` to ask for.
        pub poll_holder: Option<uuid::Uuid>,
        pub poll_lease_until: Option<DateTimeUtc>,
        pub poll_offset: Option<i64>,
        pub connected_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
