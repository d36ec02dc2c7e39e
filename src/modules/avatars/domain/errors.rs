//! The avatars module's failures.

use crate::core::error::{ErrorCode, ErrorKind, Unavailable, database_error};

#[derive(Debug, thiserror::Error)]
pub enum AvatarsError {
    #[error("avatar not found")]
    NotFound,
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

impl ErrorKind for AvatarsError {
    fn code(&self) -> ErrorCode {
        match self {
            AvatarsError::NotFound => ErrorCode::NotFound,
            AvatarsError::InvalidField { .. } => ErrorCode::ValidationError,
            AvatarsError::Internal(_) => ErrorCode::Internal,
            AvatarsError::Unavailable(unavailable) => unavailable.code(),
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            AvatarsError::Unavailable(unavailable) => unavailable.retry_after_secs(),
            _ => None,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            AvatarsError::InvalidField { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl From<sea_orm::DbErr> for AvatarsError {
    fn from(error: sea_orm::DbErr) -> Self {
        database_error(error, Self::Internal)
    }
}
