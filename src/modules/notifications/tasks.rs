//! The notifications module's fang tasks: sending one message (retried with fang's backoff;
//! the delivery row's status lets one run through when fang runs a task twice), and the
//! maintenance that deletes old deliveries and sets the bot up when its row does not match
//! the configuration.

use std::sync::Arc;

use async_trait::async_trait;
use fang::asynk::async_queue::AsyncQueueable;
use fang::{AsyncRunnable, FangError, Scheduled};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::jobs::{JobContext, task_error};

use super::service::NotificationsService;

/// Sends one message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deliver {
    pub delivery_id: Uuid,
}

#[typetag::serde(name = "notifications.deliver")]
#[async_trait]
impl AsyncRunnable for Deliver {
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        let context = JobContext::current()?;
        service(&context)?
            .deliver(self.delivery_id)
            .await
            .map_err(task_error)
    }

    /// The row counts its attempts and stops at `notifications.delivery_attempts`; this only
    /// bounds the job.
    fn max_retries(&self) -> i32 {
        20
    }
}

fn service(context: &JobContext) -> Result<Arc<NotificationsService>, FangError> {
    context
        .get::<NotificationsService>()
        .ok_or_else(|| task_error("the notifications service is not in the job context"))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MaintainNotifications {
    pub cron: String,
}

#[typetag::serde(name = "notifications.maintain")]
#[async_trait]
impl AsyncRunnable for MaintainNotifications {
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        let context = JobContext::current()?;
        let service = service(&context)?;
        if let Err(error) = service.ensure_bot().await {
            tracing::warn!("setting up the notifications bot failed: {error}");
        }
        let deleted = service.forget_old().await.map_err(task_error)?;
        if deleted > 0 {
            tracing::debug!(deleted, "old notification deliveries deleted");
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
