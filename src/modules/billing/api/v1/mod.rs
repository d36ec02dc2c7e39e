//! `/api/v1/admin/plans*`, `/api/v1/billing/plans`, `/api/v1/projects/{pid}/billing*` and
//! `/api/v1/admin/projects/{pid}/plan`.

use actix_web::{HttpResponse, delete, get, patch, post, put, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use validator::Validate;

use crate::core::auth::{CurrentUser, ProjectAccess, SaasAdmin, Viewer};
use crate::core::error::{AppError, ErrorEnvelope};
use crate::core::extract::{ValidJson, ValidQuery};
use crate::core::ids::ProjectId;
use crate::core::pagination::{Page, PageParams};
use crate::modules::billing::service::{
    BillingService, BillingView, NewPlan, PlanLimits, PlanPatch, PlanView, UsageFilter, UsageKind,
    UsageView,
};

/// `free`, `pro-2027`: lowercase letters, digits, `-` and `_`, 1 to 40 characters.
pub fn plan_code(code: &str) -> Result<(), validator::ValidationError> {
    let mut chars = code.chars();
    let first_ok = chars
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if first_ok && rest_ok && code.len() <= 40 {
        Ok(())
    } else {
        Err(validator::ValidationError::new("plan_code").with_message(
            "1 to 40 lowercase letters, digits, `-` or `_`, starting with a letter or digit".into(),
        ))
    }
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePlanRequest {
    #[validate(custom(function = "crate::modules::billing::api::v1::plan_code"))]
    pub code: String,
    #[validate(length(min = 1, max = 100))]
    pub name: String,
    #[validate(range(min = 0))]
    pub monthly_token_limit: i64,
    #[validate(range(min = 0))]
    pub max_avatars: i32,
    #[validate(range(min = 0))]
    pub max_documents: i32,
    #[validate(range(min = 0))]
    pub max_storage_mb: i32,
    #[validate(range(min = 0))]
    pub requests_per_minute: i32,
    /// Make it the plan new projects start on (default false).
    #[serde(default)]
    pub is_default: bool,
    /// List it to every signed-in user (default true).
    #[serde(default = "yes")]
    pub is_public: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePlanRequest {
    #[validate(length(min = 1, max = 100))]
    pub name: Option<String>,
    #[validate(range(min = 0))]
    pub monthly_token_limit: Option<i64>,
    #[validate(range(min = 0))]
    pub max_avatars: Option<i32>,
    #[validate(range(min = 0))]
    pub max_documents: Option<i32>,
    #[validate(range(min = 0))]
    pub max_storage_mb: Option<i32>,
    #[validate(range(min = 0))]
    pub requests_per_minute: Option<i32>,
    pub is_default: Option<bool>,
    /// `false` hides the plan (it keeps its projects).
    pub is_public: Option<bool>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePlanRequest {
    #[validate(custom(function = "crate::modules::billing::api::v1::plan_code"))]
    pub plan_code: String,
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// From this time (inclusive), RFC 3339.
    pub from: Option<DateTime<Utc>>,
    /// Until this time (exclusive), RFC 3339.
    pub to: Option<DateTime<Utc>>,
    /// `chat` or `embedding`.
    pub kind: Option<UsageKind>,
    #[validate(range(min = 1, max = 200))]
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
    #[validate(range(max = crate::core::pagination::MAX_OFFSET))]
    #[param(maximum = 1_000_000_000)]
    pub offset: Option<u64>,
}

fn paged<T: Clone>(items: Vec<T>, page: &PageParams) -> Page<T> {
    let total = items.len() as u64;
    let offset = usize::try_from(page.offset()).unwrap_or(usize::MAX);
    let limit = usize::try_from(page.limit()).unwrap_or(usize::MAX);
    let items = items.into_iter().skip(offset).take(limit).collect();
    Page::new(items, total, page)
}

/// Every plan of the catalogue, hidden ones too.
#[utoipa::path(get, path = "/api/v1/admin/plans", tag = "billing", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = Page<PlanView>, description = "`{items: [Plan], total, limit, offset}`"),
              (status = 403, body = ErrorEnvelope)))]
#[get("/admin/plans")]
pub async fn list_plans(
    _admin: SaasAdmin,
    billing: web::Data<BillingService>,
    page: ValidQuery<PageParams>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(paged(billing.plans().await?, &page)))
}

/// Adds a plan; `is_default` moves the default to it.
#[utoipa::path(post, path = "/api/v1/admin/plans", tag = "billing", security(("bearer" = [])),
    request_body = CreatePlanRequest,
    responses((status = 201, body = PlanView), (status = 409, body = ErrorEnvelope),
              (status = 422, body = ErrorEnvelope)))]
#[post("/admin/plans")]
pub async fn create_plan(
    admin: SaasAdmin,
    billing: web::Data<BillingService>,
    body: ValidJson<CreatePlanRequest>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let new = NewPlan {
        code: body.code,
        name: body.name,
        limits: PlanLimits {
            monthly_token_limit: body.monthly_token_limit,
            max_avatars: body.max_avatars,
            max_documents: body.max_documents,
            max_storage_mb: body.max_storage_mb,
            requests_per_minute: body.requests_per_minute,
        },
        is_default: body.is_default,
        is_public: body.is_public,
    };
    let created = billing.create_plan(new, admin.0.actor()).await?;
    Ok(HttpResponse::Created().json(created))
}

/// Changes a plan's name, limits or visibility; its projects get the new limits at once.
#[utoipa::path(patch, path = "/api/v1/admin/plans/{code}", tag = "billing", security(("bearer" = [])),
    params(("code" = String, Path)), request_body = UpdatePlanRequest,
    responses((status = 200, body = PlanView), (status = 404, body = ErrorEnvelope),
              (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
#[patch("/admin/plans/{code}")]
pub async fn update_plan(
    admin: SaasAdmin,
    billing: web::Data<BillingService>,
    path: web::Path<String>,
    body: ValidJson<UpdatePlanRequest>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let patch = PlanPatch {
        name: body.name,
        monthly_token_limit: body.monthly_token_limit,
        max_avatars: body.max_avatars,
        max_documents: body.max_documents,
        max_storage_mb: body.max_storage_mb,
        requests_per_minute: body.requests_per_minute,
        is_default: body.is_default,
        is_public: body.is_public,
    };
    let updated = billing
        .update_plan(&path.into_inner(), patch, admin.0.actor())
        .await?;
    Ok(HttpResponse::Ok().json(updated))
}

/// Removes a plan no project is on; one in use answers 409 (hide it instead).
#[utoipa::path(delete, path = "/api/v1/admin/plans/{code}", tag = "billing", security(("bearer" = [])),
    params(("code" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorEnvelope),
              (status = 409, body = ErrorEnvelope)))]
#[delete("/admin/plans/{code}")]
pub async fn delete_plan(
    admin: SaasAdmin,
    billing: web::Data<BillingService>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    billing
        .delete_plan(&path.into_inner(), admin.0.actor())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The public plans, for any signed-in user (what an owner may ask for).
#[utoipa::path(get, path = "/api/v1/billing/plans", tag = "billing", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = Page<PlanView>, description = "`{items: [Plan], total, limit, offset}`")))]
#[get("/billing/plans")]
pub async fn public_plans(
    _user: CurrentUser,
    billing: web::Data<BillingService>,
    page: ValidQuery<PageParams>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(paged(billing.public_plans().await?, &page)))
}

/// The project's plan, period, token budget and counts against each limit.
#[utoipa::path(get, path = "/api/v1/projects/{pid}/billing", tag = "billing", security(("bearer" = [])),
    params(("pid" = Uuid, Path)),
    responses((status = 200, body = BillingView), (status = 404, body = ErrorEnvelope)))]
#[get("/projects/{pid}/billing")]
pub async fn project_billing(
    access: ProjectAccess<Viewer>,
    billing: web::Data<BillingService>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(billing.overview(access.project_id).await?))
}

/// The project's usage ledger, newest first: one row per LLM call and embedding batch.
#[utoipa::path(get, path = "/api/v1/projects/{pid}/billing/usage", tag = "billing", security(("bearer" = [])),
    params(("pid" = Uuid, Path), UsageQuery),
    responses((status = 200, body = Page<UsageView>, description = "`{items: [UsageView], total, limit, offset}`"),
              (status = 404, body = ErrorEnvelope)))]
#[get("/projects/{pid}/billing/usage")]
pub async fn project_usage(
    access: ProjectAccess<Viewer>,
    billing: web::Data<BillingService>,
    query: ValidQuery<UsageQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.into_inner();
    let filter = UsageFilter {
        from: query.from,
        to: query.to,
        kind: query.kind,
    };
    let page = PageParams {
        limit: query.limit,
        offset: query.offset,
    };
    Ok(HttpResponse::Ok().json(billing.usage(access.project_id, &filter, &page).await?))
}

/// Moves a project to another plan at once (`PlanChanged`); the period stays.
#[utoipa::path(put, path = "/api/v1/admin/projects/{pid}/plan", tag = "billing", security(("bearer" = [])),
    params(("pid" = Uuid, Path)), request_body = ChangePlanRequest,
    responses((status = 200, body = BillingView), (status = 404, body = ErrorEnvelope),
              (status = 422, body = ErrorEnvelope)))]
#[put("/admin/projects/{pid}/plan")]
pub async fn change_project_plan(
    admin: SaasAdmin,
    billing: web::Data<BillingService>,
    path: web::Path<ProjectId>,
    body: ValidJson<ChangePlanRequest>,
) -> Result<HttpResponse, AppError> {
    let view: BillingView = billing
        .change_plan(path.into_inner(), &body.plan_code, admin.0.actor())
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_plans)
        .service(create_plan)
        .service(update_plan)
        .service(delete_plan)
        .service(public_plans)
        .service(project_billing)
        .service(project_usage)
        .service(change_project_plan);
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        list_plans,
        create_plan,
        update_plan,
        delete_plan,
        public_plans,
        project_billing,
        project_usage,
        change_project_plan,
    ),
    components(schemas(PlanView, BillingView, PlanLimits, UsageView, UsageKind)),
    tags(
        (name = "billing", description = "Plans, subscriptions, token budgets and usage"),
    )
)]
pub struct Doc;
