//! `/api/v1/projects/{pid}/avatars*`.

mod schemas;

use actix_web::{HttpResponse, delete, get, patch, post, web};

use crate::core::auth::{Manager, ProjectAccess, Viewer};
use crate::core::error::{AppError, ErrorEnvelope};
use crate::core::extract::{ValidJson, ValidQuery};
use crate::core::ids::{AvatarId, ProjectId};
use crate::core::pagination::{Page, PageParams};
use crate::modules::avatars::service::{AvatarPatch, AvatarView, AvatarsService, NewAvatar};

use schemas::{CreateAvatarRequest, UpdateAvatarRequest};

/// Creates an avatar; missing LLM and RAG settings get the documented defaults.
#[utoipa::path(post, path = "/api/v1/projects/{pid}/avatars", tag = "avatars", security(("bearer" = [])),
    params(("pid" = Uuid, Path)), request_body = CreateAvatarRequest,
    responses((status = 201, body = AvatarView), (status = 409, body = ErrorEnvelope, description = "the slug is taken"),
              (status = 402, body = ErrorEnvelope, description = "the plan's `max_avatars` is reached"),
              (status = 422, body = ErrorEnvelope)))]
#[post("/projects/{pid}/avatars")]
pub async fn create_avatar(
    access: ProjectAccess<Manager>,
    avatars: web::Data<AvatarsService>,
    body: ValidJson<CreateAvatarRequest>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let input = NewAvatar {
        name: body.name,
        slug: body.slug,
        description: body.description,
        system_prompt: body.system_prompt,
        greeting: body.greeting,
        llm: body.llm.into(),
        rag: body.rag.into(),
    };
    let created = avatars
        .create(access.project_id, input, access.actor())
        .await?;
    Ok(HttpResponse::Created().json(created))
}

#[utoipa::path(get, path = "/api/v1/projects/{pid}/avatars", tag = "avatars", security(("bearer" = [])),
    params(("pid" = Uuid, Path), PageParams),
    responses((status = 200, body = Page<AvatarView>, description = "`{items: [Avatar], total, limit, offset}`")))]
#[get("/projects/{pid}/avatars")]
pub async fn list_avatars(
    access: ProjectAccess<Viewer>,
    avatars: web::Data<AvatarsService>,
    page: ValidQuery<PageParams>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(avatars.list(access.project_id, &page).await?))
}

#[utoipa::path(get, path = "/api/v1/projects/{pid}/avatars/{aid}", tag = "avatars", security(("bearer" = [])),
    params(("pid" = Uuid, Path), ("aid" = Uuid, Path)),
    responses((status = 200, body = AvatarView), (status = 404, body = ErrorEnvelope)))]
#[get("/projects/{pid}/avatars/{aid}")]
pub async fn get_avatar(
    access: ProjectAccess<Viewer>,
    avatars: web::Data<AvatarsService>,
    path: web::Path<(ProjectId, AvatarId)>,
) -> Result<HttpResponse, AppError> {
    let (_, avatar_id) = path.into_inner();
    Ok(HttpResponse::Ok().json(avatars.get(access.project_id, avatar_id).await?))
}

#[utoipa::path(patch, path = "/api/v1/projects/{pid}/avatars/{aid}", tag = "avatars", security(("bearer" = [])),
    params(("pid" = Uuid, Path), ("aid" = Uuid, Path)), request_body = UpdateAvatarRequest,
    responses((status = 200, body = AvatarView), (status = 404, body = ErrorEnvelope),
              (status = 409, body = ErrorEnvelope, description = "the slug is taken"),
              (status = 422, body = ErrorEnvelope)))]
#[patch("/projects/{pid}/avatars/{aid}")]
pub async fn update_avatar(
    access: ProjectAccess<Manager>,
    avatars: web::Data<AvatarsService>,
    path: web::Path<(ProjectId, AvatarId)>,
    body: ValidJson<UpdateAvatarRequest>,
) -> Result<HttpResponse, AppError> {
    let (_, avatar_id) = path.into_inner();
    let body = body.into_inner();
    let patch = AvatarPatch {
        name: body.name,
        slug: body.slug,
        description: body.description,
        system_prompt: body.system_prompt,
        greeting: body.greeting,
        llm: body.llm.into(),
        rag: body.rag.into(),
        status: body.status,
    };
    let updated = avatars
        .update(access.project_id, avatar_id, patch, access.actor())
        .await?;
    Ok(HttpResponse::Ok().json(updated))
}

/// Soft delete; the avatar's documents are removed too.
#[utoipa::path(delete, path = "/api/v1/projects/{pid}/avatars/{aid}", tag = "avatars", security(("bearer" = [])),
    params(("pid" = Uuid, Path), ("aid" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
#[delete("/projects/{pid}/avatars/{aid}")]
pub async fn delete_avatar(
    access: ProjectAccess<Manager>,
    avatars: web::Data<AvatarsService>,
    path: web::Path<(ProjectId, AvatarId)>,
) -> Result<HttpResponse, AppError> {
    let (_, avatar_id) = path.into_inner();
    avatars
        .delete(access.project_id, avatar_id, access.actor())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(create_avatar)
        .service(list_avatars)
        .service(get_avatar)
        .service(update_avatar)
        .service(delete_avatar);
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        create_avatar,
        list_avatars,
        get_avatar,
        update_avatar,
        delete_avatar,
    ),
    tags(
        (name = "avatars", description = "A project's AI consultants"),
    )
)]
pub struct Doc;
