//! Where a user's platform notifications go and which they want; the one-time code that links
//! a Telegram chat; and the user's delivery log. The platform's bot is in `bot.rs`, turning
//! events into messages and sending them in `sending.rs`.

mod bot;
mod sending;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::clock::Clock;
use crate::core::config::{NotificationSettings, ServerSettings, TelegramSettings};
use crate::core::crypto::{SecretBox, hash_token, random_token};
use crate::core::db::Db;
use crate::core::ids::UserId;
use crate::core::outbound::OutboundClients;
use crate::core::pagination::{Page, PageParams, fetch_page};
use crate::core::telegram::Pacing;
use crate::modules::auth::AuthService;
use crate::modules::documents::DocumentsService;
use crate::modules::platform_config::PlatformConfigService;
use crate::modules::projects::ProjectsService;

use super::domain::entities::{delivery, settings};
use super::domain::errors::NotificationsError;
use super::domain::{DeliveryStatus, NotificationEvent};

pub use bot::PlatformBotView;
pub(super) use sending::concerns;

/// A user's notification settings, as the API shows them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SettingsView {
    /// The linked Telegram chat (set by sending `/start <code>` to the bot; read-only).
    pub telegram_chat_id: Option<i64>,
    pub linked_at: Option<DateTime<Utc>>,
    /// The events the user is told about.
    pub events: Vec<NotificationEvent>,
    /// The platform's notifications bot, to write to (none: not configured).
    pub bot_username: Option<String>,
}

/// A one-time link code: send `/start <code>` to the bot (or open `url`) before `expires_at`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LinkCode {
    pub code: String,
    pub expires_at: DateTime<Utc>,
    pub bot_username: String,
    /// `https://t.me/<bot>?start=<code>`: opens the bot with the code filled in.
    pub url: String,
}

/// One message to the user, as their delivery log shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: Uuid,
    /// An event name, or `link` for the bot's answer to a link message.
    pub kind: String,
    pub text: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// The services notifications need.
pub struct NotificationsDeps {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub secret_box: SecretBox,
    pub outbound: Arc<OutboundClients>,
    pub platform: Arc<PlatformConfigService>,
    pub auth: Arc<AuthService>,
    pub projects: Arc<ProjectsService>,
    pub documents: Arc<DocumentsService>,
}

pub struct NotificationsService {
    db: Db,
    clock: Arc<dyn Clock>,
    secret_box: SecretBox,
    outbound: Arc<OutboundClients>,
    platform: Arc<PlatformConfigService>,
    auth: Arc<AuthService>,
    projects: Arc<ProjectsService>,
    documents: Arc<DocumentsService>,
    settings: NotificationSettings,
    telegram: TelegramSettings,
    public_base_url: Option<String>,
    /// Telegram's sending limits for the notifications bot.
    pacing: Arc<Pacing>,
}

/// Events a user who never chose gets: all of them (linking a chat is opting in; each one
/// reaches only those it concerns).
fn default_events() -> Vec<NotificationEvent> {
    NotificationEvent::ALL.to_vec()
}

/// The events stored in a settings row (names this version does not know are skipped).
fn stored_events(row: &settings::Model) -> Vec<NotificationEvent> {
    serde_json::from_value::<Vec<serde_json::Value>>(row.events.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|name| serde_json::from_value(name).ok())
        .collect()
}

/// A user's first settings row: `events`, no chat, no link code.
fn new_row(
    user_id: UserId,
    events: &[NotificationEvent],
    now: DateTime<Utc>,
) -> settings::ActiveModel {
    let names: Vec<&str> = events.iter().map(|event| event.as_str()).collect();
    settings::ActiveModel {
        user_id: Set(user_id),
        telegram_chat_id: Set(None),
        linked_at: Set(None),
        events: Set(serde_json::json!(names)),
        link_code_hash: Set(None),
        link_code_expires_at: Set(None),
        updated_at: Set(now),
    }
}

fn delivery_view(row: delivery::Model) -> DeliveryView {
    DeliveryView {
        id: row.id,
        kind: row.kind,
        text: row.text,
        status: row.status,
        attempts: row.attempts,
        last_error: row.last_error,
        created_at: row.created_at,
        sent_at: row.sent_at,
    }
}

impl NotificationsService {
    pub fn new(
        deps: NotificationsDeps,
        settings: NotificationSettings,
        telegram: TelegramSettings,
        server: &ServerSettings,
    ) -> Self {
        let public = server.public_base_url.trim().trim_end_matches('/');
        NotificationsService {
            db: deps.db,
            clock: deps.clock,
            secret_box: deps.secret_box,
            outbound: deps.outbound,
            platform: deps.platform,
            auth: deps.auth,
            projects: deps.projects,
            documents: deps.documents,
            settings,
            public_base_url: (!public.is_empty()).then(|| public.to_owned()),
            pacing: Pacing::new(
                telegram.bot_messages_per_sec,
                telegram.chat_messages_per_sec,
                telegram.chat_burst,
            ),
            telegram,
        }
    }

    async fn settings_row(
        &self,
        user_id: UserId,
    ) -> Result<Option<settings::Model>, NotificationsError> {
        Ok(settings::Entity::find_by_id(user_id)
            .one(self.db.connection())
            .await?)
    }

    pub async fn get_settings(&self, user_id: UserId) -> Result<SettingsView, NotificationsError> {
        let row = self.settings_row(user_id).await?;
        let bot = self.platform_bot_row().await?;
        Ok(SettingsView {
            telegram_chat_id: row.as_ref().and_then(|row| row.telegram_chat_id),
            linked_at: row.as_ref().and_then(|row| row.linked_at),
            events: row.as_ref().map_or_else(default_events, stored_events),
            bot_username: bot.and_then(|bot| bot.bot_username),
        })
    }

    /// Chooses the events. `telegram_chat_id` is read-only: only its current value is accepted
    /// (so a settings object read with GET can be sent back as it is).
    pub async fn put_settings(
        &self,
        user_id: UserId,
        events: Vec<NotificationEvent>,
        telegram_chat_id: Option<Option<i64>>,
    ) -> Result<SettingsView, NotificationsError> {
        let current = self.settings_row(user_id).await?;
        if let Some(given) = telegram_chat_id
            && given != current.as_ref().and_then(|row| row.telegram_chat_id)
        {
            return Err(NotificationsError::invalid(
                "telegram_chat_id",
                "is read-only: link a chat by sending /start <code> to the notifications bot \
                 (POST /api/v1/notifications/telegram/link), unlink with DELETE",
            ));
        }
        let mut chosen: Vec<NotificationEvent> = Vec::with_capacity(events.len());
        for event in events {
            if !chosen.contains(&event) {
                chosen.push(event);
            }
        }
        self.upsert_row(
            new_row(user_id, &chosen, self.clock.now()),
            &[settings::Column::Events],
        )
        .await?;
        self.get_settings(user_id).await
    }

    /// Writes the user's `row` when they have none, else its `columns` (and `updated_at`).
    async fn upsert_row(
        &self,
        row: settings::ActiveModel,
        columns: &[settings::Column],
    ) -> Result<(), NotificationsError> {
        let mut update: Vec<settings::Column> = columns.to_vec();
        update.push(settings::Column::UpdatedAt);
        settings::Entity::insert(row)
            .on_conflict(
                OnConflict::column(settings::Column::UserId)
                    .update_columns(update)
                    .to_owned(),
            )
            .exec_without_returning(self.db.connection())
            .await?;
        Ok(())
    }

    /// A new one-time link code for the user (an earlier unused one stops working).
    pub async fn create_link_code(&self, user_id: UserId) -> Result<LinkCode, NotificationsError> {
        // A bot Telegram has not accepted (no username yet) cannot be written to either.
        let bot_username = self
            .platform_bot_row()
            .await?
            .and_then(|bot| bot.bot_username)
            .ok_or(NotificationsError::NoBot)?;
        let code = random_token("");
        let ttl = i64::try_from(self.settings.link_code_ttl_secs).unwrap_or(900);
        let expires_at = self.clock.now() + chrono::Duration::seconds(ttl);
        let mut row = new_row(user_id, &default_events(), self.clock.now());
        row.link_code_hash = Set(Some(hash_token(&code)));
        row.link_code_expires_at = Set(Some(expires_at));
        self.upsert_row(
            row,
            &[
                settings::Column::LinkCodeHash,
                settings::Column::LinkCodeExpiresAt,
            ],
        )
        .await?;
        Ok(LinkCode {
            url: format!("https://t.me/{bot_username}?start={code}"),
            code,
            expires_at,
            bot_username,
        })
    }

    /// Forgets the user's chat (and any pending link code): nothing more is sent there.
    pub async fn unlink(&self, user_id: UserId) -> Result<(), NotificationsError> {
        settings::Entity::update_many()
            .col_expr(
                settings::Column::TelegramChatId,
                sea_orm::sea_query::Expr::value(Option::<i64>::None),
            )
            .col_expr(
                settings::Column::LinkedAt,
                sea_orm::sea_query::Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                settings::Column::LinkCodeHash,
                sea_orm::sea_query::Expr::value(Option::<String>::None),
            )
            .col_expr(
                settings::Column::UpdatedAt,
                sea_orm::sea_query::Expr::value(self.clock.now()),
            )
            .filter(settings::Column::UserId.eq(user_id))
            .exec(self.db.connection())
            .await?;
        Ok(())
    }

    /// The largest webhook body read.
    pub fn webhook_max_body_bytes(&self) -> usize {
        self.telegram.webhook_max_body_bytes
    }

    /// The user's messages, newest first.
    pub async fn deliveries(
        &self,
        user_id: UserId,
        page: &PageParams,
    ) -> Result<Page<DeliveryView>, NotificationsError> {
        let select = delivery::Entity::find()
            .filter(delivery::Column::UserId.eq(user_id))
            .order_by_desc(delivery::Column::CreatedAt)
            .order_by_desc(delivery::Column::Id);
        let (rows, total) = fetch_page(self.db.connection(), select, page).await?;
        Ok(Page::new(
            rows.into_iter().map(delivery_view).collect(),
            total,
            page,
        ))
    }
}
