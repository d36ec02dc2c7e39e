//! Subscribers to other modules' events.

use std::sync::Arc;

use async_trait::async_trait;

use crate::core::auth::Actor;
use crate::core::events::{Delivery, EventHandler};
use crate::modules::events::DomainEvent;
use crate::modules::projects::ProjectsEvent;

use super::domain::errors::TelegramError;
use super::service::TelegramService;

/// A deleted project's bot is disconnected: its webhook removed, nothing answered any more.
pub struct DisconnectDeletedProjects(pub Arc<TelegramService>);

#[async_trait]
impl EventHandler<DomainEvent> for DisconnectDeletedProjects {
    fn name(&self) -> &'static str {
        "telegram.disconnect_deleted_projects"
    }

    fn interested(&self, event: &DomainEvent) -> bool {
        matches!(
            event,
            DomainEvent::Projects(ProjectsEvent::ProjectDeleted { .. })
        )
    }

    async fn handle(&self, event: &DomainEvent, _delivery: &Delivery) -> anyhow::Result<()> {
        if let DomainEvent::Projects(ProjectsEvent::ProjectDeleted { project_id, .. }) = event {
            match self.0.disconnect(*project_id, Actor::system()).await {
                Ok(()) | Err(TelegramError::NotConnected) => {}
                Err(error) => return Err(anyhow::anyhow!("{error}")),
            }
        }
        Ok(())
    }
}
