//! Each project's bot: connecting it (the token checked with `getMe` and sealed as the
//! project's `TELEGRAM_BOT_TOKEN`, the webhook registered with a random secret), its state, and
//! disconnecting it. Receiving updates is in `webhook.rs`, answering them in `handling.rs`.

mod handling;
mod polling;
pub(super) mod reading;
pub(super) mod store;
mod streaming;
mod webhook;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use utoipa::ToSchema;

use crate::core::auth::Actor;
use crate::core::clock::Clock;
use crate::core::config::{ServerSettings, TelegramSettings};
use crate::core::crypto::{SecretBox, random_token};
use crate::core::db::{Db, is_unique_violation};
use crate::core::error::Failure;
use crate::core::events::EventBus;
use crate::core::ids::{AvatarId, ProjectId};
use crate::core::outbound::{BaseUrl, OutboundClients, OutboundError, Trust};
use crate::core::telegram::{BotApi, BotApiError, BotToken, Pacing, TELEGRAM_SECRETS};
use crate::modules::avatars::AvatarsService;
use crate::modules::chat::ChatService;
use crate::modules::events::DomainEvent;
use crate::modules::platform_config::PlatformConfigService;
use crate::modules::projects::{BoundCredential, EndpointSecrets, ProjectsService, SecretName};

use super::domain::entities::bot;
use super::domain::errors::TelegramError;
use super::domain::events::TelegramEvent;
use super::domain::{BotMode, BotStatus};

/// A project's bot, as the API shows it (never its token).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BotView {
    pub bot_id: i64,
    pub bot_username: String,
    #[schema(value_type = uuid::Uuid)]
    pub avatar_id: AvatarId,
    pub mode: BotMode,
    pub status: BotStatus,
    pub last_error: Option<String>,
    pub connected_at: DateTime<Utc>,
}

fn view(row: &bot::Model) -> BotView {
    BotView {
        bot_id: row.bot_id,
        bot_username: row.bot_username.clone(),
        avatar_id: row.avatar_id,
        mode: row.mode,
        status: row.status,
        last_error: row.last_error.clone(),
        connected_at: row.connected_at,
    }
}

/// What `PUT /projects/{pid}/telegram` asks for.
#[derive(Debug, Clone)]
pub struct Connection {
    pub bot_token: SecretString,
    pub avatar_id: AvatarId,
    /// Default: webhook when the platform has a public address, else polling.
    pub mode: Option<BotMode>,
}

/// The services the bots need.
pub struct TelegramDeps {
    pub db: Db,
    pub bus: EventBus<DomainEvent>,
    pub clock: Arc<dyn Clock>,
    pub secret_box: SecretBox,
    pub outbound: Arc<OutboundClients>,
    pub projects: Arc<ProjectsService>,
    pub avatars: Arc<AvatarsService>,
    pub chat: Arc<ChatService>,
    pub platform: Arc<PlatformConfigService>,
}

pub struct TelegramService {
    db: Db,
    bus: EventBus<DomainEvent>,
    clock: Arc<dyn Clock>,
    secret_box: SecretBox,
    outbound: Arc<OutboundClients>,
    projects: Arc<ProjectsService>,
    avatars: Arc<AvatarsService>,
    chat: Arc<ChatService>,
    platform: Arc<PlatformConfigService>,
    settings: TelegramSettings,
    public_base_url: Option<String>,
    /// Telegram's sending limits, shared by every bot of this process.
    pacing: Arc<Pacing>,
    /// Webhook keys by bot id (`webhook.rs`).
    webhook_keys: std::sync::RwLock<std::collections::HashMap<i64, webhook::WebhookKey>>,
    /// Writes webhook updates together (`store.rs`): one writer per thread, started by the
    /// thread's first update, so that a call and its statement never wait on another thread.
    acks: thread_local::ThreadLocal<store::AckWriter>,
}

/// Where the webhook secret of `bot_id` is sealed.
fn webhook_context(bot_id: i64) -> String {
    format!("telegram_webhook:{bot_id}")
}

fn failure(error: impl Into<Failure>) -> TelegramError {
    TelegramError::Common(error.into())
}

impl TelegramService {
    pub fn new(deps: TelegramDeps, settings: TelegramSettings, server: &ServerSettings) -> Self {
        let public = server.public_base_url.trim().trim_end_matches('/');
        TelegramService {
            db: deps.db,
            bus: deps.bus,
            clock: deps.clock,
            secret_box: deps.secret_box,
            outbound: deps.outbound,
            projects: deps.projects,
            avatars: deps.avatars,
            chat: deps.chat,
            platform: deps.platform,
            public_base_url: (!public.is_empty()).then(|| public.to_owned()),
            pacing: Pacing::new(
                settings.bot_messages_per_sec,
                settings.chat_messages_per_sec,
                settings.chat_burst,
            ),
            settings,
            webhook_keys: std::sync::RwLock::default(),
            acks: thread_local::ThreadLocal::new(),
        }
    }

    /// The project's Bot API address (its own `TELEGRAM_API_BASE_URL`, else the platform's)
    /// and the stored token as that address sees it — one read of the project's secrets.
    async fn stored_secrets(
        &self,
        project_id: ProjectId,
    ) -> Result<EndpointSecrets, TelegramError> {
        self.projects
            .endpoint_secrets(project_id, TELEGRAM_SECRETS)
            .await
            .map_err(failure)
    }

    /// The bot of `token` at `endpoint` (the project's own Bot API server, a tenant URL the
    /// outbound policy judges), or at the platform's when `None`.
    async fn bot_api(
        &self,
        endpoint: Option<&str>,
        token: &BotToken,
    ) -> Result<BotApi, TelegramError> {
        let (base, trust) = match endpoint {
            Some(url) => (BaseUrl::parse(url), Trust::Tenant),
            None => (BaseUrl::parse(&self.settings.api_base_url), Trust::Operator),
        };
        let base = base.map_err(|error| {
            TelegramError::invalid("bot_token", format!("the Bot API address {error}"))
        })?;
        let platform = self.platform.get().await.map_err(failure)?;
        let client = self
            .outbound
            .client_for(&base, trust, &platform.outbound_allowed_hosts)
            .map_err(|error| match error {
                OutboundError::Refused(refused) => {
                    TelegramError::invalid("bot_token", format!("the Bot API server {refused}"))
                }
                other => TelegramError::internal(other),
            })?;
        Ok(BotApi::new(&base, token, client).paced(self.pacing.clone()))
    }

    /// The stored token's bot at the address in `secrets` (none: no token, or one entered for
    /// another address — which is never sent, and the bot says why).
    async fn stored_api(
        &self,
        project_id: ProjectId,
        secrets: &EndpointSecrets,
    ) -> Result<Option<BotApi>, TelegramError> {
        let token = match &secrets.credential {
            BoundCredential::Usable(token) => token,
            BoundCredential::Unset => return Ok(None),
            BoundCredential::EnteredForAnotherEndpoint => {
                self.mark(
                    project_id,
                    Some(
                        "the bot token was entered for another Bot API address \
                         (TELEGRAM_API_BASE_URL changed): connect the bot again"
                            .into(),
                    ),
                )
                .await;
                return Ok(None);
            }
        };
        let token = BotToken::parse(token.expose_secret())
            .map_err(|reason| TelegramError::internal(format!("stored bot token {reason}")))?;
        Ok(Some(
            self.bot_api(secrets.endpoint.as_deref(), &token).await?,
        ))
    }

    /// The project's bot, with its token (none: not connected, or its token was removed or
    /// cannot be sent where the project's Bot API address now points).
    async fn connected(
        &self,
        project_id: ProjectId,
    ) -> Result<Option<(bot::Model, BotApi)>, TelegramError> {
        let Some(row) = bot::Entity::find_by_id(project_id)
            .one(self.db.connection())
            .await?
        else {
            return Ok(None);
        };
        let secrets = self.stored_secrets(project_id).await?;
        Ok(self
            .stored_api(project_id, &secrets)
            .await?
            .map(|api| (row, api)))
    }

    /// Checks the token with Telegram, stores it sealed, registers the webhook (or removes it,
    /// for polling) and records the bot. Connecting again replaces token, avatar and mode.
    pub async fn connect(
        &self,
        project_id: ProjectId,
        connection: Connection,
        actor: Actor,
    ) -> Result<BotView, TelegramError> {
        let token = BotToken::parse(connection.bot_token.expose_secret())
            .map_err(|reason| TelegramError::invalid("bot_token", reason))?;
        self.avatars
            .get(project_id, connection.avatar_id)
            .await
            .map_err(|error| match Failure::from(error) {
                Failure::NotFound(_) => {
                    TelegramError::invalid("avatar_id", "no such avatar in this project")
                }
                other => TelegramError::Common(other),
            })?;
        let mode = match (connection.mode, &self.public_base_url) {
            (Some(BotMode::Webhook), None) => {
                return Err(TelegramError::invalid(
                    "mode",
                    "webhook mode needs the platform's public address (server.public_base_url, \
                     APP__SERVER__PUBLIC_BASE_URL); use polling",
                ));
            }
            (Some(mode), _) => mode,
            (None, Some(_)) => BotMode::Webhook,
            (None, None) => BotMode::Polling,
        };
        if let Some(owner) = bot::Entity::find()
            .filter_by_bot(token.bot_id())
            .one(self.db.connection())
            .await?
            && owner.project_id != project_id
        {
            return Err(TelegramError::BotTaken);
        }
        let secrets = self.stored_secrets(project_id).await?;
        let api = self.bot_api(secrets.endpoint.as_deref(), &token).await?;
        let me = api.get_me().await.map_err(|error| match error {
            BotApiError::Rejected { description, .. } => TelegramError::invalid(
                "bot_token",
                format!("Telegram does not accept this token: {description}"),
            ),
            other => TelegramError::Upstream(other.to_string()),
        })?;
        let username = me.username.unwrap_or(me.first_name);
        let secret = match mode {
            BotMode::Webhook => Some(random_token("")),
            BotMode::Polling => None,
        };
        let registered = match (&secret, &self.public_base_url) {
            (Some(secret), Some(public)) => {
                let url = format!("{public}/api/v1/telegram/webhook/{}", token.bot_id());
                api.set_webhook(&url, secret).await
            }
            _ => api.delete_webhook().await,
        };
        registered.map_err(|error| {
            TelegramError::Upstream(format!("registering the bot with Telegram failed: {error}"))
        })?;
        // Another bot replaces the project's: the old one stops sending here.
        let previous = bot::Entity::find_by_id(project_id)
            .one(self.db.connection())
            .await?;
        if previous.is_some_and(|previous| previous.bot_id != token.bot_id())
            && let Some(old_api) = self.stored_api(project_id, &secrets).await?
            && let Err(error) = old_api.delete_webhook().await
        {
            tracing::warn!(%project_id, "removing the previous bot's webhook failed: {error}");
        }
        let name = SecretName::parse(TELEGRAM_SECRETS.credential).map_err(failure)?;
        self.projects
            .put_secret(project_id, &name, token.secret(), actor.clone())
            .await
            .map_err(failure)?;
        let sealed = secret
            .as_deref()
            .map(|secret| {
                self.secret_box
                    .seal(secret, &webhook_context(token.bot_id()))
            })
            .transpose()
            .map_err(failure)?;
        let now = self.clock.now();
        let mut uow = self.db.begin().await?;
        let existing = bot::Entity::find_by_id(project_id).one(&*uow).await?;
        let row = bot::ActiveModel {
            project_id: Set(project_id),
            bot_id: Set(token.bot_id()),
            bot_username: Set(username.clone()),
            avatar_id: Set(connection.avatar_id),
            mode: Set(mode),
            status: Set(BotStatus::Active),
            last_error: Set(None),
            webhook_secret: Set(sealed),
            // A poller of the previous connection stops at its next renewal; the new one
            // starts from the updates Telegram still holds (stored once whatever comes again).
            poll_holder: Set(None),
            poll_lease_until: Set(None),
            poll_offset: Set(None),
            connected_at: Set(now),
            updated_at: Set(now),
        };
        let saved = match existing {
            Some(_) => row.update(&*uow).await,
            None => row.insert(&*uow).await,
        }
        .map_err(|error| {
            if is_unique_violation(&error) {
                TelegramError::BotTaken
            } else {
                TelegramError::from(error)
            }
        })?;
        self.bus
            .publish(
                &mut uow,
                &DomainEvent::Telegram(TelegramEvent::BotConnected {
                    project_id,
                    bot_id: saved.bot_id,
                    bot_username: username,
                    avatar_id: saved.avatar_id,
                    mode,
                    actor,
                }),
            )
            .await?;
        uow.commit().await?;
        self.forget_key(saved.bot_id);
        Ok(view(&saved))
    }

    pub async fn status(&self, project_id: ProjectId) -> Result<BotView, TelegramError> {
        bot::Entity::find_by_id(project_id)
            .one(self.db.connection())
            .await?
            .map(|row| view(&row))
            .ok_or(TelegramError::NotConnected)
    }

    /// Removes the webhook (best effort: a revoked token cannot), the bot and its token.
    pub async fn disconnect(
        &self,
        project_id: ProjectId,
        actor: Actor,
    ) -> Result<(), TelegramError> {
        let Some(row) = bot::Entity::find_by_id(project_id)
            .one(self.db.connection())
            .await?
        else {
            return Err(TelegramError::NotConnected);
        };
        if let Some((_, api)) = self.connected(project_id).await?
            && let Err(error) = api.delete_webhook().await
        {
            tracing::warn!(%project_id, "removing the Telegram webhook failed: {error}");
        }
        let mut uow = self.db.begin().await?;
        bot::Entity::delete_by_id(project_id).exec(&*uow).await?;
        self.bus
            .publish(
                &mut uow,
                &DomainEvent::Telegram(TelegramEvent::BotDisconnected {
                    project_id,
                    bot_id: row.bot_id,
                    actor: actor.clone(),
                }),
            )
            .await?;
        uow.commit().await?;
        self.forget_key(row.bot_id);
        if let Err(error) = self
            .projects
            .delete_secret(project_id, TELEGRAM_SECRETS.credential, actor)
            .await
        {
            tracing::warn!(%project_id, "removing the bot token failed: {error}");
        }
        Ok(())
    }

    /// Records how the last call to Telegram went: `failing` with the reason, or `active`
    /// (one statement; a success writes nothing when the bot is already active).
    async fn mark(&self, project_id: ProjectId, error: Option<String>) {
        let status = match error {
            Some(_) => BotStatus::Failing,
            None => BotStatus::Active,
        };
        // A failure is always written (its reason may be new); a success only ends one.
        let changes = match error {
            Some(_) => Condition::all(),
            None => Condition::any()
                .add(bot::Column::Status.ne(status))
                .add(bot::Column::LastError.is_not_null()),
        };
        let recorded = bot::Entity::update_many()
            .col_expr(bot::Column::Status, Expr::value(status))
            .col_expr(bot::Column::LastError, Expr::value(error))
            .col_expr(bot::Column::UpdatedAt, Expr::value(self.clock.now()))
            .filter(bot::Column::ProjectId.eq(project_id))
            .filter(changes)
            .exec(self.db.connection())
            .await;
        if let Err(error) = recorded {
            tracing::warn!(%project_id, "recording the bot's state failed: {error}");
        }
    }
}

/// `bot_id = ?` on the bots table.
trait FilterByBot {
    fn filter_by_bot(self, bot_id: i64) -> Self;
}

impl FilterByBot for sea_orm::Select<bot::Entity> {
    fn filter_by_bot(self, bot_id: i64) -> Self {
        use sea_orm::{ColumnTrait, QueryFilter};
        self.filter(bot::Column::BotId.eq(bot_id))
    }
}
