//! Invitations: pending ones (owners), revoking them, and accepting one (any signed-in user).

use actix_web::{HttpResponse, delete, get, post, web};

use crate::core::auth::{CurrentUser, Owner, ProjectAccess};
use crate::core::error::{AppError, ErrorEnvelope};
use crate::core::extract::{ValidJson, ValidQuery};
use crate::core::ids::{InvitationId, ProjectId};
use crate::core::pagination::{Page, PageParams};
use crate::modules::projects::service::{InvitationView, MemberView, ProjectsService};

use super::schemas::{AcceptInvitationRequest, AcceptedInvitation};

#[utoipa::path(get, path = "/api/v1/projects/{pid}/invitations", tag = "projects", security(("bearer" = [])),
    params(("pid" = Uuid, Path), PageParams),
    responses((status = 200, body = Page<InvitationView>, description = "`{items: [Invitation], total, limit, offset}`: pending ones, without tokens"),
              (status = 404, body = ErrorEnvelope)))]
#[get("/projects/{pid}/invitations")]
pub async fn list_invitations(
    access: ProjectAccess<Owner>,
    projects: web::Data<ProjectsService>,
    page: ValidQuery<PageParams>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(projects.list_invitations(access.project_id, &page).await?))
}

/// Revokes a pending invitation; its token stops working.
#[utoipa::path(delete, path = "/api/v1/projects/{pid}/invitations/{id}", tag = "projects",
    security(("bearer" = [])), params(("pid" = Uuid, Path), ("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
#[delete("/projects/{pid}/invitations/{id}")]
pub async fn revoke_invitation(
    access: ProjectAccess<Owner>,
    projects: web::Data<ProjectsService>,
    path: web::Path<(ProjectId, InvitationId)>,
) -> Result<HttpResponse, AppError> {
    let (_, invitation_id) = path.into_inner();
    projects
        .revoke_invitation(access.project_id, invitation_id, access.actor())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller takes up an invitation and becomes a member with its role. A token works once.
#[utoipa::path(post, path = "/api/v1/invitations/accept", tag = "projects", security(("bearer" = [])),
    request_body = AcceptInvitationRequest,
    responses((status = 200, body = AcceptedInvitation),
              (status = 404, body = ErrorEnvelope, description = "unknown, used, revoked or expired"),
              (status = 409, body = ErrorEnvelope, description = "already a member")))]
#[post("/invitations/accept")]
pub async fn accept_invitation(
    user: CurrentUser,
    projects: web::Data<ProjectsService>,
    body: ValidJson<AcceptInvitationRequest>,
) -> Result<HttpResponse, AppError> {
    let (project_id, member): (ProjectId, MemberView) =
        projects.accept_invitation(&user, &body.token).await?;
    Ok(HttpResponse::Ok().json(AcceptedInvitation { project_id, member }))
}
