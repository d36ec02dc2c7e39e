//! `avatars`: a project's AI consultants — system prompt, LLM settings, retrieval settings,
//! status. Other modules read an avatar through [`AvatarsService::get`].

mod api;
mod domain;
mod service;
mod slugs;

use std::sync::Arc;

use crate::app::{AppContext, Module, Registry};
use crate::core::embeddings::max_chunk_tokens;
use crate::modules::billing::BillingService;

pub use domain::errors::AvatarsError;
pub use domain::events::AvatarsEvent;
pub use service::{
    AvatarPatch, AvatarStatus, AvatarView, AvatarsService, LlmInput, LlmSettings, NewAvatar,
    RagInput, RagSettings,
};

pub const MODULE: Module = Module {
    name: "avatars",
    install,
    openapi: <api::v1::Doc as utoipa::OpenApi>::openapi,
};

fn install(context: &AppContext, registry: &mut Registry) -> anyhow::Result<()> {
    registry.provide(Arc::new(AvatarsService::new(
        context.db.clone(),
        context.bus.clone(),
        context.settings.avatars.clone(),
        max_chunk_tokens(context.settings.embeddings.provider),
        context.clock.clone(),
        registry.get::<BillingService>()?,
        &context.exact_caches,
    )));
    registry.routes(api::v1::configure);
    Ok(())
}
