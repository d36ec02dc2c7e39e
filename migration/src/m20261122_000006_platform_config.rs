//! The platform's global settings: one row, secret values sealed.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                r#"
CREATE TABLE platform_config (
    id smallint PRIMARY KEY CHECK (id = 1),
    llm_base_url text,
    llm_api_key_sealed text,
    default_model text,
    embedding_base_url text,
    embedding_api_key_sealed text,
    embedding_model text,
    registration_open boolean NOT NULL DEFAULT true,
    notifications_bot_token_sealed text,
    updated_at timestamptz NOT NULL,
    updated_by uuid
);
INSERT INTO platform_config (id, updated_at) VALUES (1, now());
"#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE platform_config;")
            .await?;
        Ok(())
    }
}
