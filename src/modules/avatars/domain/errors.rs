//! The avatars module's failures.

use crate::core::error::{ErrorCode, ErrorKind, Failure, module_error};

#[derive(Debug, thiserror::Error)]
pub enum AvatarsError {
    #[error("avatar not found")]
    NotFound,
    #[error(transparent)]
    Common(#[from] Failure),
}

module_error!(AvatarsError);

impl ErrorKind for AvatarsError {
    fn code(&self) -> ErrorCode {
        match self {
            AvatarsError::NotFound => ErrorCode::NotFound,
            AvatarsError::Common(failure) => failure.code(),
        }
    }

    fn common(&self) -> Option<&Failure> {
        match self {
            AvatarsError::Common(failure) => Some(failure),
            AvatarsError::NotFound => None,
        }
    }
}

/// What another module sees of an avatars failure.
impl From<AvatarsError> for Failure {
    fn from(error: AvatarsError) -> Failure {
        match error {
            AvatarsError::NotFound => Failure::NotFound("avatar"),
            AvatarsError::Common(failure) => failure,
        }
    }
}
