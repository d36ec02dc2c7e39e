//! `platform_config`: the saas_admin's global settings (LLM and embedding endpoints and keys,
//! registration, notifications bot). Other modules read them through [`PlatformConfigService`].

mod api;
mod domain;
mod service;
mod subscribers;

use std::sync::Arc;
use std::time::Duration;

use crate::app::{AppContext, Module, Registry};

pub use domain::errors::PlatformConfigError;
pub use domain::events::PlatformConfigEvent;
pub use service::{PlatformConfig, PlatformConfigPatch, PlatformConfigService, PlatformConfigView};

pub const MODULE: Module = Module {
    name: "platform_config",
    install,
    openapi: <api::v1::Doc as utoipa::OpenApi>::openapi,
};

fn install(context: &AppContext, registry: &mut Registry) -> anyhow::Result<()> {
    let service = Arc::new(PlatformConfigService::new(
        context.db.clone(),
        context.bus.clone(),
        context.secret_box.clone(),
        Duration::from_secs(context.settings.auth.platform_config_cache_secs),
        context.clock.clone(),
    ));
    registry.subscribe(Arc::new(subscribers::CacheInvalidation(service.clone())));
    registry.provide(service);
    registry.routes(api::v1::configure);
    Ok(())
}
