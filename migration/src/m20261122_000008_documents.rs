//! Documents, their chunks (pgvector embedding with an HNSW index, full-text tsvector with a
//! GIN index) and the queue of stored files still to delete.
//!
//! The embedding column's dimension must match `embeddings.dimension`; the app checks it at
//! start-up and `avatar-platform documents reembed` changes it.

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
CREATE TABLE documents (
    id uuid PRIMARY KEY,
    project_id uuid NOT NULL,
    avatar_id uuid NOT NULL,
    filename text NOT NULL,
    content_type text NOT NULL,
    format text NOT NULL,
    size_bytes bigint NOT NULL,
    sha256 text NOT NULL,
    blob_key text NOT NULL,
    status text NOT NULL CHECK (status IN ('uploaded', 'processing', 'ready', 'failed')),
    error text,
    chunks_count integer NOT NULL DEFAULT 0,
    tokens_count integer NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 0,
    document_metadata jsonb NOT NULL DEFAULT '{}',
    uploaded_by uuid,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    processing_started_at timestamptz,
    processed_at timestamptz
);
CREATE UNIQUE INDEX documents_avatar_sha256_unique ON documents (avatar_id, sha256);
CREATE INDEX documents_avatar_index ON documents (avatar_id, created_at);
CREATE INDEX documents_waiting_index ON documents (project_id, created_at)
    WHERE status IN ('uploaded', 'processing');

CREATE TABLE document_chunks (
    id uuid PRIMARY KEY,
    document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    project_id uuid NOT NULL,
    avatar_id uuid NOT NULL,
    ordinal integer NOT NULL,
    page integer,
    text text NOT NULL,
    token_count integer NOT NULL,
    embedding vector(384) NOT NULL,
    embedding_model text NOT NULL,
    search_vector tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
    chunk_metadata jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL,
    UNIQUE (document_id, ordinal)
);
CREATE INDEX document_chunks_avatar_index ON document_chunks (avatar_id);
CREATE INDEX document_chunks_embedding_index ON document_chunks
    USING hnsw (embedding vector_cosine_ops);
CREATE INDEX document_chunks_search_index ON document_chunks USING gin (search_vector);

CREATE TABLE blob_deletions (
    key text PRIMARY KEY,
    requested_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    last_error text
);
"#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "DROP TABLE blob_deletions; DROP TABLE document_chunks; DROP TABLE documents;",
            )
            .await?;
        Ok(())
    }
}
