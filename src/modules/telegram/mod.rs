//! `telegram`: a bot per project — a manager connects it with a token and an avatar, and
//! Telegram users talk to that avatar. Updates arrive by webhook (stored and de-duplicated, then
//! answered by a job through the same chat pipeline as every channel), answers stream into the
//! chat by throttled edits.

mod api;
mod domain;
mod service;
mod subscribers;
mod tasks;

/// What the fuzz targets drive (feature `testkit`, off in every build that serves): reading a
/// webhook body, making it storable, reading a stored update as the handler does.
#[cfg(feature = "testkit")]
pub mod testkit {
    pub use super::service::reading::{Addressed, Asks, read_update, read_webhook_body};
    pub use super::service::store::without_refused_escapes;
}

use std::sync::Arc;

use crate::app::{AppContext, Module, Registry};
use crate::modules::avatars::AvatarsService;
use crate::modules::chat::ChatService;
use crate::modules::platform_config::PlatformConfigService;
use crate::modules::projects::ProjectsService;

pub use domain::errors::TelegramError;
pub use domain::events::TelegramEvent;
pub use domain::{BotMode, BotStatus};
pub use service::{BotView, Connection, TelegramService};

pub const MODULE: Module = Module {
    name: "telegram",
    install,
    openapi: <api::v1::Doc as utoipa::OpenApi>::openapi,
};

fn install(context: &AppContext, registry: &mut Registry) -> anyhow::Result<()> {
    let settings = &context.settings;
    let service = Arc::new(TelegramService::new(
        service::TelegramDeps {
            db: context.db.clone(),
            bus: context.bus.clone(),
            clock: context.clock.clone(),
            secret_box: context.secret_box.clone(),
            outbound: context.outbound.clone(),
            projects: registry.get::<ProjectsService>()?,
            avatars: registry.get::<AvatarsService>()?,
            chat: registry.get::<ChatService>()?,
            platform: registry.get::<PlatformConfigService>()?,
        },
        settings.telegram.clone(),
        &settings.server,
    ));
    registry.job_data(service.clone());
    registry.subscribe(Arc::new(subscribers::DisconnectDeletedProjects(
        service.clone(),
    )));
    registry.periodic(Box::new(tasks::MaintainTelegram {
        cron: settings.telegram.maintenance_cron.clone(),
    }));
    if settings.telegram.polling_enabled {
        let pollers = service.clone();
        registry.background(
            "telegram.pollers",
            Box::new(move |stop| Box::pin(Arc::clone(&pollers).run_pollers(stop))),
        );
    }
    registry.provide(service);
    registry.routes(api::v1::configure);
    Ok(())
}
