//! `/api/v1/projects*`, `/api/v1/invitations/accept` and `/api/v1/public/api-key`.

mod api_keys;
mod invitations;
mod members;
mod projects;
mod schemas;
mod secrets;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(projects::create_project)
        .service(projects::list_projects)
        .service(projects::get_project)
        .service(projects::update_project)
        .service(projects::delete_project)
        .service(members::list_members)
        .service(members::add_member)
        .service(members::change_member_role)
        .service(members::remove_member)
        .service(invitations::list_invitations)
        .service(invitations::revoke_invitation)
        .service(invitations::accept_invitation)
        .service(secrets::list_secrets)
        .service(secrets::put_secret)
        .service(secrets::delete_secret)
        .service(api_keys::create_api_key)
        .service(api_keys::list_api_keys)
        .service(api_keys::revoke_api_key)
        .service(api_keys::whoami);
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        projects::create_project,
        projects::list_projects,
        projects::get_project,
        projects::update_project,
        projects::delete_project,
        members::list_members,
        members::add_member,
        members::change_member_role,
        members::remove_member,
        invitations::list_invitations,
        invitations::revoke_invitation,
        invitations::accept_invitation,
        secrets::list_secrets,
        secrets::put_secret,
        secrets::delete_secret,
        api_keys::create_api_key,
        api_keys::list_api_keys,
        api_keys::revoke_api_key,
        api_keys::whoami,
    ),
    tags(
        (name = "projects", description = "Projects, members, secrets, API keys"),
        (name = "public", description = "Called with a project API key"),
    )
)]
pub struct Doc;
