//! The platform_config module's failures.

use crate::core::error::{ErrorCode, ErrorKind, Unavailable, database_error};

#[derive(Debug, thiserror::Error)]
pub enum PlatformConfigError {
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

impl ErrorKind for PlatformConfigError {
    fn code(&self) -> ErrorCode {
        match self {
            PlatformConfigError::InvalidField { .. } => ErrorCode::ValidationError,
            PlatformConfigError::Internal(_) => ErrorCode::Internal,
            PlatformConfigError::Unavailable(unavailable) => unavailable.code(),
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            PlatformConfigError::Unavailable(unavailable) => unavailable.retry_after_secs(),
            _ => None,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            PlatformConfigError::InvalidField { field, .. } => Some(field),
            PlatformConfigError::Internal(_) | PlatformConfigError::Unavailable(_) => None,
        }
    }
}

impl From<sea_orm::DbErr> for PlatformConfigError {
    fn from(error: sea_orm::DbErr) -> Self {
        database_error(error, Self::Internal)
    }
}

impl From<crate::core::crypto::CryptoError> for PlatformConfigError {
    fn from(error: crate::core::crypto::CryptoError) -> Self {
        PlatformConfigError::Internal(error.to_string())
    }
}
