//! auth's sessions are cached in each process (`core::cache::ExactCaches`) and dropped by the
//! transaction that changes them: these triggers `pg_notify('cache_invalidation',
//! 'user:<id>')` when a user's role or active flag changes, the user is deleted, or one of
//! their refresh tokens is revoked or deleted — whatever code (or psql session) makes the
//! change. The notification is delivered only if that transaction commits.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE FUNCTION auth_users_cache_invalidation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('cache_invalidation', 'user:' || OLD.id);
    ELSIF NEW.role IS DISTINCT FROM OLD.role OR NEW.is_active IS DISTINCT FROM OLD.is_active THEN
        PERFORM pg_notify('cache_invalidation', 'user:' || NEW.id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER users_cache_invalidation AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION auth_users_cache_invalidation();

CREATE FUNCTION auth_refresh_tokens_cache_invalidation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('cache_invalidation', 'user:' || OLD.user_id);
    ELSIF NEW.revoked_at IS DISTINCT FROM OLD.revoked_at OR NEW.user_id IS DISTINCT FROM OLD.user_id
        OR NEW.family_id IS DISTINCT FROM OLD.family_id THEN
        PERFORM pg_notify('cache_invalidation', 'user:' || OLD.user_id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER refresh_tokens_cache_invalidation AFTER UPDATE OR DELETE ON refresh_tokens
    FOR EACH ROW EXECUTE FUNCTION auth_refresh_tokens_cache_invalidation();
"#;

const DOWN: &str = r#"
DROP TRIGGER refresh_tokens_cache_invalidation ON refresh_tokens;
DROP FUNCTION auth_refresh_tokens_cache_invalidation();
DROP TRIGGER users_cache_invalidation ON users;
DROP FUNCTION auth_users_cache_invalidation();
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
