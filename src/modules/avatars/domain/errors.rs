//! The avatars module's failures.

use crate::core::error::{ErrorCode, ErrorKind, Failure, module_error};

#[derive(Debug, thiserror::Error)]
pub enum AvatarsError {
    #[error("avatar not found")]
    NotFound,
    #[error("another avatar of the project has the slug `{0}`")]
    SlugTaken(String),
    #[error(transparent)]
    Common(#[from] Failure),
}

module_error!(AvatarsError);

impl ErrorKind for AvatarsError {
    fn code(&self) -> ErrorCode {
        match self {
            AvatarsError::NotFound => ErrorCode::NotFound,
            AvatarsError::SlugTaken(_) => ErrorCode::Conflict,
            AvatarsError::Common(failure) => failure.code(),
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            AvatarsError::SlugTaken(_) => Some("slug"),
            AvatarsError::Common(failure) => failure.field(),
            AvatarsError::NotFound => None,
        }
    }

    fn common(&self) -> Option<&Failure> {
        match self {
            AvatarsError::Common(failure) => Some(failure),
            AvatarsError::NotFound | AvatarsError::SlugTaken(_) => None,
        }
    }
}

/// What another module sees of an avatars failure.
impl From<AvatarsError> for Failure {
    fn from(error: AvatarsError) -> Failure {
        match error {
            AvatarsError::NotFound => Failure::NotFound("avatar"),
            AvatarsError::SlugTaken(slug) => Failure::internal(format!(
                "another avatar of the project has the slug `{slug}`"
            )),
            AvatarsError::Common(failure) => failure,
        }
    }
}
