//! The projects module's tables. Visible to this module only.

pub(in crate::modules::projects) mod project {
    use sea_orm::entity::prelude::*;

    use crate::core::ids::{ProjectId, UserId};

    use crate::core::db::SoftDelete;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "projects")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: ProjectId,
        pub name: String,
        pub description: Option<String>,
        pub created_by: UserId,
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

pub(in crate::modules::projects) mod member {
    use sea_orm::entity::prelude::*;

    use crate::core::ids::{ProjectId, UserId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "project_members")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub project_id: ProjectId,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: UserId,
        pub role: crate::core::auth::ProjectRole,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(in crate::modules::projects) mod secret {
    use sea_orm::entity::prelude::*;

    use crate::core::ids::ProjectId;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "project_secrets")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub project_id: ProjectId,
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub sealed_value: String,
        pub key_id: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(in crate::modules::projects) mod api_key {
    use sea_orm::entity::prelude::*;

    use crate::core::ids::{ApiKeyId, ProjectId, UserId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "project_api_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: ApiKeyId,
        pub project_id: ProjectId,
        pub name: String,
        pub prefix: String,
        pub key_hash: String,
        pub scopes: Json,
        /// The avatars the key reaches (ids), or NULL for every one.
        pub avatar_ids: Option<Json>,
        pub created_by: UserId,
        pub created_at: DateTimeUtc,
        pub last_used_at: Option<DateTimeUtc>,
        pub revoked_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(in crate::modules::projects) mod invitation {
    use sea_orm::entity::prelude::*;

    use crate::core::ids::{InvitationId, ProjectId, UserId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "project_invitations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: InvitationId,
        pub project_id: ProjectId,
        pub email: String,
        pub role: crate::core::auth::ProjectRole,
        pub token_hash: String,
        pub invited_by: Option<UserId>,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
        pub accepted_at: Option<DateTimeUtc>,
        pub accepted_by: Option<UserId>,
        pub revoked_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
