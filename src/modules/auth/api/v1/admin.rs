//! The saas_admin's user management.

use actix_web::{HttpResponse, get, patch, web};

use crate::core::auth::SaasAdmin;
use crate::core::error::{AppError, ErrorEnvelope};
use crate::core::extract::{ValidJson, ValidQuery};
use crate::core::ids::UserId;
use crate::core::pagination::{Page, PageParams};
use crate::modules::auth::service::{AuthService, UserPatch, UserView};

use super::schemas::{UpdateUserRequest, UserListQuery};

/// All users, newest first; `q` searches emails.
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin", security(("bearer" = [])),
    params(UserListQuery),
    responses((status = 200, body = Page<UserView>, description = "`{items: [User], total, limit, offset}`"),
              (status = 403, body = ErrorEnvelope)))]
#[get("/admin/users")]
pub async fn list_users(
    _admin: SaasAdmin,
    auth: web::Data<AuthService>,
    query: ValidQuery<UserListQuery>,
) -> Result<HttpResponse, AppError> {
    let page = PageParams {
        limit: query.limit,
        offset: query.offset,
    };
    Ok(HttpResponse::Ok().json(auth.list_users(query.q.as_deref(), &page).await?))
}

/// Changes a user's platform role or deactivates them (their tokens stop working at once).
#[utoipa::path(patch, path = "/api/v1/admin/users/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = UpdateUserRequest,
    responses((status = 200, body = UserView), (status = 404, body = ErrorEnvelope),
              (status = 409, description = "would demote or deactivate yourself", body = ErrorEnvelope)))]
#[patch("/admin/users/{id}")]
pub async fn update_user(
    admin: SaasAdmin,
    auth: web::Data<AuthService>,
    path: web::Path<UserId>,
    body: ValidJson<UpdateUserRequest>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let patch = UserPatch {
        role: body.role,
        is_active: body.is_active,
    };
    let user = auth
        .update_user(path.into_inner(), patch, admin.0.actor())
        .await?;
    Ok(HttpResponse::Ok().json(user))
}
