//! The audit log: one entry per state-changing domain event (its id is the event's, so a
//! retried delivery writes nothing twice), kept independently of the event outbox.

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
CREATE TABLE audit_log (
    id uuid PRIMARY KEY,
    project_id uuid,
    actor_kind text NOT NULL CHECK (actor_kind IN ('user', 'api_key', 'anonymous', 'system')),
    actor_user_id uuid,
    actor_api_key_id uuid,
    action text NOT NULL,
    entity_type text NOT NULL,
    entity_id text,
    details jsonb NOT NULL,
    ip text,
    request_id text,
    occurred_at timestamptz NOT NULL
);
CREATE INDEX audit_log_project_index ON audit_log (project_id, occurred_at DESC, id DESC);
CREATE INDEX audit_log_time_index ON audit_log (occurred_at DESC, id DESC);
"#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE audit_log;")
            .await?;
        Ok(())
    }
}
