//! Invitations to a project for people without an account yet: the owner adds an email, a
//! one-time token (stored hashed) is handed over, and whoever signs in with it becomes a member
//! with the invited role. At most one pending invitation per project and email.

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
CREATE TABLE project_invitations (
    id uuid PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    email text NOT NULL,
    role text NOT NULL CHECK (role IN ('owner', 'manager', 'operator', 'viewer')),
    token_hash text NOT NULL UNIQUE,
    invited_by uuid,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    accepted_at timestamptz,
    accepted_by uuid,
    revoked_at timestamptz
);
CREATE UNIQUE INDEX project_invitations_pending_index ON project_invitations (project_id, email)
    WHERE accepted_at IS NULL AND revoked_at IS NULL;
"#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE project_invitations;")
            .await?;
        Ok(())
    }
}
