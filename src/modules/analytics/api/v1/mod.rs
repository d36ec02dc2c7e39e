//! `/api/v1/projects/{pid}/audit-log` (manager and above) and `/api/v1/admin/audit-log`
//! (saas_admin); the usage routes are in `usage.rs`.

mod usage;

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;
use validator::Validate;

use crate::core::auth::{Manager, ProjectAccess, SaasAdmin};
use crate::core::error::{AppError, ErrorEnvelope};
use crate::core::extract::ValidQuery;
use crate::core::ids::{ProjectId, UserId};
use crate::core::pagination::DEFAULT_LIMIT;
use crate::modules::analytics::service::{AnalyticsService, AuditFilter, AuditPage};

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// e.g. `avatar.updated`.
    #[validate(length(max = 100))]
    pub action: Option<String>,
    /// The acting user.
    #[param(value_type = Option<uuid::Uuid>)]
    pub actor_id: Option<UserId>,
    #[validate(length(max = 100))]
    pub entity_type: Option<String>,
    #[validate(length(max = 200))]
    pub entity_id: Option<String>,
    /// From this time (inclusive), RFC 3339.
    pub from: Option<DateTime<Utc>>,
    /// Until this time (exclusive), RFC 3339.
    pub to: Option<DateTime<Utc>>,
    /// Only this project's entries (admin route).
    #[param(value_type = Option<uuid::Uuid>)]
    pub project_id: Option<ProjectId>,
    /// The `next_cursor` of the previous page.
    #[validate(length(max = 200))]
    pub cursor: Option<String>,
    #[validate(range(min = 1, max = 200))]
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
    /// Entries to skip when no `cursor` is given (the cursor takes precedence).
    #[validate(range(max = crate::core::pagination::MAX_OFFSET))]
    #[param(maximum = 1_000_000_000)]
    pub offset: Option<u64>,
}

impl AuditQuery {
    fn filter(&self, project_id: Option<ProjectId>) -> AuditFilter {
        AuditFilter {
            project_id,
            action: self.action.clone(),
            actor_id: self.actor_id,
            entity_type: self.entity_type.clone(),
            entity_id: self.entity_id.clone(),
            from: self.from,
            to: self.to,
        }
    }
}

async fn page(
    analytics: &AnalyticsService,
    query: &AuditQuery,
    project_id: Option<ProjectId>,
) -> Result<AuditPage, AppError> {
    Ok(analytics
        .audit_log(
            &query.filter(project_id),
            query.cursor.as_deref(),
            query.limit.unwrap_or(DEFAULT_LIMIT),
            query.offset.unwrap_or(0),
        )
        .await?)
}

/// The project's audit log, newest first, with keyset paging (`next_cursor`).
#[utoipa::path(get, path = "/api/v1/projects/{pid}/audit-log", tag = "analytics",
    security(("bearer" = [])), params(("pid" = Uuid, Path), AuditQuery),
    responses((status = 200, body = AuditPage), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
#[get("/projects/{pid}/audit-log")]
pub async fn project_audit_log(
    access: ProjectAccess<Manager>,
    analytics: web::Data<AnalyticsService>,
    query: ValidQuery<AuditQuery>,
) -> Result<HttpResponse, AppError> {
    let page = page(&analytics, &query, Some(access.project_id)).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// Every entry (projects and platform-level actions), newest first; `?project_id=` narrows.
#[utoipa::path(get, path = "/api/v1/admin/audit-log", tag = "analytics",
    security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 403, body = ErrorEnvelope)))]
#[get("/admin/audit-log")]
pub async fn admin_audit_log(
    _admin: SaasAdmin,
    analytics: web::Data<AnalyticsService>,
    query: ValidQuery<AuditQuery>,
) -> Result<HttpResponse, AppError> {
    let page = page(&analytics, &query, query.project_id).await?;
    Ok(HttpResponse::Ok().json(page))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(project_audit_log)
        .service(admin_audit_log)
        .service(usage::usage)
        .service(usage::avatars)
        .service(usage::overview);
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(project_audit_log, admin_audit_log, usage::usage, usage::avatars, usage::overview),
    components(schemas(
        AuditPage,
        crate::modules::analytics::service::AuditEntryView,
        crate::modules::analytics::usage::UsageSeries,
        crate::modules::analytics::usage::UsageBucket,
        crate::modules::analytics::usage::UsageFigures,
        crate::modules::analytics::usage::AvatarUsageList,
        crate::modules::analytics::usage::AvatarUsage,
        crate::modules::analytics::usage::Overview,
        crate::modules::analytics::usage::ProjectTraffic,
        crate::modules::analytics::usage::Traffic,
        crate::modules::analytics::usage::range::Granularity,
    )),
    tags((name = "analytics", description = "The audit log and usage analytics")),
)]
pub struct Doc;
