//! The end_users module's failures.

use crate::core::error::{ErrorCode, ErrorKind, Failure, module_error};

#[derive(Debug, thiserror::Error)]
pub enum EndUsersError {
    #[error("end user not found")]
    NotFound,
    #[error("this end user is blocked")]
    Blocked,
    #[error(transparent)]
    Common(#[from] Failure),
}

module_error!(EndUsersError);

impl ErrorKind for EndUsersError {
    fn code(&self) -> ErrorCode {
        match self {
            EndUsersError::NotFound => ErrorCode::NotFound,
            EndUsersError::Blocked => ErrorCode::Forbidden,
            EndUsersError::Common(failure) => failure.code(),
        }
    }

    fn common(&self) -> Option<&Failure> {
        match self {
            EndUsersError::Common(failure) => Some(failure),
            _ => None,
        }
    }
}

/// What another module sees of an end-users failure.
impl From<EndUsersError> for Failure {
    fn from(error: EndUsersError) -> Failure {
        match error {
            EndUsersError::NotFound => Failure::NotFound("end user"),
            EndUsersError::Common(failure) => failure,
            other => Failure::internal(other),
        }
    }
}
