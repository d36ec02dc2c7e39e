//! Full-text search per avatar language: `avatars.rag_language` names a PostgreSQL text search
//! configuration (default `english`), and the chunks' `search_vector` becomes a plain column
//! that the app computes with it (it was generated with `english`, fixed; the values stay).
//! Changing an avatar's language re-indexes its chunks in a job.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE avatars ADD COLUMN rag_language text NOT NULL DEFAULT 'english'; \
                 ALTER TABLE document_chunks ALTER COLUMN search_vector DROP EXPRESSION; \
                 ALTER TABLE document_chunks ALTER COLUMN search_vector SET NOT NULL;",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE document_chunks DROP COLUMN search_vector; \
                 ALTER TABLE document_chunks ADD COLUMN search_vector tsvector \
                     GENERATED ALWAYS AS (to_tsvector('english', text)) STORED; \
                 CREATE INDEX document_chunks_search_index ON document_chunks \
                     USING gin (search_vector); \
                 ALTER TABLE avatars DROP COLUMN rag_language;",
            )
            .await?;
        Ok(())
    }
}
