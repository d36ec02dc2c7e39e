//! `analytics`: the audit log (every state-changing domain event, kept on its own) — usage
//! analytics come next. It reads no other module's tables: everything arrives as events.

mod api;
mod audit;
mod domain;
mod service;
mod subscribers;

use std::sync::Arc;

use crate::app::{AppContext, Module, Registry};

pub use domain::errors::AnalyticsError;
pub use service::{AnalyticsService, AuditEntryView, AuditFilter, AuditPage};

pub const MODULE: Module = Module {
    name: "analytics",
    install,
    openapi: <api::v1::Doc as utoipa::OpenApi>::openapi,
};

fn install(context: &AppContext, registry: &mut Registry) -> anyhow::Result<()> {
    let service = Arc::new(AnalyticsService::new(context.db.clone()));
    registry.subscribe(Arc::new(subscribers::Audit(service.clone())));
    registry.provide(service);
    registry.routes(api::v1::configure);
    Ok(())
}
