//! A document turns `ready` as soon as its chunks are stored with their full-text signal; an
//! embedder that runs on this machine's CPU fills their vectors afterwards, in a job. So a
//! chunk's `embedding` may be NULL for a while, and `documents.semantic_indexed_chunks` counts
//! the chunks that have one (the document's progress).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE document_chunks ALTER COLUMN embedding DROP NOT NULL; \
                 ALTER TABLE documents \
                     ADD COLUMN semantic_indexed_chunks integer NOT NULL DEFAULT 0; \
                 UPDATE documents SET semantic_indexed_chunks = chunks_count \
                     WHERE status = 'ready';",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Chunks still waiting for their vector cannot satisfy NOT NULL: they go, and their
        // documents are processed again.
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE documents SET status = 'uploaded', chunks_count = 0, tokens_count = 0 \
                     WHERE id IN (SELECT document_id FROM document_chunks \
                                  WHERE embedding IS NULL); \
                 DELETE FROM document_chunks WHERE embedding IS NULL; \
                 ALTER TABLE document_chunks ALTER COLUMN embedding SET NOT NULL; \
                 ALTER TABLE documents DROP COLUMN semantic_indexed_chunks;",
            )
            .await?;
        Ok(())
    }
}
