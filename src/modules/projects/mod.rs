//! `projects`: the tenants. Projects, members with roles (owner > manager > operator >
//! viewer), invitations, encrypted secrets and API keys. Other modules authorize through the
//! extractors in `core::auth`, backed by [`ProjectsService`], and read secrets with
//! [`ProjectsService::secret_value`] or, bound to their endpoint,
//! [`ProjectsService::endpoint_secrets`].

mod api;
mod domain;
mod service;

use std::sync::Arc;

use crate::app::{AppContext, Module, Registry};
use crate::core::auth::{ApiKeys, ProjectRoles};
use crate::core::cache::RateLimiter;
use crate::core::llm::LLM_SECRETS;
use crate::core::telegram::TELEGRAM_SECRETS;
use crate::modules::auth::AuthService;
use crate::modules::billing::BillingService;

pub use domain::errors::ProjectsError;
pub use domain::events::ProjectsEvent;
pub use service::{BoundCredential, EndpointSecrets, ProjectView, ProjectsService, SecretName};

pub const MODULE: Module = Module {
    name: "projects",
    install,
    openapi: <api::v1::Doc as utoipa::OpenApi>::openapi,
};

fn install(context: &AppContext, registry: &mut Registry) -> anyhow::Result<()> {
    let settings = &context.settings;
    let service = Arc::new(ProjectsService::new(
        context.db.clone(),
        context.bus.clone(),
        context.secret_box.clone(),
        registry.get::<AuthService>()?,
        RateLimiter::new(context.cache.clone(), context.clock.clone()),
        service::ProjectsConfig {
            settings: settings.projects.clone(),
            api_key_last_used_resolution_secs: settings.auth.api_key_last_used_resolution_secs,
            bindings: vec![LLM_SECRETS, TELEGRAM_SECRETS],
            clock: context.clock.clone(),
            billing: registry.get::<BillingService>()?,
            caches: context.exact_caches.clone(),
        },
    ));
    registry.provide_shared::<dyn ProjectRoles>(service.clone());
    registry.provide_shared::<dyn ApiKeys>(service.clone());
    registry.provide(service);
    registry.routes(api::v1::configure);
    Ok(())
}
