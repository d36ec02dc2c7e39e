//! Projects: create, list, read, change, delete.

use actix_web::{HttpResponse, delete, get, patch, post, web};

use crate::core::auth::{CurrentUser, Manager, Owner, ProjectAccess, Viewer};
use crate::core::error::{AppError, ErrorEnvelope};
use crate::core::extract::{ValidJson, ValidQuery};
use crate::core::pagination::{Page, PageParams};
use crate::modules::projects::service::{ProjectPatch, ProjectView, ProjectsService};

use super::schemas::{CreateProjectRequest, UpdateProjectRequest};

/// Creates a project; the caller becomes its owner.
#[utoipa::path(post, path = "/api/v1/projects", tag = "projects", security(("bearer" = [])),
    request_body = CreateProjectRequest,
    responses((status = 201, body = ProjectView), (status = 422, body = ErrorEnvelope)))]
#[post("/projects")]
pub async fn create_project(
    user: CurrentUser,
    projects: web::Data<ProjectsService>,
    body: ValidJson<CreateProjectRequest>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let created = projects.create(&user, &body.name, body.description).await?;
    Ok(HttpResponse::Created().json(created))
}

/// The caller's projects (all of them for a saas_admin).
#[utoipa::path(get, path = "/api/v1/projects", tag = "projects", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = Page<ProjectView>, description = "`{items: [Project], total, limit, offset}`")))]
#[get("/projects")]
pub async fn list_projects(
    user: CurrentUser,
    projects: web::Data<ProjectsService>,
    page: ValidQuery<PageParams>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(projects.list(&user, &page).await?))
}

#[utoipa::path(get, path = "/api/v1/projects/{pid}", tag = "projects", security(("bearer" = [])),
    params(("pid" = uuid::Uuid, Path)),
    responses((status = 200, body = ProjectView), (status = 404, body = ErrorEnvelope)))]
#[get("/projects/{pid}")]
pub async fn get_project(
    access: ProjectAccess<Viewer>,
    projects: web::Data<ProjectsService>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(projects.get(access.project_id, access.role).await?))
}

#[utoipa::path(patch, path = "/api/v1/projects/{pid}", tag = "projects", security(("bearer" = [])),
    params(("pid" = uuid::Uuid, Path)), request_body = UpdateProjectRequest,
    responses((status = 200, body = ProjectView), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
#[patch("/projects/{pid}")]
pub async fn update_project(
    access: ProjectAccess<Manager>,
    projects: web::Data<ProjectsService>,
    body: ValidJson<UpdateProjectRequest>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let patch = ProjectPatch {
        name: body.name,
        description: body.description,
    };
    let updated = projects
        .update(access.project_id, patch, access.role, access.actor())
        .await?;
    Ok(HttpResponse::Ok().json(updated))
}

/// Soft delete: the project disappears for everyone, its API keys stop working.
#[utoipa::path(delete, path = "/api/v1/projects/{pid}", tag = "projects", security(("bearer" = [])),
    params(("pid" = uuid::Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
#[delete("/projects/{pid}")]
pub async fn delete_project(
    access: ProjectAccess<Owner>,
    projects: web::Data<ProjectsService>,
) -> Result<HttpResponse, AppError> {
    projects.delete(access.project_id, access.actor()).await?;
    Ok(HttpResponse::NoContent().finish())
}
