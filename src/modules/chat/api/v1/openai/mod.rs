//! `/api/v1/openai/*`: every active avatar of a key's project as an OpenAI model, answered
//! through the same chat pipeline as the other channels (retrieval, budgets and limits, the
//! usage ledger, blocked end users, audit) and in OpenAI's wire format, so unmodified OpenAI
//! clients work with `base_url = <host>/api/v1/openai` and the project API key.

mod completions;
mod embeddings;
mod errors;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::core::auth::{API_KEY_HEADER, Actor, ApiKeyPrincipal, RequiredScope, scope};
use crate::core::cache::RateLimiter;
use crate::core::channel::Channel;
use crate::core::error::AppError;
use crate::modules::avatars::{AvatarStatus, AvatarView, AvatarsError, AvatarsService};
use crate::modules::chat::ChatError;
use crate::modules::chat::service::{ChatService, Thread};
use crate::modules::documents::DocumentsService;
use crate::modules::end_users::Contact;

use super::{CHAT_REQUESTS, EMBEDDING_REQUESTS, key_within_rate};
use completions::{ChatCompletionRequest, Completion};
use errors::OpenAiError;

/// The project API key, as OpenAI clients send it (`Authorization: Bearer`) or as the rest of
/// the platform's public API takes it (`X-Api-Key`).
async fn api_key<S: RequiredScope>(req: &HttpRequest) -> Result<ApiKeyPrincipal<S>, OpenAiError> {
    let headers = req.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        });
    let key = bearer
        .or_else(|| {
            headers
                .get(API_KEY_HEADER)
                .and_then(|value| value.to_str().ok())
        })
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .ok_or_else(|| {
            OpenAiError::from(AppError::new(
                crate::core::error::ErrorCode::AuthenticationRequired,
                "send the project API key as `Authorization: Bearer <key>`",
            ))
        })?;
    Ok(ApiKeyPrincipal::resolve(req, key).await?)
}

/// The largest request body of these routes (up to 256 texts to embed).
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The request body, read here (not by an extractor) so that a too large one is answered in
/// OpenAI's shape.
async fn read_body(payload: web::Payload) -> Result<bytes::Bytes, OpenAiError> {
    match payload.to_bytes_limited(MAX_BODY_BYTES).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(error)) => Err(OpenAiError::invalid(
            "body",
            format!("the body could not be read: {error}"),
        )),
        Err(_) => Err(OpenAiError::too_large(MAX_BODY_BYTES)),
    }
}

/// An avatar as OpenAI lists a model.
#[derive(Debug, Serialize, ToSchema)]
pub struct Model {
    /// The avatar's slug.
    pub id: String,
    /// `model`.
    pub object: &'static str,
    /// When the avatar was created (Unix seconds).
    pub created: i64,
    pub owned_by: &'static str,
    /// The avatar's display name (not in OpenAI's format; clients ignore it).
    pub name: String,
}

fn model(avatar: &AvatarView) -> Model {
    Model {
        id: avatar.slug.clone(),
        object: "model",
        created: avatar.created_at.timestamp(),
        owned_by: "avatar-platform",
        name: avatar.name.clone(),
    }
}

/// The key's project's active avatar named `reference` (slug or id) that the key reaches; 404
/// `model_not_found` otherwise, another project's avatar included.
async fn avatar_model(
    avatars: &AvatarsService,
    key: &ApiKeyPrincipal<scope::Chat>,
    reference: &str,
) -> Result<AvatarView, OpenAiError> {
    match avatars.find_by_reference(key.project_id, reference).await {
        Ok(avatar) if avatar.status == AvatarStatus::Active && key.reaches(avatar.id) => Ok(avatar),
        Ok(_) | Err(AvatarsError::NotFound) => Err(OpenAiError::unknown_model(reference)),
        Err(error) => Err(AppError::from(error).into()),
    }
}

/// The key's project's active avatars, oldest first.
#[utoipa::path(get, path = "/api/v1/openai/models", tag = "openai",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "`{object: \"list\", data: [Model]}`"),
              (status = 401, description = "OpenAI's error shape")))]
#[get("/openai/models")]
pub async fn list_models(
    request: HttpRequest,
    avatars: web::Data<AvatarsService>,
) -> Result<HttpResponse, OpenAiError> {
    let key = api_key::<scope::Chat>(&request).await?;
    let active = avatars
        .active(key.project_id)
        .await
        .map_err(AppError::from)?;
    let data: Vec<Model> = active
        .iter()
        .filter(|avatar| key.reaches(avatar.id))
        .map(model)
        .collect();
    Ok(HttpResponse::Ok().json(json!({"object": "list", "data": data})))
}

/// One avatar as a model, by its slug or id.
#[utoipa::path(get, path = "/api/v1/openai/models/{model}", tag = "openai",
    security(("bearer" = []), ("api_key" = [])),
    params(("model" = String, Path, description = "the avatar's slug or id")),
    responses((status = 200, body = Model), (status = 404, description = "OpenAI's error shape")))]
#[get("/openai/models/{model}")]
pub async fn get_model(
    request: HttpRequest,
    avatars: web::Data<AvatarsService>,
    path: web::Path<String>,
) -> Result<HttpResponse, OpenAiError> {
    let key = api_key::<scope::Chat>(&request).await?;
    let avatar = avatar_model(&avatars, &key, &path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(model(&avatar)))
}

/// An answer from the avatar named by `model`, grounded in its documents.
#[utoipa::path(post, path = "/api/v1/openai/chat/completions", tag = "openai",
    security(("bearer" = []), ("api_key" = [])),
    request_body = ChatCompletionRequest,
    responses((status = 200, description = "`chat.completion`, or `text/event-stream` of `chat.completion.chunk`s with `stream`"),
              (status = 400, description = "OpenAI's error shape, `param` naming the field"),
              (status = 401, description = "bad key"), (status = 404, description = "unknown model"),
              (status = 429, description = "rate limit (`rate_limit_exceeded`) or budget (`insufficient_quota`), with `Retry-After`")))]
#[post("/openai/chat/completions")]
pub async fn chat_completions(
    request: HttpRequest,
    chat: web::Data<ChatService>,
    avatars: web::Data<AvatarsService>,
    limiter: web::Data<RateLimiter>,
    payload: web::Payload,
) -> Result<HttpResponse, OpenAiError> {
    let key = api_key::<scope::Chat>(&request).await?;
    let body = read_body(payload).await?;
    let mut parsed: ChatCompletionRequest = completions::parse_json(&body)?;
    let asked = completions::check(&mut parsed, chat.settings().max_message_chars)?;
    let avatar = avatar_model(&avatars, &key, &parsed.model).await?;
    // One limit per key for the public chat API and this one.
    key_within_rate(&limiter, &chat, CHAT_REQUESTS, key.key_id).await?;
    let contact = match parsed.user.take() {
        Some(user) => Contact {
            channel: Channel::Api,
            external_id: user,
            display_name: None,
            raw_profile: None,
        },
        // The key's own end user: analytics, audit and limits see who asked.
        None => Contact {
            channel: Channel::Api,
            external_id: format!("{}{}", completions::KEY_USER_PREFIX, key.key_id),
            display_name: Some(format!("API key {}", key.name)),
            raw_profile: None,
        },
    };
    let answer = chat
        .into_inner()
        .ask_as_end_user(
            key.project_id,
            avatar.id,
            contact,
            Thread::Client {
                history: asked.history,
                options: asked.options,
            },
            asked.question,
            Actor::api_key(key.key_id, key.ip.clone()),
        )
        .await
        .map_err(|error| match error {
            // Disabled since it was looked up: no longer a model.
            ChatError::AvatarDisabled => OpenAiError::unknown_model(&parsed.model),
            other => AppError::from(other).into(),
        })?;
    let completion = Completion {
        id: format!("chatcmpl-{}", answer.user_message.id.uuid().simple()),
        created: chrono::Utc::now().timestamp(),
        model: parsed.model,
    };
    if parsed.stream == Some(true) {
        let include_usage = parsed
            .stream_options
            .and_then(|options| options.include_usage)
            .unwrap_or(false);
        completion.stream(answer.events, include_usage).await
    } else {
        completion.json(answer.events).await
    }
}

/// Vectors of the given texts by the deployment's embedder; metered in the usage ledger.
#[utoipa::path(post, path = "/api/v1/openai/embeddings", tag = "openai",
    security(("bearer" = []), ("api_key" = [])),
    request_body = embeddings::EmbeddingRequest,
    responses((status = 200, description = "`{object: \"list\", data: [{object: \"embedding\", index, embedding}], model, usage}`"),
              (status = 400, description = "OpenAI's error shape, `param` naming the field"),
              (status = 404, description = "not this deployment's embedder"),
              (status = 429, description = "rate limit or budget, with `Retry-After`")))]
#[post("/openai/embeddings")]
pub async fn create_embeddings(
    request: HttpRequest,
    chat: web::Data<ChatService>,
    documents: web::Data<DocumentsService>,
    limiter: web::Data<RateLimiter>,
    payload: web::Payload,
) -> Result<HttpResponse, OpenAiError> {
    let key = api_key::<scope::Embeddings>(&request).await?;
    let body = read_body(payload).await?;
    let parsed: embeddings::EmbeddingRequest = completions::parse_json(&body)?;
    let model = parsed.model.clone();
    let embedder = documents.embedder().await.map_err(AppError::from)?;
    if !embeddings::names(&model, &embedder.model_id()) {
        return Err(OpenAiError::unknown_model(&model));
    }
    let dimension = embedder.dimension();
    if parsed.dimensions.is_some_and(|asked| asked != dimension) {
        return Err(OpenAiError::invalid(
            "dimensions",
            format!("this embedder's vectors have {dimension} dimensions"),
        ));
    }
    let (texts, base64) = embeddings::texts(parsed)?;
    key_within_rate(&limiter, &chat, EMBEDDING_REQUESTS, key.key_id).await?;
    let embedded = documents
        .embed_for_project(key.project_id, embedder.as_ref(), &texts)
        .await
        .map_err(AppError::from)?;
    Ok(HttpResponse::Ok().json(embeddings::response(
        &model,
        embedded.vectors,
        embedded.tokens,
        base64,
    )))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_models)
        .service(get_model)
        .service(chat_completions)
        .service(create_embeddings);
}
