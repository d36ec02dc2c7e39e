//! Long polling, for bots of a platform without a public address. The loop is the same for
//! every bot; what differs — who holds the bot (a lease in its module's table) and where its
//! updates go — is the module's [`PolledBot`]. Each batch is stored with the next offset in one
//! transaction (the module's `store`), so a restart neither loses nor repeats an update.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use super::{BotApi, BotApiError};

/// One bot, as its module polls it.
#[async_trait]
pub trait PolledBot: Send + Sync {
    /// Renews this process's lease on the bot: its Bot API and the offset to ask from, or
    /// `None` when the lease is lost (taken over, the bot disconnected or switched to webhook).
    async fn renew(&self) -> anyhow::Result<Option<(BotApi, Option<i64>)>>;
    /// Stores `updates` (in order, with their `update_id`) and `next_offset`, together.
    async fn store(
        &self,
        updates: &[(i64, serde_json::Value)],
        next_offset: i64,
    ) -> anyhow::Result<()>;
    /// How the last call to Telegram went (`None`: well).
    async fn record(&self, error: Option<String>);
    /// Lets another process take the bot at once (a clean stop).
    async fn release(&self);
}

/// Waits between failed calls, doubling up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Polls `bot` while its lease holds, asking Telegram to wait up to `timeout` for an update;
/// returns when the lease is lost or `stop` turns true (then releasing the bot).
pub async fn long_poll(bot: &dyn PolledBot, timeout: Duration, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let (api, offset) = match bot.renew().await {
            Ok(Some(held)) => held,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!("renewing a Telegram poller failed: {error:#}");
                return;
            }
        };
        let fetched = tokio::select! {
            _ = stop.changed() => {
                bot.release().await;
                return;
            }
            fetched = api.get_updates(offset, timeout) => fetched,
        };
        let pause = match fetched {
            Ok(updates) => {
                backoff = Duration::from_secs(1);
                bot.record(None).await;
                let batch: Vec<(i64, serde_json::Value)> = updates
                    .into_iter()
                    .filter_map(|update| Some((update.get("update_id")?.as_i64()?, update)))
                    .collect();
                match batch.iter().map(|(id, _)| id + 1).max() {
                    Some(next) => match bot.store(&batch, next).await {
                        Ok(()) => None,
                        Err(error) => {
                            tracing::warn!("storing polled Telegram updates failed: {error:#}");
                            Some(backoff)
                        }
                    },
                    None => None,
                }
            }
            Err(BotApiError::RetryAfter(seconds)) => {
                Some(Duration::from_secs(u64::from(seconds.max(1))))
            }
            Err(error) => {
                bot.record(Some(error.to_string())).await;
                let pause = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                Some(pause)
            }
        };
        if let Some(pause) = pause {
            tokio::select! {
                _ = stop.changed() => {
                    bot.release().await;
                    return;
                }
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}
