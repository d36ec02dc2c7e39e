//! Background jobs against real PostgreSQL: exactly-once effects over competing pools,
//! undecodable rows, lost workers, timeouts, retries and cron schedules.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use avatar_platform::core::clock::{Clock, SystemClock};
use avatar_platform::core::config::JobSettings;
use avatar_platform::core::db::Db;
use avatar_platform::core::jobs::{
    JobContext, JobQueue, Sweeper, WorkerPool, claim_effect, enqueue_in, requeue_stale_tasks,
    run_sweep, task_error,
};
use fang::asynk::async_queue::AsyncQueueable;
use fang::{AsyncRunnable, FangError};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde::{Deserialize, Serialize};

use crate::helpers::{TestDatabase, eventually, test_settings};

/// Records `n` in `test_effects` once, guarded by a claim in the same transaction.
#[derive(Debug, Serialize, Deserialize)]
struct RecordEffect {
    n: u32,
}

#[typetag::serde(name = "test.record_effect")]
#[async_trait]
impl AsyncRunnable for RecordEffect {
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        let context = JobContext::current()?;
        let uow = context.db.begin().await.map_err(task_error)?;
        // Count every execution, guarded or not, to see what the guard absorbed.
        uow.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO test_runs (n) VALUES ($1)",
            [self.n.into()],
        ))
        .await
        .map_err(task_error)?;
        if claim_effect(&*uow, &format!("record-effect:{}", self.n))
            .await
            .map_err(task_error)?
        {
            uow.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO test_effects (n) VALUES ($1)",
                [self.n.into()],
            ))
            .await
            .map_err(task_error)?;
        }
        uow.commit().await.map_err(task_error)
    }
}

/// Sleeps longer than any sane timeout.
#[derive(Debug, Serialize, Deserialize)]
struct Sleepy {
    millis: u64,
}

#[typetag::serde(name = "test.sleepy")]
#[async_trait]
impl AsyncRunnable for Sleepy {
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        tokio::time::sleep(Duration::from_millis(self.millis)).await;
        Ok(())
    }

    fn max_retries(&self) -> i32 {
        0
    }
}

/// Fails until it has been attempted `succeed_on` times (counted in the database).
#[derive(Debug, Serialize, Deserialize)]
struct Flaky {
    key: String,
    succeed_on: i64,
    max_retries: i32,
}

#[typetag::serde(name = "test.flaky")]
#[async_trait]
impl AsyncRunnable for Flaky {
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        let context = JobContext::current()?;
        let row = context
            .db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO test_attempts (key, attempts) VALUES ($1, 1) \
                 ON CONFLICT (key) DO UPDATE SET attempts = test_attempts.attempts + 1 \
                 RETURNING attempts",
                [self.key.clone().into()],
            ))
            .await
            .map_err(task_error)?
            .ok_or_else(|| task_error("no row"))?;
        let attempts: i64 = row.try_get("", "attempts").map_err(task_error)?;
        if attempts < self.succeed_on {
            return Err(task_error(format!("attempt {attempts} fails on purpose")));
        }
        Ok(())
    }

    fn max_retries(&self) -> i32 {
        self.max_retries
    }

    fn backoff(&self, _attempt: u32) -> u32 {
        0
    }
}

struct Harness {
    db: Db,
    queue: JobQueue,
    settings: JobSettings,
    _data_dir: tempfile::TempDir,
    _database: TestDatabase,
}

async fn harness(overrides: &[(&str, &str)]) -> Harness {
    let database = TestDatabase::create().await;
    let db = database.migrated_db().await;
    db.execute_unprepared(
        "CREATE TABLE test_effects (n integer NOT NULL); \
         CREATE TABLE test_runs (n integer NOT NULL); \
         CREATE TABLE test_attempts (key text PRIMARY KEY, attempts bigint NOT NULL);",
    )
    .await
    .unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let settings = test_settings(&database, data_dir.path(), overrides);
    let queue = JobQueue::connect(
        db.clone(),
        Arc::new(SystemClock),
        &settings.database,
        &settings.jobs,
    )
    .await
    .expect("fang queue connects");
    Harness {
        db,
        queue,
        settings: settings.jobs,
        _data_dir: data_dir,
        _database: database,
    }
}

impl Harness {
    fn pool(&self, workers: usize) -> WorkerPool {
        WorkerPool::start(self.queue.clone(), self.context(), workers)
    }

    fn context(&self) -> JobContext {
        JobContext::new(
            self.db.clone(),
            self.settings.clone(),
            Arc::new(SystemClock),
        )
    }

    async fn scalar(&self, sql: &str) -> i64 {
        self.db
            .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<i64>(0)
            .unwrap()
    }

    async fn wait_for(&self, sql: &str, expected: i64, limit: Duration) {
        eventually(limit, &format!("`{sql}` is {expected}"), || async {
            let value = self.scalar(sql).await;
            if value == expected {
                Ok(())
            } else {
                Err(value)
            }
        })
        .await;
    }

    async fn task_state(&self, id: uuid::Uuid) -> Option<(String, Option<String>, i32)> {
        self.db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT state::text AS state, error_message, retries FROM fang_tasks WHERE id = $1",
                [id.into()],
            ))
            .await
            .unwrap()
            .map(|row| {
                (
                    row.try_get("", "state").unwrap(),
                    row.try_get("", "error_message").unwrap(),
                    row.try_get("", "retries").unwrap(),
                )
            })
    }
}

#[tokio::test]
async fn three_hundred_tasks_over_two_worker_pools_have_their_effect_exactly_once() {
    let h = harness(&[]).await;
    for n in 0..300 {
        h.queue.enqueue(&RecordEffect { n }).await.unwrap();
    }
    let first = h.pool(4);
    let second = h.pool(4);
    h.wait_for(
        "SELECT count(*) FROM test_effects",
        300,
        Duration::from_secs(60),
    )
    .await;
    h.wait_for(
        "SELECT count(*) FROM fang_tasks",
        0,
        Duration::from_secs(10),
    )
    .await;
    first.shutdown(Duration::from_secs(5)).await;
    second.shutdown(Duration::from_secs(5)).await;

    assert_eq!(
        h.scalar("SELECT count(DISTINCT n) FROM test_effects").await,
        300
    );
    assert_eq!(h.scalar("SELECT count(*) FROM test_effects").await, 300);
    // The atomic claim means no task even ran twice (fang's own worker runs ~2% twice).
    assert_eq!(h.scalar("SELECT count(*) FROM test_runs").await, 300);
}

#[tokio::test]
async fn the_effect_guard_absorbs_a_task_that_runs_twice() {
    let h = harness(&[]).await;
    // The same task enqueued twice stands for fang running one task twice.
    h.queue.enqueue(&RecordEffect { n: 42 }).await.unwrap();
    h.queue.enqueue(&RecordEffect { n: 42 }).await.unwrap();
    let pool = h.pool(2);
    h.wait_for("SELECT count(*) FROM test_runs", 2, Duration::from_secs(10))
        .await;
    pool.shutdown(Duration::from_secs(5)).await;
    assert_eq!(h.scalar("SELECT count(*) FROM test_effects").await, 1);
}

#[tokio::test]
async fn a_task_row_of_unknown_type_neither_stops_the_pool_nor_blocks_other_tasks() {
    let h = harness(&[]).await;
    let unknown = uuid::Uuid::new_v4();
    h.db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO fang_tasks (id, metadata, task_type, scheduled_at) \
         VALUES ($1, '{\"type\": \"renamed.task\", \"n\": 1}', 'common', now() - interval '1 minute')",
        [unknown.into()],
    ))
    .await
    .unwrap();
    for n in 0..10 {
        h.queue.enqueue(&RecordEffect { n }).await.unwrap();
    }
    // One worker: if the bad row ended it, nothing else would run.
    let pool = h.pool(1);
    h.wait_for(
        "SELECT count(*) FROM test_effects",
        10,
        Duration::from_secs(20),
    )
    .await;
    let (state, error, _) = h.task_state(unknown).await.expect("kept for inspection");
    assert_eq!(state, "failed");
    assert!(error.unwrap().contains("does not decode"));

    // The worker is still alive for later tasks.
    for n in 10..15 {
        h.queue.enqueue(&RecordEffect { n }).await.unwrap();
    }
    h.wait_for(
        "SELECT count(*) FROM test_effects",
        15,
        Duration::from_secs(20),
    )
    .await;
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_task_left_in_progress_by_a_killed_worker_is_run_again_after_the_sweeper() {
    let h = harness(&[]).await;
    let id = enqueue_in(h.db.connection(), &RecordEffect { n: 7 }, SystemClock.now())
        .await
        .unwrap();
    // What a worker killed mid-task leaves behind.
    h.db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE fang_tasks SET state = 'in_progress', updated_at = now() - interval '2 hours' \
         WHERE id = $1",
        [id.into()],
    ))
    .await
    .unwrap();
    let pool = h.pool(1);
    // The worker takes what it may: a task queued after the stale one runs, and only it.
    h.queue.enqueue(&RecordEffect { n: 8 }).await.unwrap();
    h.wait_for(
        "SELECT count(*) FROM test_effects WHERE n = 8",
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        h.scalar("SELECT count(*) FROM test_effects WHERE n = 7")
            .await,
        0
    );

    run_sweep(&h.context()).await.unwrap();
    h.wait_for(
        "SELECT count(*) FROM test_effects WHERE n = 7",
        1,
        Duration::from_secs(10),
    )
    .await;
    h.wait_for("SELECT count(*) FROM fang_tasks", 0, Duration::from_secs(5))
        .await;
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_task_past_its_timeout_is_failed_not_hung() {
    let h = harness(&[("APP__JOBS__TASK_TIMEOUT_SECS", "1")]).await;
    let id = h.queue.enqueue(&Sleepy { millis: 30_000 }).await.unwrap();
    let started = std::time::Instant::now();
    let pool = h.pool(1);
    h.wait_for(
        "SELECT count(*) FROM fang_tasks WHERE state = 'failed'",
        1,
        Duration::from_secs(10),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let (state, error, _) = h.task_state(id).await.unwrap();
    assert_eq!(state, "failed");
    assert_eq!(error.as_deref(), Some("timed out after 1 s"));
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_long_task_type_runs_past_the_default_timeout_and_its_heartbeat_keeps_the_sweeper_off() {
    // Default limit 1 s; a run is stale after 3 s without a sign of life.
    let h = harness(&[
        ("APP__JOBS__TASK_TIMEOUT_SECS", "1"),
        ("APP__JOBS__STALE_AFTER_SECS", "3"),
    ])
    .await;
    let id = h.queue.enqueue(&Sleepy { millis: 5_500 }).await.unwrap();
    let context = h
        .context()
        .with_timeout("test.sleepy", Duration::from_secs(20));
    let pool = WorkerPool::start(h.queue.clone(), context, 1);
    h.wait_for(
        "SELECT count(*) FROM fang_tasks WHERE state = 'in_progress'",
        1,
        Duration::from_secs(5),
    )
    .await;
    // Well past `stale_after` into the run, the sweeper still sees a live task.
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    assert_eq!(
        requeue_stale_tasks(&h.db, SystemClock.now(), Duration::from_secs(3))
            .await
            .unwrap(),
        0
    );
    // Done: a finished task's row is removed (a failed one would stay, as `failed`).
    h.wait_for(
        "SELECT count(*) FROM fang_tasks",
        0,
        Duration::from_secs(10),
    )
    .await;
    assert!(h.task_state(id).await.is_none());
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn failures_retry_until_success_and_exhausted_tasks_stay_visible_as_failed() {
    let h = harness(&[]).await;
    let recovers = h
        .queue
        .enqueue(&Flaky {
            key: "recovers".into(),
            succeed_on: 3,
            max_retries: 5,
        })
        .await
        .unwrap();
    let gives_up = h
        .queue
        .enqueue(&Flaky {
            key: "gives-up".into(),
            succeed_on: 100,
            max_retries: 2,
        })
        .await
        .unwrap();
    let pool = h.pool(2);
    h.wait_for(
        "SELECT count(*) FROM fang_tasks WHERE state = 'failed'",
        1,
        Duration::from_secs(20),
    )
    .await;
    h.wait_for(
        "SELECT attempts FROM test_attempts WHERE key = 'recovers'",
        3,
        Duration::from_secs(20),
    )
    .await;
    pool.shutdown(Duration::from_secs(5)).await;

    assert_eq!(
        h.task_state(recovers).await,
        None,
        "finished tasks are removed"
    );
    let (state, error, retries) = h.task_state(gives_up).await.unwrap();
    assert_eq!(state, "failed");
    assert_eq!(retries, 2);
    assert_eq!(error.as_deref(), Some("attempt 3 fails on purpose"));
    assert_eq!(
        h.scalar("SELECT attempts FROM test_attempts WHERE key = 'gives-up'")
            .await,
        3
    );
}

#[tokio::test]
async fn a_cron_task_is_scheduled_once_however_many_processes_start() {
    let h = harness(&[]).await;
    let sweeper = Sweeper {
        cron: "0 0 * * * *".into(),
    };
    let schedulers = (0..5).map(|_| {
        let queue = h.queue.clone();
        let sweeper = sweeper.clone();
        tokio::spawn(async move { queue.ensure_scheduled(&sweeper).await })
    });
    for scheduler in futures_util::future::join_all(schedulers).await {
        scheduler.unwrap().unwrap();
    }
    assert_eq!(h.scalar("SELECT count(*) FROM fang_tasks").await, 1);
    // Scheduled for the next full hour, not now.
    assert_eq!(
        h.scalar(
            "SELECT count(*) FROM fang_tasks WHERE scheduled_at > now() \
             AND date_trunc('hour', scheduled_at) = scheduled_at"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn shutdown_lets_a_running_task_finish() {
    let h = harness(&[]).await;
    let id = h.queue.enqueue(&Sleepy { millis: 700 }).await.unwrap();
    let pool = h.pool(1);
    h.wait_for(
        "SELECT count(*) FROM fang_tasks WHERE state = 'in_progress'",
        1,
        Duration::from_secs(5),
    )
    .await;
    pool.shutdown(Duration::from_secs(10)).await;
    assert_eq!(h.task_state(id).await, None, "the task ran to completion");
}

#[tokio::test]
async fn a_run_the_sweeper_gave_away_does_not_record_its_outcome_on_the_new_run() {
    let h = harness(&[]).await;
    let id = h.queue.enqueue(&Sleepy { millis: 1_500 }).await.unwrap();
    let pool = h.pool(1);
    h.wait_for(
        "SELECT count(*) FROM fang_tasks WHERE state = 'in_progress'",
        1,
        Duration::from_secs(5),
    )
    .await;
    // The sweeper decides this run is lost (as if its worker had died) and requeues the row.
    assert_eq!(
        requeue_stale_tasks(&h.db, SystemClock.now(), Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    // The first run still ends well, but the row is no longer its own: the requeued attempt
    // is what decides (Sleepy allows no retry, so it is refused as exhausted).
    h.wait_for(
        "SELECT count(*) FROM fang_tasks WHERE state = 'failed'",
        1,
        Duration::from_secs(10),
    )
    .await;
    let (state, error, retries) = h.task_state(id).await.unwrap();
    assert_eq!(state, "failed");
    assert_eq!(error.as_deref(), Some("gave up after 1 attempts"));
    assert_eq!(retries, 1);
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_unique_task_enqueued_by_two_transactions_at_once_is_added_once() {
    use avatar_platform::core::jobs::enqueue_unique_in;
    use sea_orm::TransactionTrait;

    let database = TestDatabase::create().await;
    let db = database.migrated_db().await;
    let key = "documents.build_vector_index:some-avatar";
    let task = Sweeper {
        cron: "0 0 0 1 1 *".into(),
    };
    let now = SystemClock.now();
    let first = db.connection().begin().await.unwrap();
    let added = enqueue_unique_in(&first, &task, key, now).await.unwrap();
    assert!(added.is_some());
    // A second transaction asks for the same key while the first has not committed: it waits
    // for the first (a check alone would not see the uncommitted row, and add a second)...
    let second = {
        let db = db.clone();
        let task = task.clone();
        tokio::spawn(async move {
            let second = db.connection().begin().await.unwrap();
            let added = enqueue_unique_in(&second, &task, key, now).await.unwrap();
            second.commit().await.unwrap();
            added
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "the second transaction waits for the first"
    );
    first.commit().await.unwrap();
    // ...and adds nothing once it has committed.
    assert_eq!(second.await.unwrap(), None);
    let count = |state: &'static str| {
        let db = db.clone();
        async move {
            db.query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT count(*) AS n FROM fang_tasks \
                 WHERE uniq_hash = 'key:' || encode(sha256(convert_to($1, 'UTF8')), 'hex') \
                   AND state::text = $2",
                [key.into(), state.into()],
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap()
        }
    };
    assert_eq!(count("new").await, 1);
    // Once that task is done, the key can be queued again.
    db.execute_unprepared("UPDATE fang_tasks SET state = 'finished' WHERE uniq_hash LIKE 'key:%'")
        .await
        .unwrap();
    let again = enqueue_unique_in(db.connection(), &task, key, now)
        .await
        .unwrap();
    assert!(again.is_some());
    assert_eq!(count("new").await, 1);
}
