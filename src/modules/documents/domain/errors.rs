//! The documents module's failures.

use serde_json::{Value, json};

use crate::core::error::{ErrorCode, ErrorKind, Failure, Unavailable, module_error};
use crate::core::ids::DocumentId;

#[derive(Debug, thiserror::Error)]
pub enum DocumentsError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("{0}")]
    UnsupportedType(String),
    #[error("this avatar already has a document with the same content")]
    Duplicate { existing_id: DocumentId },
    #[error("{0}")]
    Conflict(&'static str),
    /// Another upload of the same content committed first (the unique index said so); the
    /// upload turns it into `Duplicate` or `Conflict`.
    #[error("a document with the same content was stored at the same time")]
    SameContentStored,
    #[error(transparent)]
    Common(#[from] Failure),
}

module_error!(DocumentsError);

impl ErrorKind for DocumentsError {
    fn code(&self) -> ErrorCode {
        match self {
            DocumentsError::NotFound(_) => ErrorCode::NotFound,
            DocumentsError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
            DocumentsError::UnsupportedType(_) => ErrorCode::UnsupportedMediaType,
            DocumentsError::Duplicate { .. }
            | DocumentsError::Conflict(_)
            | DocumentsError::SameContentStored => ErrorCode::Conflict,
            DocumentsError::Common(failure) => failure.code(),
        }
    }

    fn common(&self) -> Option<&Failure> {
        match self {
            DocumentsError::Common(failure) => Some(failure),
            _ => None,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            DocumentsError::Common(failure) => failure.field(),
            DocumentsError::TooLarge { .. } | DocumentsError::UnsupportedType(_) => Some("file"),
            _ => None,
        }
    }

    fn details(&self) -> Value {
        match self {
            DocumentsError::Duplicate { existing_id } => json!({ "existing_id": existing_id }),
            DocumentsError::TooLarge { limit } => json!({ "limit_bytes": limit }),
            DocumentsError::Common(failure) => failure.details(),
            _ => json!({}),
        }
    }
}

impl From<crate::core::storage::StorageError> for DocumentsError {
    fn from(error: crate::core::storage::StorageError) -> Self {
        use crate::core::storage::StorageError;
        match error {
            // The store did not answer or refused: an outage, not a bug.
            StorageError::Backend(reason) => {
                tracing::warn!("blob store unavailable, answering 503: {reason}");
                DocumentsError::from(Unavailable::BLOB_STORE)
            }
            other => DocumentsError::internal(other),
        }
    }
}

impl From<std::io::Error> for DocumentsError {
    fn from(error: std::io::Error) -> Self {
        DocumentsError::internal(error)
    }
}

/// What another module sees of a documents failure.
impl From<DocumentsError> for Failure {
    fn from(error: DocumentsError) -> Failure {
        match error {
            DocumentsError::NotFound(what) => Failure::NotFound(what),
            DocumentsError::Common(failure) => failure,
            other => Failure::internal(other),
        }
    }
}
