//! The chat module's failures.

use crate::core::error::{ErrorCode, ErrorKind, Unavailable, database_error};

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

impl ErrorKind for ChatError {
    fn code(&self) -> ErrorCode {
        match self {
            ChatError::NotFound(_) => ErrorCode::NotFound,
            ChatError::AvatarDisabled => ErrorCode::Conflict,
            ChatError::EndUserBlocked => ErrorCode::Forbidden,
            ChatError::TokenLimit(_) => ErrorCode::TokenLimitExceeded,
            ChatError::Upstream(_) => ErrorCode::ExternalServiceError,
            ChatError::InvalidField { .. } => ErrorCode::ValidationError,
            ChatError::Internal(_) => ErrorCode::Internal,
            ChatError::Unavailable(unavailable) => unavailable.code(),
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ChatError::Unavailable(unavailable) => unavailable.retry_after_secs(),
            _ => None,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            ChatError::InvalidField { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl From<sea_orm::DbErr> for ChatError {
    fn from(error: sea_orm::DbErr) -> Self {
        database_error(error, Self::Internal)
    }
}
