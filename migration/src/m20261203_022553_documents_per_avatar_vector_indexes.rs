//! Drops the global HNSW index on `document_chunks.embedding`. Filtered to one avatar, a graph
//! over every tenant's vectors misses most of the avatar's nearest chunks (recall 0.91 at
//! 100k chunks, docs/benchmarks.md). Small avatars are scanned exactly; a large avatar gets a
//! partial HNSW index of its own, built by the `documents.build_vector_index` job
//! (src/modules/documents/vector_index.rs). Dropping it also spares every chunk insert the
//! cost of maintaining a graph nobody should query.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS document_chunks_embedding_index")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS document_chunks_embedding_index ON document_chunks \
                 USING hnsw (embedding vector_cosine_ops)",
            )
            .await?;
        Ok(())
    }
}
