//! What the avatars module tells the others.

use serde::{Deserialize, Serialize};

use crate::core::auth::Actor;
use crate::core::ids::{AvatarId, ProjectId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AvatarsEvent {
    AvatarCreated {
        project_id: ProjectId,
        avatar_id: AvatarId,
        name: String,
        actor: Actor,
    },
    AvatarUpdated {
        project_id: ProjectId,
        avatar_id: AvatarId,
        fields: Vec<String>,
        actor: Actor,
    },
    /// Soft-deleted; its documents go with it (the documents module listens).
    AvatarDeleted {
        project_id: ProjectId,
        avatar_id: AvatarId,
        actor: Actor,
    },
}

impl AvatarsEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            AvatarsEvent::AvatarCreated { .. } => "avatars.avatar_created",
            AvatarsEvent::AvatarUpdated { .. } => "avatars.avatar_updated",
            AvatarsEvent::AvatarDeleted { .. } => "avatars.avatar_deleted",
        }
    }
}
