//! The platform's notifications bot (the platform config's `notifications_bot_token`). It is
//! set up when that token changes — checked with `getMe`, then a webhook with a random secret
//! when the platform has a public address, else polling by one process at a time (a lease on
//! its row, the shared [`long_poll`] loop) — and it reads only what links and unlinks a chat:
//! `/start <one-time code>` and `/stop`. Each received update is taken once (its `update_id`
//! stored in the same transaction as its effect and its reply), and the reply is sent like every
//! notification: a retried delivery job.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use secrecy::ExposeSecret;
use serde::Serialize;
use tokio::sync::watch;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::crypto::{hash_token, random_token};
use crate::core::error::Failure;
use crate::core::ids::UserId;
use crate::core::outbound::{BaseUrl, Trust};
use crate::core::telegram::{
    BotApi, BotApiError, BotToken, PolledBot, Update, UpdateContent, long_poll, secret_matches,
};

use super::super::domain::errors::NotificationsError;
use super::NotificationsService;
use super::sending::{Message, unlink_chat};

/// The bot's row, as this module reads it.
#[derive(Debug, FromQueryResult)]
pub(super) struct BotRow {
    pub bot_id: i64,
    pub bot_username: Option<String>,
    pub mode: String,
    webhook_secret: Option<String>,
    last_error: Option<String>,
    updated_at: DateTime<Utc>,
}

/// The notifications bot, as a saas_admin sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlatformBotView {
    pub bot_id: i64,
    /// None until Telegram accepted the token.
    pub bot_username: Option<String>,
    /// `webhook` or `polling`.
    pub mode: String,
    /// The last failure talking to Telegram (none: working).
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// What became of a webhook call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    Taken,
    /// Seen before: nothing done again.
    Duplicate,
}

/// Where the webhook secret of `bot_id` is sealed.
fn webhook_context(bot_id: i64) -> String {
    format!("notifications_webhook:{bot_id}")
}

const LINKED: &str = "Linked: the platform's notifications for your account come to this chat \
    now. Choose which in the dashboard's notification settings; /stop ends them.";
const BAD_CODE: &str = "This link code is not valid (it may have expired or been used): create \
    a new one in the dashboard's notification settings.";
const HOW_TO: &str = "I send the platform's notifications. To get yours here, open the link \
    from the dashboard's notification settings (it sends /start with a one-time code).";
const UNLINKED: &str = "Unlinked: no more notifications come to this chat.";
const NOT_LINKED: &str = "This chat is not linked to any account.";

/// What a message to the bot asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command<'a> {
    Link(&'a str),
    Start,
    Stop,
    Other,
}

fn command(text: &str) -> Command<'_> {
    let mut words = text.split_whitespace();
    let first = words.next().unwrap_or_default();
    let name = first.split('@').next().unwrap_or_default();
    match (name.to_ascii_lowercase().as_str(), words.next()) {
        ("/start", Some(code)) => Command::Link(code),
        ("/start", None) => Command::Start,
        ("/stop", _) => Command::Stop,
        _ => Command::Other,
    }
}

impl NotificationsService {
    pub(super) async fn platform_bot_row(&self) -> Result<Option<BotRow>, NotificationsError> {
        Ok(BotRow::find_by_statement(Statement::from_string(
            DbBackend::Postgres,
            "SELECT bot_id, bot_username, mode, webhook_secret, last_error, updated_at \
             FROM notification_bot",
        ))
        .one(self.db.connection())
        .await?)
    }

    /// The notifications bot's state (none: no token configured yet).
    pub async fn platform_bot(&self) -> Result<Option<PlatformBotView>, NotificationsError> {
        Ok(self.platform_bot_row().await?.map(|row| PlatformBotView {
            bot_id: row.bot_id,
            bot_username: row.bot_username,
            mode: row.mode,
            last_error: row.last_error,
            updated_at: row.updated_at,
        }))
    }

    /// The configured token's bot (none: no token), at the operator's Bot API address.
    pub(super) async fn bot_api(&self) -> Result<Option<(BotToken, BotApi)>, NotificationsError> {
        let config = self.platform.get().await.map_err(Failure::from)?;
        let Some(token) = config.notifications_bot_token.as_ref() else {
            return Ok(None);
        };
        let token = BotToken::parse(token.expose_secret()).map_err(|reason| {
            NotificationsError::internal(format!("notifications_bot_token {reason}"))
        })?;
        let base = BaseUrl::parse(&self.telegram.api_base_url).map_err(|error| {
            NotificationsError::internal(format!("telegram.api_base_url {error}"))
        })?;
        let client = self
            .outbound
            .client_for(&base, Trust::Operator, &config.outbound_allowed_hosts)
            .map_err(NotificationsError::internal)?;
        let api = BotApi::new(&base, &token, client).paced(self.pacing.clone());
        Ok(Some((token, api)))
    }

    /// Sets the bot up for the token configured now: checked with `getMe`, its webhook
    /// registered (or removed, for polling), its row written. No token: the row goes. A token
    /// Telegram refuses is recorded in `last_error` (trying again would not help); a failure
    /// to reach Telegram is returned, for the caller's retry.
    pub async fn set_up_bot(&self) -> Result<(), NotificationsError> {
        // Another process may have changed the token: read it, not this process's cache.
        self.platform.invalidate();
        let Some((token, api)) = self.bot_api().await? else {
            self.db
                .execute_unprepared("DELETE FROM notification_bot")
                .await?;
            return Ok(());
        };
        let bot_id = token.bot_id();
        let polling = self.public_base_url.is_none();
        let mode = if polling { "polling" } else { "webhook" };
        let username = match api.get_me().await {
            Ok(me) => me.username.unwrap_or(me.first_name),
            Err(BotApiError::Rejected { description, .. }) => {
                let error = format!("Telegram does not accept this token: {description}");
                self.save_bot(bot_id, None, mode, None, Some(error)).await?;
                return Ok(());
            }
            Err(error) => return Err(NotificationsError::internal(error)),
        };
        let secret = (!polling).then(|| random_token(""));
        let registered = match (&secret, &self.public_base_url) {
            (Some(secret), Some(public)) => {
                let url = format!("{public}/api/v1/notifications/telegram/webhook/{bot_id}");
                api.set_webhook(&url, secret).await
            }
            _ => api.delete_webhook().await,
        };
        if let Err(error) = registered {
            let error = format!("registering the bot with Telegram failed: {error}");
            self.save_bot(bot_id, Some(&username), mode, None, Some(error.clone()))
                .await?;
            return Err(NotificationsError::internal(error));
        }
        let sealed = secret
            .as_deref()
            .map(|secret| self.secret_box.seal(secret, &webhook_context(bot_id)))
            .transpose()?;
        self.save_bot(bot_id, Some(&username), mode, sealed, None)
            .await
    }

    /// Writes the bot's row. A poller of the previous set-up stops at its next renewal; the
    /// offset is kept while the bot stays the same.
    async fn save_bot(
        &self,
        bot_id: i64,
        username: Option<&str>,
        mode: &str,
        sealed_secret: Option<String>,
        error: Option<String>,
    ) -> Result<(), NotificationsError> {
        self.db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO notification_bot (id, bot_id, bot_username, mode, webhook_secret, \
                     last_error, updated_at) VALUES (1, $1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (id) DO UPDATE SET bot_id = excluded.bot_id, \
                     bot_username = coalesce(excluded.bot_username, \
                         CASE WHEN notification_bot.bot_id = excluded.bot_id \
                              THEN notification_bot.bot_username END), \
                     mode = excluded.mode, webhook_secret = excluded.webhook_secret, \
                     last_error = excluded.last_error, updated_at = excluded.updated_at, \
                     poll_holder = NULL, poll_lease_until = NULL, \
                     poll_offset = CASE WHEN notification_bot.bot_id = excluded.bot_id \
                                        THEN notification_bot.poll_offset END",
                [
                    bot_id.into(),
                    username.map(str::to_owned).into(),
                    mode.into(),
                    sealed_secret.into(),
                    error.into(),
                    self.clock.now().into(),
                ],
            ))
            .await?;
        Ok(())
    }

    /// Sets the bot up again when its row does not match the configuration (a token set
    /// before this module existed, or the public address changed since).
    pub async fn ensure_bot(&self) -> Result<(), NotificationsError> {
        let configured = self.bot_api().await?.map(|(token, _)| token.bot_id());
        let row = self.platform_bot_row().await?;
        let wanted = if self.public_base_url.is_some() {
            "webhook"
        } else {
            "polling"
        };
        let current = row.as_ref().map(|row| (row.bot_id, row.mode.as_str()));
        match (configured, current) {
            (None, None) => Ok(()),
            (Some(bot_id), Some((row_bot, mode))) if bot_id == row_bot && mode == wanted => Ok(()),
            _ => self.set_up_bot().await,
        }
    }

    /// Takes an update sent to the webhook of `bot_id`, after checking Telegram's secret.
    pub async fn receive(
        &self,
        bot_id: i64,
        secret: Option<&str>,
        body: &[u8],
    ) -> Result<Received, NotificationsError> {
        let row = self.platform_bot_row().await?;
        let key = row
            .filter(|row| row.bot_id == bot_id)
            .and_then(|row| row.webhook_secret)
            .ok_or(NotificationsError::NotTelegram)?;
        let key = self.secret_box.open(&key, &webhook_context(bot_id))?;
        if !secret_matches(&key, secret) {
            return Err(NotificationsError::NotTelegram);
        }
        let update: serde_json::Value = serde_json::from_slice(body)
            .map_err(|error| NotificationsError::MalformedUpdate(error.to_string()))?;
        let update_id = update
            .get("update_id")
            .and_then(serde_json::Value::as_i64)
            .ok_or_else(|| NotificationsError::MalformedUpdate("no update_id".into()))?;
        self.take_update(bot_id, update_id, &update, None).await
    }

    /// Takes one update of `bot_id` once: the link or unlink it asks for and the bot's reply
    /// (a delivery with its job), and the next offset when polling — one transaction.
    async fn take_update(
        &self,
        bot_id: i64,
        update_id: i64,
        update: &serde_json::Value,
        next_offset: Option<i64>,
    ) -> Result<Received, NotificationsError> {
        let now = self.clock.now();
        let uow = self.db.begin().await?;
        let new = uow
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO notification_bot_updates (bot_id, update_id, received_at) \
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                [bot_id.into(), update_id.into(), now.into()],
            ))
            .await?
            .rows_affected()
            > 0;
        if new && let Some((chat_id, text)) = message_text(update) {
            let (user_id, reply) = self.answer(&*uow, chat_id, &text).await?;
            let message = Message {
                event_id: Uuid::new_v4(),
                kind: "link",
                text: reply.to_owned(),
            };
            self.queue_delivery(&*uow, &message, user_id, chat_id)
                .await?;
        }
        if let Some(offset) = next_offset {
            uow.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE notification_bot SET poll_offset = $2 WHERE bot_id = $1",
                [bot_id.into(), offset.into()],
            ))
            .await?;
        }
        uow.commit().await?;
        Ok(if new {
            Received::Taken
        } else {
            Received::Duplicate
        })
    }

    /// Links or unlinks `chat_id` as `text` asks; who the reply concerns, and the reply.
    async fn answer(
        &self,
        conn: &impl ConnectionTrait,
        chat_id: i64,
        text: &str,
    ) -> Result<(Option<UserId>, &'static str), NotificationsError> {
        let now = self.clock.now();
        Ok(match command(text) {
            Command::Link(code) => {
                let linked = conn
                    .query_one_raw(Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        "UPDATE notification_settings SET telegram_chat_id = $2, linked_at = $3, \
                             link_code_hash = NULL, link_code_expires_at = NULL, \
                             updated_at = $3 \
                         WHERE link_code_hash = $1 AND link_code_expires_at > $3 \
                         RETURNING user_id",
                        [hash_token(code).into(), chat_id.into(), now.into()],
                    ))
                    .await?;
                match linked {
                    Some(row) => (Some(row.try_get::<UserId>("", "user_id")?), LINKED),
                    None => (None, BAD_CODE),
                }
            }
            Command::Stop => {
                let unlinked = unlink_chat(conn, chat_id, now).await?;
                (None, if unlinked > 0 { UNLINKED } else { NOT_LINKED })
            }
            Command::Start | Command::Other => (None, HOW_TO),
        })
    }

    /// The poller's supervisor: while `stop` is false, this process tries to hold the bot's
    /// lease (when it polls) and polls while it does.
    pub async fn run_poller(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let holder = Uuid::new_v4();
        let every = Duration::from_millis(self.telegram.poll_supervise_ms.max(100));
        let timeout = Duration::from_secs(self.telegram.poll_timeout_secs.max(1));
        loop {
            match self.claim_poller(holder).await {
                Ok(true) => {
                    let poller = PlatformPoller {
                        service: Arc::clone(&self),
                        holder,
                    };
                    long_poll(&poller, timeout, stop.clone()).await;
                }
                Ok(false) => {}
                Err(error) => tracing::warn!("claiming the notifications bot failed: {error}"),
            }
            if *stop.borrow() {
                break;
            }
            tokio::select! {
                _ = stop.changed() => break,
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    fn lease_from_now(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let now = self.clock.now();
        let lease = i64::try_from(self.telegram.poll_lease_secs).unwrap_or(60);
        (now, now + chrono::Duration::seconds(lease))
    }

    /// Takes the bot's lease when it polls and nobody (alive) holds it.
    async fn claim_poller(&self, holder: Uuid) -> Result<bool, sea_orm::DbErr> {
        let (now, until) = self.lease_from_now();
        Ok(self
            .db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE notification_bot SET poll_holder = $1, poll_lease_until = $3 \
                 WHERE mode = 'polling' AND bot_username IS NOT NULL \
                   AND (poll_holder IS NULL OR poll_holder = $1 OR poll_lease_until < $2)",
                [holder.into(), now.into(), until.into()],
            ))
            .await?
            .rows_affected()
            > 0)
    }
}

/// The notifications bot while this process holds its lease.
struct PlatformPoller {
    service: Arc<NotificationsService>,
    holder: Uuid,
}

#[async_trait]
impl PolledBot for PlatformPoller {
    async fn renew(&self) -> anyhow::Result<Option<(BotApi, Option<i64>)>> {
        let (_, until) = self.service.lease_from_now();
        let row = self
            .service
            .db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE notification_bot SET poll_lease_until = $2 \
                 WHERE mode = 'polling' AND poll_holder = $1 RETURNING bot_id, poll_offset",
                [self.holder.into(), until.into()],
            ))
            .await?;
        let Some(row) = row else { return Ok(None) };
        let bot_id: i64 = row.try_get("", "bot_id")?;
        let offset: Option<i64> = row.try_get("", "poll_offset")?;
        Ok(match self.service.bot_api().await? {
            Some((token, api)) if token.bot_id() == bot_id => Some((api, offset)),
            _ => None,
        })
    }

    async fn store(
        &self,
        updates: &[(i64, serde_json::Value)],
        _next_offset: i64,
    ) -> anyhow::Result<()> {
        let Some(bot) = self.service.platform_bot_row().await? else {
            return Ok(());
        };
        // One at a time, each with the offset after it: the batch's last sets the next one.
        for (update_id, update) in updates {
            self.service
                .take_update(bot.bot_id, *update_id, update, Some(update_id + 1))
                .await?;
        }
        Ok(())
    }

    async fn record(&self, error: Option<String>) {
        let recorded = self
            .service
            .db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE notification_bot SET last_error = $2 \
                 WHERE poll_holder = $1 AND last_error IS DISTINCT FROM $2",
                [self.holder.into(), error.into()],
            ))
            .await;
        if let Err(error) = recorded {
            tracing::warn!("recording the notifications bot's state failed: {error}");
        }
    }

    async fn release(&self) {
        let released = self
            .service
            .db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE notification_bot SET poll_holder = NULL, poll_lease_until = NULL \
                 WHERE poll_holder = $1",
                [self.holder.into()],
            ))
            .await;
        if let Err(error) = released {
            tracing::warn!("releasing the notifications bot's poller failed: {error}");
        }
    }
}

/// The chat and text of a message update (edits, callbacks and the rest are not read).
fn message_text(update: &serde_json::Value) -> Option<(i64, String)> {
    let update: Update = serde_json::from_value(update.clone()).ok()?;
    let UpdateContent::Message(message) = update.content else {
        return None;
    };
    Some((message.chat.id, message.text?))
}

#[cfg(test)]
mod tests {
    use super::{Command, command};

    #[test]
    fn start_with_a_code_links_and_stop_unlinks() {
        assert_eq!(command("/start abc-DEF_1"), Command::Link("abc-DEF_1"));
        assert_eq!(command("/start@notify_bot abc"), Command::Link("abc"));
        assert_eq!(command("/start"), Command::Start);
        assert_eq!(command("/STOP"), Command::Stop);
        assert_eq!(command("hello"), Command::Other);
    }
}
