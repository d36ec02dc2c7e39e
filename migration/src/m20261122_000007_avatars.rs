//! Avatars: an AI consultant of a project, with its LLM and retrieval settings.

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
CREATE TABLE avatars (
    id uuid PRIMARY KEY,
    project_id uuid NOT NULL,
    name text NOT NULL,
    description text,
    system_prompt text NOT NULL,
    greeting text,
    llm_model text NOT NULL,
    llm_temperature real NOT NULL,
    llm_max_tokens integer NOT NULL,
    rag_top_k integer NOT NULL,
    rag_similarity_threshold real NOT NULL,
    rag_chunk_size integer NOT NULL,
    rag_chunk_overlap integer NOT NULL,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    deleted_at timestamptz,
    CHECK (rag_chunk_overlap < rag_chunk_size)
);
CREATE INDEX avatars_project_index ON avatars (project_id, created_at) WHERE deleted_at IS NULL;
"#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE avatars;")
            .await?;
        Ok(())
    }
}
