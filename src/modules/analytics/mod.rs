//! `analytics`: the audit log (every state-changing domain event, kept on its own) and usage
//! analytics (a read model of chat's activity per day and avatar). It reads no other module's
//! tables: everything arrives as events, through other modules' services (the platform's
//! counts, chat's history for the one-time backfill), or is its own.

mod api;
mod audit;
mod domain;
mod service;
mod subscribers;
mod tasks;
mod usage;

use std::sync::Arc;

use crate::app::{AppContext, Module, Registry};
use crate::modules::auth::AuthService;
use crate::modules::avatars::AvatarsService;
use crate::modules::chat::ChatService;
use crate::modules::documents::DocumentsService;
use crate::modules::projects::ProjectsService;

pub use domain::errors::AnalyticsError;
pub use service::{AnalyticsService, AuditEntryView, AuditFilter, AuditPage, Maintenance};
pub use usage::range::{DayRange, Granularity};
pub use usage::{AvatarUsage, AvatarUsageList, Backfill, Overview, UsageFigures, UsageSeries};

pub const MODULE: Module = Module {
    name: "analytics",
    install,
    openapi: <api::v1::Doc as utoipa::OpenApi>::openapi,
};

fn install(context: &AppContext, registry: &mut Registry) -> anyhow::Result<()> {
    let settings = &context.settings.analytics;
    let sources = service::Sources {
        auth: registry.get::<AuthService>()?,
        projects: registry.get::<ProjectsService>()?,
        avatars: registry.get::<AvatarsService>()?,
        documents: registry.get::<DocumentsService>()?,
        chat: registry.get::<ChatService>()?,
    };
    let service = Arc::new(AnalyticsService::new(
        context.db.clone(),
        context.clock.clone(),
        settings.clone(),
        sources,
    ));
    registry.subscribe(Arc::new(subscribers::Audit(service.clone())));
    registry.subscribe(Arc::new(subscribers::Usage(service.clone())));
    registry.job_data(service.clone());
    registry.periodic(Box::new(tasks::MaintainAnalytics {
        cron: settings.maintenance_cron.clone(),
    }));
    registry.provide(service);
    registry.routes(api::v1::configure);
    Ok(())
}
