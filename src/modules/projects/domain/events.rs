//! What the projects module tells the others.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::auth::Actor;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProjectsEvent {
    ProjectCreated {
        project_id: Uuid,
        name: String,
        actor: Actor,
    },
    ProjectUpdated {
        project_id: Uuid,
        fields: Vec<String>,
        actor: Actor,
    },
    ProjectDeleted {
        project_id: Uuid,
        actor: Actor,
    },
    MemberAdded {
        project_id: Uuid,
        user_id: Uuid,
        role: String,
        actor: Actor,
    },
    MemberRemoved {
        project_id: Uuid,
        user_id: Uuid,
        actor: Actor,
    },
    MemberRoleChanged {
        project_id: Uuid,
        user_id: Uuid,
        old_role: String,
        new_role: String,
        actor: Actor,
    },
    /// An email without an account was invited (the token is never in the event).
    InvitationCreated {
        project_id: Uuid,
        invitation_id: Uuid,
        email: String,
        role: String,
        actor: Actor,
    },
    InvitationRevoked {
        project_id: Uuid,
        invitation_id: Uuid,
        actor: Actor,
    },
    /// Followed by `MemberAdded` for the same user.
    InvitationAccepted {
        project_id: Uuid,
        invitation_id: Uuid,
        user_id: Uuid,
        actor: Actor,
    },
    /// A secret was set or deleted: its name only, never its value.
    SecretChanged {
        project_id: Uuid,
        name: String,
        deleted: bool,
        actor: Actor,
    },
    ApiKeyCreated {
        project_id: Uuid,
        key_id: Uuid,
        name: String,
        actor: Actor,
    },
    ApiKeyRevoked {
        project_id: Uuid,
        key_id: Uuid,
        actor: Actor,
    },
}

impl ProjectsEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            ProjectsEvent::ProjectCreated { .. } => "projects.project_created",
            ProjectsEvent::ProjectUpdated { .. } => "projects.project_updated",
            ProjectsEvent::ProjectDeleted { .. } => "projects.project_deleted",
            ProjectsEvent::MemberAdded { .. } => "projects.member_added",
            ProjectsEvent::MemberRemoved { .. } => "projects.member_removed",
            ProjectsEvent::MemberRoleChanged { .. } => "projects.member_role_changed",
            ProjectsEvent::InvitationCreated { .. } => "projects.invitation_created",
            ProjectsEvent::InvitationRevoked { .. } => "projects.invitation_revoked",
            ProjectsEvent::InvitationAccepted { .. } => "projects.invitation_accepted",
            ProjectsEvent::SecretChanged { .. } => "projects.secret_changed",
            ProjectsEvent::ApiKeyCreated { .. } => "projects.api_key_created",
            ProjectsEvent::ApiKeyRevoked { .. } => "projects.api_key_revoked",
        }
    }
}
