//! A project API key may be restricted to some of the project's avatars: `avatar_ids`, a JSON
//! array of their ids, or NULL for every avatar (all keys made before this).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE project_api_keys ADD COLUMN avatar_ids jsonb")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE project_api_keys DROP COLUMN avatar_ids")
            .await?;
        Ok(())
    }
}
