//! Project secrets: names and timestamps out, values only in.

use actix_web::{HttpResponse, delete, get, put, web};

use crate::core::auth::{Manager, ProjectAccess};
use crate::core::error::{AppError, ErrorEnvelope};
use crate::core::extract::{ValidJson, ValidQuery};
use crate::core::ids::ProjectId;
use crate::core::pagination::{Page, PageParams};
use crate::modules::projects::service::{ProjectsService, SecretName, SecretView};

use super::schemas::PutSecretRequest;

#[utoipa::path(get, path = "/api/v1/projects/{pid}/secrets", tag = "projects", security(("bearer" = [])),
    params(("pid" = Uuid, Path)),
    responses((status = 200, body = Page<SecretView>, description = "`{items: [Secret], total, limit, offset}`"), (status = 403, body = ErrorEnvelope)))]
#[get("/projects/{pid}/secrets")]
pub async fn list_secrets(
    access: ProjectAccess<Manager>,
    projects: web::Data<ProjectsService>,
    page: ValidQuery<PageParams>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(projects.list_secrets(access.project_id, &page).await?))
}

/// Creates or replaces a secret (stored encrypted).
#[utoipa::path(put, path = "/api/v1/projects/{pid}/secrets/{name}", tag = "projects",
    security(("bearer" = [])), params(("pid" = Uuid, Path), ("name" = String, Path)),
    request_body = PutSecretRequest,
    responses((status = 204), (status = 422, body = ErrorEnvelope)))]
#[put("/projects/{pid}/secrets/{name}")]
pub async fn put_secret(
    access: ProjectAccess<Manager>,
    projects: web::Data<ProjectsService>,
    path: web::Path<(ProjectId, String)>,
    body: ValidJson<PutSecretRequest>,
) -> Result<HttpResponse, AppError> {
    let (_, name) = path.into_inner();
    let name = SecretName::parse(&name)?;
    let value = body.into_inner().value;
    projects
        .put_secret(access.project_id, &name, &value, access.actor())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(delete, path = "/api/v1/projects/{pid}/secrets/{name}", tag = "projects",
    security(("bearer" = [])), params(("pid" = Uuid, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
#[delete("/projects/{pid}/secrets/{name}")]
pub async fn delete_secret(
    access: ProjectAccess<Manager>,
    projects: web::Data<ProjectsService>,
    path: web::Path<(ProjectId, String)>,
) -> Result<HttpResponse, AppError> {
    let (_, name) = path.into_inner();
    projects
        .delete_secret(access.project_id, &name, access.actor())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
