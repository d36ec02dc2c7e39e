//! `/api/v1/notifications/*`: the caller's notification settings, linking and unlinking their
//! Telegram chat, their delivery log; the notifications bot's webhook; and its state for
//! saas_admins.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use serde::Deserialize;
use utoipa::ToSchema;
use validator::Validate;

use crate::core::auth::{CurrentUser, SaasAdmin};
use crate::core::error::{AppError, ErrorEnvelope};
use crate::core::extract::{ValidJson, ValidQuery, capped_body, nullable};
use crate::core::pagination::{Page, PageParams};
use crate::modules::notifications::domain::{DeliveryStatus, NotificationEvent};
use crate::modules::notifications::service::{
    DeliveryView, LinkCode, NotificationsService, PlatformBotView, SettingsView,
};

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSettings {
    /// The events to be told about (an empty list: none).
    pub events: Vec<NotificationEvent>,
    /// Read-only: accepted only with its current value (so GET's answer can be sent back).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    pub telegram_chat_id: Option<Option<i64>>,
}

/// Where the caller's platform notifications go, and which.
#[utoipa::path(get, path = "/api/v1/notifications/settings", tag = "notifications",
    security(("bearer" = [])), responses((status = 200, body = SettingsView)))]
#[get("/notifications/settings")]
pub async fn get_settings(
    user: CurrentUser,
    notifications: web::Data<NotificationsService>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(notifications.get_settings(user.id).await?))
}

/// Chooses the events (`telegram_chat_id` is set only by linking).
#[utoipa::path(put, path = "/api/v1/notifications/settings", tag = "notifications",
    security(("bearer" = [])), request_body = PutSettings,
    responses((status = 200, body = SettingsView), (status = 422, body = ErrorEnvelope)))]
#[put("/notifications/settings")]
pub async fn put_settings(
    user: CurrentUser,
    notifications: web::Data<NotificationsService>,
    body: ValidJson<PutSettings>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let settings = notifications
        .put_settings(user.id, body.events, body.telegram_chat_id)
        .await?;
    Ok(HttpResponse::Ok().json(settings))
}

/// A one-time code linking a Telegram chat: send `/start <code>` to the notifications bot (or
/// open `url`). 409 when the platform has no notifications bot.
#[utoipa::path(post, path = "/api/v1/notifications/telegram/link", tag = "notifications",
    security(("bearer" = [])),
    responses((status = 201, body = LinkCode), (status = 409, body = ErrorEnvelope)))]
#[post("/notifications/telegram/link")]
pub async fn create_link(
    user: CurrentUser,
    notifications: web::Data<NotificationsService>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Created().json(notifications.create_link_code(user.id).await?))
}

/// Unlinks the caller's chat: nothing more is sent there.
#[utoipa::path(delete, path = "/api/v1/notifications/telegram", tag = "notifications",
    security(("bearer" = [])), responses((status = 204)))]
#[delete("/notifications/telegram")]
pub async fn unlink(
    user: CurrentUser,
    notifications: web::Data<NotificationsService>,
) -> Result<HttpResponse, AppError> {
    notifications.unlink(user.id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's messages, newest first, with how each went.
#[utoipa::path(get, path = "/api/v1/notifications/deliveries", tag = "notifications",
    security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = Page<DeliveryView>, description = "`{items: [Delivery], total, limit, offset}`")))]
#[get("/notifications/deliveries")]
pub async fn deliveries(
    user: CurrentUser,
    notifications: web::Data<NotificationsService>,
    page: ValidQuery<PageParams>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(notifications.deliveries(user.id, &page).await?))
}

/// The notifications bot's state (404 when no token is configured).
#[utoipa::path(get, path = "/api/v1/admin/notifications/bot", tag = "notifications",
    security(("bearer" = [])),
    responses((status = 200, body = PlatformBotView), (status = 404, body = ErrorEnvelope)))]
#[get("/admin/notifications/bot")]
pub async fn platform_bot(
    _admin: SaasAdmin,
    notifications: web::Data<NotificationsService>,
) -> Result<HttpResponse, AppError> {
    match notifications.platform_bot().await? {
        Some(bot) => Ok(HttpResponse::Ok().json(bot)),
        None => Err(AppError::not_found("notifications bot")),
    }
}

/// Telegram's updates for the notifications bot (link messages). The secret header must
/// match, else 401; answered at once.
#[utoipa::path(post, path = "/api/v1/notifications/telegram/webhook/{bot_id}",
    tag = "notifications", params(("bot_id" = i64, Path)),
    responses((status = 200), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 413, body = ErrorEnvelope)))]
#[post("/notifications/telegram/webhook/{bot_id}")]
pub async fn webhook(
    request: HttpRequest,
    bot_id: web::Path<i64>,
    payload: web::Payload,
    notifications: web::Data<NotificationsService>,
) -> Result<HttpResponse, AppError> {
    let body = capped_body(payload, notifications.webhook_max_body_bytes()).await?;
    let secret = request
        .headers()
        .get("X-Telegram-Bot-Api-Secret-Token")
        .and_then(|value| value.to_str().ok());
    notifications.receive(*bot_id, secret, &body).await?;
    Ok(HttpResponse::Ok().finish())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_settings)
        .service(put_settings)
        .service(create_link)
        .service(unlink)
        .service(deliveries)
        .service(platform_bot)
        .service(webhook);
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(get_settings, put_settings, create_link, unlink, deliveries, platform_bot, webhook),
    components(schemas(PutSettings, SettingsView, LinkCode, DeliveryView, PlatformBotView,
                       NotificationEvent, DeliveryStatus)),
    tags((name = "notifications", description = "Platform notifications to Telegram")),
)]
pub struct Doc;
