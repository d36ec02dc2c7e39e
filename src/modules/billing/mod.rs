//! `billing`: the plan catalogue, each project's subscription (plan, monthly period, counters),
//! token budgets with reservations, the usage ledger and plan limits.
//!
//! Other modules call [`BillingService`] inside their own transactions: projects starts a
//! subscription when it creates a project, avatars and documents take and free slots, chat
//! reserves before an LLM call and settles in the transaction that stores the answer.

mod api;
mod domain;
mod service;
mod tasks;

use std::sync::Arc;

use crate::app::{AppContext, Module, Registry};

pub use domain::errors::BillingError;
pub use domain::events::BillingEvent;
pub use service::{
    BillingService, BillingView, NewPlan, PlanLimits, PlanPatch, PlanView, Reservation, Slot,
    UsageFilter, UsageKind, UsageRecord, UsageView,
};

pub const MODULE: Module = Module {
    name: "billing",
    install,
    openapi: <api::v1::Doc as utoipa::OpenApi>::openapi,
};

fn install(context: &AppContext, registry: &mut Registry) -> anyhow::Result<()> {
    let settings = &context.settings;
    let service = Arc::new(BillingService::new(
        context.db.clone(),
        context.bus.clone(),
        context.clock.clone(),
        settings.billing.clone(),
    ));
    registry.job_data(service.clone());
    registry.periodic(Box::new(tasks::MaintainBilling {
        cron: settings.billing.maintenance_cron.clone(),
    }));
    registry.provide(service);
    registry.routes(api::v1::configure);
    Ok(())
}
