//! Resolved API keys are cached in each process (`core::cache::ExactCaches`, under their
//! project's tag) and dropped by the transaction that changes them: this trigger
//! `pg_notify('cache_invalidation', 'project:<id>')` when a key is revoked, deleted or changed
//! in anything but its `last_used_at` (which every use may touch, and the cache does not need
//! to be told about). A deleted project already notifies its tag.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE FUNCTION project_api_keys_cache_invalidation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('cache_invalidation', 'project:' || OLD.project_id);
    ELSIF to_jsonb(NEW) - 'last_used_at' IS DISTINCT FROM to_jsonb(OLD) - 'last_used_at' THEN
        PERFORM pg_notify('cache_invalidation', 'project:' || OLD.project_id);
        PERFORM pg_notify('cache_invalidation', 'project:' || NEW.project_id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER project_api_keys_cache_invalidation AFTER UPDATE OR DELETE ON project_api_keys
    FOR EACH ROW EXECUTE FUNCTION project_api_keys_cache_invalidation();
"#;

const DOWN: &str = r#"
DROP TRIGGER project_api_keys_cache_invalidation ON project_api_keys;
DROP FUNCTION project_api_keys_cache_invalidation();
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
