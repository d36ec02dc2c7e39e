//! The auth module's failures and their codes.

use crate::core::error::{ErrorCode, ErrorKind, Failure, module_error};

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
    #[error("user not found")]
    UserNotFound,
    #[error("{0}")]
    SelfLockout(&'static str),
    #[error(transparent)]
    Common(#[from] Failure),
}

module_error!(AuthError);

impl ErrorKind for AuthError {
    fn code(&self) -> ErrorCode {
        match self {
            AuthError::EmailTaken | AuthError::SelfLockout(_) => ErrorCode::Conflict,
            AuthError::RegistrationClosed => ErrorCode::Forbidden,
            AuthError::InvalidCredentials
            | AuthError::InvalidToken
            | AuthError::RefreshTokenReused => ErrorCode::InvalidToken,
            AuthError::WrongCurrentPassword => ErrorCode::ValidationError,
            AuthError::UserNotFound => ErrorCode::NotFound,
            AuthError::Common(failure) => failure.code(),
        }
    }

    fn common(&self) -> Option<&Failure> {
        match self {
            AuthError::Common(failure) => Some(failure),
            _ => None,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            AuthError::EmailTaken => Some("email"),
            AuthError::WrongCurrentPassword => Some("current_password"),
            AuthError::Common(failure) => failure.field(),
            _ => None,
        }
    }
}

/// What another module sees of an auth failure.
impl From<AuthError> for Failure {
    fn from(error: AuthError) -> Failure {
        match error {
            AuthError::UserNotFound => Failure::NotFound("user"),
            AuthError::Common(failure) => failure,
            other => Failure::internal(other),
        }
    }
}
