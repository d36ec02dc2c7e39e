//! The chat module's failures.

use crate::core::error::{ErrorCode, ErrorKind, Failure, module_error};

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("this avatar is disabled")]
    AvatarDisabled,
    #[error("this end user is blocked")]
    EndUserBlocked,
    #[error("{0}")]
    Upstream(String),
    /// The project's plan allows `limit` chat requests per minute.
    #[error("the plan allows {limit} chat requests per minute; retry in {retry_after_secs} s")]
    PlanRate { limit: u32, retry_after_secs: u64 },
    #[error(transparent)]
    Common(#[from] Failure),
}

module_error!(ChatError);

impl ErrorKind for ChatError {
    fn code(&self) -> ErrorCode {
        match self {
            ChatError::NotFound(_) => ErrorCode::NotFound,
            ChatError::AvatarDisabled => ErrorCode::Conflict,
            ChatError::EndUserBlocked => ErrorCode::Forbidden,
            ChatError::Upstream(_) => ErrorCode::ExternalServiceError,
            ChatError::PlanRate { .. } => ErrorCode::RateLimited,
            ChatError::Common(failure) => failure.code(),
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ChatError::PlanRate {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            other => other.common().and_then(ErrorKind::retry_after_secs),
        }
    }

    fn details(&self) -> serde_json::Value {
        match self {
            ChatError::PlanRate { limit, .. } => {
                serde_json::json!({ "limit": "requests_per_minute", "value": limit })
            }
            other => other
                .common()
                .map(ErrorKind::details)
                .unwrap_or_else(|| serde_json::json!({})),
        }
    }

    fn common(&self) -> Option<&Failure> {
        match self {
            ChatError::Common(failure) => Some(failure),
            _ => None,
        }
    }
}
