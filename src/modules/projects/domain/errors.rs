//! The projects module's failures.

use crate::core::error::{ErrorCode, ErrorKind, Unavailable, database_error};

#[derive(Debug, thiserror::Error)]
pub enum ProjectsError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("this user is already a member")]
    AlreadyMember,
    #[error("an invitation for this email is pending; revoke it to invite again")]
    InvitationPending { invitation_id: uuid::Uuid },
    #[error("this invitation is unknown, used, revoked or expired")]
    InvitationInvalid,
    #[error("too many members added; retry in {retry_after_secs} s")]
    TooManyAdditions { retry_after_secs: u64 },
    #[error("a project must keep at least one owner")]
    LastOwner,
    #[error("{field}: {message}")]
    InvalidField {
        field: &'static str,
        message: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

impl ErrorKind for ProjectsError {
    fn code(&self) -> ErrorCode {
        match self {
            ProjectsError::NotFound(_) => ErrorCode::NotFound,
            ProjectsError::InvalidField { .. } => ErrorCode::ValidationError,
            ProjectsError::AlreadyMember
            | ProjectsError::LastOwner
            | ProjectsError::InvitationPending { .. } => ErrorCode::Conflict,
            ProjectsError::InvitationInvalid => ErrorCode::NotFound,
            ProjectsError::TooManyAdditions { .. } => ErrorCode::RateLimited,
            ProjectsError::Internal(_) => ErrorCode::Internal,
            ProjectsError::Unavailable(unavailable) => unavailable.code(),
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ProjectsError::Unavailable(unavailable) => unavailable.retry_after_secs(),
            ProjectsError::TooManyAdditions { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }

    fn details(&self) -> serde_json::Value {
        match self {
            ProjectsError::InvitationPending { invitation_id } => {
                serde_json::json!({ "invitation_id": invitation_id })
            }
            _ => serde_json::json!({}),
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            ProjectsError::InvalidField { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl From<sea_orm::DbErr> for ProjectsError {
    fn from(error: sea_orm::DbErr) -> Self {
        database_error(error, Self::Internal)
    }
}

impl From<crate::core::crypto::CryptoError> for ProjectsError {
    fn from(error: crate::core::crypto::CryptoError) -> Self {
        ProjectsError::Internal(error.to_string())
    }
}

impl From<crate::modules::auth::domain::errors::AuthError> for ProjectsError {
    fn from(error: crate::modules::auth::domain::errors::AuthError) -> Self {
        use crate::modules::auth::domain::errors::AuthError;
        match error {
            AuthError::Unavailable(unavailable) => ProjectsError::Unavailable(unavailable),
            other => ProjectsError::Internal(other.to_string()),
        }
    }
}
