//! Secret values never reach Debug output or log lines, even when whole requests or settings
//! are logged.

use std::io::Write;
use std::sync::{Arc, Mutex};

use avatar_platform::core::crypto::SecretBox;
use avatar_platform::modules::auth::api::v1::schemas::{
    ChangePasswordRequest, LoginRequest, RegisterRequest,
};
use avatar_platform::modules::platform_config::api::v1::PatchPlatformConfig;
use avatar_platform::modules::platform_config::service::PlatformConfig;
use avatar_platform::modules::projects::api::v1::schemas::PutSecretRequest;
use secrecy::SecretString;

const SECRET: &str = "sk-live-0123456789-very-secret";

/// A `tracing` writer that keeps what was logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged(log: impl FnOnce()) -> String {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, log);
    String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
}

#[test]
fn request_bodies_holding_secrets_print_redacted() {
    let put: PutSecretRequest =
        serde_json::from_value(serde_json::json!({"value": SECRET})).unwrap();
    let login: LoginRequest =
        serde_json::from_value(serde_json::json!({"email": "a@b.c", "password": SECRET})).unwrap();
    let register: RegisterRequest =
        serde_json::from_value(serde_json::json!({"email": "a@b.c", "password": SECRET})).unwrap();
    let change: ChangePasswordRequest = serde_json::from_value(
        serde_json::json!({"current_password": SECRET, "new_password": SECRET}),
    )
    .unwrap();
    let patch: PatchPlatformConfig = serde_json::from_value(serde_json::json!({
        "llm_api_key": SECRET, "embedding_api_key": SECRET, "notifications_bot_token": SECRET
    }))
    .unwrap();
    let printed = format!("{put:?} {login:?} {register:?} {change:?} {patch:?}");
    assert!(!printed.contains(SECRET), "{printed}");
    assert!(printed.contains("REDACTED"), "{printed}");

    let lines = logged(|| {
        tracing::info!(?put, ?login, ?patch, "request received");
        tracing::error!("failed: {:?}", change);
    });
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
    let lines = logged(|| tracing::warn!(?config, ?secret_box, "settings"));
    assert!(!lines.contains(SECRET) && !lines.contains(&key), "{lines}");
}
