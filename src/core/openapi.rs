//! The OpenAPI 3.1 document, assembled from the annotated handlers of core and the modules.

use utoipa::OpenApi;

use crate::core::error::{ErrorBody, ErrorCode, ErrorEnvelope};
use crate::core::health;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Avatar Platform API",
        description = "Multi-tenant backend for RAG-powered AI avatars. Errors always use the \
                       envelope `{\"error\": {\"code\", \"message\", \"field\", \"details\"}}`."
    ),
    paths(health::health, health::ready, health::prometheus_metrics),
    components(schemas(ErrorEnvelope, ErrorBody, ErrorCode)),
    tags((name = "service", description = "Health, readiness and metrics"))
)]
struct ApiDoc;

/// The whole document, as served at `/openapi.json` and printed by `avatar-platform openapi`.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document
}
