//! At most one active task per key of `core::jobs::enqueue_unique_in`, by a partial unique
//! index instead of a check: the check (`INSERT ... WHERE NOT EXISTS`) let two transactions
//! that enqueued the same key at once both insert, neither seeing the other's uncommitted row.
//! With the index the second waits for the first and then inserts nothing.
//!
//! Only the platform's keys are in it: their `uniq_hash` starts with `key:` (fang's own
//! hashes are bare hex, and fang reschedules its cron tasks in ways this index must not
//! refuse). Tasks queued before this migration keep their bare hashes.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX fang_tasks_active_key ON fang_tasks (uniq_hash) \
                 WHERE uniq_hash LIKE 'key:%' AND state IN ('new', 'retried', 'in_progress')",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX fang_tasks_active_key")
            .await?;
        Ok(())
    }
}
