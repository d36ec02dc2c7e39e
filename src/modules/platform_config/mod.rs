//! `platform_config`: the saas_admin's global settings (LLM and embedding endpoints and keys,
//! registration, notifications bot). Other modules read them through [`PlatformConfigService`].

pub mod api;
pub mod domain;
pub mod service;

use std::sync::Arc;

use async_trait::async_trait;

use crate::core::events::{Delivery, EventHandler};
use crate::modules::events::DomainEvent;

pub use service::PlatformConfigService;

use domain::events::PlatformConfigEvent;

/// Drops the cached settings when they change (in the process that handles the event).
pub struct CacheInvalidation(pub Arc<PlatformConfigService>);

#[async_trait]
impl EventHandler<DomainEvent> for CacheInvalidation {
    fn name(&self) -> &'static str {
        "platform_config.cache_invalidation"
    }

    fn interested(&self, event: &DomainEvent) -> bool {
        matches!(
            event,
            DomainEvent::PlatformConfig(PlatformConfigEvent::PlatformConfigChanged { .. })
        )
    }

    async fn handle(&self, _event: &DomainEvent, _delivery: &Delivery) -> anyhow::Result<()> {
        self.0.invalidate();
        Ok(())
    }
}
