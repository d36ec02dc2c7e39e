//! `plan_requests`: a project owner asks for another plan; the saas_admin approves (billing
//! changes the plan in the same transaction) or rejects.

mod api;
mod domain;
mod service;

use std::sync::Arc;

use crate::app::{AppContext, Module, Registry};
use crate::modules::billing::BillingService;

pub use domain::errors::PlanRequestsError;
pub use domain::events::PlanRequestsEvent;
pub use service::{PlanRequestStatus, PlanRequestView, PlanRequestsService};

pub const MODULE: Module = Module {
    name: "plan_requests",
    install,
    openapi: <api::v1::Doc as utoipa::OpenApi>::openapi,
};

fn install(context: &AppContext, registry: &mut Registry) -> anyhow::Result<()> {
    registry.provide(Arc::new(PlanRequestsService::new(
        context.db.clone(),
        context.bus.clone(),
        context.clock.clone(),
        registry.get::<BillingService>()?,
    )));
    registry.routes(api::v1::configure);
    Ok(())
}
