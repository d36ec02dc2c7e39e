//! Upload: the received file is sniffed, stored under its key, recorded `uploaded` and its
//! processing queued in the same transaction; the same content twice for one avatar is a
//! `Duplicate`, whichever upload commits first.

use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;

use crate::core::auth::Actor;
use crate::core::db::is_unique_violation;
use crate::core::error::Failure;
use crate::core::ids::{AvatarId, DocumentId, ProjectId};
use crate::core::jobs::enqueue_in;
use crate::modules::billing::Slot;

use super::super::domain::entities::document;
use super::super::domain::errors::DocumentsError;
use super::super::domain::events::DocumentsEvent;
use super::super::parsing::{self, DocumentFormat};
use super::super::tasks::ProcessDocument;
use super::{DocumentStatus, DocumentView, DocumentsService, ReceivedFile};

/// `projects/{pid}/avatars/{aid}/documents/{did}/<safe name>`.
fn blob_key(
    project_id: ProjectId,
    avatar_id: AvatarId,
    document_id: DocumentId,
    filename: &str,
) -> String {
    format!(
        "projects/{project_id}/avatars/{avatar_id}/documents/{document_id}/{}",
        safe_filename(filename)
    )
}

/// The name kept in storage keys: letters, digits, `.`, `-`, `_`; at most 100 characters.
pub fn safe_filename(filename: &str) -> String {
    let base = filename.rsplit(['/', '\\']).next().unwrap_or(filename);
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cleaned = cleaned.trim_matches('.');
    let cleaned: String = cleaned
        .chars()
        .rev()
        .take(100)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if cleaned.is_empty() {
        "document".to_owned()
    } else {
        cleaned
    }
}

impl DocumentsService {
    /// Stores a received file and schedules its processing in the same transaction as its
    /// row: a 202 means it will be processed even if the process dies right after.
    pub async fn upload(
        &self,
        project_id: ProjectId,
        avatar_id: AvatarId,
        file: ReceivedFile,
        actor: Actor,
    ) -> Result<DocumentView, DocumentsError> {
        self.ensure_avatar(project_id, avatar_id).await?;
        let format = parsing::sniff(&file.filename, &file.head)
            .map_err(|error| DocumentsError::UnsupportedType(error.to_string()))?;
        // Before the file is stored; the slot itself is taken with the row.
        self.billing
            .check_room(
                project_id,
                Slot::Document {
                    bytes: file.size_bytes,
                },
            )
            .await
            .map_err(Failure::from)?;
        if let Some(existing) = self.find_by_hash(avatar_id, &file.sha256).await? {
            return Err(DocumentsError::Duplicate {
                existing_id: existing,
            });
        }

        let document_id = DocumentId::new();
        let key = blob_key(project_id, avatar_id, document_id, &file.filename);
        let mut reader = tokio::fs::File::open(&file.path).await?;
        self.blobs
            .put_stream(&key, &mut reader, format.content_type())
            .await?;

        match self
            .insert_uploaded(
                project_id,
                avatar_id,
                document_id,
                &key,
                &file,
                format,
                actor,
            )
            .await
        {
            Ok(model) => self.view(&model).await,
            Err(error) => {
                // The row never existed: the stored file must not outlive it.
                self.delete_blob_now_or_later(&key).await;
                match error {
                    DocumentsError::SameContentStored => {
                        let existing = self.find_by_hash(avatar_id, &file.sha256).await?;
                        Err(existing
                            .map(|existing_id| DocumentsError::Duplicate { existing_id })
                            .unwrap_or(DocumentsError::Conflict(
                                "a duplicate upload is in progress",
                            )))
                    }
                    other => Err(other),
                }
            }
        }
    }

    async fn find_by_hash(
        &self,
        avatar_id: AvatarId,
        sha256: &str,
    ) -> Result<Option<DocumentId>, DocumentsError> {
        Ok(document::Entity::find()
            .filter(document::Column::AvatarId.eq(avatar_id))
            .filter(document::Column::Sha256.eq(sha256))
            .one(self.db.connection())
            .await?
            .map(|existing| existing.id))
    }

    #[allow(clippy::too_many_arguments)]
    async fn insert_uploaded(
        &self,
        project_id: ProjectId,
        avatar_id: AvatarId,
        document_id: DocumentId,
        key: &str,
        file: &ReceivedFile,
        format: DocumentFormat,
        actor: Actor,
    ) -> Result<document::Model, DocumentsError> {
        let timestamp = self.clock.now();
        let mut uow = self.db.begin().await?;
        self.billing
            .take_slot_in(
                &uow,
                project_id,
                Slot::Document {
                    bytes: file.size_bytes,
                },
            )
            .await
            .map_err(Failure::from)?;
        let model = document::ActiveModel {
            id: Set(document_id),
            project_id: Set(project_id),
            avatar_id: Set(avatar_id),
            filename: Set(file.filename.clone()),
            content_type: Set(format.content_type().to_owned()),
            format: Set(format),
            size_bytes: Set(i64::try_from(file.size_bytes).unwrap_or(i64::MAX)),
            sha256: Set(file.sha256.clone()),
            blob_key: Set(key.to_owned()),
            status: Set(DocumentStatus::Uploaded),
            error: Set(None),
            chunks_count: Set(0),
            tokens_count: Set(0),
            semantic_indexed_chunks: Set(0),
            attempts: Set(0),
            document_metadata: Set(json!({})),
            uploaded_by: Set(actor.user_id),
            created_at: Set(timestamp),
            updated_at: Set(timestamp),
            processing_started_at: Set(None),
            processed_at: Set(None),
            processing_run_id: Set(None),
            heartbeat_at: Set(None),
        }
        .insert(&*uow)
        .await
        .map_err(|error| {
            if is_unique_violation(&error) {
                DocumentsError::SameContentStored
            } else {
                DocumentsError::from(error)
            }
        })?;
        enqueue_in(&*uow, &ProcessDocument::now(document_id), timestamp).await?;
        self.publish(
            &mut uow,
            DocumentsEvent::DocumentUploaded {
                project_id,
                avatar_id,
                document_id,
                filename: model.filename.clone(),
                size_bytes: model.size_bytes,
                actor,
            },
        )
        .await?;
        uow.commit().await?;
        Ok(model)
    }
}
