//! The telegram module's fang tasks. They carry ids only; each update row's claim lets one run
//! through when fang runs a task twice. The maintenance task deletes handled updates once
//! `telegram.update_retention_secs` have passed.

use std::sync::Arc;

use async_trait::async_trait;
use fang::asynk::async_queue::AsyncQueueable;
use fang::{AsyncRunnable, FangError, Scheduled};
use serde::{Deserialize, Serialize};

use crate::core::jobs::{JobContext, task_error};

use super::service::TelegramService;

/// Answers the updates stored together (by one webhook statement or one polling batch), as
/// `(bot_id, update_id)`: a chat's in order, different chats at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandleUpdates {
    pub updates: Vec<(i64, i64)>,
}

#[typetag::serde(name = "telegram.handle_updates")]
#[async_trait]
impl AsyncRunnable for HandleUpdates {
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        let context = JobContext::current()?;
        service(&context)?
            .handle_all(&self.updates)
            .await
            .map_err(task_error)
    }

    fn max_retries(&self) -> i32 {
        3
    }
}

/// Answers one update: the task of earlier versions, still run for those queued by them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandleUpdate {
    pub bot_id: i64,
    pub update_id: i64,
}

#[typetag::serde(name = "telegram.handle_update")]
#[async_trait]
impl AsyncRunnable for HandleUpdate {
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        let context = JobContext::current()?;
        service(&context)?
            .handle(self.bot_id, self.update_id)
            .await
            .map_err(task_error)
    }

    fn max_retries(&self) -> i32 {
        3
    }
}

fn service(context: &JobContext) -> Result<Arc<TelegramService>, FangError> {
    context
        .get::<TelegramService>()
        .ok_or_else(|| task_error("the telegram service is not in the job context"))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MaintainTelegram {
    pub cron: String,
}

#[typetag::serde(name = "telegram.maintain")]
#[async_trait]
impl AsyncRunnable for MaintainTelegram {
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        let context = JobContext::current()?;
        let deleted = service(&context)?
            .forget_handled_updates()
            .await
            .map_err(task_error)?;
        if deleted > 0 {
            tracing::debug!(deleted, "handled Telegram updates deleted");
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
