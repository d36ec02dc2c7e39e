//! What the end_users module tells the others.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::auth::Actor;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EndUsersEvent {
    /// First contact through a channel.
    EndUserCreated {
        project_id: Uuid,
        end_user_id: Uuid,
        channel: crate::core::channel::Channel,
    },
    EndUserBlocked {
        project_id: Uuid,
        end_user_id: Uuid,
        actor: Actor,
    },
    EndUserUnblocked {
        project_id: Uuid,
        end_user_id: Uuid,
        actor: Actor,
    },
    /// Erased (GDPR): the chat module erases their conversations and messages.
    EndUserDeleted {
        project_id: Uuid,
        end_user_id: Uuid,
        actor: Actor,
    },
}

impl EndUsersEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            EndUsersEvent::EndUserCreated { .. } => "end_users.end_user_created",
            EndUsersEvent::EndUserBlocked { .. } => "end_users.end_user_blocked",
            EndUsersEvent::EndUserUnblocked { .. } => "end_users.end_user_unblocked",
            EndUsersEvent::EndUserDeleted { .. } => "end_users.end_user_deleted",
        }
    }
}
