//! `notifications`: team members hear on Telegram what happens on the platform. Each user
//! links a chat (a one-time code sent to the platform's notifications bot) and picks events;
//! documents processed or failed, budget thresholds and plan decisions reach a project's
//! owners and managers, plan requests and registrations reach saas_admins — each message a
//! retried job whose failure is recorded and never touches the request behind the event.

mod api;
mod domain;
mod service;
mod subscribers;
mod tasks;

use std::sync::Arc;

use crate::app::{AppContext, Module, Registry};
use crate::modules::auth::AuthService;
use crate::modules::documents::DocumentsService;
use crate::modules::platform_config::PlatformConfigService;
use crate::modules::projects::ProjectsService;

pub use domain::errors::NotificationsError;
pub use domain::{DeliveryStatus, NotificationEvent};
pub use service::{DeliveryView, LinkCode, NotificationsService, SettingsView};

pub const MODULE: Module = Module {
    name: "notifications",
    install,
    openapi: <api::v1::Doc as utoipa::OpenApi>::openapi,
};

fn install(context: &AppContext, registry: &mut Registry) -> anyhow::Result<()> {
    let settings = &context.settings;
    let service = Arc::new(NotificationsService::new(
        service::NotificationsDeps {
            db: context.db.clone(),
            clock: context.clock.clone(),
            secret_box: context.secret_box.clone(),
            outbound: context.outbound.clone(),
            platform: registry.get::<PlatformConfigService>()?,
            auth: registry.get::<AuthService>()?,
            projects: registry.get::<ProjectsService>()?,
            documents: registry.get::<DocumentsService>()?,
        },
        settings.notifications.clone(),
        settings.telegram.clone(),
        &settings.server,
    ));
    registry.job_data(service.clone());
    registry.subscribe(Arc::new(subscribers::Notify(service.clone())));
    registry.subscribe(Arc::new(subscribers::SetUpBot(service.clone())));
    registry.periodic(Box::new(tasks::MaintainNotifications {
        cron: settings.notifications.maintenance_cron.clone(),
    }));
    if settings.telegram.polling_enabled {
        let poller = service.clone();
        registry.background(
            "notifications.bot_poller",
            Box::new(move |stop| Box::pin(Arc::clone(&poller).run_poller(stop))),
        );
    }
    registry.provide(service);
    registry.routes(api::v1::configure);
    Ok(())
}
