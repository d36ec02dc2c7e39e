//! Receiving an update: Telegram's secret header checked in constant time, then the update
//! stored and a job to answer it enqueued in one transaction, once per (bot, `update_id`) —
//! Telegram delivers again whatever it did not see acknowledged.

use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, Statement};

use std::time::{Duration, Instant};

use secrecy::SecretString;

use crate::core::error::Failure;
use crate::core::ids::ProjectId;
use crate::core::telegram::secret_matches;

use super::super::domain::entities::bot;
use super::super::domain::errors::TelegramError;
use super::reading::read_webhook_body;
use super::store::{AckWriter, NewUpdate, store_batch};
use super::{FilterByBot, TelegramService, failure, webhook_context};

/// What became of a webhook call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    Stored,
    /// Seen before: nothing done again.
    Duplicate,
}

/// A bot's webhook key, as last read: who it belongs to and its secret.
#[derive(Clone)]
pub(super) struct WebhookKey {
    project_id: ProjectId,
    secret: SecretString,
    read_at: Instant,
}

/// How long a read key is trusted before it is read again. A key that does not match is read
/// again at once, so a reconnected bot's new secret works immediately everywhere; this bounds
/// how long another process may accept a disconnected bot's updates (which are then dropped).
const KEY_TTL: Duration = Duration::from_secs(60);

fn matches(key: &WebhookKey, given: Option<&str>) -> bool {
    secret_matches(&key.secret, given)
}

impl TelegramService {
    /// The largest body the webhook reads.
    pub fn webhook_max_body_bytes(&self) -> usize {
        self.settings.webhook_max_body_bytes
    }

    /// Stores an update sent to `bot_id`'s webhook and enqueues its handling: one statement,
    /// shared with the calls this thread receives meanwhile (`store.rs`); with the bot's key
    /// in memory, nothing else.
    pub async fn receive(
        &self,
        bot_id: i64,
        secret: Option<&str>,
        body: &[u8],
    ) -> Result<Received, TelegramError> {
        let cached = self
            .webhook_keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&bot_id)
            .filter(|key| key.read_at.elapsed() < KEY_TTL)
            .cloned();
        let key = match cached {
            Some(key) if matches(&key, secret) => key,
            // Unknown, stale or not matching: read it again before refusing.
            _ => {
                let key = self.read_key(bot_id).await?;
                let mut keys = self
                    .webhook_keys
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                match &key {
                    Some(key) => keys.insert(bot_id, key.clone()),
                    None => keys.remove(&bot_id),
                };
                // Unknown bot, polling bot, wrong secret: all the same 401.
                match key {
                    Some(key) if matches(&key, secret) => key,
                    _ => return Err(TelegramError::NotTelegram),
                }
            }
        };
        let (update_id, payload) = read_webhook_body(body)?;
        let new = self
            .acks
            .get_or(|| AckWriter::start(self.db.clone()))
            .store(NewUpdate {
                bot_id,
                update_id,
                project_id: key.project_id,
                payload,
                received_at: self.clock.now(),
            })
            .await?;
        Ok(if new {
            Received::Stored
        } else {
            Received::Duplicate
        })
    }

    /// How many statements this process's webhook calls were stored by, and how many updates
    /// those carried (their ratio is the mean batch).
    pub fn webhook_statements(&self) -> (u64, u64) {
        self.acks
            .iter()
            .map(AckWriter::stats)
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    }

    /// The webhook key of `bot_id` (none: unknown, or polling).
    async fn read_key(&self, bot_id: i64) -> Result<Option<WebhookKey>, TelegramError> {
        let row = bot::Entity::find()
            .filter_by_bot(bot_id)
            .one(self.db.connection())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let Some(sealed) = row.webhook_secret.as_deref() else {
            return Ok(None);
        };
        let secret = self
            .secret_box
            .open(sealed, &webhook_context(bot_id))
            .map_err(failure)?;
        Ok(Some(WebhookKey {
            project_id: row.project_id,
            secret,
            read_at: Instant::now(),
        }))
    }

    /// Forgets `bot_id`'s key in this process (connected again, or disconnected).
    pub(super) fn forget_key(&self, bot_id: i64) {
        self.webhook_keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&bot_id);
    }

    /// Stores updates of `bot_id` not seen before, with a job that answers them, and (polling)
    /// the next offset — all in one transaction, so a restart neither loses nor repeats one.
    /// Returns how many were new.
    pub(super) async fn store_updates(
        &self,
        bot_id: i64,
        project_id: ProjectId,
        updates: &[(i64, serde_json::Value)],
        next_offset: Option<i64>,
    ) -> Result<u64, TelegramError> {
        let received_at = self.clock.now();
        let batch = updates
            .iter()
            .map(|(update_id, payload)| {
                Ok(NewUpdate {
                    bot_id,
                    update_id: *update_id,
                    project_id,
                    payload: serde_json::value::to_raw_value(payload)
                        .map_err(|error| failure(Failure::internal(error)))?,
                    received_at,
                })
            })
            .collect::<Result<Vec<_>, TelegramError>>()?;
        let uow = self.db.begin().await?;
        let stored = store_batch(&*uow, &batch).await?.len() as u64;
        if let Some(offset) = next_offset {
            uow.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE telegram_bots SET poll_offset = $2 WHERE bot_id = $1",
                [bot_id.into(), offset.into()],
            ))
            .await?;
        }
        uow.commit().await?;
        Ok(stored)
    }

    /// Deletes updates handled (or received and never finished) longer than
    /// `telegram.update_retention_secs` ago.
    pub async fn forget_handled_updates(&self) -> Result<u64, TelegramError> {
        let keep = chrono::Duration::seconds(
            i64::try_from(self.settings.update_retention_secs).unwrap_or(i64::MAX / 1000),
        );
        let deleted = self
            .db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                // Updates never marked handled (their run died after answering) go too.
                "DELETE FROM telegram_updates WHERE handled_at < $1 \
                 OR (handled_at IS NULL AND received_at < $1)",
                [(self.clock.now() - keep).into()],
            ))
            .await?
            .rows_affected();
        self.pacing.forget_idle();
        Ok(deleted)
    }
}
