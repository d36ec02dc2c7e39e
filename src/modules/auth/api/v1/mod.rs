//! `/api/v1/auth/*` and `/api/v1/admin/users*`.

pub mod admin;
pub mod routes;
pub mod schemas;

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
