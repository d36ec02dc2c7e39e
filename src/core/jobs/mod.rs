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
mod queue;
mod sweeper;
mod worker;

pub use queue::{
    JobQueue, NewTask, enqueue_in, enqueue_unique_in, pending_task_keys, task_counts, task_row,
};
pub use sweeper::{
    SweepStep, SweepSteps, Sweeper, purge_failed_tasks, requeue_stale_tasks, run_sweep,
};
pub use worker::WorkerPool;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fang::FangError;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use tokio::sync::watch;

use crate::core::clock::Clock;
use crate::core::config::JobSettings;
use crate::core::db::Db;

/// Everything a task may need, handed to it through a task-local while it runs (fang's
/// `run` receives only the queue). Modules add their services with [`JobContext::with`].
#[derive(Clone)]
pub struct JobContext {
    pub db: Db,
    pub settings: JobSettings,
    /// The app's clock: tasks stamp and compare times by it.
    pub clock: Arc<dyn Clock>,
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
    pub fn new(db: Db, settings: JobSettings, clock: Arc<dyn Clock>) -> Self {
        JobContext {
            db,
            settings,
            clock,
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
