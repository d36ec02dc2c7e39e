//! What the documents module tells the others.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::auth::Actor;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DocumentsEvent {
    DocumentUploaded {
        project_id: Uuid,
        avatar_id: Uuid,
        document_id: Uuid,
        filename: String,
        size_bytes: i64,
        actor: Actor,
    },
    DocumentProcessed {
        project_id: Uuid,
        avatar_id: Uuid,
        document_id: Uuid,
        chunks_count: i32,
        tokens_count: i32,
    },
    DocumentFailed {
        project_id: Uuid,
        avatar_id: Uuid,
        document_id: Uuid,
        reason: String,
    },
    DocumentDeleted {
        project_id: Uuid,
        avatar_id: Uuid,
        document_id: Uuid,
        size_bytes: i64,
        actor: Actor,
    },
}

impl DocumentsEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            DocumentsEvent::DocumentUploaded { .. } => "documents.document_uploaded",
            DocumentsEvent::DocumentProcessed { .. } => "documents.document_processed",
            DocumentsEvent::DocumentFailed { .. } => "documents.document_failed",
            DocumentsEvent::DocumentDeleted { .. } => "documents.document_deleted",
        }
    }
}
