//! Subscribers to other modules' events.

use std::sync::Arc;

use async_trait::async_trait;

use crate::core::events::{Delivery, EventHandler};
use crate::modules::events::DomainEvent;
use crate::modules::platform_config::PlatformConfigEvent;

use super::service::NotificationsService;

/// Documents, budgets, plan requests and registrations become messages to those concerned.
pub struct Notify(pub Arc<NotificationsService>);

#[async_trait]
impl EventHandler<DomainEvent> for Notify {
    fn name(&self) -> &'static str {
        "notifications.notify"
    }

    fn interested(&self, event: &DomainEvent) -> bool {
        super::service::concerns(event)
    }

    async fn handle(&self, event: &DomainEvent, delivery: &Delivery) -> anyhow::Result<()> {
        let queued = self.0.notify(event, delivery).await?;
        if queued > 0 {
            tracing::debug!(queued, event = ?delivery.event_id, "notifications queued");
        }
        Ok(())
    }
}

/// A new (or removed) `notifications_bot_token` sets the notifications bot up again.
pub struct SetUpBot(pub Arc<NotificationsService>);

#[async_trait]
impl EventHandler<DomainEvent> for SetUpBot {
    fn name(&self) -> &'static str {
        "notifications.set_up_bot"
    }

    fn interested(&self, event: &DomainEvent) -> bool {
        matches!(
            event,
            DomainEvent::PlatformConfig(PlatformConfigEvent::PlatformConfigChanged { fields, .. })
                if fields.iter().any(|field| field == "notifications_bot_token")
        )
    }

    async fn handle(&self, _event: &DomainEvent, _delivery: &Delivery) -> anyhow::Result<()> {
        self.0.set_up_bot().await?;
        Ok(())
    }
}
