//! `/api/v1/auth/*` and `/api/v1/admin/users*`.

mod admin;
mod routes;
mod schemas;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(routes::register)
        .service(routes::login)
        .service(routes::refresh)
        .service(routes::logout)
        .service(routes::me)
        .service(routes::change_password)
        .service(admin::list_users)
        .service(admin::update_user);
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        routes::register,
        routes::login,
        routes::refresh,
        routes::logout,
        routes::me,
        routes::change_password,
        admin::list_users,
        admin::update_user,
    ),
    tags(
        (name = "auth", description = "Accounts and sessions"),
        (name = "admin", description = "saas_admin: users"),
    )
)]
pub struct Doc;
