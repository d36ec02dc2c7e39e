//! The event outbox and one delivery row per (event, subscriber).

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
CREATE TABLE event_outbox (
    id uuid PRIMARY KEY,
    event_type text NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_outbox_created_at_index ON event_outbox (created_at);

CREATE TABLE event_deliveries (
    event_id uuid NOT NULL REFERENCES event_outbox (id) ON DELETE CASCADE,
    subscriber text NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz,
    last_error text,
    delivered_at timestamptz,
    PRIMARY KEY (event_id, subscriber)
);
CREATE INDEX event_deliveries_due_index ON event_deliveries (next_attempt_at)
    WHERE status = 'pending';
"#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE event_deliveries; DROP TABLE event_outbox;")
            .await?;
        Ok(())
    }
}
