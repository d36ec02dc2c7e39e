//! The saas_admin's part of the outbound allow-list (hosts and networks a project's endpoint may
//! reach although they are private), and the platform's keys bound to their endpoints: keys
//! sealed before are no longer readable and must be entered again, so they are cleared.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE platform_config \
                 ADD COLUMN outbound_allowed_hosts jsonb NOT NULL DEFAULT '[]'; \
                 UPDATE platform_config SET llm_api_key_sealed = NULL, \
                 embedding_api_key_sealed = NULL;",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE platform_config DROP COLUMN outbound_allowed_hosts;")
            .await?;
        Ok(())
    }
}
