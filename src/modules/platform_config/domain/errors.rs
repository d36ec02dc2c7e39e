//! The platform_config module's failures: only the shared kinds.

use crate::core::error::{ErrorCode, ErrorKind, Failure, module_error};

#[derive(Debug, thiserror::Error)]
pub enum PlatformConfigError {
    #[error(transparent)]
    Common(#[from] Failure),
}

module_error!(PlatformConfigError);

impl ErrorKind for PlatformConfigError {
    fn code(&self) -> ErrorCode {
        let PlatformConfigError::Common(failure) = self;
        failure.code()
    }

    fn common(&self) -> Option<&Failure> {
        let PlatformConfigError::Common(failure) = self;
        Some(failure)
    }
}

/// What another module sees of a platform-config failure.
impl From<PlatformConfigError> for Failure {
    fn from(error: PlatformConfigError) -> Failure {
        let PlatformConfigError::Common(failure) = error;
        failure
    }
}
