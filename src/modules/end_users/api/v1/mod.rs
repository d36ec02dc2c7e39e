//! `/api/v1/projects/{pid}/end-users*`.

use actix_web::{HttpResponse, delete, get, post, web};
use serde::Deserialize;
use utoipa::IntoParams;
use validator::Validate;

use crate::core::auth::{Manager, Operator, ProjectAccess};
use crate::core::channel::Channel;
use crate::core::error::{AppError, ErrorEnvelope};
use crate::core::extract::ValidQuery;
use crate::core::ids::{EndUserId, ProjectId};
use crate::core::pagination::{Page, PageParams};
use crate::modules::end_users::service::{EndUserFilter, EndUserView, EndUsersService};

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EndUserQuery {
    /// Part of the external id or display name (case-insensitive).
    #[validate(length(max = 200))]
    pub q: Option<String>,
    /// `api` or `telegram`.
    #[validate(custom(function = "crate::modules::end_users::api::v1::known_channel"))]
    pub channel: Option<String>,
    pub blocked: Option<bool>,
    #[validate(range(min = 1, max = 200))]
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
    #[validate(range(max = crate::core::pagination::MAX_OFFSET))]
    #[param(maximum = 1_000_000_000)]
    pub offset: Option<u64>,
}

pub fn known_channel(channel: &str) -> Result<(), validator::ValidationError> {
    let known = channel.parse::<Channel>().ok();
    if known.is_some_and(|channel| Channel::OF_END_USERS.contains(&channel)) {
        Ok(())
    } else {
        Err(validator::ValidationError::new("channel")
            .with_message("must be one of: api, telegram".into()))
    }
}

#[utoipa::path(get, path = "/api/v1/projects/{pid}/end-users", tag = "end-users", security(("bearer" = [])),
    params(("pid" = Uuid, Path), EndUserQuery),
    responses((status = 200, body = Page<EndUserView>, description = "`{items: [EndUser], total, limit, offset}`")))]
#[get("/projects/{pid}/end-users")]
pub async fn list_end_users(
    access: ProjectAccess<Operator>,
    end_users: web::Data<EndUsersService>,
    query: ValidQuery<EndUserQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.into_inner();
    let filter = EndUserFilter {
        q: query.q,
        channel: query.channel.and_then(|channel| channel.parse().ok()),
        blocked: query.blocked,
    };
    let page = PageParams {
        limit: query.limit,
        offset: query.offset,
    };
    Ok(HttpResponse::Ok().json(end_users.list(access.project_id, &filter, &page).await?))
}

#[utoipa::path(get, path = "/api/v1/projects/{pid}/end-users/{eid}", tag = "end-users", security(("bearer" = [])),
    params(("pid" = Uuid, Path), ("eid" = Uuid, Path)),
    responses((status = 200, body = EndUserView), (status = 404, body = ErrorEnvelope)))]
#[get("/projects/{pid}/end-users/{eid}")]
pub async fn get_end_user(
    access: ProjectAccess<Operator>,
    end_users: web::Data<EndUsersService>,
    path: web::Path<(ProjectId, EndUserId)>,
) -> Result<HttpResponse, AppError> {
    let (_, end_user_id) = path.into_inner();
    Ok(HttpResponse::Ok().json(end_users.get(access.project_id, end_user_id).await?))
}

/// Erases the end user, their conversations and messages (GDPR).
#[utoipa::path(delete, path = "/api/v1/projects/{pid}/end-users/{eid}", tag = "end-users", security(("bearer" = [])),
    params(("pid" = Uuid, Path), ("eid" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
#[delete("/projects/{pid}/end-users/{eid}")]
pub async fn delete_end_user(
    access: ProjectAccess<Manager>,
    end_users: web::Data<EndUsersService>,
    path: web::Path<(ProjectId, EndUserId)>,
) -> Result<HttpResponse, AppError> {
    let (_, end_user_id) = path.into_inner();
    end_users
        .delete(access.project_id, end_user_id, access.actor())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/api/v1/projects/{pid}/end-users/{eid}/block", tag = "end-users", security(("bearer" = [])),
    params(("pid" = Uuid, Path), ("eid" = Uuid, Path)),
    responses((status = 200, body = EndUserView), (status = 404, body = ErrorEnvelope)))]
#[post("/projects/{pid}/end-users/{eid}/block")]
pub async fn block_end_user(
    access: ProjectAccess<Operator>,
    end_users: web::Data<EndUsersService>,
    path: web::Path<(ProjectId, EndUserId)>,
) -> Result<HttpResponse, AppError> {
    set_blocked(access, end_users, path, true).await
}

#[utoipa::path(post, path = "/api/v1/projects/{pid}/end-users/{eid}/unblock", tag = "end-users", security(("bearer" = [])),
    params(("pid" = Uuid, Path), ("eid" = Uuid, Path)),
    responses((status = 200, body = EndUserView), (status = 404, body = ErrorEnvelope)))]
#[post("/projects/{pid}/end-users/{eid}/unblock")]
pub async fn unblock_end_user(
    access: ProjectAccess<Operator>,
    end_users: web::Data<EndUsersService>,
    path: web::Path<(ProjectId, EndUserId)>,
) -> Result<HttpResponse, AppError> {
    set_blocked(access, end_users, path, false).await
}

async fn set_blocked(
    access: ProjectAccess<Operator>,
    end_users: web::Data<EndUsersService>,
    path: web::Path<(ProjectId, EndUserId)>,
    blocked: bool,
) -> Result<HttpResponse, AppError> {
    let (_, end_user_id) = path.into_inner();
    let view = end_users
        .set_blocked(access.project_id, end_user_id, blocked, access.actor())
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_end_users)
        .service(get_end_user)
        .service(delete_end_user)
        .service(block_end_user)
        .service(unblock_end_user);
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        list_end_users,
        get_end_user,
        delete_end_user,
        block_end_user,
        unblock_end_user,
    ),
    tags(
        (name = "end-users", description = "The people who talk to a project's avatars"),
    )
)]
pub struct Doc;
