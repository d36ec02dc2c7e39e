//! The end_users module's failures.

use crate::core::error::{ErrorCode, ErrorKind};

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
}

impl ErrorKind for EndUsersError {
    fn code(&self) -> ErrorCode {
        match self {
            EndUsersError::NotFound => ErrorCode::NotFound,
            EndUsersError::Blocked => ErrorCode::Forbidden,
            EndUsersError::InvalidField { .. } => ErrorCode::ValidationError,
            EndUsersError::Internal(_) => ErrorCode::Internal,
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
        EndUsersError::Internal(error.to_string())
    }
}
