//! `document_chunks` partitioned by the hash of `avatar_id` into 32 tables. A large avatar's
//! partial HNSW index (`documents::vector_index`) is built on its partition only, and a query
//! naming one avatar is planned against that partition alone: the planner tests each partial
//! index's predicate (about 8 µs each), so with every such index on one table, a thousand
//! large avatars cost every query on the table 8 ms of planning (docs/benchmarks.md).
//!
//! Keys hold the partition key, as PostgreSQL requires: the primary key is `(id, avatar_id)`
//! and the unique chunk position `(document_id, ordinal, avatar_id)` (still led by the
//! document, for its cascade and the ingestion's statements). Existing rows are copied; the
//! large avatars' indexes go with the old table and are built again by the periodic check.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Partitions of `document_chunks`. Changing it means another migration that moves the rows.
const PARTITIONS: u32 = 32;

/// The chunks' keys, indexes and cache triggers, on the table `document_chunks` is now.
const KEYS_AND_TRIGGERS: &str = r#"
ALTER TABLE document_chunks ADD PRIMARY KEY (id, avatar_id);
ALTER TABLE document_chunks ADD CONSTRAINT document_chunks_position_key
    UNIQUE (document_id, ordinal, avatar_id);
ALTER TABLE document_chunks ADD CONSTRAINT document_chunks_document_id_fkey
    FOREIGN KEY (document_id) REFERENCES documents (id) ON DELETE CASCADE;
CREATE INDEX document_chunks_avatar_index ON document_chunks (avatar_id);
CREATE INDEX document_chunks_search_index ON document_chunks USING gin (search_vector);
CREATE TRIGGER document_chunks_updated_cache_invalidation AFTER UPDATE ON document_chunks
    REFERENCING NEW TABLE AS changed_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION documents_chunks_cache_invalidation();
CREATE TRIGGER document_chunks_deleted_cache_invalidation AFTER DELETE ON document_chunks
    REFERENCING OLD TABLE AS changed_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION documents_chunks_cache_invalidation();
"#;

fn up_sql() -> String {
    format!(
        r#"
ALTER TABLE document_chunks RENAME TO document_chunks_unpartitioned;
CREATE TABLE document_chunks (LIKE document_chunks_unpartitioned INCLUDING DEFAULTS)
    PARTITION BY HASH (avatar_id);
DO $$
BEGIN
    FOR remainder IN 0..{last} LOOP
        EXECUTE format(
            'CREATE TABLE document_chunks_p%s PARTITION OF document_chunks '
            'FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER %s)',
            lpad(remainder::text, 2, '0'), remainder);
    END LOOP;
END $$;
INSERT INTO document_chunks SELECT * FROM document_chunks_unpartitioned;
DROP TABLE document_chunks_unpartitioned;
{KEYS_AND_TRIGGERS}
"#,
        last = PARTITIONS - 1
    )
}

fn down_sql() -> String {
    format!(
        r#"
ALTER TABLE document_chunks RENAME TO document_chunks_partitioned;
CREATE TABLE document_chunks (LIKE document_chunks_partitioned INCLUDING DEFAULTS);
INSERT INTO document_chunks SELECT * FROM document_chunks_partitioned;
DROP TABLE document_chunks_partitioned;
{}
"#,
        KEYS_AND_TRIGGERS
            .replace("(id, avatar_id)", "(id)")
            .replace(
                "UNIQUE (document_id, ordinal, avatar_id)",
                "UNIQUE (document_id, ordinal)"
            )
    )
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&up_sql())
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&down_sql())
            .await?;
        Ok(())
    }
}
