//! The modules' routes in the OpenAPI document.

use utoipa::OpenApi;

use crate::modules::auth::api::v1 as auth_v1;
use crate::modules::avatars::api::v1 as avatars_v1;
use crate::modules::chat::api::v1 as chat_v1;
use crate::modules::documents::api::v1 as documents_v1;
use crate::modules::end_users::api::v1 as end_users_v1;
use crate::modules::platform_config::api::v1 as platform_config_v1;
use crate::modules::projects::api::v1 as projects_v1;

#[derive(OpenApi)]
#[openapi(
    paths(
        auth_v1::routes::register, auth_v1::routes::login, auth_v1::routes::refresh,
        auth_v1::routes::logout, auth_v1::routes::me, auth_v1::routes::change_password,
        auth_v1::admin::list_users, auth_v1::admin::update_user,
        projects_v1::projects::create_project, projects_v1::projects::list_projects,
        projects_v1::projects::get_project, projects_v1::projects::update_project,
        projects_v1::projects::delete_project,
        projects_v1::members::list_members, projects_v1::members::add_member,
        projects_v1::members::change_member_role, projects_v1::members::remove_member,
        projects_v1::invitations::list_invitations, projects_v1::invitations::revoke_invitation,
        projects_v1::invitations::accept_invitation,
        projects_v1::secrets::list_secrets, projects_v1::secrets::put_secret,
        projects_v1::secrets::delete_secret,
        projects_v1::api_keys::create_api_key, projects_v1::api_keys::list_api_keys,
        projects_v1::api_keys::revoke_api_key, projects_v1::api_keys::whoami,
        avatars_v1::create_avatar, avatars_v1::list_avatars, avatars_v1::get_avatar,
        avatars_v1::update_avatar, avatars_v1::delete_avatar,
        documents_v1::upload::upload_document, documents_v1::list_documents,
        documents_v1::get_document, documents_v1::reprocess_document,
        documents_v1::delete_document, documents_v1::search,
        chat_v1::create_conversation, chat_v1::list_conversations, chat_v1::list_messages,
        chat_v1::send_message, chat_v1::public::chat,
        end_users_v1::list_end_users, end_users_v1::get_end_user, end_users_v1::delete_end_user,
        end_users_v1::block_end_user, end_users_v1::unblock_end_user,
        platform_config_v1::get_platform_config, platform_config_v1::patch_platform_config,
    ),
    tags(
        (name = "auth", description = "Accounts and sessions"),
        (name = "admin", description = "saas_admin: users"),
        (name = "projects", description = "Projects, members, secrets, API keys"),
        (name = "avatars", description = "A project's AI consultants"),
        (name = "documents", description = "An avatar's documents and retrieval"),
        (name = "chat", description = "Conversations with avatars and their answers"),
        (name = "end-users", description = "The people who talk to a project's avatars"),
        (name = "platform-config", description = "saas_admin: global settings"),
        (name = "public", description = "Called with a project API key"),
    )
)]
struct ModulesDoc;

/// The whole document, as served at `/openapi.json` and printed by `avatar-platform openapi`.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = crate::core::openapi::base_document();
    document.merge(ModulesDoc::openapi());
    document
}
