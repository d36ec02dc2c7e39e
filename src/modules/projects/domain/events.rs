//! What the projects module tells the others.

use serde::{Deserialize, Serialize};

use crate::core::auth::Actor;
use crate::core::ids::{ApiKeyId, InvitationId, ProjectId, UserId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProjectsEvent {
    ProjectCreated {
        project_id: ProjectId,
        name: String,
        actor: Actor,
    },
    ProjectUpdated {
        project_id: ProjectId,
        fields: Vec<String>,
        actor: Actor,
    },
    ProjectDeleted {
        project_id: ProjectId,
        actor: Actor,
    },
    MemberAdded {
        project_id: ProjectId,
        user_id: UserId,
        role: String,
        actor: Actor,
    },
    MemberRemoved {
        project_id: ProjectId,
        user_id: UserId,
        actor: Actor,
    },
    MemberRoleChanged {
        project_id: ProjectId,
        user_id: UserId,
        old_role: String,
        new_role: String,
        actor: Actor,
    },
    /// An email without an account was invited (the token is never in the event).
    InvitationCreated {
        project_id: ProjectId,
        invitation_id: InvitationId,
        email: String,
        role: String,
        actor: Actor,
    },
    InvitationRevoked {
        project_id: ProjectId,
        invitation_id: InvitationId,
        actor: Actor,
    },
    /// Followed by `MemberAdded` for the same user.
    InvitationAccepted {
        project_id: ProjectId,
        invitation_id: InvitationId,
        user_id: UserId,
        actor: Actor,
    },
    /// A secret was set or deleted: its name only, never its value.
    SecretChanged {
        project_id: ProjectId,
        name: String,
        deleted: bool,
        actor: Actor,
    },
    ApiKeyCreated {
        project_id: ProjectId,
        key_id: ApiKeyId,
        name: String,
        actor: Actor,
    },
    ApiKeyRevoked {
        project_id: ProjectId,
        key_id: ApiKeyId,
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
