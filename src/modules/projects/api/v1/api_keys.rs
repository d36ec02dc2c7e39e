//! Project API keys: shown once, stored hashed.

use actix_web::{HttpResponse, delete, get, post, web};

use crate::core::auth::{ApiKeyPrincipal, Manager, ProjectAccess};
use crate::core::error::{AppError, ErrorEnvelope};
use crate::core::extract::{ValidJson, ValidQuery};
use crate::core::ids::{ApiKeyId, ProjectId};
use crate::core::pagination::PageParams;
use crate::modules::projects::service::{CreatedApiKey, ProjectsService};

use super::schemas::{ApiKeyIdentity, CreateApiKeyRequest};

/// Creates a key; the response's `key` is shown this once.
#[utoipa::path(post, path = "/api/v1/projects/{pid}/api-keys", tag = "projects", security(("bearer" = [])),
    params(("pid" = Uuid, Path)), request_body = CreateApiKeyRequest,
    responses((status = 201, body = CreatedApiKey), (status = 403, body = ErrorEnvelope)))]
#[post("/projects/{pid}/api-keys")]
pub async fn create_api_key(
    access: ProjectAccess<Manager>,
    projects: web::Data<ProjectsService>,
    body: ValidJson<CreateApiKeyRequest>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let created = projects
        .create_api_key(
            access.project_id,
            &body.name,
            body.scopes.unwrap_or_default(),
            access.actor(),
        )
        .await?;
    Ok(HttpResponse::Created().json(created))
}

/// Keys without their secret part.
#[utoipa::path(get, path = "/api/v1/projects/{pid}/api-keys", tag = "projects", security(("bearer" = [])),
    params(("pid" = Uuid, Path)),
    responses((status = 200, description = "`{items: [ApiKey], total, limit, offset}`")))]
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
    })
}
