//! Receiving an update: Telegram's secret header checked in constant time, then the update
//! stored and its handling job enqueued in one transaction, once per (bot, `update_id`) —
//! Telegram delivers again whatever it did not see acknowledged.

use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, Statement};
use secrecy::ExposeSecret;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::core::ids::ProjectId;
use crate::core::jobs::enqueue_in;

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

impl TelegramService {
    /// The largest body the webhook reads.
    pub fn webhook_max_body_bytes(&self) -> usize {
        self.settings.webhook_max_body_bytes
    }

    /// Stores an update sent to `bot_id`'s webhook and enqueues its handling.
    pub async fn receive(
        &self,
        bot_id: i64,
        secret: Option<&str>,
        body: &[u8],
    ) -> Result<Received, TelegramError> {
        let row = bot::Entity::find()
            .filter_by_bot(bot_id)
            .one(self.db.connection())
            .await?;
        // Unknown bot, polling bot, wrong secret: all the same 401, in about the same time.
        let expected = row
            .as_ref()
            .and_then(|row| row.webhook_secret.as_deref())
            .map(|sealed| self.secret_box.open(sealed, &webhook_context(bot_id)))
            .transpose()
            .map_err(failure)?;
        let matches = match (&expected, secret) {
            (Some(expected), Some(given)) => {
                bool::from(expected.expose_secret().as_bytes().ct_eq(given.as_bytes()))
            }
            _ => false,
        };
        let Some(row) = row.filter(|_| matches) else {
            return Err(TelegramError::NotTelegram);
        };
        let payload: serde_json::Value = serde_json::from_slice(body)
            .map_err(|error| TelegramError::MalformedUpdate(error.to_string()))?;
        let update = UpdateId::deserialize(&payload)
            .map_err(|error| TelegramError::MalformedUpdate(error.to_string()))?;
        let stored = self
            .store_updates(bot_id, row.project_id, &[(update.update_id, payload)], None)
            .await?;
        Ok(if stored == 0 {
            Received::Duplicate
        } else {
            Received::Stored
        })
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
            let inserted = uow
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "INSERT INTO telegram_updates (bot_id, update_id, project_id, payload, \
                         received_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    [
                        bot_id.into(),
                        (*update_id).into(),
                        project_id.into(),
                        payload.clone().into(),
                        now.into(),
                    ],
                ))
                .await?
                .rows_affected();
            if inserted == 0 {
                continue;
            }
            stored += 1;
            let task = HandleUpdate {
                bot_id,
                update_id: *update_id,
            };
            enqueue_in(&*uow, &task, now).await?;
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

    /// Deletes updates handled longer than `telegram.update_retention_secs` ago.
    pub async fn forget_handled_updates(&self) -> Result<u64, TelegramError> {
        let keep = chrono::Duration::seconds(
            i64::try_from(self.settings.update_retention_secs).unwrap_or(i64::MAX / 1000),
        );
        let deleted = self
            .db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "DELETE FROM telegram_updates WHERE handled_at < $1",
                [(self.clock.now() - keep).into()],
            ))
            .await?
            .rows_affected();
        self.pacing.forget_idle();
        Ok(deleted)
    }
}
