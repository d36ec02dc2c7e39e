//! `/api/v1/admin/platform-config` (saas_admin only).

use actix_web::{HttpResponse, get, patch, web};
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;
use validator::Validate;

use crate::core::auth::SaasAdmin;
use crate::core::error::AppError;
use crate::core::extract::{ValidJson, nullable};
use crate::modules::platform_config::service::{
    PlatformConfigPatch, PlatformConfigService, PlatformConfigView,
};

/// A change to the platform settings: absent fields stay, `null` clears.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchPlatformConfig {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub llm_base_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub llm_api_key: Option<Option<SecretString>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub default_model: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub embedding_base_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub embedding_api_key: Option<Option<SecretString>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub embedding_model: Option<Option<String>>,
    pub registration_open: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub notifications_bot_token: Option<Option<SecretString>>,
    /// Host names and networks (CIDR) that projects' own endpoints may reach although they are
    /// private (added to the deployment's `outbound.allowed_hosts`); `[]` clears.
    #[validate(length(max = 100))]
    pub outbound_allowed_hosts: Option<Vec<String>>,
}

/// The platform settings, secret values masked.
#[utoipa::path(get, path = "/api/v1/admin/platform-config", tag = "platform-config",
    security(("bearer" = [])),
    responses((status = 200, body = PlatformConfigView),
              (status = 401, body = crate::core::error::ErrorEnvelope),
              (status = 403, body = crate::core::error::ErrorEnvelope)))]
#[get("/admin/platform-config")]
pub async fn get_platform_config(
    _admin: SaasAdmin,
    service: web::Data<PlatformConfigService>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(service.view().await?))
}

/// Changes platform settings; publishes `PlatformConfigChanged` with the field names.
#[utoipa::path(patch, path = "/api/v1/admin/platform-config", tag = "platform-config",
    security(("bearer" = [])),
    request_body = PatchPlatformConfig,
    responses((status = 200, body = PlatformConfigView),
              (status = 422, body = crate::core::error::ErrorEnvelope)))]
#[patch("/admin/platform-config")]
pub async fn patch_platform_config(
    admin: SaasAdmin,
    service: web::Data<PlatformConfigService>,
    body: ValidJson<PatchPlatformConfig>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let patch = PlatformConfigPatch {
        llm_base_url: body.llm_base_url,
        llm_api_key: body.llm_api_key,
        default_model: body.default_model,
        embedding_base_url: body.embedding_base_url,
        embedding_api_key: body.embedding_api_key,
        embedding_model: body.embedding_model,
        registration_open: body.registration_open,
        notifications_bot_token: body.notifications_bot_token,
        outbound_allowed_hosts: body.outbound_allowed_hosts,
    };
    Ok(HttpResponse::Ok().json(service.update(patch, admin.0.actor()).await?))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_platform_config)
        .service(patch_platform_config);
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        get_platform_config,
        patch_platform_config,
    ),
    tags(
        (name = "platform-config", description = "saas_admin: global settings"),
    )
)]
pub struct Doc;

/// Keys and tokens never reach Debug output or log lines, in requests or opened settings.
#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::PatchPlatformConfig;
    use crate::core::crypto::SecretBox;
    use crate::core::telemetry::captured_logs;
    use crate::modules::platform_config::PlatformConfig;

    const SECRET: &str = "sk-live-0123456789-very-secret";

    #[test]
    fn a_patch_holding_keys_prints_redacted() {
        let patch: PatchPlatformConfig = serde_json::from_value(serde_json::json!({
            "llm_api_key": SECRET, "embedding_api_key": SECRET, "notifications_bot_token": SECRET
        }))
        .unwrap();
        let printed = format!("{patch:?}");
        assert!(!printed.contains(SECRET), "{printed}");
        assert!(printed.contains("REDACTED"), "{printed}");
        let lines = captured_logs(|| tracing::info!(?patch, "request received"));
        assert!(lines.contains("request received"), "{lines}");
        assert!(!lines.contains(SECRET), "{lines}");
    }

    #[test]
    fn opened_platform_settings_and_the_secret_box_print_redacted() {
        let config = PlatformConfig {
            llm_base_url: Some("http://llm".into()),
            llm_api_key: Some(SecretString::from(SECRET)),
            default_model: None,
            embedding_base_url: None,
            embedding_api_key: Some(SecretString::from(SECRET)),
            embedding_model: None,
            registration_open: true,
            notifications_bot_token: Some(SecretString::from(SECRET)),
            outbound_allowed_hosts: Default::default(),
            updated_at: chrono::Utc::now(),
        };
        let key = "ab".repeat(32);
        let secret_box = SecretBox::new(&SecretString::from(key.clone()), &[]).unwrap();
        let printed = format!("{config:?} {secret_box:?}");
        assert!(
            !printed.contains(SECRET) && !printed.contains(&key),
            "{printed}"
        );
        let lines = captured_logs(|| tracing::warn!(?config, ?secret_box, "settings"));
        assert!(!lines.contains(SECRET) && !lines.contains(&key), "{lines}");
    }
}
