//! Analytics' feeds: the audit log (every event that has an audit entry) and usage (chat's
//! activity). Separate subscribers, so one failing never holds up the other.

use std::sync::Arc;

use async_trait::async_trait;

use crate::core::events::{Delivery, EventHandler};
use crate::modules::events::DomainEvent;

use super::audit;
use super::service::AnalyticsService;
use super::usage::facts;

pub struct Audit(pub Arc<AnalyticsService>);

#[async_trait]
impl EventHandler<DomainEvent> for Audit {
    fn name(&self) -> &'static str {
        "analytics.audit"
    }

    fn interested(&self, event: &DomainEvent) -> bool {
        audit::entry_of(event).is_some()
    }

    async fn handle(&self, event: &DomainEvent, delivery: &Delivery) -> anyhow::Result<()> {
        self.0
            .record(event, delivery)
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))
    }
}

pub struct Usage(pub Arc<AnalyticsService>);

#[async_trait]
impl EventHandler<DomainEvent> for Usage {
    fn name(&self) -> &'static str {
        "analytics.usage"
    }

    fn interested(&self, event: &DomainEvent) -> bool {
        facts::concerns(event)
    }

    async fn handle(&self, event: &DomainEvent, delivery: &Delivery) -> anyhow::Result<()> {
        self.0
            .record_usage(event, delivery)
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))
    }
}
