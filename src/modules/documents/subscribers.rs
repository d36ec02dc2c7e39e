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

/// A changed `rag.language` re-indexes the avatar's chunks' full text (a job).
pub struct ReindexAvatarText(pub Arc<DocumentsService>);

#[async_trait]
impl EventHandler<DomainEvent> for ReindexAvatarText {
    fn name(&self) -> &'static str {
        "documents.reindex_avatar_text"
    }

    fn interested(&self, event: &DomainEvent) -> bool {
        matches!(
            event,
            DomainEvent::Avatars(AvatarsEvent::AvatarUpdated { fields, .. })
                if fields.iter().any(|field| field == "rag.language")
        )
    }

    async fn handle(&self, event: &DomainEvent, _delivery: &Delivery) -> anyhow::Result<()> {
        if let DomainEvent::Avatars(AvatarsEvent::AvatarUpdated {
            project_id,
            avatar_id,
            ..
        }) = event
        {
            self.0
                .queue_text_reindex(*project_id, *avatar_id)
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?;
        }
        Ok(())
    }
}
