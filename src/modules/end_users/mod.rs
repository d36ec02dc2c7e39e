//! `end_users`: the people who talk to avatars through a channel (public API, Telegram).
//! Other modules find or create them through [`EndUsersService::find_or_create`].

mod api;
mod domain;
mod service;

use std::sync::Arc;

use crate::app::{AppContext, Module, Registry};

pub use domain::errors::EndUsersError;
pub use domain::events::EndUsersEvent;
pub use service::{Contact, EndUserFilter, EndUserView, EndUsersService};

pub const MODULE: Module = Module {
    name: "end_users",
    install,
    openapi: <api::v1::Doc as utoipa::OpenApi>::openapi,
};

fn install(context: &AppContext, registry: &mut Registry) -> anyhow::Result<()> {
    registry.provide(Arc::new(EndUsersService::new(
        context.db.clone(),
        context.bus.clone(),
        context.clock.clone(),
    )));
    registry.routes(api::v1::configure);
    Ok(())
}
