//! The notification_settings and notification_deliveries tables. Visible to this module only
//! (the bot's own tables are read with SQL).

pub(in crate::modules::notifications) mod settings {
    use sea_orm::entity::prelude::*;

    use crate::core::ids::UserId;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "notification_settings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: UserId,
        /// Set only by the link flow.
        pub telegram_chat_id: Option<i64>,
        pub linked_at: Option<DateTimeUtc>,
        /// A JSON array of [`NotificationEvent`](super::super::NotificationEvent) names.
        pub events: Json,
        /// The pending one-time link code, hashed (`hash_token`).
        pub link_code_hash: Option<String>,
        pub link_code_expires_at: Option<DateTimeUtc>,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(in crate::modules::notifications) mod delivery {
    use sea_orm::entity::prelude::*;

    use crate::core::ids::UserId;
    use crate::modules::notifications::domain::DeliveryStatus;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "notification_deliveries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The domain event (or the bot's received update) this message answers.
        pub event_id: Uuid,
        /// None: a reply to a chat not linked to anyone (a wrong link code).
        pub user_id: Option<UserId>,
        pub chat_id: i64,
        /// A [`NotificationEvent`](super::super::NotificationEvent) name, or `link` for the
        /// bot's replies.
        pub kind: String,
        pub text: String,
        pub status: DeliveryStatus,
        pub attempts: i32,
        pub last_error: Option<String>,
        pub created_at: DateTimeUtc,
        pub sent_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
