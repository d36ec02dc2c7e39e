//! Subscribers to domain events.

use std::sync::Arc;

use async_trait::async_trait;

use crate::core::events::{Delivery, EventHandler};
use crate::modules::events::DomainEvent;

use super::domain::events::PlatformConfigEvent;
use super::service::PlatformConfigService;

/// Drops the cached settings when they change (in the process that handles the event).
pub(super) struct CacheInvalidation(pub(super) Arc<PlatformConfigService>);

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
