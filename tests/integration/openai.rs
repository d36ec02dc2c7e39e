//! The OpenAI-compatible API driven by a real OpenAI client (`async-openai`, its base URL on
//! the test app): avatars as models, grounded completions whole and streamed with usage, the
//! client's history and instructions, and errors in OpenAI's shape with the statuses its SDKs
//! map.

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    ChatCompletionStreamOptions, CreateChatCompletionRequest, CreateChatCompletionRequestArgs,
    FinishReason,
};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::chat::{ANSWER, Chat, chat_app};
use crate::fake_openai::Reply;
use crate::helpers::TestResponse;

const QUESTION: &str = "How do I update installed packages?";

/// The chat app (an avatar "R guide" that knows the guide, the fake LLM), loopback allowed.
async fn openai_app(reply: Reply) -> Chat {
    chat_app(&[], reply, true).await
}

fn client(chat: &Chat, key: &str) -> Client<OpenAIConfig> {
    Client::with_config(
        OpenAIConfig::new()
            .with_api_base(chat.app.url("/api/v1/openai"))
            .with_api_key(key),
    )
}

fn user(text: &str) -> ChatCompletionRequestMessage {
    ChatCompletionRequestUserMessage::from(text).into()
}

fn request(
    model: &str,
    messages: Vec<ChatCompletionRequestMessage>,
) -> CreateChatCompletionRequest {
    CreateChatCompletionRequestArgs::default()
        .model(model)
        .messages(messages)
        .build()
        .unwrap()
}

/// A raw call, to see the wire: `Authorization: Bearer <key>`.
async fn call(
    chat: &Chat,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> TestResponse {
    let mut builder = chat
        .app
        .client
        .request(method, chat.app.url(&format!("/api/v1/openai{path}")))
        .bearer_auth(key);
    if let Some(body) = body {
        builder = builder.json(&body);
    }
    chat.app.send(builder).await
}

/// OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`, nothing else.
fn openai_error(response: &TestResponse, status: u16) -> &Value {
    assert_eq!(response.status, status, "{}", response.text);
    let error = &response.json["error"];
    let keys: Vec<&String> = error.as_object().expect("an error object").keys().collect();
    assert_eq!(
        keys,
        ["code", "message", "param", "type"],
        "{}",
        response.text
    );
    assert!(!error["message"].as_str().unwrap().is_empty());
    error
}

fn api_error(error: OpenAIError) -> (u16, async_openai::error::ApiError) {
    match error {
        OpenAIError::ApiError(response) => (response.status_code.as_u16(), response.api_error),
        other => panic!("not an API error: {other:?}"),
    }
}

#[tokio::test]
async fn a_projects_active_avatars_are_its_models_by_slug_or_id() {
    let chat = openai_app(Reply::answer(ANSWER, (5, 5))).await;
    let key = chat.api_key().await;
    let sales = chat.app.avatar(&chat.owner, chat.pid, "Sales Desk").await;
    let paused = chat.app.avatar(&chat.owner, chat.pid, "Paused").await;
    let disabled = chat
        .app
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/projects/{}/avatars/{paused}", chat.pid),
            Some(&chat.owner),
            Some(&json!({"status": "disabled"})),
        )
        .await;
    assert_eq!(disabled.status, 200, "{}", disabled.text);

    let openai = client(&chat, &key);
    let models = openai.models().list().await.unwrap();
    let ids: Vec<&str> = models.data.iter().map(|model| model.id.as_str()).collect();
    assert_eq!(
        ids,
        ["r-guide", "sales-desk"],
        "oldest first, the disabled one left out"
    );
    assert!(
        models
            .data
            .iter()
            .all(|model| model.object == "model" && model.created > 0)
    );

    // By slug or by id; a disabled avatar, another project's and a made-up one are unknown.
    assert_eq!(
        openai.models().retrieve("sales-desk").await.unwrap().id,
        "sales-desk"
    );
    assert_eq!(
        openai
            .models()
            .retrieve(&sales.to_string())
            .await
            .unwrap()
            .id,
        "sales-desk"
    );
    let other_owner = chat.app.user("other").await;
    let other_project = chat.app.project(&other_owner, "other").await;
    let theirs = chat
        .app
        .avatar(&other_owner, other_project, "R guide")
        .await;
    for unknown in [
        paused.to_string(),
        theirs.to_string(),
        "no-such-avatar".to_owned(),
    ] {
        let (status, error) = api_error(openai.models().retrieve(&unknown).await.unwrap_err());
        assert_eq!(status, 404, "{unknown}");
        assert_eq!(error.code.as_deref(), Some("model_not_found"));
        assert_eq!(error.param.as_deref(), Some("model"));
    }
    // Asking another project's avatar is the same 404, and reaches no model.
    let (status, _) = api_error(
        openai
            .chat()
            .create(request(&theirs.to_string(), vec![user(QUESTION)]))
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 404);
    assert!(chat.llm.requests().is_empty());

    // A bad key: 401 in OpenAI's shape; `X-Api-Key` works as on the rest of the public API.
    let refused = call(&chat, "ap_not-a-key", reqwest::Method::GET, "/models", None).await;
    assert_eq!(openai_error(&refused, 401)["code"], "invalid_api_key");
    let by_header = chat.get_with_key("/api/v1/openai/models", &key).await;
    assert_eq!(by_header.status, 200, "{}", by_header.text);
    assert_eq!(by_header.json["object"], "list");
}

#[tokio::test]
async fn a_completion_is_grounded_keeps_the_avatars_prompt_and_takes_the_clients_history() {
    let chat = openai_app(Reply::answer(ANSWER, (321, 17))).await;
    let key = chat.api_key().await;
    let openai = client(&chat, &key);
    let mut asked = request(
        "r-guide",
        vec![
            ChatCompletionRequestSystemMessage::from("Answer in one sentence.").into(),
            user("I use R 4.4."),
            ChatCompletionRequestAssistantMessage::from("Noted: R 4.4.").into(),
            user(QUESTION),
        ],
    );
    asked.temperature = Some(1.5);
    asked.max_completion_tokens = Some(50);
    // Deprecated by OpenAI for `safety_identifier` (also taken), still what most clients send.
    #[allow(deprecated)]
    {
        asked.user = Some("customer-42".into());
    }
    let completion = openai.chat().create(asked).await.unwrap();

    assert!(completion.id.starts_with("chatcmpl-"), "{}", completion.id);
    assert_eq!(completion.object, "chat.completion");
    assert_eq!(completion.model, "r-guide");
    assert_eq!(completion.choices.len(), 1);
    let choice = &completion.choices[0];
    assert_eq!(choice.message.content.as_deref(), Some(ANSWER));
    assert_eq!(choice.finish_reason, Some(FinishReason::Stop));
    let usage = completion.usage.expect("usage");
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (321, 17, 338)
    );

    // What the model was asked: the avatar's prompt first, then the client's instructions and
    // the passage as source [1]; the client's history; the question last. Sampling within the
    // avatar's settings (temperature 0.7, max_tokens 200).
    let requests = chat.llm.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    let messages = sent["messages"].as_array().unwrap();
    let system = messages[0]["content"].as_str().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert!(
        system.starts_with("You are the R guide of the team.\n\nAnswer in one sentence."),
        "{system}"
    );
    assert!(system.contains("[1] guide.md"), "{system}");
    assert!(
        system.contains("update.packages() updates every"),
        "{system}"
    );
    let rest: Vec<(&str, &str)> = messages[1..]
        .iter()
        .map(|message| {
            (
                message["role"].as_str().unwrap(),
                message["content"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rest,
        [
            ("user", "I use R 4.4."),
            ("assistant", "Noted: R 4.4."),
            ("user", QUESTION)
        ]
    );
    assert!(
        (sent["temperature"].as_f64().unwrap() - 0.7).abs() < 1e-6,
        "{sent}"
    );
    assert_eq!(sent["max_tokens"], 50);

    // The sources ride along in a field of their own, and `user` is an end user of channel
    // `api` whose conversation keeps the question and the answer.
    let raw = call(
        &chat,
        &key,
        reqwest::Method::POST,
        "/chat/completions",
        Some(json!({"model": "r-guide", "user": "customer-42",
                    "messages": [{"role": "user", "content": QUESTION}]})),
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.text);
    assert_eq!(
        raw.json["sources"][0]["document_id"],
        chat.document.to_string()
    );
    let end_users = chat
        .app
        .get_as(
            &chat.owner,
            &format!("/api/v1/projects/{}/end-users", chat.pid),
        )
        .await;
    assert_eq!(end_users.status, 200, "{}", end_users.text);
    let customer: Vec<&Value> = end_users.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|end_user| end_user["external_id"] == "customer-42")
        .collect();
    assert_eq!(customer.len(), 1, "{}", end_users.text);
    assert_eq!(customer[0]["channel"], "api");
    let conversations = chat
        .app
        .get_as(
            &chat.owner,
            &format!(
                "/api/v1/projects/{}/conversations?end_user_id={}",
                chat.pid,
                customer[0]["id"].as_str().unwrap()
            ),
        )
        .await;
    let items = conversations.json["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        1,
        "one conversation for both questions: {}",
        conversations.text
    );
    assert_eq!(items[0]["messages_count"], 4, "{}", conversations.text);
    assert_eq!(items[0]["title"], "OpenAI-compatible API");
    // The same person through the public chat API starts a conversation of their own: the
    // OpenAI turns never become its history.
    let public = chat
        .public_chat(
            &key,
            chat.aid,
            &json!({"end_user": {"external_id": "customer-42"}, "message": QUESTION}),
        )
        .await;
    assert_eq!(public.status, 200, "{}", public.text);
    assert_ne!(public.json["conversation_id"], items[0]["id"]);
    let last = chat.llm.requests().pop().unwrap();
    assert_eq!(
        last["messages"].as_array().unwrap().len(),
        2,
        "system and question only: {last}"
    );
}

#[tokio::test]
async fn a_streamed_completion_sends_chunks_then_the_usage_then_done() {
    let chat = openai_app(Reply::answer(ANSWER, (40, 12))).await;
    let key = chat.api_key().await;
    let openai = client(&chat, &key);
    let mut asked = request("r-guide", vec![user(QUESTION)]);
    asked.stream_options = Some(ChatCompletionStreamOptions {
        include_usage: Some(true),
        include_obfuscation: None,
    });
    let mut stream = openai.chat().create_stream(asked).await.unwrap();
    let (mut text, mut finish, mut usage, mut ids) = (String::new(), None, None, Vec::new());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert_eq!(chunk.object, "chat.completion.chunk");
        ids.push(chunk.id.clone());
        for choice in &chunk.choices {
            text.push_str(choice.delta.content.as_deref().unwrap_or(""));
            if choice.finish_reason.is_some() {
                finish = choice.finish_reason;
            }
        }
        if let Some(reported) = chunk.usage {
            assert!(chunk.choices.is_empty(), "the usage chunk has no choices");
            usage = Some(reported);
        }
    }
    assert_eq!(text, ANSWER);
    assert_eq!(finish, Some(FinishReason::Stop));
    let usage = usage.expect("the usage chunk");
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (40, 12));
    ids.dedup();
    assert_eq!(ids.len(), 1, "one id for every chunk");

    // On the wire: the role first, `[DONE]` last, the sources with the finish reason.
    let raw = call(
        &chat,
        &key,
        reqwest::Method::POST,
        "/chat/completions",
        Some(json!({"model": "r-guide", "stream": true,
                    "messages": [{"role": "user", "content": QUESTION}]})),
    )
    .await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.header("content-type"), Some("text/event-stream"));
    let events: Vec<&str> = raw
        .text
        .split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| event.strip_prefix("data: ").expect("data events only"))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"));
    let first: Value = serde_json::from_str(events[0]).unwrap();
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert!(
        first.get("usage").is_none(),
        "no usage field without include_usage"
    );
    let last: Value = serde_json::from_str(events[events.len() - 2]).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["sources"][0]["filename"], "guide.md");
}

#[tokio::test]
async fn errors_take_openais_shape_and_statuses() {
    let chat = openai_app(Reply::answer(ANSWER, (5, 5))).await;
    let key = chat.api_key().await;
    let post = |body: Value| {
        let (chat, key) = (&chat, key.clone());
        async move {
            call(
                chat,
                &key,
                reqwest::Method::POST,
                "/chat/completions",
                Some(body),
            )
            .await
        }
    };
    let question = json!([{"role": "user", "content": QUESTION}]);
    for (body, param) in [
        (
            json!({"model": "r-guide", "messages": question, "tools": [{"type": "function",
                "function": {"name": "f"}}]}),
            "tools",
        ),
        (
            json!({"model": "r-guide", "messages": question, "n": 2}),
            "n",
        ),
        (
            json!({"model": "r-guide", "messages": question,
                "response_format": {"type": "json_object"}}),
            "response_format",
        ),
        (
            json!({"model": "r-guide", "messages": question, "logprobs": true}),
            "logprobs",
        ),
        (
            json!({"model": "r-guide", "messages": question, "temperature": 3}),
            "temperature",
        ),
        (
            json!({"model": "r-guide", "messages": [{"role": "assistant", "content": "hi"}]}),
            "messages",
        ),
        (
            json!({"model": "r-guide", "messages": [{"role": "tool", "content": "x"},
                                                 {"role": "user", "content": "q"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "r-guide", "messages": "not a list"}),
            "messages",
        ),
        (json!({"messages": question}), "model"),
        (
            json!({"model": "r-guide", "messages": [{"role": "user", "content": "x".repeat(100_000)}]}),
            "messages[0].content",
        ),
        (
            json!({"model": "r-guide", "messages": question, "user": "api-key:123"}),
            "user",
        ),
    ] {
        let response = post(body.clone()).await;
        let error = openai_error(&response, 400);
        assert_eq!(error["type"], "invalid_request_error", "{body}");
        assert_eq!(error["param"], param, "{body}: {}", response.text);
    }
    // Unknown extra fields are ignored, as OpenAI's own server does.
    let extra = post(json!({"model": "r-guide", "messages": question, "seed": 7,
                            "frequency_penalty": 0, "metadata": {"a": "b"}}))
    .await;
    assert_eq!(extra.status, 200, "{}", extra.text);
    let broken = chat
        .app
        .send(
            chat.app
                .client
                .post(chat.app.url("/api/v1/openai/chat/completions"))
                .bearer_auth(&key)
                .header("Content-Type", "application/json")
                .body("{not json"),
        )
        .await;
    openai_error(&broken, 400);
    let unknown = post(json!({"model": "nobody", "messages": question})).await;
    assert_eq!(openai_error(&unknown, 404)["code"], "model_not_found");
    assert_eq!(
        chat.llm.requests().len(),
        1,
        "only the valid request reached the model"
    );

    // A key without the `chat` scope: 403.
    let embeddings_only = chat
        .create_api_key(&json!({"name": "vectors", "scopes": ["embeddings"]}))
        .await;
    let narrow = embeddings_only.json["key"].as_str().unwrap();
    let forbidden = call(&chat, narrow, reqwest::Method::GET, "/models", None).await;
    assert_eq!(openai_error(&forbidden, 403)["type"], "permission_error");

    // An exhausted budget is OpenAI's `insufficient_quota` (429), and costs no model call.
    let admin = chat.app.admin().await;
    let plan = json!({"code": "tiny", "name": "tiny", "monthly_token_limit": 10,
                      "max_avatars": 10, "max_documents": 10, "max_storage_mb": 10,
                      "requests_per_minute": 1000});
    let created = chat.app.post_as(&admin, "/api/v1/admin/plans", &plan).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let moved = chat
        .app
        .put_as(
            &admin,
            &format!("/api/v1/admin/projects/{}/plan", chat.pid),
            &json!({"plan_code": "tiny"}),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.text);
    let (status, error) = api_error(
        client(&chat, &key)
            .chat()
            .create(request("r-guide", vec![user(QUESTION)]))
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 429);
    assert_eq!(error.code.as_deref(), Some("insufficient_quota"));
    assert_eq!(chat.llm.requests().len(), 1);
}

#[tokio::test]
async fn embeddings_are_the_deployments_embedder_metered_and_scoped() {
    use async_openai::types::embeddings::{CreateEmbeddingRequest, EmbeddingInput};
    use avatar_platform::core::embeddings::{Embedder, LexicalEmbedder};
    use base64::Engine;

    let chat = openai_app(Reply::answer(ANSWER, (5, 5))).await;
    let key = chat.api_key().await;
    let texts = vec![
        "install.packages updates nothing".to_owned(),
        "update.packages()".to_owned(),
    ];
    let created = client(&chat, &key)
        .embeddings()
        .create(CreateEmbeddingRequest {
            model: "local-lexical-v1".into(),
            input: EmbeddingInput::StringArray(texts.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(created.model, "local-lexical-v1");
    assert_eq!(created.data.len(), 2);
    // The deployment's own embedder (the tests run the lexical one), in order.
    let dimension = created.data[0].embedding.len();
    let expected = LexicalEmbedder::new(dimension)
        .unwrap()
        .embed(&texts)
        .await
        .unwrap();
    for (index, embedding) in created.data.iter().enumerate() {
        assert_eq!(embedding.index as usize, index);
        assert_eq!(embedding.object, "embedding");
        assert_eq!(embedding.embedding, expected[index]);
    }
    assert!(created.usage.prompt_tokens > 0);
    assert_eq!(created.usage.prompt_tokens, created.usage.total_tokens);

    // base64: the same floats, little-endian.
    let raw = call(
        &chat,
        &key,
        reqwest::Method::POST,
        "/embeddings",
        Some(json!({"model": "local-lexical-v1", "input": texts[1], "encoding_format": "base64"})),
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.text);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw.json["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let floats: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|four| f32::from_le_bytes(four.try_into().unwrap()))
        .collect();
    assert_eq!(floats, expected[1]);

    // In the usage ledger, as embedding tokens of the project.
    let ledger = chat
        .app
        .get_as(
            &chat.owner,
            &format!("/api/v1/projects/{}/billing/usage?limit=200", chat.pid),
        )
        .await;
    let metered: Vec<&Value> = ledger.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["kind"] == "embedding" && row["document_id"].is_null())
        .collect();
    assert_eq!(metered.len(), 2, "{}", ledger.text);
    assert!(
        metered.iter().any(
            |row| row["prompt_tokens"].as_u64() == Some(u64::from(created.usage.prompt_tokens))
        ),
        "{}",
        ledger.text
    );

    // Another model, a bad input, a wrong length: OpenAI's errors. A chat-only key: 403.
    let post = |body: Value, key: String| {
        let chat = &chat;
        async move { call(chat, &key, reqwest::Method::POST, "/embeddings", Some(body)).await }
    };
    let other = post(
        json!({"model": "text-embedding-3-small", "input": "x"}),
        key.clone(),
    )
    .await;
    assert_eq!(openai_error(&other, 404)["code"], "model_not_found");
    let empty = post(
        json!({"model": "local-lexical-v1", "input": ["ok", " "]}),
        key.clone(),
    )
    .await;
    assert_eq!(openai_error(&empty, 400)["param"], "input[1]");
    let bad_tokens = post(
        json!({"model": "local-lexical-v1", "input": [u32::MAX]}),
        key.clone(),
    )
    .await;
    assert_eq!(openai_error(&bad_tokens, 400)["param"], "input");
    // Token ids (cl100k, as LangChain sends them) are the text they spell.
    let ids = avatar_platform::core::tokens::cl100k()
        .unwrap()
        .encode_ordinary(&texts[1]);
    let by_tokens = post(
        json!({"model": "local-lexical-v1", "input": [ids]}),
        key.clone(),
    )
    .await;
    assert_eq!(by_tokens.status, 200, "{}", by_tokens.text);
    let vector: Vec<f32> =
        serde_json::from_value(by_tokens.json["data"][0]["embedding"].clone()).unwrap();
    assert_eq!(vector, expected[1]);
    let length = post(
        json!({"model": "local-lexical-v1", "input": "x", "dimensions": dimension + 1}),
        key.clone(),
    )
    .await;
    assert_eq!(openai_error(&length, 400)["param"], "dimensions");
    let chat_only = chat
        .create_api_key(&json!({"name": "chat", "scopes": ["chat"]}))
        .await;
    let narrow = chat_only.json["key"].as_str().unwrap().to_owned();
    let refused = post(json!({"model": "local-lexical-v1", "input": "x"}), narrow).await;
    assert_eq!(openai_error(&refused, 403)["type"], "permission_error");
}

/// `scripts/openai-smoke.sh` (the official `openai` Python SDK, installed from PyPI under
/// .tools/) against an app whose avatar knows the R FAQ (the real PDF) and has no LLM: the
/// retrieval-only answer quotes the passage, streamed through the SDK.
#[tokio::test]
async fn the_official_python_sdk_streams_a_grounded_answer() {
    use crate::documents::settled;
    use crate::helpers::{AppOptions, spawn_app_with};

    let app = spawn_app_with(AppOptions {
        workers: 2,
        ..AppOptions::default()
    })
    .await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "faq").await;
    let aid = app.avatar(&owner, pid, "R FAQ").await;
    let documents = format!("/api/v1/projects/{pid}/avatars/{aid}/documents");
    let pdf = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/R-FAQ.pdf"
    ))
    .unwrap();
    let uploaded = app.upload(&owner, &documents, "R-FAQ.pdf", pdf).await;
    assert_eq!(uploaded.status, 202, "{}", uploaded.text);
    let document = uploaded.json["id"].as_str().unwrap().to_owned();
    let ready = settled(&app, &owner, &format!("{documents}/{document}")).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    let key = app
        .post_as(
            &owner,
            &format!("/api/v1/projects/{pid}/api-keys"),
            &json!({"name": "sdk"}),
        )
        .await;
    assert_eq!(key.status, 201, "{}", key.text);

    let output = tokio::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/openai-smoke.sh"
    ))
    .args([
        "--base-url",
        &app.url("/api/v1/openai"),
        "--key",
        key.json["key"].as_str().unwrap(),
        "--model",
        "r-faq",
        "--question",
        "What is R? A system for statistical computation and graphics?",
        "--expect",
        "statistical computation and graphics",
        "--embedding-model",
        "local-lexical-v1",
    ])
    .output()
    .await
    .expect("scripts/openai-smoke.sh runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let seen: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(seen["models"], json!(["r-faq"]));
    assert!(seen["streamed_chunks"].as_u64().unwrap() >= 3, "{seen}");
}

#[tokio::test]
async fn a_key_restricted_to_some_avatars_reaches_only_those() {
    let chat = openai_app(Reply::answer(ANSWER, (5, 5))).await;
    let sales = chat.app.avatar(&chat.owner, chat.pid, "Sales Desk").await;
    let created = chat
        .create_api_key(&json!({"name": "sales site", "avatar_ids": [sales, sales]}))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(
        created.json["avatar_ids"],
        json!([sales]),
        "repeats dropped"
    );
    let key = created.json["key"].as_str().unwrap().to_owned();

    let openai = client(&chat, &key);
    let models = openai.models().list().await.unwrap();
    let ids: Vec<&str> = models.data.iter().map(|model| model.id.as_str()).collect();
    assert_eq!(ids, ["sales-desk"]);
    for unreachable in ["r-guide".to_owned(), chat.aid.to_string()] {
        let (status, error) = api_error(openai.models().retrieve(&unreachable).await.unwrap_err());
        assert_eq!(
            (status, error.code.as_deref()),
            (404, Some("model_not_found"))
        );
        let (status, _) = api_error(
            openai
                .chat()
                .create(request(&unreachable, vec![user(QUESTION)]))
                .await
                .unwrap_err(),
        );
        assert_eq!(status, 404);
    }
    // The public chat API holds to it too; the key says what it reaches.
    let public = chat
        .public_chat(
            &key,
            chat.aid,
            &json!({"end_user": {"external_id": "u"}, "message": QUESTION}),
        )
        .await;
    public.error(404, "NOT_FOUND");
    assert!(chat.llm.requests().is_empty(), "no answer was started");
    let identity = chat.get_with_key("/api/v1/public/api-key", &key).await;
    assert_eq!(
        identity.json["avatar_ids"],
        json!([sales]),
        "{}",
        identity.text
    );

    // Only the project's own avatars, and at least one.
    let other_owner = chat.app.user("other").await;
    let other_project = chat.app.project(&other_owner, "other").await;
    let theirs = chat.app.avatar(&other_owner, other_project, "Theirs").await;
    for avatar_ids in [json!([sales, theirs]), json!([])] {
        let refused = chat
            .create_api_key(&json!({"name": "k", "avatar_ids": avatar_ids}))
            .await;
        assert_eq!(
            refused.error(422, "VALIDATION_ERROR")["field"],
            "avatar_ids",
            "{avatar_ids}"
        );
    }
}

#[tokio::test]
async fn without_user_the_key_asks_and_the_keys_rate_is_shared_with_the_public_api() {
    use crate::helpers::early_in_window;

    let chat = chat_app(
        &[("APP__CHAT__PUBLIC_REQUESTS_PER_MINUTE", "3")],
        Reply::answer(ANSWER, (5, 5)),
        true,
    )
    .await;
    let created = chat.create_api_key(&json!({"name": "website"})).await;
    let (key, key_id) = (
        created.json["key"].as_str().unwrap().to_owned(),
        created.json["id"].as_str().unwrap().to_owned(),
    );
    early_in_window(std::time::Duration::from_secs(60)).await;
    let openai = client(&chat, &key);
    for _ in 0..2 {
        openai
            .chat()
            .create(request("r-guide", vec![user(QUESTION)]))
            .await
            .unwrap();
    }
    // The key's own end user asked both.
    let end_users = chat
        .app
        .get_as(
            &chat.owner,
            &format!("/api/v1/projects/{}/end-users", chat.pid),
        )
        .await;
    let items = end_users.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", end_users.text);
    assert_eq!(items[0]["external_id"], format!("api-key:{key_id}"));
    assert_eq!(items[0]["display_name"], "API key website");
    assert_eq!(items[0]["messages_count"], 2, "{}", end_users.text);

    // The third request of the minute goes through the public chat API; the fourth is over.
    let public = chat
        .public_chat(
            &key,
            chat.aid,
            &json!({"end_user": {"external_id": "u"}, "message": QUESTION}),
        )
        .await;
    assert_eq!(public.status, 200, "{}", public.text);
    let limited = call(
        &chat,
        &key,
        reqwest::Method::POST,
        "/chat/completions",
        Some(json!({"model": "r-guide", "messages": [{"role": "user", "content": QUESTION}]})),
    )
    .await;
    let error = openai_error(&limited, 429);
    assert_eq!(
        (&error["type"], &error["code"]),
        (&json!("rate_limit_error"), &json!("rate_limit_exceeded"))
    );
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(chat.llm.requests().len(), 3);
}
