//! Supervised workers: claim a task atomically, run it with a timeout and a heartbeat, record
//! the outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fang::{AsyncRunnable, Scheduled};
use futures_util::FutureExt;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, FromQueryResult, Statement};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::queue::{JobQueue, TaskRow, schedule_next};
use super::{JOB_CONTEXT, JobContext};

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
        TaskRow::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE fang_tasks SET state = 'in_progress', updated_at = $1 \
             WHERE id = (SELECT id FROM fang_tasks \
                         WHERE state IN ('new', 'retried') AND scheduled_at <= $1 \
                         ORDER BY scheduled_at, created_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING id, metadata, retries, task_type",
            [self.context.clock.now().into()],
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
            && let Err(error) =
                schedule_next(&self.queue.db, task.as_ref(), self.context.clock.now()).await
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
                    "UPDATE fang_tasks SET updated_at = $3 \
                     WHERE id = $1 AND state = 'in_progress' AND retries = $2",
                    [
                        row.id.into(),
                        row.retries.into(),
                        self.context.clock.now().into(),
                    ],
                ))
                .await
            {
                tracing::warn!(task_id = %row.id, "task heartbeat failed: {error}");
            }
        }
    }

    async fn finish(&self, row: &TaskRow, name: &str, finish: Finish) {
        let now = self.context.clock.now();
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
                         error_message = $2, scheduled_at = $3, updated_at = $5 \
                         WHERE id = $1 AND state = 'in_progress' AND retries = $4",
                        [
                            row.id.into(),
                            message.clone().into(),
                            (now + chrono::Duration::from_std(*delay).unwrap_or_default()).into(),
                            row.retries.into(),
                            now.into(),
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
                         updated_at = $4 \
                         WHERE id = $1 AND state = 'in_progress' AND retries = $3",
                        [
                            row.id.into(),
                            message.clone().into(),
                            row.retries.into(),
                            now.into(),
                        ],
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
