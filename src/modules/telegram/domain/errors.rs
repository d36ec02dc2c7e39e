//! The telegram module's failures.

use crate::core::error::{ErrorCode, ErrorKind, Failure, module_error};

#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    #[error("this project has no Telegram bot")]
    NotConnected,
    #[error("this bot is connected to another project")]
    BotTaken,
    /// A webhook call without the bot's secret.
    #[error("not a call from Telegram for this bot")]
    NotTelegram,
    /// A webhook body that is not an update.
    #[error("not a Telegram update: {0}")]
    MalformedUpdate(String),
    /// Telegram could not be reached, or failed.
    #[error("{0}")]
    Upstream(String),
    #[error(transparent)]
    Common(#[from] Failure),
}

module_error!(TelegramError);

impl ErrorKind for TelegramError {
    fn code(&self) -> ErrorCode {
        match self {
            TelegramError::NotConnected => ErrorCode::NotFound,
            TelegramError::BotTaken => ErrorCode::Conflict,
            TelegramError::NotTelegram => ErrorCode::AuthenticationRequired,
            TelegramError::Upstream(_) => ErrorCode::ExternalServiceError,
            TelegramError::MalformedUpdate(_) => ErrorCode::BadRequest,
            TelegramError::Common(failure) => failure.code(),
        }
    }

    fn common(&self) -> Option<&Failure> {
        match self {
            TelegramError::Common(failure) => Some(failure),
            _ => None,
        }
    }
}
