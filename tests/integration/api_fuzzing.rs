//! Property-based fuzzing of the whole HTTP API from its OpenAPI document: schemathesis
//! (scripts/schemathesis.sh) against the real app, with a real tenancy's ids and credentials,
//! every phase, a bounded number of examples per operation (`ST_MAX_EXAMPLES`, default 10).
//! No 5xx, every response as documented (status, content type, schema), invalid data refused.

use serde_json::json;

use crate::chat::chat_app;
use crate::fake_openai::Reply;
use crate::helpers::TestApp;

/// Runs the script against `app` with `env`, and fails with its report unless it passed.
async fn schemathesis(app: &TestApp, env: &[(&str, String)], options: &[&str], what: &str) {
    let output = tokio::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/schemathesis.sh"
    ))
    .arg(&app.address)
    .args(options)
    .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
    .kill_on_drop(true)
    .output()
    .await
    .expect("scripts/schemathesis.sh runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures ({what}):\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // It ran: operations were tested, not all skipped.
    assert!(report.contains("Tested:"), "{what}: {report}");
}

#[tokio::test]
async fn every_operation_answers_as_documented_under_property_based_fuzzing() {
    let chat = chat_app(&[], Reply::answer("Plans renew monthly.", (5, 5)), true).await;
    let key = {
        let created = chat
            .create_api_key(&json!({"name": "fuzz", "scopes": ["chat", "embeddings"]}))
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        created.json["key"].as_str().unwrap().to_owned()
    };
    let asked = chat
        .public_answer(&key, "ada", "When do plans renew?")
        .await;
    let env = |token: &str| {
        vec![
            ("ST_TOKEN", token.to_owned()),
            ("ST_API_KEY", key.clone()),
            ("ST_PID", chat.pid.to_string()),
            ("ST_AID", chat.aid.to_string()),
            ("ST_DID", chat.document.to_string()),
            (
                "ST_CID",
                asked["conversation_id"].as_str().unwrap().to_owned(),
            ),
            (
                "ST_EID",
                asked["end_user"]["id"].as_str().unwrap().to_owned(),
            ),
        ]
    };
    // The tenancy's operations as its owner; then the platform's as a saas_admin.
    schemathesis(
        &chat.app,
        &env(&chat.owner.access_token),
        &["--exclude-path-regex", "^/api/v1/admin/"],
        "as the project's owner",
    )
    .await;
    let admin = chat.app.admin().await;
    schemathesis(
        &chat.app,
        &env(&admin.access_token),
        &["--include-path-regex", "^/api/v1/admin/"],
        "as a saas_admin",
    )
    .await;
}
