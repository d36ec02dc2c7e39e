//! A processing run owns its document by a run id and shows it is alive with a heartbeat, so
//! that a run whose worker died is recovered within seconds (instead of after a fixed half
//! hour), and a run that lost its document to a newer one can no longer write to it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE documents ADD COLUMN processing_run_id uuid, \
                 ADD COLUMN heartbeat_at timestamptz; \
                 CREATE INDEX documents_processing_heartbeat_index ON documents (heartbeat_at) \
                 WHERE status = 'processing';",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "DROP INDEX documents_processing_heartbeat_index; \
                 ALTER TABLE documents DROP COLUMN processing_run_id, DROP COLUMN heartbeat_at;",
            )
            .await?;
        Ok(())
    }
}
