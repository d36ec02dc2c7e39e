//! The single row of global settings. Visible to this module only.

pub(in crate::modules::platform_config) mod platform_config {
    use sea_orm::entity::prelude::*;

    use crate::core::ids::UserId;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "platform_config")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i16,
        pub llm_base_url: Option<String>,
        pub llm_api_key_sealed: Option<String>,
        pub default_model: Option<String>,
        pub embedding_base_url: Option<String>,
        pub embedding_api_key_sealed: Option<String>,
        pub embedding_model: Option<String>,
        pub registration_open: bool,
        pub notifications_bot_token_sealed: Option<String>,
        /// A JSON array of host names and networks (`outbound::AllowList` entries).
        pub outbound_allowed_hosts: Json,
        pub updated_at: DateTimeUtc,
        pub updated_by: Option<UserId>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
