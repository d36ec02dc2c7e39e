//! Subscribers to other modules' events.

use std::sync::Arc;

use async_trait::async_trait;

use crate::core::events::{Delivery, EventHandler};
use crate::modules::avatars::AvatarsEvent;
use crate::modules::events::DomainEvent;

use super::service::DocumentsService;

/// A deleted avatar takes its documents (chunks and stored files) with it.
pub struct DeleteAvatarDocuments(pub Arc<DocumentsService>);

#[async_trait]
impl EventHandler<DomainEvent> for DeleteAvatarDocuments {
    fn name(&self) -> &'static str {
        "documents.delete_avatar_documents"
    }

    fn interested(&self, event: &DomainEvent) -> bool {
        matches!(
            event,
            DomainEvent::Avatars(AvatarsEvent::AvatarDeleted { .. })
        )
    }

    async fn handle(&self, event: &DomainEvent, _delivery: &Delivery) -> anyhow::Result<()> {
        if let DomainEvent::Avatars(AvatarsEvent::AvatarDeleted {
            project_id,
            avatar_id,
            actor,
        }) = event
        {
            self.0
                .delete_for_avatar(*project_id, *avatar_id, actor.clone())
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?;
        }
        Ok(())
    }
}
