//! The similarity threshold's default becomes 0.3 (measured with `make eval` for the local
//! model, docs/retrieval.md): avatars that still have the old default 0.0 get it. An avatar
//! whose owner chose another value keeps it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE avatars SET rag_similarity_threshold = 0.3 \
                 WHERE rag_similarity_threshold = 0",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // Which avatars had 0.0 before is not kept: the values stay.
        Ok(())
    }
}
