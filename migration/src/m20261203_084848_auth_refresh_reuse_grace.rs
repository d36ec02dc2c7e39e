//! A refresh token remembers the pair it was exchanged for (sealed), so that presenting it
//! again within a short grace window (two tabs, a client's retry) returns that same pair
//! instead of counting as theft.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE refresh_tokens ADD COLUMN successor_id uuid, \
                 ADD COLUMN successor_sealed text;",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE refresh_tokens DROP COLUMN successor_id, \
                 DROP COLUMN successor_sealed;",
            )
            .await?;
        Ok(())
    }
}
