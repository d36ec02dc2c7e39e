//! The platform_config module's failures.

use crate::core::error::{ErrorCode, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum PlatformConfigError {
    #[error("{field}: {message}")]
    InvalidField {
        field: &'static str,
        message: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ErrorKind for PlatformConfigError {
    fn code(&self) -> ErrorCode {
        match self {
            PlatformConfigError::InvalidField { .. } => ErrorCode::ValidationError,
            PlatformConfigError::Internal(_) => ErrorCode::Internal,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            PlatformConfigError::InvalidField { field, .. } => Some(field),
            PlatformConfigError::Internal(_) => None,
        }
    }
}

impl From<sea_orm::DbErr> for PlatformConfigError {
    fn from(error: sea_orm::DbErr) -> Self {
        PlatformConfigError::Internal(error.to_string())
    }
}

impl From<crate::core::crypto::CryptoError> for PlatformConfigError {
    fn from(error: crate::core::crypto::CryptoError) -> Self {
        PlatformConfigError::Internal(error.to_string())
    }
}
