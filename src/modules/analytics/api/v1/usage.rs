//! `/api/v1/projects/{pid}/analytics/usage` and `/analytics/avatars` (viewer and above), and
//! `/api/v1/admin/analytics/overview` (saas_admin).

use actix_web::{HttpResponse, get, web};
use serde::Deserialize;
use utoipa::IntoParams;
use validator::Validate;

use crate::core::auth::{ProjectAccess, SaasAdmin, Viewer};
use crate::core::error::{AppError, ErrorEnvelope};
use crate::core::extract::ValidQuery;
use crate::core::ids::AvatarId;
use crate::modules::analytics::service::AnalyticsService;
use crate::modules::analytics::usage::range::{DayRange, Granularity};
use crate::modules::analytics::usage::{AvatarUsageList, Overview, UsageSeries};

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// First day (UTC, inclusive): `YYYY-MM-DD`, or an RFC 3339 time at midnight UTC. Defaults
    /// to 30 days before `to`.
    #[validate(length(max = 40))]
    pub from: Option<String>,
    /// Day after the last (exclusive), same forms. Defaults to tomorrow (today included).
    #[validate(length(max = 40))]
    pub to: Option<String>,
}

impl RangeQuery {
    fn range(&self, analytics: &AnalyticsService) -> Result<DayRange, AppError> {
        range(self.from.as_deref(), self.to.as_deref(), analytics)
    }
}

fn range(
    from: Option<&str>,
    to: Option<&str>,
    analytics: &AnalyticsService,
) -> Result<DayRange, AppError> {
    Ok(DayRange::parse(
        from,
        to,
        analytics.today(),
        analytics.max_range_days(),
    )?)
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// First day (UTC, inclusive), as in the avatars route.
    #[validate(length(max = 40))]
    pub from: Option<String>,
    /// Day after the last (exclusive), as in the avatars route.
    #[validate(length(max = 40))]
    pub to: Option<String>,
    /// `day` (default), `week` (ISO, from Monday) or `month`.
    #[validate(length(max = 10))]
    pub granularity: Option<String>,
    /// Only this avatar's figures.
    #[param(value_type = Option<uuid::Uuid>)]
    pub avatar_id: Option<AvatarId>,
}

/// The project's figures per bucket (UTC), empty buckets included, and over the whole range.
#[utoipa::path(get, path = "/api/v1/projects/{pid}/analytics/usage", tag = "analytics",
    security(("bearer" = [])), params(("pid" = Uuid, Path), UsageQuery),
    responses((status = 200, body = UsageSeries), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
#[get("/projects/{pid}/analytics/usage")]
pub async fn usage(
    access: ProjectAccess<Viewer>,
    analytics: web::Data<AnalyticsService>,
    query: ValidQuery<UsageQuery>,
) -> Result<HttpResponse, AppError> {
    let granularity = Granularity::parse(query.granularity.as_deref())?;
    let range = range(query.from.as_deref(), query.to.as_deref(), &analytics)?;
    let series = analytics
        .usage(access.project_id, range, granularity, query.avatar_id)
        .await?;
    Ok(HttpResponse::Ok().json(series))
}

/// Per-avatar totals over the range, with mean latencies.
#[utoipa::path(get, path = "/api/v1/projects/{pid}/analytics/avatars", tag = "analytics",
    security(("bearer" = [])), params(("pid" = Uuid, Path), RangeQuery),
    responses((status = 200, body = AvatarUsageList), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
#[get("/projects/{pid}/analytics/avatars")]
pub async fn avatars(
    access: ProjectAccess<Viewer>,
    analytics: web::Data<AnalyticsService>,
    query: ValidQuery<RangeQuery>,
) -> Result<HttpResponse, AppError> {
    let range = query.range(&analytics)?;
    let list = analytics.avatar_usage(access.project_id, range).await?;
    Ok(HttpResponse::Ok().json(list))
}

/// The platform's totals now, its traffic over the range, and the top projects by tokens.
#[utoipa::path(get, path = "/api/v1/admin/analytics/overview", tag = "analytics",
    security(("bearer" = [])), params(RangeQuery),
    responses((status = 200, body = Overview), (status = 403, body = ErrorEnvelope),
              (status = 422, body = ErrorEnvelope)))]
#[get("/admin/analytics/overview")]
pub async fn overview(
    _admin: SaasAdmin,
    analytics: web::Data<AnalyticsService>,
    query: ValidQuery<RangeQuery>,
) -> Result<HttpResponse, AppError> {
    let range = query.range(&analytics)?;
    Ok(HttpResponse::Ok().json(analytics.overview(range).await?))
}
