//! `POST /api/v1/public/avatars/{aid}/chat`: an end user of the project asks, through the
//! project's own backend holding an API key (`X-Api-Key`).

use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::Deserialize;
use utoipa::ToSchema;
use validator::Validate;

use crate::core::auth::{Actor, ApiKeyPrincipal, scope};
use crate::core::cache::RateLimiter;
use crate::core::channel::Channel;
use crate::core::error::{AppError, ErrorEnvelope};
use crate::core::extract::DeferredJson;
use crate::core::ids::{AvatarId, ConversationId};
use crate::modules::avatars::AvatarsService;
use crate::modules::chat::service::{ChatService, Thread};
use crate::modules::end_users::Contact;

use super::respond::{self, ChatResponse};
use super::{CHAT_REQUESTS, key_within_rate};

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublicEndUser {
    /// The project's own id for this person; the same id finds the same end user.
    #[validate(length(min = 1, max = 200))]
    pub external_id: String,
    #[validate(length(max = 200))]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublicChatRequest {
    #[validate(nested)]
    pub end_user: PublicEndUser,
    #[validate(length(min = 1))]
    pub message: String,
    /// Continue this conversation (it must be this end user's with this avatar, else 404).
    #[schema(value_type = Option<uuid::Uuid>)]
    pub conversation_id: Option<ConversationId>,
}

/// An end user asks an avatar of the key's project. JSON, or SSE with
/// `Accept: text/event-stream`, as for staff messages. Rate-limited per key.
#[utoipa::path(post, path = "/api/v1/public/avatars/{aid}/chat", tag = "public",
    security(("api_key" = [])),
    params(("aid" = Uuid, Path)), request_body = PublicChatRequest,
    responses((status = 200, body = ChatResponse, description = "JSON, or `text/event-stream`"),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope, description = "end user blocked"),
              (status = 404, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope),
              (status = 502, body = ErrorEnvelope)))]
#[post("/public/avatars/{aid}/chat")]
pub async fn chat(
    request: HttpRequest,
    key: ApiKeyPrincipal<scope::Chat>,
    chat: web::Data<ChatService>,
    limiter: web::Data<RateLimiter>,
    avatars: web::Data<AvatarsService>,
    path: web::Path<AvatarId>,
    body: DeferredJson<PublicChatRequest>,
) -> Result<HttpResponse, AppError> {
    key_within_rate(&limiter, &chat, CHAT_REQUESTS, key.key_id).await?;
    let avatar_id = path.into_inner();
    // Another project's avatar, or one the key does not reach, is unknown — before the body is
    // read, so that a body error cannot tell a real id from a made-up one.
    if !key.reaches(avatar_id) {
        return Err(AppError::not_found("avatar"));
    }
    avatars.get(key.project_id, avatar_id).await?;
    let body = body.read().await?;
    let contact = Contact {
        channel: Channel::Api,
        external_id: body.end_user.external_id,
        display_name: body.end_user.name,
        raw_profile: None,
    };
    let actor = Actor::api_key(key.key_id, key.ip.clone());
    let answer = chat
        .into_inner()
        .ask_as_end_user(
            key.project_id,
            avatar_id,
            contact,
            Thread::Stored(body.conversation_id),
            body.message,
            actor,
        )
        .await?;
    respond::respond(&request, answer).await
}
