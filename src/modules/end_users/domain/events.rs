//! What the end_users module tells the others.

use serde::{Deserialize, Serialize};

use crate::core::auth::Actor;
use crate::core::ids::{EndUserId, ProjectId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EndUsersEvent {
    /// First contact through a channel.
    EndUserCreated {
        project_id: ProjectId,
        end_user_id: EndUserId,
        channel: crate::core::channel::Channel,
    },
    EndUserBlocked {
        project_id: ProjectId,
        end_user_id: EndUserId,
        actor: Actor,
    },
    EndUserUnblocked {
        project_id: ProjectId,
        end_user_id: EndUserId,
        actor: Actor,
    },
    /// Erased (GDPR), with their conversations and messages; analytics forgets them.
    EndUserDeleted {
        project_id: ProjectId,
        end_user_id: EndUserId,
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
