//! Project members and their roles.

use actix_web::{HttpResponse, delete, get, patch, post, web};

use crate::core::auth::{Owner, ProjectAccess, Viewer};
use crate::core::email::Email;
use crate::core::error::{AppError, ErrorEnvelope};
use crate::core::extract::{ValidJson, ValidQuery};
use crate::core::ids::{ProjectId, UserId};
use crate::core::pagination::{Page, PageParams};
use crate::modules::projects::service::{
    CreatedInvitation, MemberAddition, MemberView, ProjectsService,
};

use super::schemas::{AddMemberRequest, ChangeRoleRequest};

#[utoipa::path(get, path = "/api/v1/projects/{pid}/members", tag = "projects", security(("bearer" = [])),
    params(("pid" = Uuid, Path), PageParams),
    responses((status = 200, body = Page<MemberView>, description = "`{items: [Member], total, limit, offset}`"), (status = 404, body = ErrorEnvelope)))]
#[get("/projects/{pid}/members")]
pub async fn list_members(
    access: ProjectAccess<Viewer>,
    projects: web::Data<ProjectsService>,
    page: ValidQuery<PageParams>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(projects.members(access.project_id, &page).await?))
}

/// Adds someone by email: 201 with the member when they have an account, else 202 with an
/// invitation whose `token` is shown this once (pass it on; they accept it once signed in).
#[utoipa::path(post, path = "/api/v1/projects/{pid}/members", tag = "projects", security(("bearer" = [])),
    params(("pid" = Uuid, Path)), request_body = AddMemberRequest,
    responses((status = 201, body = MemberView),
              (status = 202, body = CreatedInvitation, description = "no account with this email yet: invited"),
              (status = 409, body = ErrorEnvelope, description = "already a member, or an invitation is pending"),
              (status = 422, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope)))]
#[post("/projects/{pid}/members")]
pub async fn add_member(
    access: ProjectAccess<Owner>,
    projects: web::Data<ProjectsService>,
    body: ValidJson<AddMemberRequest>,
) -> Result<HttpResponse, AppError> {
    let email = Email::parse(&body.email)
        .map_err(|invalid| AppError::validation("email", format!("email: {invalid}")))?;
    let added = projects
        .add_member(access.project_id, &email, body.role, access.actor())
        .await?;
    Ok(match added {
        MemberAddition::Added(member) => HttpResponse::Created().json(member),
        MemberAddition::Invited(invitation) => HttpResponse::Accepted().json(invitation),
    })
}

/// Changes a member's role; the last owner cannot be demoted (409).
#[utoipa::path(patch, path = "/api/v1/projects/{pid}/members/{user_id}", tag = "projects",
    security(("bearer" = [])), params(("pid" = Uuid, Path), ("user_id" = Uuid, Path)),
    request_body = ChangeRoleRequest,
    responses((status = 200, body = MemberView), (status = 404, body = ErrorEnvelope),
              (status = 409, body = ErrorEnvelope)))]
#[patch("/projects/{pid}/members/{user_id}")]
pub async fn change_member_role(
    access: ProjectAccess<Owner>,
    projects: web::Data<ProjectsService>,
    path: web::Path<(ProjectId, UserId)>,
    body: ValidJson<ChangeRoleRequest>,
) -> Result<HttpResponse, AppError> {
    let (_, user_id) = path.into_inner();
    let member = projects
        .change_member_role(access.project_id, user_id, body.role, access.actor())
        .await?;
    Ok(HttpResponse::Ok().json(member))
}

/// Removes a member; the last owner cannot be removed (409).
#[utoipa::path(delete, path = "/api/v1/projects/{pid}/members/{user_id}", tag = "projects",
    security(("bearer" = [])), params(("pid" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
#[delete("/projects/{pid}/members/{user_id}")]
pub async fn remove_member(
    access: ProjectAccess<Owner>,
    projects: web::Data<ProjectsService>,
    path: web::Path<(ProjectId, UserId)>,
) -> Result<HttpResponse, AppError> {
    let (_, user_id) = path.into_inner();
    projects
        .remove_member(access.project_id, user_id, access.actor())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
