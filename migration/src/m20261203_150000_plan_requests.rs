//! Plan requests: a project owner asks for another plan, the saas_admin approves (the plan
//! changes at once) or rejects, each with a comment. At most one pending request per project.

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
CREATE TABLE plan_requests (
    id uuid PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    plan_code text NOT NULL,
    comment text,
    status text NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    requested_by uuid,
    resolved_by uuid,
    resolution_comment text,
    created_at timestamptz NOT NULL,
    resolved_at timestamptz
);
CREATE UNIQUE INDEX plan_requests_one_pending_index ON plan_requests (project_id)
    WHERE status = 'pending';
CREATE INDEX plan_requests_status_index ON plan_requests (status, created_at DESC);
"#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE plan_requests;")
            .await?;
        Ok(())
    }
}
