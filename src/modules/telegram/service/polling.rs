//! Polling mode, for platforms without a public address: each process that runs jobs
//! supervises the polling bots, and a bot's poller runs in exactly one process — the holder of
//! its lease in `telegram_bots` (taken when free or expired, renewed before every call, so a
//! dead process's bots are taken over once `telegram.poll_lease_secs` pass). The loop itself is
//! the shared [`long_poll`]; each batch is stored with its jobs and the next offset in one
//! transaction: a restart neither loses nor repeats an update.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::core::ids::ProjectId;
use crate::core::telegram::{BotApi, PolledBot, long_poll};

use super::TelegramService;

#[derive(FromQueryResult)]
struct PollingBot {
    project_id: ProjectId,
    bot_id: i64,
}

impl TelegramService {
    /// The supervisor: runs until `stop` turns true, then lets its pollers release their bots.
    pub async fn run_pollers(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let holder = Uuid::new_v4();
        let mut pollers: HashMap<i64, JoinHandle<()>> = HashMap::new();
        let every = Duration::from_millis(self.settings.poll_supervise_ms.max(100));
        loop {
            pollers.retain(|_, poller| !poller.is_finished());
            match self.claim_polling_bots(holder).await {
                Ok(claimed) => {
                    for bot in claimed {
                        if pollers.contains_key(&bot.bot_id) {
                            continue;
                        }
                        let poller = ProjectPoller {
                            service: Arc::clone(&self),
                            project_id: bot.project_id,
                            bot_id: bot.bot_id,
                            holder,
                        };
                        let timeout = self.poll_timeout();
                        let stop = stop.clone();
                        pollers.insert(
                            bot.bot_id,
                            tokio::spawn(async move { long_poll(&poller, timeout, stop).await }),
                        );
                    }
                }
                Err(error) => tracing::warn!("looking for Telegram bots to poll failed: {error}"),
            }
            tokio::select! {
                _ = stop.changed() => break,
                () = tokio::time::sleep(every) => {}
            }
        }
        for (_, poller) in pollers {
            let _ = poller.await;
        }
    }

    /// How long a `getUpdates` waits for an update.
    fn poll_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.poll_timeout_secs.max(1))
    }

    /// Now, and when a lease taken or renewed now ends.
    fn lease_from_now(&self) -> (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) {
        let now = self.clock.now();
        let lease = i64::try_from(self.settings.poll_lease_secs).unwrap_or(60);
        (now, now + chrono::Duration::seconds(lease))
    }

    /// The polling bots this process holds now: those it held, and those free or expired.
    async fn claim_polling_bots(&self, holder: Uuid) -> Result<Vec<PollingBot>, sea_orm::DbErr> {
        let (now, until) = self.lease_from_now();
        PollingBot::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE telegram_bots SET poll_holder = $1, poll_lease_until = $3 \
             WHERE mode = 'polling' \
               AND (poll_holder IS NULL OR poll_holder = $1 OR poll_lease_until < $2) \
             RETURNING project_id, bot_id",
            [holder.into(), now.into(), until.into()],
        ))
        .all(self.db.connection())
        .await
    }

    /// Renews this process's lease on `bot_id`, and reads the offset to ask from; `None` when
    /// the lease is lost (taken over, the bot disconnected or switched to webhook mode).
    async fn renew(&self, bot_id: i64, holder: Uuid) -> Result<Option<i64>, sea_orm::DbErr> {
        let (_, until) = self.lease_from_now();
        let row = self
            .db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE telegram_bots SET poll_lease_until = $3 \
                 WHERE bot_id = $1 AND mode = 'polling' AND poll_holder = $2 \
                 RETURNING coalesce(poll_offset, 0) AS poll_offset",
                [bot_id.into(), holder.into(), until.into()],
            ))
            .await?;
        row.map(|row| row.try_get::<i64>("", "poll_offset"))
            .transpose()
    }

    /// Lets another process take `bot_id` at once (a clean stop).
    async fn release(&self, bot_id: i64, holder: Uuid) {
        let released = self
            .db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE telegram_bots SET poll_holder = NULL, poll_lease_until = NULL \
                 WHERE bot_id = $1 AND poll_holder = $2",
                [bot_id.into(), holder.into()],
            ))
            .await;
        if let Err(error) = released {
            tracing::warn!(bot_id, "releasing a Telegram poller failed: {error}");
        }
    }
}

/// One polling bot of this process, as the shared long-poll loop drives it.
struct ProjectPoller {
    service: Arc<TelegramService>,
    project_id: ProjectId,
    bot_id: i64,
    holder: Uuid,
}

#[async_trait]
impl PolledBot for ProjectPoller {
    async fn renew(&self) -> anyhow::Result<Option<(BotApi, Option<i64>)>> {
        let Some(offset) = self.service.renew(self.bot_id, self.holder).await? else {
            return Ok(None);
        };
        Ok(match self.service.connected(self.project_id).await? {
            Some((row, api)) if row.bot_id == self.bot_id => {
                Some((api, (offset > 0).then_some(offset)))
            }
            _ => None,
        })
    }

    async fn store(
        &self,
        updates: &[(i64, serde_json::Value)],
        next_offset: i64,
    ) -> anyhow::Result<()> {
        self.service
            .store_updates(self.bot_id, self.project_id, updates, Some(next_offset))
            .await?;
        Ok(())
    }

    async fn record(&self, error: Option<String>) {
        self.service.mark(self.project_id, error).await;
    }

    async fn release(&self) {
        self.service.release(self.bot_id, self.holder).await;
    }
}
