//! `/api/v1/projects/{pid}/.../conversations*` (staff), `/api/v1/public/avatars/{aid}/chat`
//! and the OpenAI-compatible `/api/v1/openai/*` (a project API key).

mod openai;
mod public;
mod respond;

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use validator::Validate;

use crate::core::auth::{Operator, ProjectAccess};
use crate::core::cache::RateLimiter;
use crate::core::channel::Channel;
use crate::core::error::{AppError, ErrorEnvelope};
use crate::core::extract::{ValidJson, ValidQuery};
use crate::core::ids::{AvatarId, ConversationId, EndUserId, ProjectId};
use crate::core::pagination::{Page, PageParams};
use crate::modules::chat::service::{
    ChatService, ConversationFilter, ConversationView, MessageView,
};

use respond::ChatResponse;

#[derive(Debug, Default, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConversationRequest {
    #[validate(length(max = 200))]
    pub title: Option<String>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessageRequest {
    /// The question (1 to `chat.max_message_chars` characters).
    #[validate(length(min = 1))]
    pub content: String,
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationQuery {
    #[param(value_type = Option<uuid::Uuid>)]
    pub avatar_id: Option<AvatarId>,
    #[param(value_type = Option<uuid::Uuid>)]
    pub end_user_id: Option<EndUserId>,
    /// `playground`, `api` or `telegram`.
    pub channel: Option<Channel>,
    #[validate(range(min = 1, max = 200))]
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
    #[validate(range(max = crate::core::pagination::MAX_OFFSET))]
    #[param(maximum = 1_000_000_000)]
    pub offset: Option<u64>,
}

/// Starts a staff (playground) conversation with an avatar.
#[utoipa::path(post, path = "/api/v1/projects/{pid}/avatars/{aid}/conversations", tag = "chat", security(("bearer" = [])),
    params(("pid" = Uuid, Path), ("aid" = Uuid, Path)), request_body = CreateConversationRequest,
    responses((status = 201, body = ConversationView), (status = 404, body = ErrorEnvelope)))]
#[post("/projects/{pid}/avatars/{aid}/conversations")]
pub async fn create_conversation(
    access: ProjectAccess<Operator>,
    chat: web::Data<ChatService>,
    path: web::Path<(ProjectId, AvatarId)>,
    body: ValidJson<CreateConversationRequest>,
) -> Result<HttpResponse, AppError> {
    let (_, avatar_id) = path.into_inner();
    let title = body.into_inner().title;
    let created = chat
        .create_playground(access.project_id, avatar_id, title, access.actor())
        .await?;
    Ok(HttpResponse::Created().json(created))
}

#[utoipa::path(get, path = "/api/v1/projects/{pid}/conversations", tag = "chat", security(("bearer" = [])),
    params(("pid" = Uuid, Path), ConversationQuery),
    responses((status = 200, body = Page<ConversationView>, description = "`{items: [Conversation], total, limit, offset}`")))]
#[get("/projects/{pid}/conversations")]
pub async fn list_conversations(
    access: ProjectAccess<Operator>,
    chat: web::Data<ChatService>,
    query: ValidQuery<ConversationQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.into_inner();
    let filter = ConversationFilter {
        avatar_id: query.avatar_id,
        end_user_id: query.end_user_id,
        channel: query.channel,
    };
    let page = PageParams {
        limit: query.limit,
        offset: query.offset,
    };
    Ok(HttpResponse::Ok().json(
        chat.list_conversations(access.project_id, &filter, &page)
            .await?,
    ))
}

/// A conversation's messages, oldest first.
#[utoipa::path(get, path = "/api/v1/projects/{pid}/conversations/{cid}/messages", tag = "chat", security(("bearer" = [])),
    params(("pid" = Uuid, Path), ("cid" = Uuid, Path), PageParams),
    responses((status = 200, body = Page<MessageView>, description = "`{items: [Message], total, limit, offset}`"),
              (status = 404, body = ErrorEnvelope)))]
#[get("/projects/{pid}/conversations/{cid}/messages")]
pub async fn list_messages(
    access: ProjectAccess<Operator>,
    chat: web::Data<ChatService>,
    path: web::Path<(ProjectId, ConversationId)>,
    page: ValidQuery<PageParams>,
) -> Result<HttpResponse, AppError> {
    let (_, conversation_id) = path.into_inner();
    Ok(HttpResponse::Ok().json(
        chat.messages(access.project_id, conversation_id, &page)
            .await?,
    ))
}

/// Asks the avatar. With `Accept: text/event-stream` the answer streams as SSE: `start`,
/// `delta` `{text}`..., `sources`, `done` `{message_id, usage, timings}`, or `error`.
#[utoipa::path(post, path = "/api/v1/projects/{pid}/conversations/{cid}/messages", tag = "chat", security(("bearer" = [])),
    params(("pid" = Uuid, Path), ("cid" = Uuid, Path)), request_body = SendMessageRequest,
    responses((status = 200, body = ChatResponse, description = "JSON, or `text/event-stream`"),
              (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope, description = "avatar disabled"),
              (status = 402, body = ErrorEnvelope), (status = 502, body = ErrorEnvelope)))]
#[post("/projects/{pid}/conversations/{cid}/messages")]
pub async fn send_message(
    request: HttpRequest,
    access: ProjectAccess<Operator>,
    chat: web::Data<ChatService>,
    path: web::Path<(ProjectId, ConversationId)>,
    body: ValidJson<SendMessageRequest>,
) -> Result<HttpResponse, AppError> {
    let (_, conversation_id) = path.into_inner();
    let answer = chat
        .into_inner()
        .ask_in_conversation(
            access.project_id,
            conversation_id,
            body.into_inner().content,
            access.actor(),
        )
        .await?;
    respond::respond(&request, answer).await
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(create_conversation)
        .service(list_conversations)
        .service(list_messages)
        .service(send_message)
        .service(public::chat)
        .configure(openai::configure);
}

/// The per-key count of chat questions: the public chat API's and the OpenAI-compatible ones'.
pub(super) const CHAT_REQUESTS: &str = "public-chat";
/// The per-key count of OpenAI-compatible embedding requests.
pub(super) const EMBEDDING_REQUESTS: &str = "public-embeddings";

/// Requests of a key per minute, against `chat.public_requests_per_minute`, counted under
/// `what` ([`CHAT_REQUESTS`] or [`EMBEDDING_REQUESTS`]).
pub(super) async fn key_within_rate(
    limiter: &RateLimiter,
    chat: &ChatService,
    what: &str,
    key_id: impl std::fmt::Display,
) -> Result<(), AppError> {
    let decision = limiter
        .check(
            &format!("{what}:{key_id}"),
            chat.settings().public_requests_per_minute,
            std::time::Duration::from_secs(60),
        )
        .await
        .map_err(AppError::internal)?;
    if decision.allowed {
        Ok(())
    } else {
        Err(AppError::rate_limited(decision.retry_after_seconds()))
    }
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        create_conversation,
        list_conversations,
        list_messages,
        send_message,
        public::chat,
        openai::list_models,
        openai::get_model,
        openai::chat_completions,
        openai::create_embeddings,
    ),
    // Named by the conversations list's `channel` filter.
    components(schemas(Channel)),
    tags(
        (name = "chat", description = "Conversations with avatars and their answers"),
        (name = "public", description = "Called with a project API key"),
        (name = "openai", description = "OpenAI-compatible: each active avatar is a model (project API key as the bearer token)"),
    )
)]
pub struct Doc;
