//! Per-avatar ANN indexes: one partial HNSW index per large avatar, on the partition of
//! `document_chunks` that holds its rows (the table is partitioned by the hash of `avatar_id`,
//! so a query on one avatar is planned against a thirty-second of the indexes):
//! `CREATE INDEX ... ON document_chunks_pNN USING hnsw (embedding vector_cosine_ops)
//! WHERE avatar_id = '<id>'`.
//!
//! A global HNSW index asked for one avatar's nearest chunks filters a graph built over every
//! tenant's vectors and misses most of the right rows (recall 0.91 at 100k chunks even with
//! iterative scans, docs/benchmarks.md). An index holding only the avatar's own chunks is an
//! unfiltered ANN search. Small avatars need none: scanning their own rows is exact and fast.
//!
//! The PostgreSQL catalog is the record of which avatars are indexed: an index is used only
//! when `pg_index` says it is valid and ready, so a build that died half-way (which leaves an
//! invalid index behind) is never queried, and the next build drops and redoes it. Builds run
//! `CONCURRENTLY` (writes to the avatar go on meanwhile) on a connection of their own, one at
//! a time per database (an advisory lock), with their own memory and time limits.

use sea_orm::sqlx::{self, AssertSqlSafe, Connection, Row};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use uuid::Uuid;

use crate::core::config::RetrievalSettings;
use crate::core::db::Db;
use crate::core::ids::AvatarId;

/// The name of the avatar's index (63 bytes at most, as PostgreSQL names are).
pub fn index_name(avatar_id: AvatarId) -> String {
    format!("document_chunks_hnsw_{}", avatar_id.uuid().simple())
}

/// What bringing an avatar's index in line with its size came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildOutcome {
    Built,
    /// A valid index was already there.
    AlreadyBuilt,
    /// The avatar has no ready chunks left (deleted or emptied): its index was dropped.
    Dropped,
    /// Small enough to be scanned exactly, and nothing to drop.
    NotNeeded,
    /// Another build holds the lock: try again later.
    Busy,
}

/// Advisory-lock key serializing index builds (builds on one table queue on its lock anyway;
/// the lock lets a waiting build step aside instead of holding a worker).
const BUILD_LOCK: &str = "documents:vector-index-build";

/// SQL: whether the index named by the expression `name` exists, valid and ready.
pub fn index_ready_sql(name: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid \
         WHERE c.relname = {name} AND c.relnamespace = current_schema()::regnamespace \
           AND i.indisvalid AND i.indisready)"
    )
}

/// SQL: the index name of the avatar id expression `avatar_id` (as [`index_name`] spells it).
pub fn index_name_sql(avatar_id: &str) -> String {
    format!("'document_chunks_hnsw_' || replace({avatar_id}::text, '-', '')")
}

#[cfg(feature = "testkit")]
pub async fn is_ready<C: ConnectionTrait>(conn: &C, avatar_id: AvatarId) -> Result<bool, DbErr> {
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!("SELECT {} AS ready", index_ready_sql("$1")),
            [index_name(avatar_id).into()],
        ))
        .await?;
    Ok(row
        .map(|row| row.try_get::<bool>("", "ready"))
        .transpose()?
        .unwrap_or(false))
}

fn sql_error(error: sqlx::Error) -> DbErr {
    DbErr::Custom(format!("index build: {error}"))
}

/// Brings the avatar's index in line with its size, under the build lock (so the decision
/// and the DDL see the same state, and a drop never waits behind another avatar's build):
/// builds it when the avatar has more than `exact_scan_max_chunks` ready chunks and no valid
/// index, drops it when the avatar has none left. Runs on a connection taken out of the pool
/// for good: session settings and the advisory lock end with it, whatever happens, and a build
/// whose caller gave up is cancelled by the server (`client_connection_check_interval`).
pub async fn build(
    db: &Db,
    settings: &RetrievalSettings,
    avatar_id: AvatarId,
) -> Result<BuildOutcome, DbErr> {
    let pool = db.connection().get_postgres_connection_pool();
    let mut conn = pool.acquire().await.map_err(sql_error)?.detach();
    let outcome = build_on(&mut conn, settings, avatar_id).await;
    // Closing ends the session: the lock and settings go with it.
    let _ = conn.close().await;
    outcome
}

async fn build_on(
    conn: &mut sqlx::PgConnection,
    settings: &RetrievalSettings,
    avatar_id: AvatarId,
) -> Result<BuildOutcome, DbErr> {
    let locked: bool = sqlx::query("SELECT pg_try_advisory_lock(hashtext($1)) AS locked")
        .bind(BUILD_LOCK)
        .fetch_one(&mut *conn)
        .await
        .and_then(|row| row.try_get("locked"))
        .map_err(sql_error)?;
    if !locked {
        return Ok(BuildOutcome::Busy);
    }
    let size: i64 = sqlx::query(
        "SELECT coalesce(sum(chunks_count), 0)::bigint AS size FROM documents \
         WHERE avatar_id = $1 AND status = 'ready'",
    )
    .bind(avatar_id.uuid())
    .fetch_one(&mut *conn)
    .await
    .and_then(|row| row.try_get("size"))
    .map_err(sql_error)?;
    let name = index_name(avatar_id);
    if size <= settings.exact_scan_max_chunks {
        if size > 0 {
            return Ok(BuildOutcome::NotNeeded);
        }
        let dropped = sqlx::query("SELECT to_regclass($1) IS NOT NULL AS present")
            .bind(&name)
            .fetch_one(&mut *conn)
            .await
            .and_then(|row| row.try_get::<bool, _>("present"))
            .map_err(sql_error)?;
        if !dropped {
            return Ok(BuildOutcome::NotNeeded);
        }
        // `name` is made of a UUID's hex digits.
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {name}"
        )))
        .execute(&mut *conn)
        .await
        .map_err(sql_error)?;
        return Ok(BuildOutcome::Dropped);
    }
    let state: Option<(bool, bool)> = sqlx::query_as(
        "SELECT i.indisvalid, i.indisready FROM pg_class c \
         JOIN pg_index i ON i.indexrelid = c.oid \
         WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace",
    )
    .bind(&name)
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql_error)?;
    match state {
        Some((true, true)) => return Ok(BuildOutcome::AlreadyBuilt),
        // What a build that died half-way leaves behind: unusable, and in the way.
        Some(_) => {
            // `name` is made of a UUID's hex digits.
            sqlx::raw_sql(AssertSqlSafe(format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {name}"
            )))
            .execute(&mut *conn)
            .await
            .map_err(sql_error)?;
        }
        None => {}
    }
    // The partition holding the avatar's rows (`document_chunks` is partitioned by the hash of
    // `avatar_id`): the index goes there, so the planner meets it only in queries that are
    // pruned to that partition. None left: deleted since the size was read.
    let partition: Option<String> = sqlx::query_scalar(
        "SELECT c.tableoid::regclass::text FROM document_chunks c WHERE c.avatar_id = $1 LIMIT 1",
    )
    .bind(avatar_id.uuid())
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql_error)?;
    let Some(partition) = partition else {
        return Ok(BuildOutcome::NotNeeded);
    };
    let timeout_ms = settings.index_build_timeout().as_millis();
    // Settings are validated at start (numbers; the memory size is digits and a unit), and
    // the avatar id is a UUID: nothing here comes from a request.
    for statement in [
        format!(
            "SET maintenance_work_mem = '{}'",
            settings.index_build_memory
        ),
        format!("SET statement_timeout = {timeout_ms}"),
        "SET client_connection_check_interval = '5s'".to_owned(),
        // `partition` is a name PostgreSQL printed (`regclass`, quoted where needed).
        format!(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {partition} \
             USING hnsw (embedding vector_cosine_ops) \
             WITH (m = {m}, ef_construction = {ef}) \
             WHERE avatar_id = '{avatar_id}'",
            m = settings.hnsw_m,
            ef = settings.hnsw_ef_construction,
        ),
    ] {
        sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&mut *conn)
            .await
            .map_err(sql_error)?;
    }
    Ok(BuildOutcome::Built)
}

/// Avatars with more than `min_chunks` ready chunks and no valid index: what the periodic
/// check queues builds for.
pub async fn unindexed_large_avatars(db: &Db, min_chunks: i64) -> Result<Vec<AvatarId>, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "SELECT avatar_id FROM documents WHERE status = 'ready' \
                 GROUP BY avatar_id HAVING sum(chunks_count) > $1 AND NOT {}",
                index_ready_sql(&index_name_sql("avatar_id"))
            ),
            [min_chunks.into()],
        ))
        .await?;
    rows.into_iter()
        .map(|row| row.try_get::<AvatarId>("", "avatar_id"))
        .collect()
}

/// Avatars with an index of their own but no ready chunks left (deleted, emptied): what the
/// periodic check queues a drop for, should the one queued at deletion have been lost.
pub async fn orphaned_indexes(db: &Db) -> Result<Vec<AvatarId>, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT substr(c.relname, 22) AS avatar FROM pg_class c \
             JOIN pg_index i ON i.indexrelid = c.oid \
             WHERE c.relname LIKE 'document\\_chunks\\_hnsw\\_%' \
               AND c.relnamespace = current_schema()::regnamespace \
               AND NOT EXISTS (SELECT 1 FROM documents d WHERE d.status = 'ready' \
                   AND 'document_chunks_hnsw_' || replace(d.avatar_id::text, '-', '') = c.relname)",
        ))
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| row.try_get::<String>("", "avatar").ok())
        .filter_map(|hex| Uuid::parse_str(&hex).ok())
        .map(AvatarId::from_uuid)
        .collect())
}
