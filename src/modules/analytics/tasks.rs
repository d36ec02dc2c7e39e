//! Analytics' periodic work: retention of the audit log (entries, then their IPs), of the
//! applied facts, and the one-time backfill of usage from chat's history.

use std::sync::Arc;

use async_trait::async_trait;
use fang::asynk::async_queue::AsyncQueueable;
use fang::{AsyncRunnable, FangError, Scheduled};
use serde::{Deserialize, Serialize};

use crate::core::jobs::{JobContext, task_error};

use super::AnalyticsService;

/// Backfill batches per run: a run stays short, the backfill continues on the next.
const BACKFILL_BATCHES_PER_RUN: u32 = 50;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MaintainAnalytics {
    pub cron: String,
}

#[typetag::serde(name = "analytics.maintain")]
#[async_trait]
impl AsyncRunnable for MaintainAnalytics {
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        let context = JobContext::current()?;
        let analytics: Arc<AnalyticsService> = context
            .get::<AnalyticsService>()
            .ok_or_else(|| task_error("the analytics service is not in the job context"))?;
        let done = analytics
            .maintain(BACKFILL_BATCHES_PER_RUN)
            .await
            .map_err(task_error)?;
        if done != Default::default() {
            tracing::info!(
                entries_deleted = done.entries_deleted,
                ips_dropped = done.ips_dropped,
                facts_forgotten = done.facts_forgotten,
                backfilled = done.backfilled,
                "analytics maintenance"
            );
        }
        Ok(())
    }

    fn cron(&self) -> Option<Scheduled> {
        Some(Scheduled::CronPattern(self.cron.clone()))
    }

    fn uniq(&self) -> bool {
        true
    }

    fn max_retries(&self) -> i32 {
        0
    }
}
