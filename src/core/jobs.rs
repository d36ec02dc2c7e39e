//! Background jobs on fang's task model and table, run by supervised workers.
//!
//! Tasks are fang `AsyncRunnable`s (typetag-named, with `max_retries`, `backoff`, `cron`) stored
//! in `fang_tasks`. fang 0.11's own worker has two defects measured on this stack
//! (docs/jobs.md): its claim is a `SELECT ... FOR UPDATE SKIP LOCKED` outside a transaction
//! followed by a separate `UPDATE`, so competing workers run some tasks twice; and a task that
//! does not deserialize ends its worker for good with the row left `in_progress`. So the
//! workers here are ours, over fang's table and trait:
//! - a task is claimed by one atomic `UPDATE ... WHERE id = (SELECT ... SKIP LOCKED)`;
//! - a row that does not decode is marked `failed` with the reason and the worker goes on;
//! - every run has a timeout (`jobs.task_timeout_secs`, or its task type's own, see
//!   [`JobContext::with_timeout`]) and panics are caught; failures retry with the task's
//!   backoff until `max_retries`, then stay visible as `failed`;
//! - a running task's row gets a heartbeat, so only a dead worker's rows look stale;
//! - a worker that stops for any reason is restarted by its pool;
//! - the sweeper (a cron task) puts `in_progress` rows whose worker died back in the queue.
//!
//! Tasks still must be idempotent (a crash after the effect and before the acknowledgement
//! re-runs them): guard a side effect with [`claim_effect`] in the effect's own transaction.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fang::asynk::async_queue::{AsyncQueue, AsyncQueueable};
use fang::{AsyncRunnable, FangError, Scheduled};
use futures_util::FutureExt;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, FromQueryResult, Statement, TransactionTrait};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::core::config::{DatabaseSettings, JobSettings};
use crate::core::db::Db;

/// Everything a task may need, handed to it through a task-local while it runs (fang's
/// `run` receives only the queue). Modules add their services with [`JobContext::with`].
#[derive(Clone)]
pub struct JobContext {
    pub db: Db,
    pub settings: JobSettings,
    extensions: Arc<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    /// Run-time limits of task types that legitimately run longer than `task_timeout_secs`.
    timeouts: Arc<HashMap<String, Duration>>,
    /// Turns true when the worker pool shuts down (set by [`WorkerPool::start`]).
    shutdown: Option<watch::Receiver<bool>>,
}

tokio::task_local! {
    static JOB_CONTEXT: JobContext;
}

impl JobContext {
    pub fn new(db: Db, settings: JobSettings) -> Self {
        JobContext {
            db,
            settings,
            extensions: Arc::new(HashMap::new()),
            timeouts: Arc::new(HashMap::new()),
            shutdown: None,
        }
    }

    /// Resolves when the workers are shutting down: a long task can then stop early and leave
    /// its work to be resumed, instead of holding the shutdown for its whole grace period.
    /// Never resolves outside a worker pool.
    pub async fn stopping(&self) {
        match self.shutdown.clone() {
            Some(mut shutdown) => {
                let _ = shutdown.wait_for(|stopping| *stopping).await;
            }
            None => std::future::pending().await,
        }
    }

    /// Gives the task type `task` (its typetag name) its own run-time limit.
    pub fn with_timeout(mut self, task: &str, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.timeouts).insert(task.to_owned(), timeout);
        self
    }

    /// How long a run of the task type `task` may take.
    pub fn timeout_for(&self, task: &str) -> Duration {
        self.timeouts
            .get(task)
            .copied()
            .unwrap_or_else(|| self.settings.task_timeout())
    }

    /// Adds a shared value (a service, a client) that tasks can fetch by type.
    pub fn with<T: Any + Send + Sync>(mut self, value: Arc<T>) -> Self {
        Arc::make_mut(&mut self.extensions).insert(TypeId::of::<T>(), value);
        self
    }

    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.extensions
            .get(&TypeId::of::<T>())
            .and_then(|value| value.clone().downcast::<T>().ok())
    }

    /// The context of the task running on this tokio task.
    pub fn current() -> Result<JobContext, FangError> {
        JOB_CONTEXT.try_with(Clone::clone).map_err(|_| FangError {
            description: "no job context: tasks run only inside a worker".into(),
        })
    }
}

/// Turns any error into fang's error type, keeping its message.
pub fn task_error(error: impl std::fmt::Display) -> FangError {
    FangError {
        description: error.to_string(),
    }
}

/// Claims the side effect named `key` for the transaction `conn` belongs to. Returns false if
/// it was already claimed (the task ran before), so the effect is skipped. Because the claim
/// commits or rolls back with the effect, the effect happens exactly once however often fang
/// runs the task.
pub async fn claim_effect<C: ConnectionTrait>(conn: &C, key: &str) -> Result<bool, DbErr> {
    let result = conn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO job_effects (key) VALUES ($1) ON CONFLICT (key) DO NOTHING",
            [key.into()],
        ))
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Enqueues and schedules tasks.
#[derive(Clone)]
pub struct JobQueue {
    db: Db,
    fang: AsyncQueue,
}

#[derive(Debug, FromQueryResult)]
struct TaskRow {
    id: Uuid,
    metadata: serde_json::Value,
    retries: i32,
    task_type: String,
}

impl JobQueue {
    /// Connects fang's own queue pool (fang keeps a separate sqlx pool; tasks receive it).
    pub async fn connect(
        db: Db,
        database: &DatabaseSettings,
        settings: &JobSettings,
    ) -> Result<Self, FangError> {
        let mut fang = AsyncQueue::builder()
            .uri(database.url.expose_secret().to_owned())
            .max_pool_size(settings.queue_pool_size)
            .build();
        fang.connect().await.map_err(task_error)?;
        Ok(JobQueue { db, fang })
    }

    pub fn fang(&self) -> &AsyncQueue {
        &self.fang
    }

    /// Enqueues `task` now, outside any transaction.
    pub async fn enqueue(&self, task: &dyn AsyncRunnable) -> Result<Uuid, DbErr> {
        enqueue_in(self.db.connection(), task).await
    }

    /// Makes sure one instance of a cron task is waiting (several processes may start at once:
    /// the check and insert are serialized by an advisory lock).
    pub async fn ensure_scheduled(&self, task: &dyn AsyncRunnable) -> Result<(), DbErr> {
        schedule_next(&self.db, task).await
    }
}

/// Enqueues `task` on `conn` — pass a unit of work to make the task exist exactly when the
/// transaction commits (fang's own queue cannot join a SeaORM transaction).
pub async fn enqueue_in<C: ConnectionTrait>(
    conn: &C,
    task: &dyn AsyncRunnable,
) -> Result<Uuid, DbErr> {
    let metadata = serde_json::to_value(task).map_err(|error| DbErr::Custom(error.to_string()))?;
    let scheduled_at = match task.cron() {
        Some(Scheduled::ScheduleOnce(at)) => at,
        _ => Utc::now(),
    };
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

/// Like [`enqueue_in`], unless a task with the same `key` is still waiting or running (as
/// this transaction sees it): then nothing is added and `None` is returned. For idempotent work
/// that one run settles for everyone (an index build), so that asking again while it is queued
/// costs nothing. Two transactions enqueueing at the same moment may both add one.
pub async fn enqueue_unique_in<C: ConnectionTrait>(
    conn: &C,
    task: &dyn AsyncRunnable,
    key: &str,
) -> Result<Option<Uuid>, DbErr> {
    use sha2::Digest;
    let metadata = serde_json::to_value(task).map_err(|error| DbErr::Custom(error.to_string()))?;
    let scheduled_at = match task.cron() {
        Some(Scheduled::ScheduleOnce(at)) => at,
        _ => Utc::now(),
    };
    let uniq_hash = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    let id = Uuid::new_v4();
    let inserted = conn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO fang_tasks (id, metadata, task_type, scheduled_at, uniq_hash) \
             SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS ( \
                 SELECT 1 FROM fang_tasks WHERE uniq_hash = $5 \
                 AND state IN ('new', 'retried', 'in_progress'))",
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

/// Next run time of a cron task, from its pattern (UTC).
fn next_cron_run(task: &dyn AsyncRunnable) -> Result<Option<DateTime<Utc>>, DbErr> {
    match task.cron() {
        Some(Scheduled::CronPattern(pattern)) => {
            let schedule = cron::Schedule::from_str(&pattern)
                .map_err(|error| DbErr::Custom(format!("cron `{pattern}`: {error}")))?;
            Ok(schedule.upcoming(Utc).next())
        }
        Some(Scheduled::ScheduleOnce(at)) => Ok(Some(at)),
        None => Ok(None),
    }
}

async fn schedule_next(db: &Db, task: &dyn AsyncRunnable) -> Result<(), DbErr> {
    let Some(next_run) = next_cron_run(task)? else {
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

/// A set of supervised workers. Dropping it does not stop them; call [`WorkerPool::shutdown`].
pub struct WorkerPool {
    shutdown: watch::Sender<bool>,
    workers: JoinSet<()>,
}

impl WorkerPool {
    /// Starts `count` workers polling every task type.
    pub fn start(queue: JobQueue, context: JobContext, count: usize) -> WorkerPool {
        let (shutdown, receiver) = watch::channel(false);
        let context = JobContext {
            shutdown: Some(receiver.clone()),
            ..context
        };
        let mut workers = JoinSet::new();
        for index in 0..count {
            let worker = Worker {
                queue: queue.clone(),
                context: context.clone(),
                shutdown: receiver.clone(),
                index,
            };
            workers.spawn(worker.supervise());
        }
        WorkerPool { shutdown, workers }
    }

    /// Stops claiming new tasks and waits for running ones, up to `grace`.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let drained = tokio::time::timeout(grace, async {
            while self.workers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("jobs still running after {grace:?}; abandoning them to the sweeper");
            self.workers.abort_all();
        }
    }
}

struct Worker {
    queue: JobQueue,
    context: JobContext,
    shutdown: watch::Receiver<bool>,
    index: usize,
}

impl Worker {
    /// Runs the worker loop, restarting it if it ever ends (a panic included) while the pool
    /// is running. The loop runs on this task, so aborting the pool stops it.
    async fn supervise(self) {
        let worker = Arc::new(self);
        loop {
            let result = std::panic::AssertUnwindSafe(worker.clone().run_loop())
                .catch_unwind()
                .await;
            if *worker.shutdown.borrow() {
                return;
            }
            tracing::error!(
                worker = worker.index,
                panicked = result.is_err(),
                "job worker stopped; restarting"
            );
            metrics::counter!("jobs_worker_restarts_total").increment(1);
            tokio::time::sleep(worker.context.settings.poll_interval()).await;
        }
    }

    async fn run_loop(self: Arc<Self>) {
        let mut shutdown = self.shutdown.clone();
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.claim().await {
                Ok(Some(row)) => self.process(row).await,
                Ok(None) => {
                    tokio::select! {
                        _ = tokio::time::sleep(self.context.settings.poll_interval()) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(error) => {
                    tracing::error!(worker = self.index, "claiming a task failed: {error}");
                    tokio::select! {
                        _ = tokio::time::sleep(self.context.settings.poll_interval()) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
    }

    /// Takes one due task, atomically: no other worker can take the same row.
    async fn claim(&self) -> Result<Option<TaskRow>, DbErr> {
        TaskRow::find_by_statement(Statement::from_string(
            DbBackend::Postgres,
            "UPDATE fang_tasks SET state = 'in_progress', updated_at = now() \
             WHERE id = (SELECT id FROM fang_tasks \
                         WHERE state IN ('new', 'retried') AND scheduled_at <= now() \
                         ORDER BY scheduled_at, created_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING id, metadata, retries, task_type",
        ))
        .one(self.queue.db.connection())
        .await
    }

    async fn process(&self, row: TaskRow) {
        let name = row
            .metadata
            .get("type")
            .and_then(|value| value.as_str())
            .unwrap_or("unknown")
            .to_owned();
        let task: Box<dyn AsyncRunnable> = match serde_json::from_value(row.metadata.clone()) {
            Ok(task) => task,
            Err(error) => {
                let message = format!("task does not decode (unknown or renamed type?): {error}");
                tracing::error!(task_id = %row.id, task = %name, "{message}");
                self.finish(&row, &name, Finish::Fail(message)).await;
                return;
            }
        };
        if row.retries > task.max_retries() {
            let message = format!("gave up after {} attempts", row.retries);
            self.finish(&row, &name, Finish::Fail(message)).await;
            return;
        }

        let started = Instant::now();
        let timeout = self.context.timeout_for(&name);
        let run = JOB_CONTEXT.scope(
            self.context.clone(),
            std::panic::AssertUnwindSafe(task.run(&self.queue.fang)).catch_unwind(),
        );
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(timeout, run) => outcome,
            () = self.heartbeat(&row) => unreachable!("the heartbeat never ends"),
        };
        let result = match outcome {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(error))) => Err(error.description),
            Ok(Err(_panic)) => Err("task panicked".to_owned()),
            Err(_) => Err(format!("timed out after {} s", timeout.as_secs_f64())),
        };
        metrics::histogram!("job_duration_seconds", "task" => name.clone())
            .record(started.elapsed().as_secs_f64());

        let finish = match result {
            Ok(()) => Finish::Done,
            Err(message) if row.retries < task.max_retries() => {
                let delay = task.backoff(u32::try_from(row.retries).unwrap_or(0));
                Finish::Retry(message, Duration::from_secs(u64::from(delay)))
            }
            Err(message) => Finish::Fail(message),
        };
        self.finish(&row, &name, finish).await;
        if let Some(Scheduled::CronPattern(_)) = task.cron()
            && let Err(error) = schedule_next(&self.queue.db, task.as_ref()).await
        {
            tracing::error!(task = %name, "scheduling the next run failed: {error}");
        }
    }

    /// Keeps a running task's row fresh, so the sweeper never takes a long run (an index
    /// build) for a dead worker's. Never returns; dropped when the run ends.
    ///
    /// The heartbeat and the outcome touch the row only while it is still this run's: state
    /// `in_progress` with the `retries` it was claimed with (the sweeper's requeue adds one), so
    /// a run the sweeper gave away can neither keep the new one's row alive nor finish it.
    async fn heartbeat(&self, row: &TaskRow) {
        let every = Duration::from_secs((self.context.settings.stale_after_secs / 3).max(1));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            ticks.tick().await;
            if let Err(error) = self
                .queue
                .db
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "UPDATE fang_tasks SET updated_at = now() \
                     WHERE id = $1 AND state = 'in_progress' AND retries = $2",
                    [row.id.into(), row.retries.into()],
                ))
                .await
            {
                tracing::warn!(task_id = %row.id, "task heartbeat failed: {error}");
            }
        }
    }

    async fn finish(&self, row: &TaskRow, name: &str, finish: Finish) {
        let (statement, outcome) = match &finish {
            // Finished tasks are removed (fang's RemoveFinished); failures stay visible.
            Finish::Done => (
                Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "DELETE FROM fang_tasks WHERE id = $1 AND state = 'in_progress' AND retries = $2",
                    [row.id.into(), row.retries.into()],
                ),
                "finished",
            ),
            Finish::Retry(message, delay) => {
                tracing::warn!(task_id = %row.id, task = %name, retries = row.retries, "task failed, will retry: {message}");
                (
                    Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        "UPDATE fang_tasks SET state = 'retried', retries = retries + 1, \
                         error_message = $2, scheduled_at = now() + make_interval(secs => $3), \
                         updated_at = now() \
                         WHERE id = $1 AND state = 'in_progress' AND retries = $4",
                        [
                            row.id.into(),
                            message.clone().into(),
                            delay.as_secs_f64().into(),
                            row.retries.into(),
                        ],
                    ),
                    "retried",
                )
            }
            Finish::Fail(message) => {
                tracing::error!(task_id = %row.id, task = %name, "task failed for good: {message}");
                (
                    Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        "UPDATE fang_tasks SET state = 'failed', error_message = $2, \
                         updated_at = now() \
                         WHERE id = $1 AND state = 'in_progress' AND retries = $3",
                        [row.id.into(), message.clone().into(), row.retries.into()],
                    ),
                    "failed",
                )
            }
        };
        metrics::counter!("jobs_total", "task" => name.to_owned(), "outcome" => outcome)
            .increment(1);
        if let Err(error) = self.queue.db.execute_raw(statement).await {
            // The row stays `in_progress`; the sweeper will put it back.
            tracing::error!(task_id = %row.id, task_type = %row.task_type, "recording a task outcome failed: {error}");
        }
    }
}

enum Finish {
    Done,
    Retry(String, Duration),
    Fail(String),
}

/// Puts tasks left `in_progress` longer than `stale_after` (their worker died) back in the
/// queue, counting the lost run as an attempt. Returns how many.
pub async fn requeue_stale_tasks(db: &Db, stale_after: Duration) -> Result<u64, DbErr> {
    let result = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE fang_tasks SET state = 'retried', retries = retries + 1, \
             error_message = 'worker lost while running; requeued by the sweeper', \
             scheduled_at = now(), updated_at = now() \
             WHERE state = 'in_progress' AND updated_at < now() - make_interval(secs => $1)",
            [stale_after.as_secs_f64().into()],
        ))
        .await?;
    Ok(result.rows_affected())
}

/// Deletes failed tasks older than `days`.
pub async fn purge_failed_tasks(db: &Db, days: u32) -> Result<u64, DbErr> {
    let result = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "DELETE FROM fang_tasks WHERE state = 'failed' \
             AND updated_at < now() - make_interval(days => $1)",
            [i32::try_from(days).unwrap_or(i32::MAX).into()],
        ))
        .await?;
    Ok(result.rows_affected())
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

/// Work a sweeper run does besides the task queue (the event relay): registered by the app.
#[async_trait]
pub trait SweepStep: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn sweep(&self) -> anyhow::Result<()>;
}

/// Registered sweep steps, looked up by the sweeper through the job context.
#[derive(Default)]
pub struct SweepSteps(pub Vec<Arc<dyn SweepStep>>);

/// The periodic sweeper: stale tasks back in the queue, old failures purged, then each
/// registered step (the event relay).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sweeper {
    pub cron: String,
}

#[typetag::serde(name = "core.sweeper")]
#[async_trait]
impl AsyncRunnable for Sweeper {
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        let context = JobContext::current()?;
        run_sweep(&context).await.map_err(task_error)
    }

    fn cron(&self) -> Option<Scheduled> {
        Some(Scheduled::CronPattern(self.cron.clone()))
    }

    fn uniq(&self) -> bool {
        true
    }

    fn max_retries(&self) -> i32 {
        // The next scheduled run is the retry.
        0
    }
}

/// One sweep, as the cron task runs it (tests call it directly).
pub async fn run_sweep(context: &JobContext) -> anyhow::Result<()> {
    let stale_after = Duration::from_secs(context.settings.stale_after_secs);
    let requeued = requeue_stale_tasks(&context.db, stale_after).await?;
    if requeued > 0 {
        tracing::warn!(requeued, "requeued tasks whose worker was lost");
    }
    purge_failed_tasks(&context.db, context.settings.failed_retention_days).await?;
    if let Some(steps) = context.get::<SweepSteps>() {
        for step in &steps.0 {
            if let Err(error) = step.sweep().await {
                tracing::error!(step = step.name(), "sweep step failed: {error:#}");
            }
        }
    }
    Ok(())
}
