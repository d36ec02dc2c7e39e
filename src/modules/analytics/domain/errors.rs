//! The analytics module's failures.

use crate::core::error::{ErrorCode, ErrorKind, Failure, module_error};

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error(transparent)]
    Common(#[from] Failure),
}

module_error!(AnalyticsError);

impl ErrorKind for AnalyticsError {
    fn code(&self) -> ErrorCode {
        match self {
            AnalyticsError::Common(failure) => failure.code(),
        }
    }

    fn common(&self) -> Option<&Failure> {
        match self {
            AnalyticsError::Common(failure) => Some(failure),
        }
    }
}
