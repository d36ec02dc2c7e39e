//! The parts of the OpenAPI 3.1 document that belong to no module: info, the error envelope,
//! security schemes and the service endpoints. `modules::openapi_document` adds the modules'.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::core::error::{ErrorBody, ErrorCode, ErrorEnvelope};
use crate::core::health;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Avatar Platform API",
        description = "Multi-tenant backend for RAG-powered AI avatars. Errors always use the \
                       envelope `{\"error\": {\"code\", \"message\", \"field\", \"details\"}}`."
    ),
    paths(health::health, health::ready, health::prometheus_metrics),
    components(schemas(ErrorEnvelope, ErrorBody, ErrorCode)),
    modifiers(&SecuritySchemes),
    tags((name = "service", description = "Health, readiness and metrics"))
)]
struct CoreDoc;

/// The core document; the modules' paths are merged into it.
pub fn base_document() -> utoipa::openapi::OpenApi {
    let mut document = CoreDoc::openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document
}
