//! The documents module's failures.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::core::error::{ErrorCode, ErrorKind, Unavailable, database_error};

#[derive(Debug, thiserror::Error)]
pub enum DocumentsError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("{0}")]
    UnsupportedType(String),
    #[error("this avatar already has a document with the same content")]
    Duplicate { existing_id: Uuid },
    #[error("{0}")]
    Conflict(&'static str),
    #[error("{field}: {message}")]
    InvalidField {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

impl ErrorKind for DocumentsError {
    fn code(&self) -> ErrorCode {
        match self {
            DocumentsError::NotFound(_) => ErrorCode::NotFound,
            DocumentsError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
            DocumentsError::UnsupportedType(_) => ErrorCode::UnsupportedMediaType,
            DocumentsError::Duplicate { .. } | DocumentsError::Conflict(_) => ErrorCode::Conflict,
            DocumentsError::InvalidField { .. } => ErrorCode::ValidationError,
            DocumentsError::QuotaExceeded(_) => ErrorCode::Forbidden,
            DocumentsError::Internal(_) => ErrorCode::Internal,
            DocumentsError::Unavailable(unavailable) => unavailable.code(),
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            DocumentsError::Unavailable(unavailable) => unavailable.retry_after_secs(),
            _ => None,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            DocumentsError::InvalidField { field, .. } => Some(field),
            DocumentsError::TooLarge { .. } | DocumentsError::UnsupportedType(_) => Some("file"),
            _ => None,
        }
    }

    fn details(&self) -> Value {
        match self {
            DocumentsError::Duplicate { existing_id } => json!({ "existing_id": existing_id }),
            DocumentsError::TooLarge { limit } => json!({ "limit_bytes": limit }),
            _ => json!({}),
        }
    }
}

impl From<sea_orm::DbErr> for DocumentsError {
    fn from(error: sea_orm::DbErr) -> Self {
        database_error(error, Self::Internal)
    }
}

impl From<crate::core::storage::StorageError> for DocumentsError {
    fn from(error: crate::core::storage::StorageError) -> Self {
        use crate::core::storage::StorageError;
        match error {
            // The store did not answer or refused: an outage, not a bug.
            StorageError::Backend(reason) => {
                tracing::warn!("blob store unavailable, answering 503: {reason}");
                DocumentsError::Unavailable(Unavailable::BLOB_STORE)
            }
            other => DocumentsError::Internal(format!("storage: {other}")),
        }
    }
}

impl From<std::io::Error> for DocumentsError {
    fn from(error: std::io::Error) -> Self {
        DocumentsError::Internal(format!("io: {error}"))
    }
}
