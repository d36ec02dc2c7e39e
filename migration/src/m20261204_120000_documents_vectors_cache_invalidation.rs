//! Small avatars' vectors are kept in each process for retrieval (`documents::vector_cache`,
//! in a `core::cache::ExactCaches` cache) and dropped by the transaction that changes them:
//! these triggers `pg_notify('cache_invalidation', 'avatar:<id>')` when chunks of the avatar are
//! updated (a vector stored or forgotten) or deleted — once per avatar per statement — and when
//! a document of it changes status or is deleted. The notification is delivered only if that
//! transaction commits. Inserted chunks need none: they belong to a document being processed,
//! which only counts once its status turns `ready` (and that notifies), so ingestion's bulk
//! inserts carry no trigger.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE FUNCTION documents_chunks_cache_invalidation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cache_invalidation', 'avatar:' || avatar_id)
        FROM (SELECT DISTINCT avatar_id FROM changed_chunks) avatars;
    RETURN NULL;
END $$;
CREATE TRIGGER document_chunks_updated_cache_invalidation AFTER UPDATE ON document_chunks
    REFERENCING NEW TABLE AS changed_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION documents_chunks_cache_invalidation();
CREATE TRIGGER document_chunks_deleted_cache_invalidation AFTER DELETE ON document_chunks
    REFERENCING OLD TABLE AS changed_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION documents_chunks_cache_invalidation();

CREATE FUNCTION documents_status_cache_invalidation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('cache_invalidation', 'avatar:' || OLD.avatar_id);
    ELSIF NEW.status IS DISTINCT FROM OLD.status OR NEW.avatar_id IS DISTINCT FROM OLD.avatar_id
    THEN
        PERFORM pg_notify('cache_invalidation', 'avatar:' || OLD.avatar_id);
        PERFORM pg_notify('cache_invalidation', 'avatar:' || NEW.avatar_id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER documents_cache_invalidation AFTER UPDATE OR DELETE ON documents
    FOR EACH ROW EXECUTE FUNCTION documents_status_cache_invalidation();
"#;

const DOWN: &str = r#"
DROP TRIGGER documents_cache_invalidation ON documents;
DROP FUNCTION documents_status_cache_invalidation();
DROP TRIGGER document_chunks_deleted_cache_invalidation ON document_chunks;
DROP TRIGGER document_chunks_updated_cache_invalidation ON document_chunks;
DROP FUNCTION documents_chunks_cache_invalidation();
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
