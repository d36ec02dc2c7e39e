//! Avatars as read are cached in each process (`core::cache::ExactCaches`, tag
//! `avatar:<id>`) and dropped by the transaction that changes them: this trigger
//! `pg_notify('cache_invalidation', 'avatar:<id>')` when an avatar is updated (soft deletion
//! included) or deleted. A new avatar needs no notification: nothing cached can be missing it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE FUNCTION avatars_cache_invalidation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cache_invalidation', 'avatar:' || OLD.id);
    RETURN NULL;
END $$;
CREATE TRIGGER avatars_cache_invalidation AFTER UPDATE OR DELETE ON avatars
    FOR EACH ROW EXECUTE FUNCTION avatars_cache_invalidation();
"#;

const DOWN: &str = r#"
DROP TRIGGER avatars_cache_invalidation ON avatars;
DROP FUNCTION avatars_cache_invalidation();
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
