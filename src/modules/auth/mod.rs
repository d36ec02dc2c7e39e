//! `auth`: users, passwords, sessions (access and refresh tokens) and the saas_admin's user
//! management. Other modules use [`AuthService`]'s public methods to look users up; the
//! `core::auth` extractors verify access tokens through it.

mod api;
mod domain;
mod service;

use std::sync::Arc;

use crate::app::{AppContext, Module, Registry};
use crate::core::auth::TokenVerifier;
use crate::core::cache::RateLimiter;
use crate::modules::platform_config::PlatformConfigService;

pub use domain::errors::AuthError;
pub use domain::events::AuthEvent;
pub use service::{AuthService, TokenPair, UserPatch, UserSummary, UserView};

use service::AuthDeps;

pub const MODULE: Module = Module {
    name: "auth",
    install,
    openapi: <api::v1::Doc as utoipa::OpenApi>::openapi,
};

fn install(context: &AppContext, registry: &mut Registry) -> anyhow::Result<()> {
    let settings = &context.settings;
    let deps = AuthDeps {
        db: context.db.clone(),
        bus: context.bus.clone(),
        clock: context.clock.clone(),
        limiter: RateLimiter::new(context.cache.clone(), context.clock.clone()),
        platform: registry.get::<PlatformConfigService>()?,
        secret_box: context.secret_box.clone(),
        caches: context.exact_caches.clone(),
    };
    let service = Arc::new(AuthService::new(
        deps,
        settings.auth.clone(),
        &settings.secrets.jwt_secret,
    )?);
    registry.provide_shared::<dyn TokenVerifier>(service.clone());
    registry.provide(service);
    registry.routes(api::v1::configure);
    Ok(())
}
