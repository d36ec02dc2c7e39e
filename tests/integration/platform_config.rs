//! The saas_admin's global settings over HTTP.

use avatar_platform::modules::platform_config::PlatformConfigService;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn only_a_saas_admin_reads_and_changes_the_platform_config() {
    let app = spawn_app().await;
    let user = app.user("user").await;
    app.get_as(&user, "/api/v1/admin/platform-config")
        .await
        .error(403, "FORBIDDEN");
    app.patch_as(
        &user,
        "/api/v1/admin/platform-config",
        &json!({"registration_open": false}),
    )
    .await
    .error(403, "FORBIDDEN");
    app.get("/api/v1/admin/platform-config")
        .await
        .error(401, "AUTHENTICATION_REQUIRED");
}

#[tokio::test]
async fn secret_settings_are_sealed_masked_and_changes_are_announced_by_name() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let defaults = app.get_as(&admin, "/api/v1/admin/platform-config").await;
    assert_eq!(defaults.status, 200, "{}", defaults.text);
    assert_eq!(defaults.json["registration_open"], true);
    assert_eq!(defaults.json["llm_api_key"], serde_json::Value::Null);

    let key = "sk-proj-abcdefghijklmnop-WXYZ";
    let patched = app
        .patch_as(
            &admin,
            "/api/v1/admin/platform-config",
            &json!({
                "llm_base_url": "http://127.0.0.1:9999/v1",
                "llm_api_key": key,
                "default_model": "gpt-4o-mini",
                "embedding_model": "text-embedding-3-small",
            }),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.json["llm_api_key"], "****WXYZ");
    assert_eq!(patched.json["default_model"], "gpt-4o-mini");
    assert!(!patched.text.contains(key));
    let read = app.get_as(&admin, "/api/v1/admin/platform-config").await;
    assert_eq!(read.json["llm_api_key"], "****WXYZ");
    assert_eq!(read.json["llm_base_url"], "http://127.0.0.1:9999/v1");

    let sealed: String = app
        .context
        .db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT llm_api_key_sealed FROM platform_config",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "llm_api_key_sealed")
        .unwrap();
    assert!(!sealed.contains(key));
    let config = app.service::<PlatformConfigService>().get().await.unwrap();
    assert_eq!(config.llm_api_key.as_ref().unwrap().expose_secret(), key);

    let events = app
        .events_of_type("platform_config.platform_config_changed")
        .await;
    assert_eq!(
        events[0]["event"]["fields"],
        json!([
            "llm_base_url",
            "llm_api_key",
            "default_model",
            "embedding_model"
        ])
    );
    assert_eq!(events[0]["event"]["actor"]["user_id"], json!(admin.id));
    assert!(!serde_json::to_string(&events).unwrap().contains(key));

    // null clears a setting.
    let cleared = app
        .patch_as(
            &admin,
            "/api/v1/admin/platform-config",
            &json!({"llm_api_key": null}),
        )
        .await;
    assert_eq!(cleared.json["llm_api_key"], serde_json::Value::Null);
    assert_eq!(cleared.json["default_model"], "gpt-4o-mini", "others stay");
}

#[tokio::test]
async fn bad_platform_config_input_names_the_field() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let cases = [
        (json!({"llm_base_url": "not a url"}), "llm_base_url"),
        (
            json!({"embedding_base_url": "ftp://example.com"}),
            "embedding_base_url",
        ),
        (
            json!({"llm_base_url": "http://llm.example/v1?key=x"}),
            "llm_base_url",
        ),
        (
            json!({"outbound_allowed_hosts": ["10.0.0.0/8", "not a host!"]}),
            "outbound_allowed_hosts",
        ),
        (json!({"registration_open": "yes"}), "registration_open"),
        (json!({"default_model": ""}), "default_model"),
        (json!({"surprise": 1}), "surprise"),
    ];
    for (body, field) in cases {
        let response = app
            .patch_as(&admin, "/api/v1/admin/platform-config", &body)
            .await;
        assert_eq!(
            response.error(422, "VALIDATION_ERROR")["field"],
            field,
            "{body}"
        );
    }
    // Nothing was half-written.
    let read = app.get_as(&admin, "/api/v1/admin/platform-config").await;
    assert_eq!(read.json["llm_base_url"], serde_json::Value::Null);
}
