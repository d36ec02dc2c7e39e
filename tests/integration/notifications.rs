//! Platform notifications over HTTP against the fake Bot API: the notifications bot set up
//! from the platform config (polling without a public address, a webhook with one), linking a
//! chat with a one-time code, who hears of what (owners and managers of documents, owners of
//! plan decisions, saas_admins of plan requests and registrations, each as they opted in),
//! failures recorded without touching the request behind the event, and the settings' rules.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};

use crate::chat::{Chat, chat_app_with};
use crate::fake_openai::Reply;
use crate::fake_telegram::{FakeTelegram, TelegramFault, text_update, token_for};
use crate::fixtures::TestUser;
use crate::helpers::{AppOptions, TestApp, TestResponse, eventually, spawn_app, spawn_app_with};

const NOTIFY_BOT: i64 = 8_100_200_300;
const BOT_NAME: &str = "platform_news_bot";
const PUBLIC: &str = "https://avatars.example.com";
const SETTINGS: &str = "/api/v1/notifications/settings";
const LINK: &str = "/api/v1/notifications/telegram/link";
const WAIT: Duration = Duration::from_secs(30);

/// The app's settings for the fake Bot API (fast polling and pacing), with a public address
/// (webhook mode) or without (polling).
fn overrides(telegram: &FakeTelegram, public: Option<&'static str>) -> Vec<(&'static str, String)> {
    let mut overrides = vec![
        ("APP__OUTBOUND__ALLOWED_HOSTS", "127.0.0.1".to_owned()),
        ("APP__TELEGRAM__API_BASE_URL", telegram.url.clone()),
        ("APP__TELEGRAM__POLL_SUPERVISE_MS", "100".to_owned()),
        ("APP__TELEGRAM__POLL_TIMEOUT_SECS", "1".to_owned()),
        ("APP__TELEGRAM__CHAT_MESSAGES_PER_SEC", "100".to_owned()),
        ("APP__TELEGRAM__CHAT_BURST", "20".to_owned()),
    ];
    if let Some(public) = public {
        overrides.push(("APP__SERVER__PUBLIC_BASE_URL", public.to_owned()));
    }
    overrides
}

fn borrowed<'a>(overrides: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    overrides
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect()
}

/// The saas_admin sets the notifications bot's token; returns it once the bot is set up.
async fn configure_bot(app: &TestApp, admin: &TestUser, telegram: &FakeTelegram) -> String {
    let token = token_for(NOTIFY_BOT);
    telegram.add_bot(&token, NOTIFY_BOT, BOT_NAME);
    let patched = app
        .patch_as(
            admin,
            "/api/v1/admin/platform-config",
            &json!({"notifications_bot_token": token}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    eventually(WAIT, "the notifications bot set up", || async {
        let bot = app.get_as(admin, "/api/v1/admin/notifications/bot").await;
        if bot.status == 200 && bot.json["bot_username"] == BOT_NAME {
            Ok(())
        } else {
            Err(bot.text)
        }
    })
    .await;
    token
}

/// A new one-time link code for `user`.
async fn link_code(app: &TestApp, user: &TestUser) -> String {
    let created = app.post_as(user, LINK, &json!({})).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["bot_username"], BOT_NAME);
    let code = created.json["code"].as_str().unwrap().to_owned();
    assert_eq!(
        created.json["url"],
        format!("https://t.me/{BOT_NAME}?start={code}")
    );
    code
}

/// Waits until `user`'s settings show `chat_id` linked (or unlinked, with `None`).
async fn linked_to(app: &TestApp, user: &TestUser, chat_id: Option<i64>) -> Value {
    eventually(WAIT, "the chat linked", || async {
        let settings = app.get_as(user, SETTINGS).await;
        assert_eq!(settings.status, 200, "{}", settings.text);
        if settings.json["telegram_chat_id"].as_i64() == chat_id {
            Ok(settings.json)
        } else {
            Err(settings.json)
        }
    })
    .await
}

/// Waits until one of `chat_id`'s messages contains `part`; returns them all.
async fn told(telegram: &FakeTelegram, chat_id: i64, part: &str) -> Vec<String> {
    eventually(WAIT, &format!("a message with {part:?}"), || async {
        let texts = telegram.chat_texts(chat_id);
        if texts.iter().any(|text| text.contains(part)) {
            Ok(texts)
        } else {
            Err(texts)
        }
    })
    .await
}

async fn deliveries(app: &TestApp, user: &TestUser) -> Vec<Value> {
    let listed = app
        .get_as(user, "/api/v1/notifications/deliveries?limit=100")
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    listed.json["items"].as_array().unwrap().clone()
}

/// Uploads `name` to the chat app's avatar and waits until it settled.
async fn upload(chat: &Chat, name: &str, bytes: &[u8]) {
    let documents = format!(
        "/api/v1/projects/{}/avatars/{}/documents",
        chat.pid, chat.aid
    );
    let uploaded = chat
        .app
        .upload(&chat.owner, &documents, name, bytes.to_vec())
        .await;
    assert_eq!(uploaded.status, 202, "{}", uploaded.text);
}

#[tokio::test]
async fn chats_link_by_code_over_polling_and_document_news_reach_owners_and_managers() {
    let telegram = FakeTelegram::start().await;
    let settings = overrides(&telegram, None);
    let chat = chat_app_with(&borrowed(&settings), Reply::answer("unused", (1, 1)), false).await;
    let app = &chat.app;
    let owner = &chat.owner;
    app.post_as(owner, LINK, &json!({}))
        .await
        .error(409, "CONFLICT");

    let admin = app.admin().await;
    let token = configure_bot(app, &admin, &telegram).await;
    let bot = app.get_as(&admin, "/api/v1/admin/notifications/bot").await;
    assert_eq!(bot.json["mode"], "polling", "{}", bot.text);
    assert!(telegram.webhook(&token).is_none());
    let manager = app.member(chat.pid, owner, "manager").await;
    let viewer = app.member(chat.pid, owner, "viewer").await;

    // Each sends `/start <code>` to the bot; the poller takes it and the bot answers.
    let people = [(owner, 101_i64), (&manager, 102), (&viewer, 103)];
    let mut codes = Vec::new();
    for (update_id, (user, chat_id)) in (1_i64..).zip(people) {
        let code = link_code(app, user).await;
        let start = format!("/start {code}");
        telegram.queue_updates(
            &token,
            vec![text_update(update_id, chat_id, chat_id, "Ann", &start)],
        );
        let settings = linked_to(app, user, Some(chat_id)).await;
        assert_eq!(settings["bot_username"], BOT_NAME);
        assert_eq!(
            settings["events"].as_array().unwrap().len(),
            6,
            "{settings}"
        );
        told(&telegram, chat_id, "Linked").await;
        codes.push(code);
    }
    // A code works once.
    let again = format!("/start {}", codes[0]);
    telegram.queue_updates(&token, vec![text_update(10, 104, 104, "Eve", &again)]);
    told(&telegram, 104, "not valid").await;
    linked_to(app, owner, Some(101)).await;

    // A processed document reaches the owner and the manager, not the viewer.
    upload(
        &chat,
        "notes.md",
        b"# Notes\n\nThe team meets on Mondays.\n",
    )
    .await;
    let ready = "“notes.md” is ready in “chat”";
    told(&telegram, 101, ready).await;
    told(&telegram, 102, ready).await;
    let viewer_log = deliveries(app, &viewer).await;
    assert_eq!(viewer_log.len(), 1, "only the link answer: {viewer_log:?}");
    assert_eq!(viewer_log[0]["kind"], "link");
    assert!(
        !telegram
            .chat_texts(103)
            .iter()
            .any(|text| text.contains("is ready"))
    );
    let owner_log = deliveries(app, owner).await;
    let sent = owner_log
        .iter()
        .find(|delivery| {
            delivery["kind"] == "document_processed"
                && delivery["text"].as_str().unwrap().contains("notes.md")
        })
        .unwrap_or_else(|| panic!("{owner_log:?}"));
    assert_eq!(sent["status"], "sent");
    assert_eq!(sent["attempts"], 1);

    // The owner keeps only failures: a broken PDF reaches both, the next good one only the manager.
    let chosen = app
        .put_as(owner, SETTINGS, &json!({"events": ["document_failed"]}))
        .await;
    assert_eq!(chosen.status, 200, "{}", chosen.text);
    assert_eq!(chosen.json["events"], json!(["document_failed"]));
    assert_eq!(chosen.json["telegram_chat_id"], 101);
    upload(
        &chat,
        "broken.pdf",
        b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage",
    )
    .await;
    told(
        &telegram,
        101,
        "“broken.pdf” could not be processed in “chat”",
    )
    .await;
    told(&telegram, 102, "“broken.pdf” could not be processed").await;
    upload(&chat, "more.md", b"# More\n\nLunch is at noon.\n").await;
    told(&telegram, 102, "“more.md” is ready").await;
    let owner_log = deliveries(app, owner).await;
    assert!(
        !owner_log
            .iter()
            .any(|delivery| delivery["text"].as_str().unwrap().contains("more.md")),
        "{owner_log:?}"
    );

    // A deactivated member hears nothing: the owner, told of processed documents again,
    // shows the news went out, and none was queued for the manager.
    let chosen = app
        .put_as(
            owner,
            SETTINGS,
            &json!({"events": ["document_processed", "document_failed"]}),
        )
        .await;
    assert_eq!(chosen.status, 200, "{}", chosen.text);
    let active = |is_active: bool| {
        let path = format!("/api/v1/admin/users/{}", manager.id);
        let (app, admin) = (app, &admin);
        async move {
            let updated = app
                .patch_as(admin, &path, &json!({"is_active": is_active}))
                .await;
            assert_eq!(updated.status, 200, "{}", updated.text);
        }
    };
    active(false).await;
    upload(
        &chat,
        "third.md",
        b"# Third

The office opens at nine.
",
    )
    .await;
    told(&telegram, 101, "“third.md” is ready").await;
    let to_manager = app
        .context
        .db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT count(*) AS n FROM notification_deliveries \
             WHERE user_id = $1 AND text LIKE '%third.md%'",
            [manager.id.into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(to_manager, 0);
    active(true).await;
    // (Deactivation ended the manager's sessions.)
    let manager = app.logged_in(manager.id, manager.email.clone()).await;

    // Unlinking: by the API, and by /stop in the chat.
    let unlinked = app.delete_as(owner, "/api/v1/notifications/telegram").await;
    assert_eq!(unlinked.status, 204, "{}", unlinked.text);
    linked_to(app, owner, None).await;
    telegram.queue_updates(&token, vec![text_update(11, 102, 102, "Ann", "/stop")]);
    told(&telegram, 102, "Unlinked").await;
    linked_to(app, &manager, None).await;
}

/// An app in webhook mode with workers, its saas_admin, and the notifications bot set up.
struct Platform {
    app: TestApp,
    admin: TestUser,
    telegram: FakeTelegram,
    token: String,
}

impl Platform {
    async fn start() -> Platform {
        let telegram = FakeTelegram::start().await;
        let settings = overrides(&telegram, Some(PUBLIC));
        let app = spawn_app_with(AppOptions {
            overrides: &borrowed(&settings),
            workers: 2,
            ..AppOptions::default()
        })
        .await;
        let admin = app.admin().await;
        let token = configure_bot(&app, &admin, &telegram).await;
        Platform {
            app,
            admin,
            telegram,
            token,
        }
    }

    /// Posts `body` to the notifications bot's webhook (`bot_id`) with `secret`.
    async fn post_raw(&self, bot_id: i64, secret: Option<&str>, body: String) -> TestResponse {
        let mut request = self
            .app
            .client
            .post(
                self.app
                    .url(&format!("/api/v1/notifications/telegram/webhook/{bot_id}")),
            )
            .header("content-type", "application/json")
            .body(body);
        if let Some(secret) = secret {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
        }
        self.app.send(request).await
    }

    /// Posts `update` as Telegram does, with the registered secret.
    async fn deliver(&self, update: &Value) {
        let (_, secret) = self.telegram.webhook(&self.token).expect("a webhook");
        let posted = self
            .post_raw(NOTIFY_BOT, Some(&secret), update.to_string())
            .await;
        assert_eq!(posted.status, 200, "{}", posted.text);
    }

    async fn link(&self, user: &TestUser, update_id: i64, chat_id: i64) {
        let code = link_code(&self.app, user).await;
        let start = format!("/start {code}");
        self.deliver(&text_update(update_id, chat_id, chat_id, "Ann", &start))
            .await;
        linked_to(&self.app, user, Some(chat_id)).await;
    }
}

#[tokio::test]
async fn platform_news_reach_saas_admins_and_plan_decisions_reach_owners_by_webhook() {
    let platform = Platform::start().await;
    let (app, admin, telegram) = (&platform.app, &platform.admin, &platform.telegram);
    let (url, secret) = telegram.webhook(&platform.token).expect("a webhook");
    assert_eq!(
        url,
        format!("{PUBLIC}/api/v1/notifications/telegram/webhook/{NOTIFY_BOT}")
    );
    assert!(secret.len() >= 32, "{secret}");
    let bot = app.get_as(admin, "/api/v1/admin/notifications/bot").await;
    assert_eq!(bot.json["mode"], "webhook", "{}", bot.text);

    // Only Telegram, with the secret, for this bot.
    let update = text_update(1, 201, 201, "Ada", "/start");
    for (bot_id, given) in [
        (NOTIFY_BOT, None),
        (NOTIFY_BOT, Some("wrong-secret")),
        (NOTIFY_BOT + 1, Some(secret.as_str())),
    ] {
        platform
            .post_raw(bot_id, given, update.to_string())
            .await
            .error(401, "AUTHENTICATION_REQUIRED");
    }
    platform
        .post_raw(NOTIFY_BOT, Some(&secret), "{not json".into())
        .await
        .error(400, "BAD_REQUEST");
    assert!(telegram.chat_texts(201).is_empty());

    // Linking; an update Telegram sends twice is answered once.
    let code = link_code(app, admin).await;
    let start = text_update(2, 201, 201, "Ada", &format!("/start {code}"));
    platform.deliver(&start).await;
    platform.deliver(&start).await;
    linked_to(app, admin, Some(201)).await;
    // The confirmation is sent after the link commits: awaited before the next message, whose
    // answer could otherwise overtake it.
    told(telegram, 201, "Linked").await;
    platform
        .deliver(&text_update(3, 201, 201, "Ada", "hello"))
        .await;
    let texts = told(telegram, 201, "open the link").await;
    let linked: Vec<&String> = texts
        .iter()
        .filter(|text| text.contains("Linked"))
        .collect();
    assert_eq!(linked.len(), 1, "{texts:?}");

    // A registration and a plan request reach the saas_admin; the decision reaches the owner.
    let owner = app.user("owner").await;
    told(telegram, 201, &format!("New account: {}", owner.email)).await;
    platform.link(&owner, 4, 202).await;
    let pid = app.project(&owner, "growing").await;
    let asked = app
        .post_as(
            &owner,
            &format!("/api/v1/projects/{pid}/plan-requests"),
            &json!({"plan_code": "pro"}),
        )
        .await;
    assert_eq!(asked.status, 201, "{}", asked.text);
    told(telegram, 201, "“growing” asks for the pro plan").await;
    let request = asked.json["id"].as_str().unwrap();
    let approved = app
        .post_as(
            admin,
            &format!("/api/v1/admin/plan-requests/{request}/approve"),
            &json!({}),
        )
        .await;
    assert_eq!(approved.status, 200, "{}", approved.text);
    told(telegram, 202, "“growing” is on the pro plan now").await;
    // The owner's log holds their messages only.
    let owner_log = deliveries(app, &owner).await;
    assert!(
        owner_log
            .iter()
            .all(|delivery| !delivery["text"].as_str().unwrap().contains("New account"))
    );
}

#[tokio::test]
async fn failed_deliveries_are_retried_then_recorded_and_never_fail_the_request() {
    let platform = Platform::start().await;
    let (app, admin, telegram) = (&platform.app, &platform.admin, &platform.telegram);
    platform.link(admin, 1, 301).await;
    told(telegram, 301, "Linked").await;

    // 429: tried again after Telegram's wait, and sent.
    telegram.fail_next(
        "sendMessage",
        1,
        TelegramFault::TooManyRequests { retry_after: 1 },
    );
    let first = app.user("first").await;
    told(telegram, 301, &format!("New account: {}", first.email)).await;
    let log = deliveries(app, admin).await;
    let retried = log
        .iter()
        .find(|delivery| delivery["text"].as_str().unwrap().contains(&first.email))
        .unwrap();
    assert_eq!(retried["status"], "sent", "{retried}");
    assert_eq!(retried["attempts"], 2, "{retried}");

    // 403, the admin blocked the bot: the registration succeeded all the same, the message is
    // recorded as failed and the chat unlinked.
    telegram.fail_next("sendMessage", 1, TelegramFault::BlockedByUser);
    let second = app.user("second").await;
    let failed = eventually(WAIT, "the failed delivery recorded", || async {
        let log = deliveries(app, admin).await;
        let found = log
            .iter()
            .find(|delivery| {
                delivery["text"].as_str().unwrap().contains(&second.email)
                    && delivery["status"] == "failed"
            })
            .cloned();
        found.ok_or(log)
    })
    .await;
    let error = failed["last_error"].as_str().unwrap();
    assert!(error.contains("blocked"), "{error}");
    assert_eq!(failed["attempts"], 1);
    linked_to(app, admin, None).await;
    assert!(
        !telegram
            .chat_texts(301)
            .iter()
            .any(|text| text.contains(&second.email))
    );
}

#[tokio::test]
async fn settings_name_known_events_and_the_chat_is_set_only_by_linking() {
    let app = spawn_app().await;
    let user = app.user("settings").await;
    let settings = app.get_as(&user, SETTINGS).await;
    assert_eq!(settings.status, 200, "{}", settings.text);
    assert_eq!(settings.json["telegram_chat_id"], Value::Null);
    assert_eq!(settings.json["bot_username"], Value::Null);
    assert_eq!(
        settings.json["events"],
        json!([
            "document_processed",
            "document_failed",
            "budget_threshold_reached",
            "plan_request_resolved",
            "plan_request_created",
            "user_registered"
        ])
    );

    let unknown = app
        .put_as(
            &user,
            SETTINGS,
            &json!({"events": ["document_failed", "weather"]}),
        )
        .await;
    let field = unknown.error(422, "VALIDATION_ERROR")["field"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(field.starts_with("events"), "{field}");
    let forged = app
        .put_as(
            &user,
            SETTINGS,
            &json!({"events": ["document_failed"], "telegram_chat_id": 42}),
        )
        .await;
    assert_eq!(
        forged.error(422, "VALIDATION_ERROR")["field"],
        "telegram_chat_id"
    );
    let unchanged = app.get_as(&user, SETTINGS).await;
    assert_eq!(unchanged.json["events"].as_array().unwrap().len(), 6);

    // GET's answer sent back as it is (the chat's current value) is accepted.
    let chosen = app
        .put_as(
            &user,
            SETTINGS,
            &json!({"events": ["document_failed", "document_failed"], "telegram_chat_id": null}),
        )
        .await;
    assert_eq!(chosen.status, 200, "{}", chosen.text);
    assert_eq!(chosen.json["events"], json!(["document_failed"]));
    let none = app.put_as(&user, SETTINGS, &json!({"events": []})).await;
    assert_eq!(none.json["events"], json!([]));
    assert_eq!(app.get_as(&user, SETTINGS).await.json["events"], json!([]));

    app.post_as(&user, LINK, &json!({}))
        .await
        .error(409, "CONFLICT");
    app.get(SETTINGS)
        .await
        .error(401, "AUTHENTICATION_REQUIRED");
    app.get_as(&user, "/api/v1/admin/notifications/bot")
        .await
        .error(403, "FORBIDDEN");
    let admin = app.admin().await;
    app.get_as(&admin, "/api/v1/admin/notifications/bot")
        .await
        .error(404, "NOT_FOUND");
}
