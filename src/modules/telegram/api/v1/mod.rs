//! `/api/v1/projects/{pid}/telegram` (connect, state, disconnect) and the webhook
//! `/api/v1/telegram/webhook/{bot_id}` Telegram posts updates to.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use serde::Deserialize;
use utoipa::ToSchema;
use validator::Validate;

use crate::core::auth::{Manager, ProjectAccess, Viewer};
use crate::core::error::{AppError, ErrorEnvelope};
use crate::core::extract::{ValidJson, capped_body};
use crate::core::ids::AvatarId;
use crate::modules::telegram::domain::BotMode;
use crate::modules::telegram::service::{BotView, Connection, TelegramService};

#[derive(Debug, Deserialize, Validate, ToSchema)]
pub struct ConnectRequest {
    /// From @BotFather (`<bot id>:<secret>`). Stored encrypted; never returned.
    #[schema(value_type = String)]
    pub bot_token: secrecy::SecretString,
    /// The avatar that answers.
    #[schema(value_type = uuid::Uuid)]
    pub avatar_id: AvatarId,
    /// `webhook` (default when the platform has a public address) or `polling`.
    pub mode: Option<BotMode>,
}

/// Connects the project's bot: the token is checked with Telegram and the webhook registered.
#[utoipa::path(put, path = "/api/v1/projects/{pid}/telegram", tag = "telegram",
    security(("bearer" = [])), params(("pid" = Uuid, Path)), request_body = ConnectRequest,
    responses((status = 200, body = BotView), (status = 409, body = ErrorEnvelope),
              (status = 422, body = ErrorEnvelope), (status = 502, body = ErrorEnvelope)))]
#[put("/projects/{pid}/telegram")]
pub async fn connect(
    access: ProjectAccess<Manager>,
    telegram: web::Data<TelegramService>,
    body: ValidJson<ConnectRequest>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let connection = Connection {
        bot_token: body.bot_token,
        avatar_id: body.avatar_id,
        mode: body.mode,
    };
    let bot = telegram
        .connect(access.project_id, connection, access.user.actor())
        .await?;
    Ok(HttpResponse::Ok().json(bot))
}

/// The project's bot (never its token).
#[utoipa::path(get, path = "/api/v1/projects/{pid}/telegram", tag = "telegram",
    security(("bearer" = [])), params(("pid" = Uuid, Path)),
    responses((status = 200, body = BotView), (status = 404, body = ErrorEnvelope)))]
#[get("/projects/{pid}/telegram")]
pub async fn status(
    access: ProjectAccess<Viewer>,
    telegram: web::Data<TelegramService>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(telegram.status(access.project_id).await?))
}

/// Disconnects the bot: its webhook removed, its token deleted.
#[utoipa::path(delete, path = "/api/v1/projects/{pid}/telegram", tag = "telegram",
    security(("bearer" = [])), params(("pid" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
#[delete("/projects/{pid}/telegram")]
pub async fn disconnect(
    access: ProjectAccess<Manager>,
    telegram: web::Data<TelegramService>,
) -> Result<HttpResponse, AppError> {
    telegram
        .disconnect(access.project_id, access.user.actor())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Telegram's updates for one bot. `X-Telegram-Bot-Api-Secret-Token` must be the bot's
/// secret (401 otherwise); the update is stored and answered in the background (200 at once).
#[utoipa::path(post, path = "/api/v1/telegram/webhook/{bot_id}", tag = "telegram",
    params(("bot_id" = i64, Path)),
    responses((status = 200), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 413, body = ErrorEnvelope)))]
#[post("/telegram/webhook/{bot_id}")]
pub async fn webhook(
    request: HttpRequest,
    bot_id: web::Path<i64>,
    payload: web::Payload,
    telegram: web::Data<TelegramService>,
) -> Result<HttpResponse, AppError> {
    let body = capped_body(payload, telegram.webhook_max_body_bytes()).await?;
    let secret = request
        .headers()
        .get("X-Telegram-Bot-Api-Secret-Token")
        .and_then(|value| value.to_str().ok());
    telegram.receive(*bot_id, secret, &body).await?;
    Ok(HttpResponse::Ok().finish())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(connect)
        .service(status)
        .service(disconnect)
        .service(webhook);
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(connect, status, disconnect, webhook),
    components(schemas(ConnectRequest, BotView, BotMode, crate::modules::telegram::domain::BotStatus)),
    tags((name = "telegram", description = "A Telegram bot per project")),
)]
pub struct Doc;
