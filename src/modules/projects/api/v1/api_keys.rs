//! Project API keys: shown once, stored hashed.

use actix_web::{HttpResponse, delete, get, post, web};

use crate::core::auth::{ApiKeyPrincipal, Manager, ProjectAccess};
use crate::core::error::{AppError, ErrorEnvelope};
use crate::core::extract::{ValidJson, ValidQuery};
use crate::core::ids::{ApiKeyId, AvatarId, ProjectId};
use crate::core::pagination::{Page, PageParams};
use crate::modules::avatars::{AvatarsError, AvatarsService};
use crate::modules::projects::service::{ApiKeyView, CreatedApiKey, ProjectsService};

use super::schemas::{ApiKeyIdentity, CreateApiKeyRequest};

/// Creates a key; the response's `key` is shown this once.
#[utoipa::path(post, path = "/api/v1/projects/{pid}/api-keys", tag = "projects", security(("bearer" = [])),
    params(("pid" = Uuid, Path)), request_body = CreateApiKeyRequest,
    responses((status = 201, body = CreatedApiKey), (status = 403, body = ErrorEnvelope)))]
#[post("/projects/{pid}/api-keys")]
pub async fn create_api_key(
    access: ProjectAccess<Manager>,
    projects: web::Data<ProjectsService>,
    avatars: web::Data<AvatarsService>,
    body: ValidJson<CreateApiKeyRequest>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let avatar_ids = match body.avatar_ids {
        Some(ids) => Some(own_avatars(&avatars, access.project_id, ids).await?),
        None => None,
    };
    let created = projects
        .create_api_key(
            access.project_id,
            &body.name,
            body.scopes.unwrap_or_default(),
            avatar_ids,
            access.actor(),
        )
        .await?;
    Ok(HttpResponse::Created().json(created))
}

/// `ids` without repeats, each a live avatar of the project (422 naming `avatar_ids` otherwise:
/// a key cannot be made to reach another project's avatar, nor to show whether one exists).
async fn own_avatars(
    avatars: &AvatarsService,
    project_id: ProjectId,
    ids: Vec<AvatarId>,
) -> Result<Vec<AvatarId>, AppError> {
    let mut own: Vec<AvatarId> = Vec::with_capacity(ids.len());
    for id in ids {
        if own.contains(&id) {
            continue;
        }
        match avatars.get(project_id, id).await {
            Ok(_) => own.push(id),
            Err(AvatarsError::NotFound) => {
                return Err(AppError::validation(
                    "avatar_ids",
                    format!("{id} is not an avatar of this project"),
                ));
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(own)
}

/// Keys without their secret part.
#[utoipa::path(get, path = "/api/v1/projects/{pid}/api-keys", tag = "projects", security(("bearer" = [])),
    params(("pid" = Uuid, Path)),
    responses((status = 200, body = Page<ApiKeyView>, description = "`{items: [ApiKey], total, limit, offset}`")))]
#[get("/projects/{pid}/api-keys")]
pub async fn list_api_keys(
    access: ProjectAccess<Manager>,
    projects: web::Data<ProjectsService>,
    page: ValidQuery<PageParams>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(projects.list_api_keys(access.project_id, &page).await?))
}

/// Revokes a key at once.
#[utoipa::path(delete, path = "/api/v1/projects/{pid}/api-keys/{id}", tag = "projects",
    security(("bearer" = [])), params(("pid" = Uuid, Path), ("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
#[delete("/projects/{pid}/api-keys/{id}")]
pub async fn revoke_api_key(
    access: ProjectAccess<Manager>,
    projects: web::Data<ProjectsService>,
    path: web::Path<(ProjectId, ApiKeyId)>,
) -> Result<HttpResponse, AppError> {
    let (_, key_id) = path.into_inner();
    projects
        .revoke_api_key(access.project_id, key_id, access.actor())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// What the presented `X-Api-Key` belongs to: lets a script check its key.
#[utoipa::path(get, path = "/api/v1/public/api-key", tag = "public",
    security(("api_key" = [])),
    responses((status = 200, body = ApiKeyIdentity), (status = 401, body = ErrorEnvelope)))]
#[get("/public/api-key")]
pub async fn whoami(key: ApiKeyPrincipal) -> HttpResponse {
    HttpResponse::Ok().json(ApiKeyIdentity {
        key_id: key.key_id,
        project_id: key.project_id,
        name: key.name,
        scopes: key.scopes,
        avatar_ids: key.avatar_ids,
    })
}
