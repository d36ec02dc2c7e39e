//! The end_users table. Visible to this module only.

pub(in crate::modules::end_users) mod end_user {
    use sea_orm::entity::prelude::*;

    use crate::core::ids::{EndUserId, ProjectId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "end_users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: EndUserId,
        pub project_id: ProjectId,
        pub channel: crate::core::channel::Channel,
        pub external_id: String,
        pub display_name: Option<String>,
        pub raw_profile: Json,
        pub consent_flags: Json,
        pub messages_count: i32,
        pub last_seen_at: Option<DateTimeUtc>,
        pub blocked_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
