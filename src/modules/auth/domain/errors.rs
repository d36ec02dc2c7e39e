//! The auth module's failures and their codes.

use crate::core::error::{ErrorCode, ErrorKind, Unavailable, database_error};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("registration is closed")]
    RegistrationClosed,
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("invalid or expired token")]
    InvalidToken,
    #[error("this refresh token was already used; the session has been revoked")]
    RefreshTokenReused,
    #[error("the current password is wrong")]
    WrongCurrentPassword,
    #[error("{field}: {message}")]
    InvalidField {
        field: &'static str,
        message: String,
    },
    #[error("user not found")]
    UserNotFound,
    #[error("{0}")]
    SelfLockout(&'static str),
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

impl ErrorKind for AuthError {
    fn code(&self) -> ErrorCode {
        match self {
            AuthError::EmailTaken | AuthError::SelfLockout(_) => ErrorCode::Conflict,
            AuthError::RegistrationClosed => ErrorCode::Forbidden,
            AuthError::InvalidCredentials
            | AuthError::InvalidToken
            | AuthError::RefreshTokenReused => ErrorCode::InvalidToken,
            AuthError::WrongCurrentPassword | AuthError::InvalidField { .. } => {
                ErrorCode::ValidationError
            }
            AuthError::UserNotFound => ErrorCode::NotFound,
            AuthError::Internal(_) => ErrorCode::Internal,
            AuthError::Unavailable(unavailable) => unavailable.code(),
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            AuthError::Unavailable(unavailable) => unavailable.retry_after_secs(),
            _ => None,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            AuthError::EmailTaken => Some("email"),
            AuthError::WrongCurrentPassword => Some("current_password"),
            AuthError::InvalidField { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl From<sea_orm::DbErr> for AuthError {
    fn from(error: sea_orm::DbErr) -> Self {
        database_error(error, Self::Internal)
    }
}
