//! What the documents module tells the others.

use serde::{Deserialize, Serialize};

use crate::core::auth::Actor;
use crate::core::ids::{AvatarId, DocumentId, ProjectId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DocumentsEvent {
    DocumentUploaded {
        project_id: ProjectId,
        avatar_id: AvatarId,
        document_id: DocumentId,
        filename: String,
        size_bytes: i64,
        actor: Actor,
    },
    DocumentProcessed {
        project_id: ProjectId,
        avatar_id: AvatarId,
        document_id: DocumentId,
        chunks_count: i32,
        tokens_count: i32,
    },
    DocumentFailed {
        project_id: ProjectId,
        avatar_id: AvatarId,
        document_id: DocumentId,
        reason: String,
    },
    DocumentDeleted {
        project_id: ProjectId,
        avatar_id: AvatarId,
        document_id: DocumentId,
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
