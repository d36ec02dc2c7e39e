//! projects' member roles are cached in each process (`core::cache::ExactCaches`) and dropped
//! by the transaction that changes them: these triggers `pg_notify('cache_invalidation',
//! 'project:<id>')` when the project is deleted, restored or removed, or a membership of it is
//! added, changed or removed — whatever code (or psql session) makes the change. The
//! notification is delivered only if that transaction commits.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE FUNCTION projects_cache_invalidation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('cache_invalidation', 'project:' || OLD.id);
    ELSIF NEW.deleted_at IS DISTINCT FROM OLD.deleted_at THEN
        PERFORM pg_notify('cache_invalidation', 'project:' || NEW.id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER projects_cache_invalidation AFTER UPDATE OR DELETE ON projects
    FOR EACH ROW EXECUTE FUNCTION projects_cache_invalidation();

CREATE FUNCTION project_members_cache_invalidation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('cache_invalidation', 'project:' || OLD.project_id);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('cache_invalidation', 'project:' || NEW.project_id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER project_members_cache_invalidation AFTER INSERT OR UPDATE OR DELETE
    ON project_members FOR EACH ROW EXECUTE FUNCTION project_members_cache_invalidation();
"#;

const DOWN: &str = r#"
DROP TRIGGER project_members_cache_invalidation ON project_members;
DROP FUNCTION project_members_cache_invalidation();
DROP TRIGGER projects_cache_invalidation ON projects;
DROP FUNCTION projects_cache_invalidation();
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }
}
