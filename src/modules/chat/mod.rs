//! `chat`: conversations with avatars and the RAG pipeline that answers them — retrieval,
//! prompt, a streamed LLM answer (or retrieval-only), stored with its sources, usage and
//! timings, the token reservation settled. Staff ask in the playground; end users through the
//! public API (and Telegram, later), all through [`ChatService`].

mod api;
mod domain;
mod model_choice;
mod pipeline;
mod prompt;
mod service;
mod subscribers;

use std::sync::Arc;

use crate::app::{AppContext, Module, Registry};
use crate::core::cache::RateLimiter;
use crate::modules::avatars::AvatarsService;
use crate::modules::billing::BillingService;
use crate::modules::documents::DocumentsService;
use crate::modules::end_users::EndUsersService;
use crate::modules::platform_config::PlatformConfigService;
use crate::modules::projects::ProjectsService;

pub use domain::errors::ChatError;
pub use domain::events::ChatEvent;
pub use pipeline::TurnEvent;
pub use service::{
    Answer, ChatService, ConversationFilter, ConversationRecord, ConversationView, MessageRecord,
    MessageView, SourceRef, Thread, Timings,
};

pub const MODULE: Module = Module {
    name: "chat",
    install,
    openapi: <api::v1::Doc as utoipa::OpenApi>::openapi,
};

fn install(context: &AppContext, registry: &mut Registry) -> anyhow::Result<()> {
    let settings = &context.settings;
    let service = Arc::new(ChatService::new(
        context.db.clone(),
        context.bus.clone(),
        service::ChatPeers {
            avatars: registry.get::<AvatarsService>()?,
            documents: registry.get::<DocumentsService>()?,
            end_users: registry.get::<EndUsersService>()?,
            billing: registry.get::<BillingService>()?,
        },
        model_choice::ModelSource::new(
            settings.chat.clone(),
            registry.get::<PlatformConfigService>()?,
            registry.get::<ProjectsService>()?,
            context.outbound.clone(),
        ),
        settings.chat.clone(),
        context.clock.clone(),
        RateLimiter::new(context.cache.clone(), context.clock.clone()),
    ));
    registry.subscribe(Arc::new(subscribers::RemoveAvatarConversations(
        service.clone(),
    )));
    registry.provide(service);
    // The public chat API limits request rates per API key.
    registry.provide(Arc::new(RateLimiter::new(
        context.cache.clone(),
        context.clock.clone(),
    )));
    registry.routes(api::v1::configure);
    Ok(())
}
