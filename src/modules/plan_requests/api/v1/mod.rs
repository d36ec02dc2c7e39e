//! `/api/v1/projects/{pid}/plan-requests` (owner) and `/api/v1/admin/plan-requests*`
//! (saas_admin).

use actix_web::{HttpResponse, get, post, web};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use validator::Validate;

use crate::core::auth::{Owner, ProjectAccess, SaasAdmin};
use crate::core::error::{AppError, ErrorEnvelope};
use crate::core::extract::{ValidJson, ValidQuery};
use crate::core::ids::PlanRequestId;
use crate::core::pagination::{Page, PageParams};
use crate::modules::plan_requests::service::{
    PlanRequestStatus, PlanRequestView, PlanRequestsService,
};

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePlanRequest {
    /// A public plan's code (`GET /api/v1/billing/plans`).
    #[validate(length(min = 1, max = 40))]
    pub plan_code: String,
    #[validate(length(max = 2000))]
    pub comment: Option<String>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
/// `{}` or `{"comment": ...}`.
pub struct ResolvePlanRequest {
    #[validate(length(max = 2000))]
    pub comment: Option<String>,
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdminPlanRequestQuery {
    /// `pending`, `approved` or `rejected`.
    pub status: Option<PlanRequestStatus>,
    #[validate(range(min = 1, max = 200))]
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
    #[validate(range(max = crate::core::pagination::MAX_OFFSET))]
    #[param(maximum = 1_000_000_000)]
    pub offset: Option<u64>,
}

/// The owner asks for another plan (one pending request at a time).
#[utoipa::path(post, path = "/api/v1/projects/{pid}/plan-requests", tag = "billing",
    security(("bearer" = [])), params(("pid" = Uuid, Path)), request_body = CreatePlanRequest,
    responses((status = 201, body = PlanRequestView), (status = 409, body = ErrorEnvelope),
              (status = 422, body = ErrorEnvelope)))]
#[post("/projects/{pid}/plan-requests")]
pub async fn create_plan_request(
    access: ProjectAccess<Owner>,
    requests: web::Data<PlanRequestsService>,
    body: ValidJson<CreatePlanRequest>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let created = requests
        .create(
            access.project_id,
            &body.plan_code,
            body.comment,
            access.actor(),
        )
        .await?;
    Ok(HttpResponse::Created().json(created))
}

/// The project's plan requests, newest first.
#[utoipa::path(get, path = "/api/v1/projects/{pid}/plan-requests", tag = "billing",
    security(("bearer" = [])), params(("pid" = Uuid, Path), PageParams),
    responses((status = 200, body = Page<PlanRequestView>, description = "`{items: [PlanRequest], total, limit, offset}`")))]
#[get("/projects/{pid}/plan-requests")]
pub async fn list_project_plan_requests(
    access: ProjectAccess<Owner>,
    requests: web::Data<PlanRequestsService>,
    page: ValidQuery<PageParams>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(requests.of_project(access.project_id, &page).await?))
}

/// Every project's plan requests, `?status=` to filter.
#[utoipa::path(get, path = "/api/v1/admin/plan-requests", tag = "billing",
    security(("bearer" = [])), params(AdminPlanRequestQuery),
    responses((status = 200, body = Page<PlanRequestView>, description = "`{items: [PlanRequest], total, limit, offset}`"),
              (status = 403, body = ErrorEnvelope)))]
#[get("/admin/plan-requests")]
pub async fn list_plan_requests(
    _admin: SaasAdmin,
    requests: web::Data<PlanRequestsService>,
    query: ValidQuery<AdminPlanRequestQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.into_inner();
    let page = PageParams {
        limit: query.limit,
        offset: query.offset,
    };
    Ok(HttpResponse::Ok().json(requests.all(query.status, &page).await?))
}

/// Approves a pending request: the project's plan changes at once.
#[utoipa::path(post, path = "/api/v1/admin/plan-requests/{id}/approve", tag = "billing",
    security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = ResolvePlanRequest,
    responses((status = 200, body = PlanRequestView), (status = 404, body = ErrorEnvelope),
              (status = 409, body = ErrorEnvelope)))]
#[post("/admin/plan-requests/{id}/approve")]
pub async fn approve_plan_request(
    admin: SaasAdmin,
    requests: web::Data<PlanRequestsService>,
    path: web::Path<PlanRequestId>,
    body: ValidJson<ResolvePlanRequest>,
) -> Result<HttpResponse, AppError> {
    decide(admin, requests, path, body, true).await
}

/// Rejects a pending request.
#[utoipa::path(post, path = "/api/v1/admin/plan-requests/{id}/reject", tag = "billing",
    security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = ResolvePlanRequest,
    responses((status = 200, body = PlanRequestView), (status = 404, body = ErrorEnvelope),
              (status = 409, body = ErrorEnvelope)))]
#[post("/admin/plan-requests/{id}/reject")]
pub async fn reject_plan_request(
    admin: SaasAdmin,
    requests: web::Data<PlanRequestsService>,
    path: web::Path<PlanRequestId>,
    body: ValidJson<ResolvePlanRequest>,
) -> Result<HttpResponse, AppError> {
    decide(admin, requests, path, body, false).await
}

/// Approves (`approve`) or rejects a pending request, with the admin's comment.
async fn decide(
    admin: SaasAdmin,
    requests: web::Data<PlanRequestsService>,
    path: web::Path<PlanRequestId>,
    body: ValidJson<ResolvePlanRequest>,
    approve: bool,
) -> Result<HttpResponse, AppError> {
    let resolved = requests
        .resolve(
            path.into_inner(),
            approve,
            body.into_inner().comment,
            admin.0.actor(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(resolved))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(create_plan_request)
        .service(list_project_plan_requests)
        .service(list_plan_requests)
        .service(approve_plan_request)
        .service(reject_plan_request);
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        create_plan_request,
        list_project_plan_requests,
        list_plan_requests,
        approve_plan_request,
        reject_plan_request,
    ),
    components(schemas(PlanRequestView, PlanRequestStatus))
)]
pub struct Doc;
