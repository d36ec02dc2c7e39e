//! The auth module's tables. Visible to this module only.

pub(in crate::modules::auth) mod user {
    use sea_orm::entity::prelude::*;

    use crate::core::ids::UserId;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: UserId,
        pub email: String,
        pub password_hash: String,
        pub full_name: Option<String>,
        pub role: crate::core::auth::PlatformRole,
        pub is_active: bool,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(in crate::modules::auth) mod refresh_token {
    use sea_orm::entity::prelude::*;

    use crate::core::ids::UserId;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "refresh_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: UserId,
        pub family_id: Uuid,
        pub token_hash: String,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
        pub used_at: Option<DateTimeUtc>,
        pub revoked_at: Option<DateTimeUtc>,
        pub ip: Option<String>,
        /// The token this one was exchanged for, and the whole pair sealed: returned again to
        /// a reuse within the grace window.
        pub successor_id: Option<Uuid>,
        pub successor_sealed: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
