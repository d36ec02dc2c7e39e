//! What the auth module tells the others.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::auth::Actor;
use crate::core::ids::UserId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuthEvent {
    UserRegistered {
        user_id: UserId,
        email: String,
        role: String,
        actor: Actor,
    },
    UserLoggedIn {
        user_id: UserId,
        actor: Actor,
    },
    PasswordChanged {
        user_id: UserId,
        actor: Actor,
    },
    /// A saas_admin changed a user's role or active flag.
    UserUpdated {
        user_id: UserId,
        role: Option<String>,
        is_active: Option<bool>,
        actor: Actor,
    },
    /// A spent refresh token was presented again: its whole family was revoked.
    RefreshTokenReuseDetected {
        user_id: UserId,
        family_id: Uuid,
        actor: Actor,
    },
}

impl AuthEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            AuthEvent::UserRegistered { .. } => "auth.user_registered",
            AuthEvent::UserLoggedIn { .. } => "auth.user_logged_in",
            AuthEvent::PasswordChanged { .. } => "auth.password_changed",
            AuthEvent::UserUpdated { .. } => "auth.user_updated",
            AuthEvent::RefreshTokenReuseDetected { .. } => "auth.refresh_token_reuse_detected",
        }
    }
}
