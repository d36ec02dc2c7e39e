//! The outbound policy and secret binding, as an attacker with a project of their own would
//! probe them: a project's LLM endpoint pointed at internal addresses, a query that swallows
//! the API path, redirects, upstream bodies with secrets in them, port probing, and a manager
//! repointing the endpoint to collect the owner's key. Traffic goes to loopback listeners
//! only; the other private ranges are unit-tested on the address check.

use serde_json::json;

use crate::chat::{Chat, chat_app_with};
use crate::fake_openai::{FakeOpenAi, Reply};

const ANSWER: &str = "Use update.packages() [1].";

impl Chat {
    async fn put_secret(&self, name: &str, value: &str) -> crate::helpers::TestResponse {
        self.app
            .put_as(
                &self.owner,
                &format!("/api/v1/projects/{}/secrets/{name}", self.pid),
                &json!({ "value": value }),
            )
            .await
    }
}

/// A chat app with no allow-list: loopback is off limits for the project's endpoint.
async fn guarded() -> Chat {
    chat_app_with(&[], Reply::answer(ANSWER, (5, 5)), false).await
}

#[tokio::test]
async fn a_projects_endpoint_cannot_reach_loopback_in_any_spelling() {
    let chat = guarded().await;
    let internal = &chat.llm;
    let port = internal.port();
    let conversation = chat.conversation().await;
    for url in [
        format!("http://127.0.0.1:{port}/v1"),
        format!("http://localhost:{port}/v1"),
        format!("http://[::ffff:127.0.0.1]:{port}/v1"),
        format!("http://127.1:{port}/v1"),
        format!("http://2130706433:{port}/v1"),
    ] {
        let put = chat.put_secret("LLM_BASE_URL", &url).await;
        assert_eq!(put.status, 204, "{url}: {}", put.text);
        let refused = chat.ask(conversation, "How do I update packages?").await;
        let error = refused.error(502, "EXTERNAL_SERVICE_ERROR");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains("refused by the outbound policy"),
            "{url}: {message}"
        );
    }
    assert!(internal.requests().is_empty(), "{:?}", internal.requests());
    assert!(
        internal.elsewhere().is_empty(),
        "{:?}",
        internal.elsewhere()
    );
}

#[tokio::test]
async fn an_endpoint_must_be_a_base_url_so_nothing_swallows_the_api_path() {
    let chat = guarded().await;
    let port = chat.llm.port();
    for url in [
        format!("http://127.0.0.1:{port}/internal/admin/delete-all?confirm=yes&x="),
        format!("http://127.0.0.1:{port}/internal/admin/delete-all#"),
        format!("http://user:pw@127.0.0.1:{port}/v1"),
        "gopher://127.0.0.1:70/".to_owned(),
        "not a url".to_owned(),
    ] {
        let put = chat.put_secret("LLM_BASE_URL", &url).await;
        let error = put.error(422, "VALIDATION_ERROR");
        assert_eq!(error["field"], "value", "{url}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .starts_with("value: LLM_BASE_URL "),
            "{error}"
        );
    }
    assert!(chat.llm.elsewhere().is_empty());
}

#[tokio::test]
async fn the_operator_allows_a_private_llm_and_then_redirects_and_upstream_bodies_stay_out() {
    let chat = guarded().await;
    let conversation = chat.conversation().await;
    assert_eq!(
        chat.put_secret("LLM_BASE_URL", &chat.llm.url).await.status,
        204
    );
    chat.ask(conversation, "Update packages?")
        .await
        .error(502, "EXTERNAL_SERVICE_ERROR");

    // The saas_admin allow-lists the network the LLM runs on.
    let admin = chat.app.admin().await;
    let patched = chat
        .app
        .patch_as(
            &admin,
            "/api/v1/admin/platform-config",
            &json!({"outbound_allowed_hosts": ["127.0.0.0/8"]}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(
        patched.json["outbound_allowed_hosts"],
        json!(["127.0.0.0/8"])
    );
    let answered = chat.ask(conversation, "Update packages?").await;
    assert_eq!(answered.status, 200, "{}", answered.text);
    assert_eq!(answered.json["assistant_message"]["content"], ANSWER);

    // A redirect is not followed: the target is never asked.
    chat.llm.then([Reply::Raw {
        status: 307,
        headers: vec![(
            "location".into(),
            "/latest/meta-data/iam/security-credentials/".into(),
        )],
        body: String::new(),
    }]);
    let redirected = chat.ask(conversation, "Update packages?").await;
    let error = redirected.error(502, "EXTERNAL_SERVICE_ERROR");
    assert_eq!(
        error["message"],
        "the LLM endpoint answered 307 Temporary Redirect"
    );
    assert!(
        chat.llm.elsewhere().is_empty(),
        "{:?}",
        chat.llm.elsewhere()
    );

    // What an endpoint answers with is logged, never shown.
    chat.llm.then([Reply::Raw {
        status: 400,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: "db_password=hunter2".into(),
    }]);
    let leaky = chat.ask(conversation, "Update packages?").await;
    assert_eq!(leaky.status, 502);
    assert!(!leaky.text.contains("hunter2"), "{}", leaky.text);
    assert_eq!(
        leaky.json["error"]["message"],
        "the LLM endpoint answered 400 Bad Request"
    );

    // An open and a closed port look alike.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    assert_eq!(
        chat.put_secret("LLM_BASE_URL", &format!("http://127.0.0.1:{closed}/v1"))
            .await
            .status,
        204
    );
    let unreachable = chat.ask(conversation, "Update packages?").await;
    assert_eq!(
        unreachable.error(502, "EXTERNAL_SERVICE_ERROR")["message"],
        "gave up after 3 attempts: cannot reach the LLM endpoint"
    );
}

#[tokio::test]
async fn a_key_goes_only_to_the_endpoint_it_was_entered_for() {
    let chat = chat_app_with(
        &[("APP__OUTBOUND__ALLOWED_HOSTS", "127.0.0.1")],
        Reply::answer(ANSWER, (5, 5)),
        false,
    )
    .await;
    let attacker = FakeOpenAi::chat(Reply::answer(ANSWER, (5, 5))).await;
    let conversation = chat.conversation().await;
    // The owner sets the endpoint, then its key.
    assert_eq!(
        chat.put_secret("LLM_BASE_URL", &chat.llm.url).await.status,
        204
    );
    assert_eq!(chat.put_secret("LLM_API_KEY", "sk-owner").await.status, 204);
    assert_eq!(chat.ask(conversation, "Update?").await.status, 200);

    // A manager repoints the endpoint to a server of theirs and asks: the key stays home.
    let manager = chat.app.member(chat.pid, &chat.owner, "manager").await;
    let repointed = chat
        .app
        .put_as(
            &manager,
            &format!("/api/v1/projects/{}/secrets/LLM_BASE_URL", chat.pid),
            &json!({ "value": attacker.url }),
        )
        .await;
    assert_eq!(repointed.status, 204, "{}", repointed.text);
    assert_eq!(chat.ask(conversation, "Update?").await.status, 200);
    assert_eq!(attacker.authorizations(), vec![None]);

    // Pointed back at the endpoint the key was entered for, the key goes there again.
    assert_eq!(
        chat.put_secret("LLM_BASE_URL", &chat.llm.url).await.status,
        204
    );
    assert_eq!(chat.ask(conversation, "Update?").await.status, 200);

    // Entering the key again for the new endpoint is what sends it there.
    assert_eq!(
        chat.put_secret("LLM_BASE_URL", &attacker.url).await.status,
        204
    );
    assert_eq!(chat.put_secret("LLM_API_KEY", "sk-new").await.status, 204);
    assert_eq!(chat.ask(conversation, "Update?").await.status, 200);
    assert_eq!(
        attacker.authorizations(),
        vec![None, Some("Bearer sk-new".to_owned())]
    );
    assert_eq!(
        chat.llm.authorizations(),
        vec![
            Some("Bearer sk-owner".to_owned()),
            Some("Bearer sk-owner".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_platform_key_is_cleared_when_its_endpoint_changes_without_it() {
    let chat = chat_app_with(&[], Reply::answer(ANSWER, (5, 5)), false).await;
    let other = FakeOpenAi::chat(Reply::answer(ANSWER, (5, 5))).await;
    let admin = chat.app.admin().await;
    let set = chat
        .app
        .patch_as(
            &admin,
            "/api/v1/admin/platform-config",
            &json!({"llm_base_url": chat.llm.url, "llm_api_key": "sk-platform-0001"}),
        )
        .await;
    assert_eq!(set.json["llm_api_key"], "****0001", "{}", set.text);
    let moved = chat
        .app
        .patch_as(
            &admin,
            "/api/v1/admin/platform-config",
            &json!({"llm_base_url": other.url}),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.text);
    assert_eq!(moved.json["llm_api_key"], serde_json::Value::Null);
    let conversation = chat.conversation().await;
    assert_eq!(chat.ask(conversation, "Update?").await.status, 200);
    assert_eq!(other.authorizations(), vec![None]);
}
