//! Subscribers to other modules' events.

use std::sync::Arc;

use async_trait::async_trait;

use crate::core::events::{Delivery, EventHandler};
use crate::modules::avatars::AvatarsEvent;
use crate::modules::events::DomainEvent;

use super::service::ChatService;

/// A deleted avatar takes its conversations and their messages along.
pub struct RemoveAvatarConversations(pub Arc<ChatService>);

#[async_trait]
impl EventHandler<DomainEvent> for RemoveAvatarConversations {
    fn name(&self) -> &'static str {
        "chat.remove_avatar_conversations"
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
            ..
        }) = event
        {
            self.0
                .delete_avatar_conversations(*project_id, *avatar_id)
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?;
        }
        Ok(())
    }
}
