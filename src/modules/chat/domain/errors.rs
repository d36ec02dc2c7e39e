//! The chat module's failures.

use crate::core::error::{ErrorCode, ErrorKind, Failure, module_error};

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("this avatar is disabled")]
    AvatarDisabled,
    #[error("this end user is blocked")]
    EndUserBlocked,
    #[error("{0}")]
    TokenLimit(String),
    #[error("{0}")]
    Upstream(String),
    #[error(transparent)]
    Common(#[from] Failure),
}

module_error!(ChatError);

impl ErrorKind for ChatError {
    fn code(&self) -> ErrorCode {
        match self {
            ChatError::NotFound(_) => ErrorCode::NotFound,
            ChatError::AvatarDisabled => ErrorCode::Conflict,
            ChatError::EndUserBlocked => ErrorCode::Forbidden,
            ChatError::TokenLimit(_) => ErrorCode::TokenLimitExceeded,
            ChatError::Upstream(_) => ErrorCode::ExternalServiceError,
            ChatError::Common(failure) => failure.code(),
        }
    }

    fn common(&self) -> Option<&Failure> {
        match self {
            ChatError::Common(failure) => Some(failure),
            _ => None,
        }
    }
}
