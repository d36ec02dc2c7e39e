//! Liveness, readiness and the Prometheus scrape endpoint.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::core::cache::Cache;
use crate::core::db::Db;
use crate::core::error::{AppError, ErrorCode};
use crate::core::jobs;
use crate::core::storage::BlobStore;
use crate::core::telemetry::metrics_handle;

/// What readiness checks: each dependency the platform cannot serve without.
#[derive(Clone)]
pub struct Readiness {
    pub db: Db,
    pub cache: Arc<dyn Cache>,
    pub blobs: Arc<dyn BlobStore>,
    /// A dependency that does not answer within this time counts as failed.
    pub check_timeout: Duration,
}

#[derive(Serialize, ToSchema)]
pub struct HealthResponse {
    pub status: &'static str,
    pub version: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct ReadinessResponse {
    /// `ready`, or `degraded` when Redis is down and the in-process cache stands in for it.
    pub status: &'static str,
    /// `ok` or what went wrong with each dependency: database, cache, storage.
    pub checks: std::collections::BTreeMap<&'static str, String>,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "service",
    responses((status = 200, body = HealthResponse)))]
#[get("/health")]
pub async fn health() -> web::Json<HealthResponse> {
    web::Json(HealthResponse {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Readiness: database and storage answer (503 names the ones that do not). A cache (Redis)
/// that does not answer leaves the platform serving on its in-process cache: 200, `degraded`.
#[utoipa::path(get, path = "/health/ready", tag = "service",
    responses((status = 200, body = ReadinessResponse),
              (status = 503, body = crate::core::error::ErrorEnvelope)))]
#[get("/health/ready")]
pub async fn ready(probes: web::Data<Readiness>) -> Result<web::Json<ReadinessResponse>, AppError> {
    let limit = probes.check_timeout;
    let (database, cache, storage) = tokio::join!(
        check(limit, async {
            probes.db.ping().await.map_err(|e| e.to_string())
        }),
        check(limit, async {
            probes.cache.check().await.map_err(|e| e.to_string())
        }),
        check(limit, async {
            probes.blobs.check().await.map_err(|e| e.to_string())
        }),
    );
    let cache_degraded = cache != "ok";
    let cache = if cache_degraded {
        "degraded: using the in-process cache".to_owned()
    } else {
        cache
    };
    let checks: std::collections::BTreeMap<&'static str, String> = [
        ("database", database),
        ("cache", cache),
        ("storage", storage),
    ]
    .into_iter()
    .collect();
    let failed: Vec<&str> = checks
        .iter()
        .filter(|(name, outcome)| **name != "cache" && outcome.as_str() != "ok")
        .map(|(name, _)| *name)
        .collect();
    if failed.is_empty() {
        return Ok(web::Json(ReadinessResponse {
            status: if cache_degraded { "degraded" } else { "ready" },
            checks,
        }));
    }
    Err(AppError::new(
        ErrorCode::ServiceUnavailable,
        format!("not ready: {} failed", failed.join(", ")),
    )
    .with_details(serde_json::json!({ "failed": failed, "checks": checks })))
}

async fn check(limit: Duration, probe: impl Future<Output = Result<(), String>>) -> String {
    // The cause goes to the log; anonymous callers learn only that it failed.
    match tokio::time::timeout(limit, probe).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(error)) => {
            tracing::warn!("readiness check failed: {error}");
            "unavailable".to_owned()
        }
        Err(_) => format!("no answer within {} ms", limit.as_millis()),
    }
}

/// Prometheus text: HTTP requests, jobs, events, connection pool and task queue.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
#[get("/metrics")]
pub async fn prometheus_metrics(probes: web::Data<Readiness>) -> HttpResponse {
    let pool = probes.db.pool_stats();
    metrics::gauge!("db_pool_connections", "state" => "open").set(f64::from(pool.size));
    metrics::gauge!("db_pool_connections", "state" => "idle").set(f64::from(pool.idle));
    metrics::gauge!("db_pool_connections", "state" => "max").set(f64::from(pool.max));
    match jobs::task_counts(&probes.db).await {
        Ok(counts) => {
            for state in ["new", "in_progress", "retried", "failed"] {
                let count = counts.get(state).copied().unwrap_or(0);
                metrics::gauge!("jobs_queued", "state" => state).set(count as f64);
            }
        }
        Err(error) => tracing::warn!("task counts for /metrics failed: {error}"),
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics_handle().render())
}

pub fn configure(cfg: &mut web::ServiceConfig, metrics_enabled: bool) {
    cfg.service(health).service(ready);
    if metrics_enabled {
        cfg.service(prometheus_metrics);
    }
}
