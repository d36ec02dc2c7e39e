//! The chat pipeline over HTTP against a local OpenAI-compatible server: grounded answers with
//! sources, the prompt, history trimming, SSE, client disconnects, upstream failures,
//! retrieval-only answers, the public API with its key and rate limit, end users, tenancy and
//! erasure.

use std::sync::Arc;
use std::time::Duration;

use avatar_platform::core::clock::ManualClock;

use avatar_platform::core::llm::count_tokens;
use futures_util::StreamExt;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::documents::{GUIDE, settled};
use crate::fake_openai::{FakeOpenAi, Reply, pieces};
use crate::fixtures::TestUser;
use crate::helpers::{AppOptions, TestApp, TestResponse, eventually, spawn_app_with};

pub const ANSWER: &str = "Run update.packages() to update every installed package [1].";

/// An app with workers, a project whose avatar knows [`GUIDE`], and (unless `None`) the fake
/// LLM configured for the project.
pub struct Chat {
    pub app: TestApp,
    pub owner: TestUser,
    pub pid: Uuid,
    pub aid: Uuid,
    pub document: Uuid,
    pub llm: FakeOpenAi,
}

/// [`chat_app_with`] with the fake LLM's address (loopback) on the outbound allow-list, as an
/// operator running the LLM next to the platform would have it.
pub async fn chat_app(overrides: &[(&str, &str)], fallback: Reply, configure_llm: bool) -> Chat {
    let mut overrides = overrides.to_vec();
    overrides.push(("APP__OUTBOUND__ALLOWED_HOSTS", "127.0.0.1"));
    chat_app_with(&overrides, fallback, configure_llm).await
}

pub async fn chat_app_with(
    overrides: &[(&str, &str)],
    fallback: Reply,
    configure_llm: bool,
) -> Chat {
    chat_app_at(overrides, fallback, configure_llm, None).await
}

/// [`chat_app_with`] on `clock` (the system's when `None`).
pub async fn chat_app_at(
    overrides: &[(&str, &str)],
    fallback: Reply,
    configure_llm: bool,
    clock: Option<Arc<ManualClock>>,
) -> Chat {
    let app = spawn_app_with(AppOptions {
        overrides,
        workers: 2,
        clock,
        ..AppOptions::default()
    })
    .await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "chat").await;
    let response = app
        .create_avatar(
            &owner,
            pid,
            &json!({"name": "R guide", "system_prompt": "You are the R guide of the team.",
                    "llm": {"model": "fake-model", "max_tokens": 200}}),
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.text);
    let aid = id_of(&response.json);
    let documents = format!("/api/v1/projects/{pid}/avatars/{aid}/documents");
    let uploaded = app
        .upload(&owner, &documents, "guide.md", GUIDE.as_bytes().to_vec())
        .await;
    assert_eq!(uploaded.status, 202, "{}", uploaded.text);
    let document = id_of(&uploaded.json);
    let ready = settled(&app, &owner, &format!("{documents}/{document}")).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    let llm = FakeOpenAi::chat(fallback).await;
    if configure_llm {
        let put = app
            .put_as(
                &owner,
                &format!("/api/v1/projects/{pid}/secrets/LLM_BASE_URL"),
                &json!({"value": llm.url}),
            )
            .await;
        assert_eq!(put.status, 204, "{}", put.text);
    }
    Chat {
        app,
        owner,
        pid,
        aid,
        document,
        llm,
    }
}

pub fn id_of(json: &Value) -> Uuid {
    Uuid::parse_str(json["id"].as_str().expect("an id")).unwrap()
}

impl Chat {
    pub async fn conversation(&self) -> Uuid {
        let response = self
            .app
            .post_as(
                &self.owner,
                &format!(
                    "/api/v1/projects/{}/avatars/{}/conversations",
                    self.pid, self.aid
                ),
                &json!({"title": "trying"}),
            )
            .await;
        assert_eq!(response.status, 201, "{}", response.text);
        assert_eq!(response.json["channel"], "playground");
        id_of(&response.json)
    }

    fn messages_path(&self, conversation: Uuid) -> String {
        format!(
            "/api/v1/projects/{}/conversations/{conversation}/messages",
            self.pid
        )
    }

    pub async fn ask(&self, conversation: Uuid, content: &str) -> TestResponse {
        self.app
            .post_as(
                &self.owner,
                &self.messages_path(conversation),
                &json!({"content": content}),
            )
            .await
    }

    pub async fn ask_streaming(&self, conversation: Uuid, content: &str) -> TestResponse {
        self.app
            .send(
                self.app
                    .client
                    .post(self.app.url(&self.messages_path(conversation)))
                    .bearer_auth(&self.owner.access_token)
                    .header("Accept", "text/event-stream")
                    .json(&json!({"content": content})),
            )
            .await
    }

    pub async fn messages(&self, conversation: Uuid) -> Vec<Value> {
        let response = self
            .app
            .get_as(&self.owner, &self.messages_path(conversation))
            .await;
        assert_eq!(response.status, 200, "{}", response.text);
        response.json["items"].as_array().unwrap().clone()
    }

    pub async fn api_key(&self) -> String {
        let response = self.create_api_key(&json!({"name": "website"})).await;
        assert_eq!(response.status, 201, "{}", response.text);
        response.json["key"].as_str().unwrap().to_owned()
    }

    /// `POST /projects/{pid}/api-keys` with `body`, by the owner, as answered.
    pub async fn create_api_key(&self, body: &Value) -> TestResponse {
        self.app
            .post_as(
                &self.owner,
                &format!("/api/v1/projects/{}/api-keys", self.pid),
                body,
            )
            .await
    }

    /// `GET path` with the API key `key` in `X-Api-Key`.
    pub async fn get_with_key(&self, path: &str, key: &str) -> TestResponse {
        self.app
            .send(
                self.app
                    .client
                    .get(self.app.url(path))
                    .header("X-Api-Key", key),
            )
            .await
    }

    /// The public API's answer to `message` from the end user `external_id` (200 expected).
    pub async fn public_answer(&self, key: &str, external_id: &str, message: &str) -> Value {
        let body = json!({"end_user": {"external_id": external_id}, "message": message});
        let answered = self.public_chat(key, self.aid, &body).await;
        assert_eq!(answered.status, 200, "{}", answered.text);
        answered.json
    }

    /// Column `n` of `sql`'s first row, with `$1` bound to `value`.
    pub async fn number(&self, sql: &str, value: Uuid) -> i64 {
        self.app
            .context
            .db
            .query_one_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                sql,
                [value.into()],
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get("", "n")
            .unwrap()
    }

    /// The project's reserved tokens plus its open reservations: 0 once every answer settled.
    pub async fn still_reserved(&self) -> i64 {
        self.number(
            "SELECT s.tokens_reserved + (SELECT count(*) FROM token_reservations r \
             WHERE r.project_id = s.project_id) AS n FROM subscriptions s WHERE project_id = $1",
            self.pid,
        )
        .await
    }

    pub async fn public_chat(&self, key: &str, avatar: Uuid, body: &Value) -> TestResponse {
        self.app
            .send(
                self.app
                    .client
                    .post(
                        self.app
                            .url(&format!("/api/v1/public/avatars/{avatar}/chat")),
                    )
                    .header("X-Api-Key", key)
                    .json(body),
            )
            .await
    }
}

/// `(event, data)` of each SSE frame.
pub fn frames(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|frame| !frame.trim().is_empty())
        .map(|frame| {
            let mut event = String::new();
            let mut data = Value::Null;
            for line in frame.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = name.to_owned();
                } else if let Some(json) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(json).expect("JSON data");
                }
            }
            (event, data)
        })
        .collect()
}

/// Polls until `check` passes on the conversation's messages.
pub async fn messages_when(
    chat: &Chat,
    conversation: Uuid,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    eventually(Duration::from_secs(20), "the messages settle", || async {
        let messages = chat.messages(conversation).await;
        if check(&messages) {
            Ok(messages)
        } else {
            Err(messages)
        }
    })
    .await
}

/// Polls until the fake LLM saw a client hang up on one of its streams.
async fn wait_for_hang_up(chat: &Chat, within: Duration) {
    eventually(within, "the upstream stream is stopped", || async {
        match chat.llm.hung_up() {
            0 => Err(format!("streams completed: {}", chat.llm.completed())),
            _ => Ok(()),
        }
    })
    .await;
}

#[tokio::test]
async fn an_answer_cites_the_uploaded_document_and_the_prompt_holds_the_passage() {
    let chat = chat_app(&[], Reply::answer(ANSWER, (321, 17)), true).await;
    let conversation = chat.conversation().await;
    let response = chat
        .ask(conversation, "How do I update installed packages?")
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    let answer = &response.json["assistant_message"];
    assert_eq!(answer["content"], ANSWER);
    assert_eq!(answer["model"], "fake-model");
    assert_eq!(answer["finish_reason"], "stop");
    assert_eq!(
        answer["usage"],
        json!({"prompt_tokens": 321, "completion_tokens": 17})
    );
    assert_eq!(
        answer["sources"][0]["document_id"],
        chat.document.to_string()
    );
    assert_eq!(answer["sources"][0]["filename"], "guide.md");
    let timings = &answer["timings"];
    assert!(timings["total_ms"].as_u64().unwrap() >= timings["retrieval_ms"].as_u64().unwrap());
    assert!(timings["time_to_first_token_ms"].is_u64(), "{timings}");
    assert_eq!(
        response.json["user_message"]["content"],
        "How do I update installed packages?"
    );

    // What the model was asked: the avatar's prompt, the passage as source [1], the question.
    let requests = chat.llm.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request["model"], "fake-model");
    assert_eq!(request["stream"], true);
    assert_eq!(request["stream_options"]["include_usage"], true);
    assert_eq!(request["max_tokens"], 200);
    let system = request["messages"][0]["content"].as_str().unwrap();
    assert_eq!(request["messages"][0]["role"], "system");
    assert!(
        system.starts_with("You are the R guide of the team."),
        "{system}"
    );
    assert!(system.contains("[1] guide.md"), "{system}");
    assert!(
        system.contains("update.packages() updates every"),
        "{system}"
    );
    let last = request["messages"].as_array().unwrap().last().unwrap();
    assert_eq!(last["role"], "user");
    assert_eq!(last["content"], "How do I update installed packages?");

    // Stored, oldest first, and announced.
    let messages = chat.messages(conversation).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[1]["id"], answer["id"]);
    assert_eq!(messages[1]["timings"], answer["timings"]);
    let completed = chat.app.events_of_type("chat.message_completed").await;
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0]["event"]["message_id"], answer["id"]);
    let usage = chat.app.events_of_type("chat.usage_recorded").await;
    assert_eq!(usage[0]["event"]["prompt_tokens"], 321);
    assert_eq!(usage[0]["event"]["completion_tokens"], 17);
}

#[tokio::test]
async fn the_stream_sends_deltas_then_sources_then_done_and_tells_proxies_not_to_buffer() {
    let chat = chat_app(&[], Reply::answer(ANSWER, (100, 12)), true).await;
    let conversation = chat.conversation().await;
    let response = chat
        .ask_streaming(conversation, "How do I update installed packages?")
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    assert_eq!(response.header("cache-control"), Some("no-cache"));
    assert_eq!(response.header("x-accel-buffering"), Some("no"));
    let frames = frames(&response.text);
    let names: Vec<&str> = frames.iter().map(|(name, _)| name.as_str()).collect();
    let deltas = names.iter().filter(|name| **name == "delta").count();
    assert_eq!(deltas, pieces(ANSWER).len());
    let mut expected = vec!["start"];
    expected.extend(std::iter::repeat_n("delta", deltas));
    expected.extend(["sources", "done"]);
    assert_eq!(names, expected);
    let text: String = frames
        .iter()
        .filter(|(name, _)| name == "delta")
        .map(|(_, data)| data["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, ANSWER);
    let sources = &frames[frames.len() - 2].1["sources"];
    assert_eq!(sources[0]["document_id"], chat.document.to_string());
    let done = &frames.last().unwrap().1;
    assert_eq!(
        done["usage"],
        json!({"prompt_tokens": 100, "completion_tokens": 12})
    );
    assert!(done["timings"]["total_ms"].is_u64());
    let stored = chat.messages(conversation).await;
    assert_eq!(stored[1]["id"], done["message_id"]);
    assert_eq!(stored[1]["content"], ANSWER);
}

#[tokio::test]
async fn missing_usage_is_counted_with_the_tokenizer() {
    let reply = Reply::Stream {
        chunks: pieces(ANSWER),
        gap: Duration::ZERO,
        usage: None,
        break_after: None,
    };
    let chat = chat_app(&[], reply, true).await;
    let conversation = chat.conversation().await;
    let response = chat.ask(conversation, "How do I update packages?").await;
    assert_eq!(response.status, 200, "{}", response.text);
    let answer = &response.json["assistant_message"];
    assert_eq!(answer["usage"]["completion_tokens"], count_tokens(ANSWER));
    let prompt_tokens = answer["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(
        prompt_tokens > u64::from(count_tokens(GUIDE) / 2),
        "{prompt_tokens}"
    );
    assert_eq!(answer["message_metadata"]["usage_estimated"], true);
}

#[tokio::test]
async fn history_is_trimmed_to_its_token_budget_newest_first() {
    let chat = chat_app(
        &[("APP__CHAT__HISTORY_TOKEN_BUDGET", "60")],
        Reply::answer("Noted.", (10, 2)),
        true,
    )
    .await;
    let conversation = chat.conversation().await;
    for turn in 1..=6 {
        let question = format!("Question number {turn}: tell me about packages and memory please.");
        assert_eq!(chat.ask(conversation, &question).await.status, 200);
    }
    let requests = chat.llm.requests();
    let last: Vec<String> = requests[5]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| message["content"].as_str().unwrap().to_owned())
        .collect();
    // System prompt, then only the newest history that fits 60 tokens, then the question.
    assert!(last.len() < 1 + 10 + 1, "{last:?}");
    assert!(last.len() >= 3, "{last:?}");
    assert!(last[last.len() - 1].starts_with("Question number 6"));
    assert_eq!(last[last.len() - 2], "Noted.");
    assert!(
        last[last.len() - 3].starts_with("Question number 5"),
        "{last:?}"
    );
    assert!(
        !last
            .iter()
            .any(|text| text.starts_with("Question number 1")),
        "{last:?}"
    );
    let history_tokens: u32 = last[1..last.len() - 1]
        .iter()
        .map(|text| count_tokens(text) + 4)
        .sum();
    assert!(history_tokens <= 60, "{history_tokens}");
}

#[tokio::test]
async fn a_client_that_disconnects_stops_the_upstream_and_the_partial_answer_is_charged() {
    let slow = Reply::Stream {
        chunks: (0..100).map(|n| format!("word{n} ")).collect(),
        gap: Duration::from_millis(100),
        usage: Some((50, 100)),
        break_after: None,
    };
    let chat = chat_app(&[], slow, true).await;
    let conversation = chat.conversation().await;
    let response = chat
        .app
        .client
        .post(chat.app.url(&chat.messages_path(conversation)))
        .bearer_auth(&chat.owner.access_token)
        .header("Accept", "text/event-stream")
        .json(&json!({"content": "Tell me everything about packages."}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("event: delta") {
        let piece = body.next().await.expect("more").unwrap();
        seen.push_str(&String::from_utf8_lossy(&piece));
    }
    drop(body);

    let messages = messages_when(&chat, conversation, |messages| messages.len() == 2).await;
    let answer = &messages[1];
    assert_eq!(answer["finish_reason"], "client_disconnected");
    let content = answer["content"].as_str().unwrap();
    assert!(content.starts_with("word0 "), "{content}");
    assert!(!content.contains("word99"), "{content}");
    // Charged for what was produced (the server never got to report its usage).
    assert_eq!(answer["usage"]["completion_tokens"], count_tokens(content));
    assert!(answer["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let usage = chat.app.events_of_type("chat.usage_recorded").await;
    assert_eq!(usage.len(), 1);
    // The upstream request was dropped, not read to its end.
    wait_for_hang_up(&chat, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn upstream_failures_are_retried_before_the_first_token_and_reported_after_it() {
    let chat = chat_app(
        &[("APP__CHAT__MAX_RETRIES", "2")],
        Reply::answer(ANSWER, (10, 10)),
        true,
    )
    .await;
    let conversation = chat.conversation().await;

    // 429 then 500, then an answer: the client never notices.
    chat.llm.then([Reply::Status(429), Reply::Status(500)]);
    let response = chat.ask(conversation, "How do I update packages?").await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json["assistant_message"]["content"], ANSWER);
    assert_eq!(chat.llm.requests().len(), 3);

    // Failing every time: 502 with the upstream's reason, nothing stored for the answer.
    chat.llm
        .then([Reply::Status(500), Reply::Status(500), Reply::Status(500)]);
    let failed = chat.ask(conversation, "And memory?").await;
    let error = failed.error(502, "EXTERNAL_SERVICE_ERROR");
    assert!(
        error["message"].as_str().unwrap().contains("500"),
        "{error}"
    );
    assert_eq!(chat.messages(conversation).await.len(), 3);

    // A 4xx is not retried.
    let before = chat.llm.requests().len();
    chat.llm.then([Reply::Status(401)]);
    chat.ask(conversation, "And gc?")
        .await
        .error(502, "EXTERNAL_SERVICE_ERROR");
    assert_eq!(chat.llm.requests().len(), before + 1);

    // Broken off after the answer started: the stream says so, the partial answer is kept.
    // (A gap, so the first pieces are on the wire before the cut.)
    chat.llm.then([Reply::Stream {
        chunks: pieces(ANSWER),
        gap: Duration::from_millis(30),
        usage: Some((10, 10)),
        break_after: Some(3),
    }]);
    let before = chat.llm.requests().len();
    let broken = chat.ask_streaming(conversation, "Once more?").await;
    assert_eq!(
        chat.llm.requests().len(),
        before + 1,
        "not retried after the first token"
    );
    assert_eq!(broken.status, 200);
    let frames = frames(&broken.text);
    let (last_name, last) = frames.last().unwrap();
    assert_eq!(last_name, "error", "{frames:?}");
    assert_eq!(last["code"], "EXTERNAL_SERVICE_ERROR");
    assert!(frames.iter().any(|(name, _)| name == "delta"));
    let stored = chat.messages(conversation).await;
    let partial = stored.last().unwrap();
    assert_eq!(partial["id"], last["message_id"]);
    assert_eq!(partial["finish_reason"], "error");
    // What was stored is what the client saw: a beginning of the answer.
    let seen: String = frames
        .iter()
        .filter(|(name, _)| name == "delta")
        .map(|(_, data)| data["text"].as_str().unwrap())
        .collect();
    assert_eq!(partial["content"], seen.as_str());
    assert!(
        ANSWER.starts_with(&seen) && seen.len() < ANSWER.len(),
        "{seen}"
    );
}

#[tokio::test]
async fn without_an_llm_the_avatar_answers_with_its_best_passages_and_says_so() {
    let chat = chat_app(&[], Reply::Status(500), false).await;
    let conversation = chat.conversation().await;
    let response = chat
        .ask(conversation, "How do I update installed packages?")
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    let answer = &response.json["assistant_message"];
    let content = answer["content"].as_str().unwrap();
    assert!(
        content.starts_with("No language model is configured"),
        "{content}"
    );
    assert!(content.contains("[1] guide.md"), "{content}");
    assert!(content.contains("update.packages()"), "{content}");
    assert_eq!(answer["model"], "retrieval-only");
    assert_eq!(
        answer["usage"],
        json!({"prompt_tokens": 0, "completion_tokens": 0})
    );
    assert!(chat.llm.requests().is_empty());
}

#[tokio::test]
async fn the_public_api_finds_end_users_by_external_id_and_continues_only_their_conversations() {
    let chat = chat_app(&[], Reply::answer(ANSWER, (5, 5)), true).await;
    let key = chat.api_key().await;
    let ask = |external_id: &str, conversation: Option<Value>| {
        let mut body = json!({"end_user": {"external_id": external_id, "name": "Ada"},
                              "message": "How do I update packages?"});
        if let Some(conversation) = conversation {
            body["conversation_id"] = conversation;
        }
        body
    };
    let first = chat.public_chat(&key, chat.aid, &ask("ada-1", None)).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.json["assistant_message"]["content"], ANSWER);
    let end_user = first.json["end_user"]["id"].clone();
    let conversation = first.json["conversation_id"].clone();
    let again = chat
        .public_chat(&key, chat.aid, &ask("ada-1", Some(conversation.clone())))
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json["end_user"]["id"], end_user);
    assert_eq!(again.json["conversation_id"], conversation);
    // Someone else's conversation id answers 404.
    chat.public_chat(&key, chat.aid, &ask("bob-2", Some(conversation.clone())))
        .await
        .error(404, "NOT_FOUND");

    // The end user as operators see them.
    let listed = chat
        .app
        .get_as(
            &chat.owner,
            &format!(
                "/api/v1/projects/{}/end-users?q=ADA-1&channel=api",
                chat.pid
            ),
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.json["total"], 1);
    let listed_user = &listed.json["items"][0];
    assert_eq!(listed_user["external_id"], "ada-1");
    assert_eq!(listed_user["display_name"], "Ada");
    assert_eq!(listed_user["messages_count"], 2);
    assert!(listed_user["last_seen_at"].is_string());
    let conversations = chat
        .app
        .get_as(
            &chat.owner,
            &format!(
                "/api/v1/projects/{}/conversations?end_user_id={}&channel=api",
                chat.pid,
                end_user.as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(conversations.json["total"], 1, "{}", conversations.text);
    assert_eq!(conversations.json["items"][0]["id"], conversation);

    // Blocked: 403, and nothing reaches the model.
    let requests = chat.llm.requests().len();
    let eid = end_user.as_str().unwrap();
    let blocked = chat
        .app
        .post_as(
            &chat.owner,
            &format!("/api/v1/projects/{}/end-users/{eid}/block", chat.pid),
            &json!({}),
        )
        .await;
    assert_eq!(blocked.status, 200, "{}", blocked.text);
    assert_eq!(blocked.json["blocked"], true);
    chat.public_chat(&key, chat.aid, &ask("ada-1", None))
        .await
        .error(403, "FORBIDDEN");
    assert_eq!(chat.llm.requests().len(), requests);
    assert_eq!(
        chat.app
            .events_of_type("end_users.end_user_blocked")
            .await
            .len(),
        1
    );
    let unblocked = chat
        .app
        .post_as(
            &chat.owner,
            &format!("/api/v1/projects/{}/end-users/{eid}/unblock", chat.pid),
            &json!({}),
        )
        .await;
    assert_eq!(unblocked.json["blocked"], false);
    assert_eq!(
        chat.public_chat(&key, chat.aid, &ask("ada-1", None))
            .await
            .status,
        200
    );

    // Bad keys and bodies.
    chat.public_chat("ak_nonsense", chat.aid, &ask("ada-1", None))
        .await
        .error(401, "INVALID_TOKEN");
    let invalid = chat
        .public_chat(
            &key,
            chat.aid,
            &json!({"end_user": {"external_id": ""}, "message": "hi"}),
        )
        .await;
    let error = invalid.error(422, "VALIDATION_ERROR");
    assert_eq!(error["field"], "end_user.external_id", "{error}");
}

#[tokio::test]
async fn the_public_api_is_rate_limited_per_key() {
    let chat = chat_app(
        &[("APP__CHAT__PUBLIC_REQUESTS_PER_MINUTE", "2")],
        Reply::answer(ANSWER, (5, 5)),
        true,
    )
    .await;
    // Requests straddling the end of a minute would be counted in two windows.
    crate::helpers::early_in_window(Duration::from_secs(60)).await;
    let key = chat.api_key().await;
    let other_key = chat.api_key().await;
    let body = json!({"end_user": {"external_id": "ada"}, "message": "Hello?"});
    for _ in 0..2 {
        let asked = chat.public_chat(&key, chat.aid, &body).await;
        assert_eq!(asked.status, 200, "{}", asked.text);
    }
    let limited = chat.public_chat(&key, chat.aid, &body).await;
    limited.error(429, "RATE_LIMITED");
    assert!(limited.header("retry-after").is_some());
    assert_eq!(
        chat.public_chat(&other_key, chat.aid, &body).await.status,
        200
    );
}

#[tokio::test]
async fn another_projects_conversations_end_users_and_avatars_answer_404() {
    let chat = chat_app(&[], Reply::answer(ANSWER, (5, 5)), true).await;
    let conversation = chat.conversation().await;
    let key = chat.api_key().await;
    let answered = chat
        .public_chat(
            &key,
            chat.aid,
            &json!({"end_user": {"external_id": "ada"}, "message": "Hi?"}),
        )
        .await;
    let end_user = answered.json["end_user"]["id"].as_str().unwrap().to_owned();

    let intruder = chat.app.user("intruder").await;
    let other = chat.app.project(&intruder, "other").await;
    let other_key = {
        let response = chat
            .app
            .post_as(
                &intruder,
                &format!("/api/v1/projects/{other}/api-keys"),
                &json!({"name": "x"}),
            )
            .await;
        response.json["key"].as_str().unwrap().to_owned()
    };
    for path in [
        format!("/api/v1/projects/{other}/conversations/{conversation}/messages"),
        format!("/api/v1/projects/{other}/end-users/{end_user}"),
    ] {
        chat.app
            .get_as(&intruder, &path)
            .await
            .error(404, "NOT_FOUND");
    }
    chat.app
        .post_as(
            &intruder,
            &format!("/api/v1/projects/{other}/conversations/{conversation}/messages"),
            &json!({"content": "Hi?"}),
        )
        .await
        .error(404, "NOT_FOUND");
    chat.app
        .post_as(
            &intruder,
            &format!(
                "/api/v1/projects/{other}/avatars/{}/conversations",
                chat.aid
            ),
            &json!({}),
        )
        .await
        .error(404, "NOT_FOUND");
    chat.app
        .delete_as(
            &intruder,
            &format!("/api/v1/projects/{other}/end-users/{end_user}"),
        )
        .await
        .error(404, "NOT_FOUND");
    // Their key cannot reach this project's avatar.
    chat.public_chat(
        &other_key,
        chat.aid,
        &json!({"end_user": {"external_id": "ada"}, "message": "Hi?"}),
    )
    .await
    .error(404, "NOT_FOUND");
    // Nor the project's own routes, without membership.
    chat.app
        .get_as(
            &intruder,
            &format!("/api/v1/projects/{}/conversations", chat.pid),
        )
        .await
        .error(404, "NOT_FOUND");
}

#[tokio::test]
async fn deleting_an_end_user_erases_their_conversations_and_messages() {
    let chat = chat_app(&[], Reply::answer(ANSWER, (5, 5)), true).await;
    let key = chat.api_key().await;
    let answered = chat.public_answer(&key, "ada", "Hi?").await;
    let end_user = answered["end_user"]["id"].as_str().unwrap().to_owned();
    let conversation: Uuid = answered["conversation_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let kept = chat.conversation().await;
    assert_eq!(chat.ask(kept, "Staff question?").await.status, 200);

    let deleted = chat
        .app
        .delete_as(
            &chat.owner,
            &format!("/api/v1/projects/{}/end-users/{end_user}", chat.pid),
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    chat.app
        .get_as(
            &chat.owner,
            &format!("/api/v1/projects/{}/end-users/{end_user}", chat.pid),
        )
        .await
        .error(404, "NOT_FOUND");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let gone = chat
            .app
            .get_as(&chat.owner, &chat.messages_path(conversation))
            .await;
        if gone.status == 404 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the conversation stayed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left: i64 = chat
        .app
        .context
        .db
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) AS n FROM messages WHERE conversation_id = $1",
            [conversation.into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap();
    assert_eq!(left, 0);
    // Staff conversations are not the end user's: they stay.
    assert_eq!(chat.messages(kept).await.len(), 2);
}

#[tokio::test]
async fn a_disabled_avatar_and_bad_messages_are_refused_before_anything_is_stored() {
    let chat = chat_app(&[], Reply::answer(ANSWER, (5, 5)), true).await;
    let conversation = chat.conversation().await;
    let empty = chat.ask(conversation, "   ").await;
    assert_eq!(empty.error(422, "VALIDATION_ERROR")["field"], "content");
    let disabled = chat
        .app
        .patch_as(
            &chat.owner,
            &format!("/api/v1/projects/{}/avatars/{}", chat.pid, chat.aid),
            &json!({"status": "disabled"}),
        )
        .await;
    assert_eq!(disabled.status, 200, "{}", disabled.text);
    chat.ask(conversation, "Anyone there?")
        .await
        .error(409, "CONFLICT");
    assert!(chat.messages(conversation).await.is_empty());
    assert!(chat.llm.requests().is_empty());
}

#[tokio::test]
async fn a_model_that_goes_silent_ends_the_answer_with_an_error_instead_of_hanging() {
    let stalled = Reply::Stream {
        chunks: (0..20).map(|n| format!("slowly{n} ")).collect(),
        gap: Duration::from_millis(1_500),
        usage: Some((10, 2)),
        break_after: None,
    };
    let chat = chat_app(&[("APP__CHAT__IDLE_TIMEOUT_SECS", "1")], stalled, true).await;
    let conversation = chat.conversation().await;
    let started = std::time::Instant::now();
    let response = chat.ask_streaming(conversation, "Anything?").await;
    // Not the 30 s the whole answer would take.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.status, 200);
    let frames = frames(&response.text);
    let (name, error) = frames.last().unwrap();
    assert_eq!(name, "error", "{frames:?}");
    assert!(
        error["message"].as_str().unwrap().contains("silent"),
        "{error}"
    );
    let stored = messages_when(&chat, conversation, |messages| messages.len() == 2).await;
    assert_eq!(stored[1]["finish_reason"], "error");
    assert!(stored[1]["message_metadata"]["error"].is_string());
    // The stalled upstream request was given up, not left open (the fake notices when a write
    // fails: its second write after the hang-up, 3 s in).
    wait_for_hang_up(&chat, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn the_platform_key_goes_only_to_the_platform_endpoint() {
    let chat = chat_app(&[], Reply::answer(ANSWER, (5, 5)), false).await;
    let admin = chat.app.admin().await;
    let patched = chat
        .app
        .patch_as(
            &admin,
            "/api/v1/admin/platform-config",
            &json!({"llm_base_url": chat.llm.url, "llm_api_key": "platform-key"}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    let conversation = chat.conversation().await;
    assert_eq!(chat.ask(conversation, "Update packages?").await.status, 200);

    // The project points its avatars at its own server (here: the same fake, so we can see
    // what it receives): the platform's key must not follow.
    for (name, value) in [
        ("LLM_BASE_URL", chat.llm.url.as_str()),
        ("LLM_API_KEY", "project-key"),
    ] {
        let put = chat
            .app
            .put_as(
                &chat.owner,
                &format!("/api/v1/projects/{}/secrets/{name}", chat.pid),
                &json!({ "value": value }),
            )
            .await;
        assert_eq!(put.status, 204, "{}", put.text);
        assert_eq!(chat.ask(conversation, "Update packages?").await.status, 200);
    }

    assert_eq!(
        chat.llm.authorizations(),
        vec![
            Some("Bearer platform-key".to_owned()),
            None,
            Some("Bearer project-key".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_refused_public_question_leaves_no_end_user_or_conversation_behind() {
    let chat = chat_app(&[], Reply::answer(ANSWER, (5, 5)), true).await;
    let key = chat.api_key().await;
    let first = chat
        .public_chat(
            &key,
            chat.aid,
            &json!({"end_user": {"external_id": "ada"}, "message": "Update?"}),
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    let adas = first.json["conversation_id"].clone();
    let refusals = [
        (
            json!({"end_user": {"external_id": "eve", "name": "E\0ve"}, "message": "Update?"}),
            422,
            Some("end_user.name"),
        ),
        (
            json!({"end_user": {"external_id": "eve\0"}, "message": "Update?"}),
            422,
            Some("end_user.external_id"),
        ),
        (
            json!({"end_user": {"external_id": "eve"}, "message": "Up\0date?"}),
            422,
            Some("message"),
        ),
        // Someone else's conversation, by a newcomer.
        (
            json!({"end_user": {"external_id": "eve"}, "message": "Update?",
                   "conversation_id": adas}),
            404,
            None,
        ),
        (
            json!({"end_user": {"external_id": "eve"}, "message": "Update?",
                   "conversation_id": Uuid::now_v7()}),
            404,
            None,
        ),
    ];
    for (body, status, field) in refusals {
        let refused = chat.public_chat(&key, chat.aid, &body).await;
        assert_eq!(refused.status, status, "{body}: {}", refused.text);
        if let Some(field) = field {
            assert_eq!(refused.json["error"]["field"], field, "{body}");
        }
    }
    let end_users = chat
        .app
        .get_as(
            &chat.owner,
            &format!("/api/v1/projects/{}/end-users", chat.pid),
        )
        .await;
    assert_eq!(end_users.json["total"], 1, "{}", end_users.text);
    let conversations = chat
        .app
        .get_as(
            &chat.owner,
            &format!("/api/v1/projects/{}/conversations", chat.pid),
        )
        .await;
    assert_eq!(conversations.json["total"], 1, "{}", conversations.text);
}

#[tokio::test]
async fn deleting_an_avatar_takes_its_conversations_and_messages_along() {
    let chat = chat_app(&[], Reply::answer(ANSWER, (5, 5)), true).await;
    let conversation = chat.conversation().await;
    assert_eq!(chat.ask(conversation, "Update?").await.status, 200);
    let deleted = chat
        .app
        .delete_as(
            &chat.owner,
            &format!("/api/v1/projects/{}/avatars/{}", chat.pid, chat.aid),
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    // Unreachable at once ...
    chat.app
        .get_as(&chat.owner, &chat.messages_path(conversation))
        .await
        .error(404, "NOT_FOUND");
    chat.ask(conversation, "Still there?")
        .await
        .error(404, "NOT_FOUND");
    // ... and removed with it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let rows = chat
            .app
            .context
            .db
            .query_one_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                "SELECT (SELECT count(*) FROM conversations WHERE avatar_id = $1) \
                      + (SELECT count(*) FROM messages WHERE conversation_id = $2) AS left",
                [chat.aid.into(), conversation.into()],
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "left")
            .unwrap();
        if rows == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{rows} rows left");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn api_key_scopes_are_a_known_set_and_the_public_chat_needs_chat() {
    let chat = chat_app(&[], Reply::answer(ANSWER, (5, 5)), true).await;
    let keys = format!("/api/v1/projects/{}/api-keys", chat.pid);
    let create = |scopes: Value| {
        let body = json!({"name": "k", "scopes": scopes});
        let app = &chat.app;
        let owner = &chat.owner;
        let keys = keys.clone();
        async move { app.post_as(owner, &keys, &body).await }
    };
    for refused in [json!(["read-only"]), json!(["x".repeat(10_000)])] {
        let response = create(refused.clone()).await;
        assert_eq!(
            response.error(422, "VALIDATION_ERROR")["field"],
            "scopes",
            "{refused}"
        );
        assert!(response.text.len() < 500, "the scope is not echoed whole");
    }
    let embeddings_only = create(json!(["embeddings"])).await;
    assert_eq!(embeddings_only.status, 201, "{}", embeddings_only.text);
    let body = json!({"end_user": {"external_id": "u"}, "message": "Update?"});
    let refused = chat
        .public_chat(
            embeddings_only.json["key"].as_str().unwrap(),
            chat.aid,
            &body,
        )
        .await;
    assert_eq!(
        refused.error(403, "FORBIDDEN")["message"],
        "this API key lacks the `chat` scope"
    );
    let chat_key = create(json!(["chat", "chat"])).await;
    assert_eq!(chat_key.json["scopes"], json!(["chat"]));
    let allowed = chat
        .public_chat(chat_key.json["key"].as_str().unwrap(), chat.aid, &body)
        .await;
    assert_eq!(allowed.status, 200, "{}", allowed.text);
    // No scopes: every scope, as keys made before scopes existed.
    let unscoped = create(json!([])).await;
    let allowed = chat
        .public_chat(unscoped.json["key"].as_str().unwrap(), chat.aid, &body)
        .await;
    assert_eq!(allowed.status, 200, "{}", allowed.text);
}
