//! End users (people who talk to avatars through a channel) and conversations with their
//! messages. Two modules' tables: `end_users` (module `end_users`), `conversations` and
//! `messages` (module `chat`), referring to each other by id only; erasing an end user erases
//! their conversations through the `EndUserDeleted` event.

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
CREATE TABLE end_users (
    id uuid PRIMARY KEY,
    project_id uuid NOT NULL,
    channel text NOT NULL CHECK (channel IN ('api', 'telegram')),
    external_id text NOT NULL,
    display_name text,
    raw_profile jsonb NOT NULL DEFAULT '{}',
    consent_flags jsonb NOT NULL DEFAULT '{}',
    messages_count integer NOT NULL DEFAULT 0,
    last_seen_at timestamptz,
    blocked_at timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    UNIQUE (project_id, channel, external_id)
);
CREATE INDEX end_users_project_index ON end_users (project_id, created_at);

CREATE TABLE conversations (
    id uuid PRIMARY KEY,
    project_id uuid NOT NULL,
    avatar_id uuid NOT NULL,
    channel text NOT NULL CHECK (channel IN ('playground', 'api', 'telegram')),
    end_user_id uuid,
    created_by uuid,
    title text,
    messages_count integer NOT NULL DEFAULT 0,
    last_message_at timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX conversations_project_index ON conversations (project_id, created_at);
CREATE INDEX conversations_end_user_index ON conversations (end_user_id) WHERE end_user_id IS NOT NULL;

CREATE TABLE messages (
    id uuid PRIMARY KEY,
    project_id uuid NOT NULL,
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role text NOT NULL CHECK (role IN ('user', 'assistant')),
    content text NOT NULL,
    sources jsonb NOT NULL DEFAULT '[]',
    prompt_tokens integer NOT NULL DEFAULT 0,
    completion_tokens integer NOT NULL DEFAULT 0,
    model text,
    finish_reason text,
    retrieval_ms integer,
    time_to_first_token_ms integer,
    total_ms integer,
    message_metadata jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL
);
CREATE INDEX messages_conversation_index ON messages (conversation_id, created_at, id);
"#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "DROP TABLE messages; DROP TABLE conversations; DROP TABLE end_users;",
            )
            .await?;
        Ok(())
    }
}
