//! The periodic sweeper: lost runs back in the queue, old failures purged, the registered steps.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fang::asynk::async_queue::AsyncQueueable;
use fang::{AsyncRunnable, FangError, Scheduled};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use serde::{Deserialize, Serialize};

use crate::core::db::Db;

use super::{JobContext, task_error};

/// Puts tasks left `in_progress` longer than `stale_after` before `now` (their worker died)
/// back in the queue, counting the lost run as an attempt. Returns how many.
pub async fn requeue_stale_tasks(
    db: &Db,
    now: DateTime<Utc>,
    stale_after: Duration,
) -> Result<u64, DbErr> {
    let stale_before = now - chrono::Duration::from_std(stale_after).unwrap_or_default();
    let result = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE fang_tasks SET state = 'retried', retries = retries + 1, \
             error_message = 'worker lost while running; requeued by the sweeper', \
             scheduled_at = $1, updated_at = $1 \
             WHERE state = 'in_progress' AND updated_at < $2",
            [now.into(), stale_before.into()],
        ))
        .await?;
    Ok(result.rows_affected())
}

/// Deletes tasks that failed more than `days` before `now`.
pub async fn purge_failed_tasks(db: &Db, now: DateTime<Utc>, days: u32) -> Result<u64, DbErr> {
    let failed_before = now - chrono::Duration::days(i64::from(days));
    let result = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "DELETE FROM fang_tasks WHERE state = 'failed' AND updated_at < $1",
            [failed_before.into()],
        ))
        .await?;
    Ok(result.rows_affected())
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
    let requeued = requeue_stale_tasks(&context.db, context.clock.now(), stale_after).await?;
    if requeued > 0 {
        tracing::warn!(requeued, "requeued tasks whose worker was lost");
    }
    purge_failed_tasks(
        &context.db,
        context.clock.now(),
        context.settings.failed_retention_days,
    )
    .await?;
    if let Some(steps) = context.get::<SweepSteps>() {
        for step in &steps.0 {
            if let Err(error) = step.sweep().await {
                tracing::error!(step = step.name(), "sweep step failed: {error:#}");
            }
        }
    }
    Ok(())
}
