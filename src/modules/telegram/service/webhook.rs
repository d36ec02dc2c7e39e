//! Receiving an update: Telegram's secret header checked in constant time, then the update
//! stored and its handling job enqueued in one transaction, once per (bot, `update_id`) —
//! Telegram delivers again whatever it did not see acknowledged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, Statement};
use secrecy::SecretString;
use serde::Deserialize;

use crate::core::clock::Clock;
use crate::core::coalesce::Coalescer;
use crate::core::db::Db;
use crate::core::ids::ProjectId;
use crate::core::jobs::task_record;
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

    /// Stores an update sent to `bot_id`'s webhook and enqueues its handling: with the bot's
    /// key in memory, one statement, shared with the updates other calls are storing at the
    /// same moment (group commit, `core::coalesce`); 200 comes once it committed.
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
        let stored = self
            .intake
            .write(NewUpdate {
                bot_id,
                update_id: update.update_id,
                project_id: key.project_id,
                payload,
            })
            .await
            .map_err(TelegramError::internal)?;
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
        let rows: Vec<NewUpdate> = updates
            .iter()
            .map(|(update_id, payload)| NewUpdate {
                bot_id,
                update_id: *update_id,
                project_id,
                payload: payload.clone(),
            })
            .collect();
        let uow = self.db.begin().await?;
        let stored = store_batch(&*uow, rows, self.clock.now())
            .await?
            .into_iter()
            .filter(|new| *new)
            .count();
        if let Some(offset) = next_offset {
            uow.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE telegram_bots SET poll_offset = $2 WHERE bot_id = $1",
                [bot_id.into(), offset.into()],
            ))
            .await?;
        }
        uow.commit().await?;
        Ok(u64::try_from(stored).unwrap_or(u64::MAX))
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

/// At most this many updates go in one statement.
const BATCH: usize = 64;
/// Statements storing updates at once (each holds a pooled connection while it runs).
const WRITERS: usize = 4;

/// The webhook's group commit: concurrent calls' updates stored together.
pub(super) fn intake(
    db: Db,
    clock: Arc<dyn Clock>,
) -> Arc<Coalescer<NewUpdate, bool, sea_orm::DbErr>> {
    Coalescer::new(
        Arc::new(move |rows: Vec<NewUpdate>| {
            let (db, now) = (db.clone(), clock.now());
            Box::pin(async move { store_batch(db.connection(), rows, now).await })
        }),
        BATCH,
        WRITERS,
    )
}

/// An update to store, with its handling job.
pub(super) struct NewUpdate {
    pub bot_id: i64,
    pub update_id: i64,
    pub project_id: ProjectId,
    pub payload: serde_json::Value,
}

/// Stores the updates of `rows` not seen before, each with its handling job — one statement
/// (`jsonb_to_recordset` feeding data-modifying CTEs), on `conn` (a transaction, or the pool).
/// Returns, for each row in order, whether it was new (an update twice in `rows` is new once).
pub(super) async fn store_batch(
    conn: &impl ConnectionTrait,
    rows: Vec<NewUpdate>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<bool>, sea_orm::DbErr> {
    let count = rows.len();
    let mut records = Vec::with_capacity(count);
    for (n, row) in rows.into_iter().enumerate() {
        let task = HandleUpdate {
            bot_id: row.bot_id,
            update_id: row.update_id,
        };
        let mut record = task_record(&task, now)?;
        record["n"] = n.into();
        record["bot_id"] = row.bot_id.into();
        record["update_id"] = row.update_id.into();
        record["project_id"] = serde_json::json!(row.project_id);
        record["payload"] = row.payload;
        records.push(record);
    }
    let stored = conn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "WITH input AS ( \
                 SELECT DISTINCT ON (bot_id, update_id) * \
                 FROM jsonb_to_recordset($1::jsonb) AS u(n integer, bot_id bigint, \
                     update_id bigint, project_id uuid, payload jsonb, task_id uuid, \
                     metadata jsonb, task_type text, scheduled_at timestamptz) \
                 ORDER BY bot_id, update_id, n \
             ), stored AS ( \
                 INSERT INTO telegram_updates (bot_id, update_id, project_id, payload, \
                     received_at) \
                 SELECT bot_id, update_id, project_id, payload, $2 FROM input \
                 ON CONFLICT DO NOTHING RETURNING bot_id, update_id \
             ), queued AS ( \
                 INSERT INTO fang_tasks (id, metadata, task_type, scheduled_at) \
                 SELECT task_id, metadata, task_type, scheduled_at \
                 FROM input JOIN stored USING (bot_id, update_id) \
             ) \
             SELECT n FROM input JOIN stored USING (bot_id, update_id)",
            [serde_json::Value::Array(records).into(), now.into()],
        ))
        .await?;
    let mut new = vec![false; count];
    for row in stored {
        let n: i32 = row.try_get("", "n")?;
        if let Some(slot) = usize::try_from(n).ok().and_then(|n| new.get_mut(n)) {
            *slot = true;
        }
    }
    Ok(new)
}
