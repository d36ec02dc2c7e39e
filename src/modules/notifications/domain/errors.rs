//! The notifications module's failures.

use crate::core::error::{ErrorCode, ErrorKind, Failure, module_error};

#[derive(Debug, thiserror::Error)]
pub enum NotificationsError {
    /// Linking needs the platform's notifications bot.
    #[error(
        "the platform has no notifications bot yet: a saas_admin sets notifications_bot_token \
         in the platform configuration"
    )]
    NoBot,
    /// A webhook call without the bot's secret.
    #[error("not a call from Telegram for this bot")]
    NotTelegram,
    /// A webhook body that is not an update.
    #[error("not a Telegram update: {0}")]
    MalformedUpdate(String),
    #[error(transparent)]
    Common(#[from] Failure),
}

module_error!(NotificationsError);

impl ErrorKind for NotificationsError {
    fn code(&self) -> ErrorCode {
        match self {
            NotificationsError::NoBot => ErrorCode::Conflict,
            NotificationsError::NotTelegram => ErrorCode::AuthenticationRequired,
            NotificationsError::MalformedUpdate(_) => ErrorCode::BadRequest,
            NotificationsError::Common(failure) => failure.code(),
        }
    }

    fn common(&self) -> Option<&Failure> {
        match self {
            NotificationsError::Common(failure) => Some(failure),
            _ => None,
        }
    }
}
