//! The projects module's failures.

use crate::core::error::{ErrorCode, ErrorKind, Failure, module_error};
use crate::core::ids::InvitationId;

#[derive(Debug, thiserror::Error)]
pub enum ProjectsError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("this user is already a member")]
    AlreadyMember,
    #[error("an invitation for this email is pending; revoke it to invite again")]
    InvitationPending { invitation_id: InvitationId },
    #[error("this invitation is unknown, used, revoked or expired")]
    InvitationInvalid,
    #[error("too many members added; retry in {retry_after_secs} s")]
    TooManyAdditions { retry_after_secs: u64 },
    #[error("a project must keep at least one owner")]
    LastOwner,
    #[error(transparent)]
    Common(#[from] Failure),
}

module_error!(ProjectsError);

impl ErrorKind for ProjectsError {
    fn code(&self) -> ErrorCode {
        match self {
            ProjectsError::NotFound(_) => ErrorCode::NotFound,
            ProjectsError::AlreadyMember
            | ProjectsError::LastOwner
            | ProjectsError::InvitationPending { .. } => ErrorCode::Conflict,
            ProjectsError::InvitationInvalid => ErrorCode::NotFound,
            ProjectsError::TooManyAdditions { .. } => ErrorCode::RateLimited,
            ProjectsError::Common(failure) => failure.code(),
        }
    }

    fn common(&self) -> Option<&Failure> {
        match self {
            ProjectsError::Common(failure) => Some(failure),
            _ => None,
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ProjectsError::TooManyAdditions { retry_after_secs } => Some(*retry_after_secs),
            ProjectsError::Common(failure) => failure.retry_after_secs(),
            _ => None,
        }
    }

    fn details(&self) -> serde_json::Value {
        match self {
            ProjectsError::InvitationPending { invitation_id } => {
                serde_json::json!({ "invitation_id": invitation_id })
            }
            ProjectsError::Common(failure) => failure.details(),
            _ => serde_json::json!({}),
        }
    }
}

/// What another module sees of a projects failure.
impl From<ProjectsError> for Failure {
    fn from(error: ProjectsError) -> Failure {
        match error {
            ProjectsError::NotFound(what) => Failure::NotFound(what),
            ProjectsError::Common(failure) => failure,
            other => Failure::internal(other),
        }
    }
}
