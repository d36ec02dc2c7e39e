//! The end_users module's failures.

use crate::core::error::{ErrorCode, ErrorKind, Unavailable, database_error};

#[derive(Debug, thiserror::Error)]
pub enum EndUsersError {
    #[error("end user not found")]
    NotFound,
    #[error("this end user is blocked")]
    Blocked,
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

impl ErrorKind for EndUsersError {
    fn code(&self) -> ErrorCode {
        match self {
            EndUsersError::NotFound => ErrorCode::NotFound,
            EndUsersError::Blocked => ErrorCode::Forbidden,
            EndUsersError::InvalidField { .. } => ErrorCode::ValidationError,
            EndUsersError::Internal(_) => ErrorCode::Internal,
            EndUsersError::Unavailable(unavailable) => unavailable.code(),
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            EndUsersError::Unavailable(unavailable) => unavailable.retry_after_secs(),
            _ => None,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            EndUsersError::InvalidField { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl From<sea_orm::DbErr> for EndUsersError {
    fn from(error: sea_orm::DbErr) -> Self {
        database_error(error, Self::Internal)
    }
}
