//! fang's task table (the DDL fang ships for diesel, with core `gen_random_uuid()` instead of
//! the uuid-ossp extension) and the claim table that makes task side effects happen once.

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
CREATE TYPE fang_task_state AS ENUM ('new', 'in_progress', 'failed', 'finished', 'retried');

CREATE TABLE fang_tasks (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    metadata jsonb NOT NULL,
    error_message text,
    state fang_task_state NOT NULL DEFAULT 'new',
    task_type text NOT NULL DEFAULT 'common',
    uniq_hash text,
    retries integer NOT NULL DEFAULT 0,
    scheduled_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fang_tasks_state_index ON fang_tasks (state);
CREATE INDEX fang_tasks_type_index ON fang_tasks (task_type);
CREATE INDEX fang_tasks_scheduled_at_index ON fang_tasks (scheduled_at);
CREATE INDEX fang_tasks_uniq_hash ON fang_tasks (uniq_hash);

CREATE TABLE job_effects (
    key text PRIMARY KEY,
    claimed_at timestamptz NOT NULL DEFAULT now()
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
                "DROP TABLE job_effects; DROP TABLE fang_tasks; DROP TYPE fang_task_state;",
            )
            .await?;
        Ok(())
    }
}
