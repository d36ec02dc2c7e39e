//! Domain modules. Each is a folder whose `mod.rs` is its façade: `MODULE` names its
//! `install` function (service, routes, subscribers, tasks, start-up checks) and its part of
//! the OpenAPI document. Modules talk to each other only through events and public service
//! methods. Adding a module is one folder and one line in [`ALL`].

pub mod analytics;
pub mod auth;
pub mod avatars;
pub mod billing;
pub mod chat;
pub mod documents;
pub mod end_users;
pub mod events;
pub mod notifications;
pub mod plan_requests;
pub mod platform_config;
pub mod projects;
pub mod telegram;

use crate::app::Module;

/// Every module, in installation order: a module may use the services of those above it.
pub const ALL: &[Module] = &[
    platform_config::MODULE,
    auth::MODULE,
    billing::MODULE,
    projects::MODULE,
    avatars::MODULE,
    documents::MODULE,
    end_users::MODULE,
    chat::MODULE,
    plan_requests::MODULE,
    telegram::MODULE,
    notifications::MODULE,
    analytics::MODULE,
];

/// The whole OpenAPI document, as served at `/openapi.json` and printed by
/// `avatar-platform openapi`: the core's part and each module's.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let mut document = crate::core::openapi::base_document();
    for module in ALL {
        document.merge((module.openapi)());
    }
    crate::core::openapi::document_common_errors(&mut document);
    document
}
