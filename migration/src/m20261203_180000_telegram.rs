//! Telegram: each project's bot, the updates received (de-duplicated on the bot and
//! `update_id`, handled by a job), and each chat's end user and current conversation.

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
CREATE TABLE telegram_bots (
    project_id uuid PRIMARY KEY,
    bot_id bigint NOT NULL UNIQUE,
    bot_username text NOT NULL,
    avatar_id uuid NOT NULL,
    mode text NOT NULL CHECK (mode IN ('webhook', 'polling')),
    status text NOT NULL CHECK (status IN ('active', 'failing')),
    last_error text,
    webhook_secret text,
    -- Polling: the process that polls (one per bot), until when, and the next update_id.
    poll_holder uuid,
    poll_lease_until timestamptz,
    poll_offset bigint,
    connected_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE telegram_updates (
    bot_id bigint NOT NULL,
    update_id bigint NOT NULL,
    project_id uuid NOT NULL,
    payload jsonb NOT NULL,
    received_at timestamptz NOT NULL,
    claimed_until timestamptz,
    handled_at timestamptz,
    PRIMARY KEY (bot_id, update_id)
);
CREATE INDEX telegram_updates_handled_index ON telegram_updates (handled_at)
    WHERE handled_at IS NOT NULL;

CREATE TABLE telegram_chats (
    bot_id bigint NOT NULL,
    chat_id bigint NOT NULL,
    project_id uuid NOT NULL,
    conversation_id uuid,
    -- The user blocked the bot: nothing is sent until they write again.
    blocked_bot_at timestamptz,
    -- A blocked end user was told once; later messages get no reply.
    refused_at timestamptz,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (bot_id, chat_id)
);
"#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE telegram_chats, telegram_updates, telegram_bots;")
            .await?;
        Ok(())
    }
}
