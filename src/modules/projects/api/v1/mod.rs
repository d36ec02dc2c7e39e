//! `/api/v1/projects*`, `/api/v1/invitations/accept` and `/api/v1/public/api-key`.

pub mod api_keys;
pub mod invitations;
pub mod members;
pub mod projects;
pub mod schemas;
pub mod secrets;

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
