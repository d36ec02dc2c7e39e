//! Notifications: where each user's platform notifications go (a Telegram chat linked with a
//! one-time code) and which events they want; every message sent (or not) to them; and the
//! platform's notifications bot — its mode, webhook secret, poller lease and offset, and the
//! updates it received (de-duplicated on `update_id`).

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
CREATE TABLE notification_settings (
    user_id uuid PRIMARY KEY,
    -- Set only by the link flow: the chat that sent `/start <code>` to the bot.
    telegram_chat_id bigint,
    linked_at timestamptz,
    -- The events the user wants, by name (a JSON array of strings).
    events jsonb NOT NULL,
    -- The pending one-time link code, hashed.
    link_code_hash text UNIQUE,
    link_code_expires_at timestamptz,
    updated_at timestamptz NOT NULL
);

CREATE TABLE notification_deliveries (
    id uuid PRIMARY KEY,
    -- The domain event (or received update) it answers: one message per user and event.
    event_id uuid NOT NULL,
    user_id uuid,
    chat_id bigint NOT NULL,
    kind text NOT NULL,
    text text NOT NULL,
    status text NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    created_at timestamptz NOT NULL,
    sent_at timestamptz
);
CREATE UNIQUE INDEX notification_deliveries_once
    ON notification_deliveries (event_id, user_id) NULLS NOT DISTINCT;
CREATE INDEX notification_deliveries_by_user
    ON notification_deliveries (user_id, created_at DESC);
CREATE INDEX notification_deliveries_by_age ON notification_deliveries (created_at);

CREATE TABLE notification_bot (
    id smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    bot_id bigint NOT NULL,
    -- None until getMe answered for this token.
    bot_username text,
    mode text NOT NULL CHECK (mode IN ('webhook', 'polling')),
    webhook_secret text,
    last_error text,
    poll_holder uuid,
    poll_lease_until timestamptz,
    poll_offset bigint,
    updated_at timestamptz NOT NULL
);

CREATE TABLE notification_bot_updates (
    bot_id bigint NOT NULL,
    update_id bigint NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (bot_id, update_id)
);
CREATE INDEX notification_bot_updates_by_age ON notification_bot_updates (received_at);
"#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "DROP TABLE notification_bot_updates; DROP TABLE notification_bot; \
                 DROP TABLE notification_deliveries; DROP TABLE notification_settings;",
            )
            .await?;
        Ok(())
    }
}
