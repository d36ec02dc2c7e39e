//! `POST .../documents`: the multipart upload, streamed to a temporary file while its size is
//! counted (413 past the limit), its SHA-256 computed and its first bytes kept for sniffing.
//! The body is never held in memory; the service then streams the file to the blob store.

use actix_multipart::{Multipart, MultipartError};
use actix_web::{HttpRequest, HttpResponse, post, web};
use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::core::auth::{Manager, ProjectAccess};
use crate::core::error::{AppError, ErrorCode, ErrorEnvelope};
use crate::core::extract::reject_nul;
use crate::core::ids::{AvatarId, ProjectId};
use crate::modules::documents::domain::errors::DocumentsError;
use crate::modules::documents::parsing::SNIFF_LENGTH;
use crate::modules::documents::service::{DocumentView, DocumentsService, ReceivedFile};

/// Bytes kept from the start of the file to recognise its type.
/// Room for multipart boundaries and headers around the file itself.
const MULTIPART_OVERHEAD_BYTES: u64 = 64 * 1024;

fn multipart_error(error: MultipartError) -> AppError {
    match error {
        MultipartError::ContentTypeMissing
        | MultipartError::ContentTypeParse
        | MultipartError::ContentTypeIncompatible
        | MultipartError::BoundaryMissing => AppError::new(
            ErrorCode::UnsupportedMediaType,
            "send multipart/form-data with the document in a field named `file`",
        ),
        other => AppError::new(
            ErrorCode::BadRequest,
            format!("the multipart body is malformed: {other}"),
        ),
    }
}

/// Uploads a document (multipart field `file`); it is processed in the background.
#[utoipa::path(post, path = "/api/v1/projects/{pid}/avatars/{aid}/documents", tag = "documents",
    security(("bearer" = [])), params(("pid" = Uuid, Path), ("aid" = Uuid, Path)),
    request_body(content_type = "multipart/form-data", description = "field `file`: PDF, DOCX, HTML, Markdown, text or CSV"),
    responses((status = 202, body = DocumentView),
              (status = 409, description = "same content already uploaded; `details.existing_id`", body = ErrorEnvelope),
              (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
              (status = 422, body = ErrorEnvelope)))]
#[post("/projects/{pid}/avatars/{aid}/documents")]
pub async fn upload_document(
    access: ProjectAccess<Manager>,
    documents: web::Data<DocumentsService>,
    path: web::Path<(ProjectId, AvatarId)>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    let (_, avatar_id) = path.into_inner();
    // Unknown avatar: answer before reading a byte of the body.
    documents
        .ensure_avatar(access.project_id, avatar_id)
        .await?;
    let limit = documents.settings().max_upload_bytes;
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit + MULTIPART_OVERHEAD_BYTES) {
        return Err(DocumentsError::TooLarge { limit }.into());
    }

    let mut multipart = Multipart::new(req.headers(), payload);
    let mut received: Option<(ReceivedFile, tempfile::TempPath)> = None;
    while let Some(mut field) = multipart.try_next().await.map_err(multipart_error)? {
        if field.name() != Some("file") {
            while field.try_next().await.map_err(multipart_error)?.is_some() {}
            continue;
        }
        if received.is_some() {
            return Err(AppError::validation(
                "file",
                "file: send one file per upload",
            ));
        }
        let filename = field
            .content_disposition()
            .and_then(|disposition| disposition.get_filename())
            .map(str::to_owned)
            .filter(|name| !name.trim().is_empty())
            .ok_or_else(|| AppError::validation("file", "file: the part needs a filename"))?;
        reject_nul("file", &filename)?;
        std::fs::create_dir_all(documents.upload_dir()).map_err(AppError::internal)?;
        let temp = tempfile::Builder::new()
            .prefix("upload-")
            .tempfile_in(documents.upload_dir())
            .map_err(AppError::internal)?
            .into_temp_path();
        let mut out = tokio::fs::File::create(&temp)
            .await
            .map_err(AppError::internal)?;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut head = Vec::with_capacity(SNIFF_LENGTH);
        while let Some(bytes) = field.try_next().await.map_err(multipart_error)? {
            size += bytes.len() as u64;
            if size > limit {
                return Err(DocumentsError::TooLarge { limit }.into());
            }
            if head.len() < SNIFF_LENGTH {
                let take = (SNIFF_LENGTH - head.len()).min(bytes.len());
                head.extend_from_slice(&bytes[..take]);
            }
            hasher.update(&bytes);
            out.write_all(&bytes).await.map_err(AppError::internal)?;
        }
        out.flush().await.map_err(AppError::internal)?;
        if size == 0 {
            return Err(AppError::validation("file", "file: the file is empty"));
        }
        received = Some((
            ReceivedFile {
                path: temp.to_path_buf(),
                filename,
                size_bytes: size,
                sha256: hex::encode(hasher.finalize()),
                head,
            },
            temp,
        ));
    }
    let Some((file, _temp)) = received else {
        return Err(AppError::validation(
            "file",
            "file: a multipart field `file` is required",
        ));
    };
    let view = documents
        .upload(access.project_id, avatar_id, file, access.actor())
        .await?;
    Ok(HttpResponse::Accepted().json(view))
}
