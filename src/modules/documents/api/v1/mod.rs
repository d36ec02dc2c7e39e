//! `/api/v1/projects/{pid}/avatars/{aid}/documents*` and `.../search`.

mod upload;

use actix_web::{HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use validator::Validate;

use crate::core::auth::{Manager, ProjectAccess, Viewer};
use crate::core::error::{AppError, ErrorEnvelope};
use crate::core::extract::{ValidJson, ValidQuery};
use crate::core::ids::{AvatarId, DocumentId, ProjectId};
use crate::core::pagination::{Page, PageParams};
use crate::modules::documents::retrieval::SearchHit;
use crate::modules::documents::service::{DocumentStatus, DocumentView, DocumentsService};

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DocumentListQuery {
    /// uploaded, processing, ready or failed.
    pub status: Option<String>,
    #[validate(range(min = 1, max = 200))]
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
    #[validate(range(max = crate::core::pagination::MAX_OFFSET))]
    #[param(maximum = 1_000_000_000)]
    pub offset: Option<u64>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequestBody {
    #[validate(length(min = 1, max = 2000))]
    pub query: String,
    #[validate(range(min = 1, max = 50))]
    pub top_k: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResponse {
    pub items: Vec<SearchHit>,
}

#[utoipa::path(get, path = "/api/v1/projects/{pid}/avatars/{aid}/documents", tag = "documents",
    security(("bearer" = [])), params(("pid" = Uuid, Path), ("aid" = Uuid, Path), DocumentListQuery),
    responses((status = 200, body = Page<DocumentView>, description = "`{items: [Document], total, limit, offset}`"),
              (status = 404, body = ErrorEnvelope)))]
#[get("/projects/{pid}/avatars/{aid}/documents")]
pub async fn list_documents(
    access: ProjectAccess<Viewer>,
    documents: web::Data<DocumentsService>,
    path: web::Path<(ProjectId, AvatarId)>,
    query: ValidQuery<DocumentListQuery>,
) -> Result<HttpResponse, AppError> {
    let (_, avatar_id) = path.into_inner();
    let status = match query.status.as_deref() {
        None => None,
        Some(value) => Some(DocumentStatus::parse(value).ok_or_else(|| {
            AppError::validation(
                "status",
                "status: must be uploaded, processing, ready or failed",
            )
        })?),
    };
    let page = PageParams {
        limit: query.limit,
        offset: query.offset,
    };
    let list = documents
        .list(access.project_id, avatar_id, status, &page)
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

#[utoipa::path(get, path = "/api/v1/projects/{pid}/avatars/{aid}/documents/{did}", tag = "documents",
    security(("bearer" = [])), params(("pid" = Uuid, Path), ("aid" = Uuid, Path), ("did" = Uuid, Path)),
    responses((status = 200, body = DocumentView), (status = 404, body = ErrorEnvelope)))]
#[get("/projects/{pid}/avatars/{aid}/documents/{did}")]
pub async fn get_document(
    access: ProjectAccess<Viewer>,
    documents: web::Data<DocumentsService>,
    path: web::Path<(ProjectId, AvatarId, DocumentId)>,
) -> Result<HttpResponse, AppError> {
    let (_, avatar_id, document_id) = path.into_inner();
    let view = documents
        .get(access.project_id, avatar_id, document_id)
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Queues a ready or failed document for processing again (409 while it waits or runs).
#[utoipa::path(post, path = "/api/v1/projects/{pid}/avatars/{aid}/documents/{did}/reprocess", tag = "documents",
    security(("bearer" = [])), params(("pid" = Uuid, Path), ("aid" = Uuid, Path), ("did" = Uuid, Path)),
    responses((status = 202, body = DocumentView), (status = 404, body = ErrorEnvelope),
              (status = 409, body = ErrorEnvelope)))]
#[post("/projects/{pid}/avatars/{aid}/documents/{did}/reprocess")]
pub async fn reprocess_document(
    access: ProjectAccess<Manager>,
    documents: web::Data<DocumentsService>,
    path: web::Path<(ProjectId, AvatarId, DocumentId)>,
) -> Result<HttpResponse, AppError> {
    let (_, avatar_id, document_id) = path.into_inner();
    let view = documents
        .reprocess(access.project_id, avatar_id, document_id)
        .await?;
    Ok(HttpResponse::Accepted().json(view))
}

/// Removes the document, its chunks and its stored file.
#[utoipa::path(delete, path = "/api/v1/projects/{pid}/avatars/{aid}/documents/{did}", tag = "documents",
    security(("bearer" = [])), params(("pid" = Uuid, Path), ("aid" = Uuid, Path), ("did" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
#[delete("/projects/{pid}/avatars/{aid}/documents/{did}")]
pub async fn delete_document(
    access: ProjectAccess<Manager>,
    documents: web::Data<DocumentsService>,
    path: web::Path<(ProjectId, AvatarId, DocumentId)>,
) -> Result<HttpResponse, AppError> {
    let (_, avatar_id, document_id) = path.into_inner();
    documents
        .delete(access.project_id, avatar_id, document_id, access.actor())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Hybrid search (vector + full text, fused) over the avatar's ready documents.
#[utoipa::path(post, path = "/api/v1/projects/{pid}/avatars/{aid}/search", tag = "documents",
    security(("bearer" = [])), params(("pid" = Uuid, Path), ("aid" = Uuid, Path)),
    request_body = SearchRequestBody,
    responses((status = 200, body = SearchResponse), (status = 404, body = ErrorEnvelope)))]
#[post("/projects/{pid}/avatars/{aid}/search")]
pub async fn search(
    access: ProjectAccess<Viewer>,
    documents: web::Data<DocumentsService>,
    path: web::Path<(ProjectId, AvatarId)>,
    body: ValidJson<SearchRequestBody>,
) -> Result<HttpResponse, AppError> {
    let (_, avatar_id) = path.into_inner();
    let items = documents
        .search(access.project_id, avatar_id, &body.query, body.top_k)
        .await?;
    Ok(HttpResponse::Ok().json(SearchResponse { items }))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(upload::upload_document)
        .service(list_documents)
        .service(get_document)
        .service(reprocess_document)
        .service(delete_document)
        .service(search);
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        upload::upload_document,
        list_documents,
        get_document,
        reprocess_document,
        delete_document,
        search,
    ),
    tags(
        (name = "documents", description = "An avatar's documents and retrieval"),
    )
)]
pub struct Doc;
