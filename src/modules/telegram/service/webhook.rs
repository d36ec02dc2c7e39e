//! Receiving an update: Telegram's secret header checked in constant time, then the update
//! stored and its handling job enqueued in one transaction, once per (bot, `update_id`) —
//! Telegram delivers again whatever it did not see acknowledged.

use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, Statement};
use serde::Deserialize;

use std::time::{Duration, Instant};

use secrecy::SecretString;

use crate::core::ids::ProjectId;
use crate::core::jobs::task_row;
use crate::core::telegram::secret_matches;

use super::super::domain::entities::bot;
use super::super::domain::errors::TelegramError;
use super::super::tasks::HandleUpdate;
use super::{FilterByBot, TelegramService, failure, webhook_context};

/// All the webhook reads of an update before storing it.
#[derive(Deserialize)]
struct UpdateId {
    update_id: i64,
}

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

    /// Stores an update sent to `bot_id`'s webhook and enqueues its handling — one statement
    /// (and, with the bot's key in memory, one round trip).
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
        let payload: serde_json::Value = serde_json::from_slice(body)
            .map_err(|error| TelegramError::MalformedUpdate(error.to_string()))?;
        let update = UpdateId::deserialize(&payload)
            .map_err(|error| TelegramError::MalformedUpdate(error.to_string()))?;
        let stored = store_update(
            self.db.connection(),
            bot_id,
            key.project_id,
            update.update_id,
            payload,
            self.clock.now(),
        )
        .await?;
        Ok(if stored {
            Received::Stored
        } else {
            Received::Duplicate
        })
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

    /// Stores updates of `bot_id` not seen before, each with its handling job, and (polling)
    /// the next offset — all in one transaction, so a restart neither loses nor repeats one.
    /// Returns how many were new.
    pub(super) async fn store_updates(
        &self,
        bot_id: i64,
        project_id: ProjectId,
        updates: &[(i64, serde_json::Value)],
        next_offset: Option<i64>,
    ) -> Result<u64, TelegramError> {
        let now = self.clock.now();
        let uow = self.db.begin().await?;
        let mut stored = 0;
        for (update_id, payload) in updates {
            let new =
                store_update(&*uow, bot_id, project_id, *update_id, payload.clone(), now).await?;
            stored += u64::from(new);
        }
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

/// Stores an update not seen before with its handling job — one statement (a data-modifying
/// CTE), on `conn` (a transaction, or the pool). Returns whether it was new.
async fn store_update(
    conn: &impl ConnectionTrait,
    bot_id: i64,
    project_id: ProjectId,
    update_id: i64,
    payload: serde_json::Value,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, sea_orm::DbErr> {
    let task = HandleUpdate { bot_id, update_id };
    let mut values: Vec<sea_orm::Value> = vec![
        bot_id.into(),
        update_id.into(),
        project_id.into(),
        payload.into(),
        now.into(),
    ];
    values.extend(task_row(&task, now)?);
    let stored = conn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "WITH stored AS ( \
                 INSERT INTO telegram_updates (bot_id, update_id, project_id, payload, \
                     received_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT DO NOTHING RETURNING 1 \
             ) \
             INSERT INTO fang_tasks (id, metadata, task_type, scheduled_at) \
             SELECT $6, $7, $8, $9 FROM stored",
            values,
        ))
        .await?
        .rows_affected();
    Ok(stored > 0)
}
