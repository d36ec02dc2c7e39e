//! The telegram module's fang tasks. They carry ids only; the update row's claim lets one run
//! through when fang runs a task twice.

use std::sync::Arc;

use async_trait::async_trait;
use fang::asynk::async_queue::AsyncQueueable;
use fang::{AsyncRunnable, FangError};
use serde::{Deserialize, Serialize};

use crate::core::jobs::{JobContext, task_error};

use super::service::TelegramService;

/// Answers one update.
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
        let telegram: Arc<TelegramService> = context
            .get::<TelegramService>()
            .ok_or_else(|| task_error("the telegram service is not in the job context"))?;
        telegram
            .handle(self.bot_id, self.update_id)
            .await
            .map_err(task_error)
    }

    fn max_retries(&self) -> i32 {
        3
    }
}
