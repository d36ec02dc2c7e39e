//! The queue: fang's task table, enqueueing inside a caller's transaction, cron schedules.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use fang::asynk::async_queue::AsyncQueue;
use fang::{AsyncRunnable, FangError, Scheduled};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, FromQueryResult, Statement, TransactionTrait};
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::core::clock::Clock;
use crate::core::config::{DatabaseSettings, JobSettings};
use crate::core::db::Db;

use super::task_error;

/// Enqueues and schedules tasks.
#[derive(Clone)]
pub struct JobQueue {
    pub(super) db: Db,
    pub(super) fang: AsyncQueue,
    /// Whose time tasks are scheduled by.
    pub(super) clock: Arc<dyn Clock>,
}

#[derive(Debug, FromQueryResult)]
pub(super) struct TaskRow {
    pub(super) id: Uuid,
    pub(super) metadata: serde_json::Value,
    pub(super) retries: i32,
    pub(super) task_type: String,
}

impl JobQueue {
    /// Connects fang's own queue pool (fang keeps a separate sqlx pool; tasks receive it).
    pub async fn connect(
        db: Db,
        clock: Arc<dyn Clock>,
        database: &DatabaseSettings,
        settings: &JobSettings,
    ) -> Result<Self, FangError> {
        let mut fang = AsyncQueue::builder()
            .uri(database.url.expose_secret().to_owned())
            .max_pool_size(settings.queue_pool_size)
            .build();
        fang.connect().await.map_err(task_error)?;
        Ok(JobQueue { db, fang, clock })
    }

    pub fn fang(&self) -> &AsyncQueue {
        &self.fang
    }

    /// Enqueues `task` now, outside any transaction.
    pub async fn enqueue(&self, task: &dyn AsyncRunnable) -> Result<Uuid, DbErr> {
        enqueue_in(self.db.connection(), task, self.clock.now()).await
    }

    /// Makes sure one instance of a cron task is waiting (several processes may start at once:
    /// the check and insert are serialized by an advisory lock).
    pub async fn ensure_scheduled(&self, task: &dyn AsyncRunnable) -> Result<(), DbErr> {
        schedule_next(&self.db, task, self.clock.now()).await
    }
}

/// When a task is due: its own time if it has one, else `now` (the app clock's).
fn due_at(task: &dyn AsyncRunnable, now: DateTime<Utc>) -> DateTime<Utc> {
    match task.cron() {
        Some(Scheduled::ScheduleOnce(at)) => at,
        _ => now,
    }
}

/// Enqueues `task` on `conn`, due at once (`now`, the app clock's) unless it names its time —
/// pass a unit of work to make the task exist exactly when the transaction commits (fang's own
/// queue cannot join a SeaORM transaction).
pub async fn enqueue_in<C: ConnectionTrait>(
    conn: &C,
    task: &dyn AsyncRunnable,
    now: DateTime<Utc>,
) -> Result<Uuid, DbErr> {
    let metadata = serde_json::to_value(task).map_err(|error| DbErr::Custom(error.to_string()))?;
    let scheduled_at = due_at(task, now);
    let id = Uuid::new_v4();
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO fang_tasks (id, metadata, task_type, scheduled_at) VALUES ($1, $2, $3, $4)",
        [
            id.into(),
            metadata.into(),
            task.task_type().into(),
            scheduled_at.into(),
        ],
    ))
    .await?;
    Ok(id)
}

/// The `fang_tasks` row of a task, for a statement that inserts it along with the work it
/// belongs to (`INSERT ... SELECT` from a data-modifying CTE: one round trip, all or nothing).
/// Serialised, it is one element of a batch that such a statement unpacks with
/// `jsonb_to_recordset`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewTask {
    pub id: Uuid,
    pub metadata: serde_json::Value,
    pub task_type: String,
    pub scheduled_at: DateTime<Utc>,
}

/// The row `task` would be enqueued as, due at once (`now`) unless it names its time.
pub fn task_row(task: &dyn AsyncRunnable, now: DateTime<Utc>) -> Result<NewTask, DbErr> {
    Ok(NewTask {
        id: Uuid::new_v4(),
        metadata: serde_json::to_value(task).map_err(|error| DbErr::Custom(error.to_string()))?,
        task_type: task.task_type(),
        scheduled_at: due_at(task, now),
    })
}

/// Like [`enqueue_in`], unless a task with the same `key` is still waiting or running (as
/// this transaction sees it): then nothing is added and `None` is returned. For idempotent work
/// that one run settles for everyone (an index build), so that asking again while it is queued
/// costs nothing. A transaction that enqueues a key another uncommitted one has just added
/// waits for it, and adds nothing once it commits: a partial unique index (migration
/// `m20261204_180000`) holds at most one active task per key.
pub async fn enqueue_unique_in<C: ConnectionTrait>(
    conn: &C,
    task: &dyn AsyncRunnable,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Option<Uuid>, DbErr> {
    use sha2::Digest;
    let metadata = serde_json::to_value(task).map_err(|error| DbErr::Custom(error.to_string()))?;
    let scheduled_at = due_at(task, now);
    // `key:` puts it under the partial unique index of migration `m20261204_180000`.
    let uniq_hash = format!("key:{}", hex::encode(sha2::Sha256::digest(key.as_bytes())));
    let id = Uuid::new_v4();
    let inserted = conn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO fang_tasks (id, metadata, task_type, scheduled_at, uniq_hash) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (uniq_hash) WHERE uniq_hash LIKE 'key:%' \
                 AND state IN ('new', 'retried', 'in_progress') DO NOTHING",
            [
                id.into(),
                metadata.into(),
                task.task_type().into(),
                scheduled_at.into(),
                uniq_hash.into(),
            ],
        ))
        .await?;
    Ok((inserted.rows_affected() == 1).then_some(id))
}

/// Next run time of a cron task after `now`, from its pattern (UTC).
fn next_cron_run(
    task: &dyn AsyncRunnable,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    match task.cron() {
        Some(Scheduled::CronPattern(pattern)) => {
            let schedule = cron::Schedule::from_str(&pattern)
                .map_err(|error| DbErr::Custom(format!("cron `{pattern}`: {error}")))?;
            Ok(schedule.after(&now).next())
        }
        Some(Scheduled::ScheduleOnce(at)) => Ok(Some(at)),
        None => Ok(None),
    }
}

pub(super) async fn schedule_next(
    db: &Db,
    task: &dyn AsyncRunnable,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let Some(next_run) = next_cron_run(task, now)? else {
        return Ok(());
    };
    let metadata = serde_json::to_value(task).map_err(|error| DbErr::Custom(error.to_string()))?;
    // The lock is its own statement: the INSERT's snapshot then starts after the lock is held
    // and sees a row another scheduler committed meanwhile.
    let transaction = db.connection().begin().await?;
    transaction
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtext($1::text))",
            [metadata.to_string().into()],
        ))
        .await?;
    transaction
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO fang_tasks (id, metadata, task_type, scheduled_at) \
             SELECT $1, $2, $3, $4 \
             WHERE NOT EXISTS (SELECT 1 FROM fang_tasks \
                               WHERE metadata = $2 AND state IN ('new', 'retried'))",
            [
                Uuid::new_v4().into(),
                metadata.into(),
                task.task_type().into(),
                next_run.into(),
            ],
        ))
        .await?;
    transaction.commit().await
}

/// The values of `field` in the metadata of the tasks of type `name` (their typetag name) that
/// are waiting or running: which subjects already have a task (the documents being indexed,
/// say), for a recovery that queues one for those that lost theirs.
pub async fn pending_task_keys<C: ConnectionTrait>(
    conn: &C,
    name: &str,
    field: &str,
) -> Result<HashSet<String>, DbErr> {
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT DISTINCT metadata->>$2 AS key FROM fang_tasks \
             WHERE metadata->>'type' = $1 AND state IN ('new', 'retried', 'in_progress') \
               AND metadata->>$2 IS NOT NULL",
            [name.into(), field.into()],
        ))
        .await?;
    rows.iter().map(|row| row.try_get("", "key")).collect()
}

/// Counts of tasks by state, for `/metrics` and tests.
pub async fn task_counts(db: &Db) -> Result<HashMap<String, i64>, DbErr> {
    #[derive(FromQueryResult)]
    struct Count {
        state: String,
        count: i64,
    }
    let rows = Count::find_by_statement(Statement::from_string(
        DbBackend::Postgres,
        "SELECT state::text AS state, count(*) AS count FROM fang_tasks GROUP BY state",
    ))
    .all(db.connection())
    .await?;
    Ok(rows.into_iter().map(|row| (row.state, row.count)).collect())
}
