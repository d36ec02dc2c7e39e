//! Billing's periodic work: reservations whose process died are released, ended periods
//! rolled over.

use std::sync::Arc;

use async_trait::async_trait;
use fang::asynk::async_queue::AsyncQueueable;
use fang::{AsyncRunnable, FangError, Scheduled};
use serde::{Deserialize, Serialize};

use crate::core::jobs::{JobContext, task_error};

use super::BillingService;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MaintainBilling {
    pub cron: String,
}

#[typetag::serde(name = "billing.maintain")]
#[async_trait]
impl AsyncRunnable for MaintainBilling {
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        let context = JobContext::current()?;
        let billing: Arc<BillingService> = context
            .get::<BillingService>()
            .ok_or_else(|| task_error("the billing service is not in the job context"))?;
        let released = billing.expire_reservations().await.map_err(task_error)?;
        if released > 0 {
            tracing::warn!(
                released,
                "released token reservations whose answer never settled"
            );
        }
        let rolled = billing.roll_periods().await.map_err(task_error)?;
        if rolled > 0 {
            tracing::info!(rolled, "billing periods rolled over");
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
