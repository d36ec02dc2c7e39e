//! A project's Telegram bot over HTTP, against the fake Bot API and the fake LLM: connecting
//! (token format, Telegram's refusal, webhook registration, one bot per project, who may),
//! the webhook (secret, malformed bodies, duplicate updates), and the answers: streamed by
//! edits, split when long, commands, other kinds of messages, refusals and a user who blocked
//! the bot.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::chat::{Chat, chat_app_with};
use crate::fake_openai::{Reply, pieces};
use crate::fake_telegram::{
    FakeTelegram, TelegramFault, callback_query_update, group_text_update, photo_update,
    text_update, token_for,
};
use crate::helpers::{TestResponse, eventually, spawn_worker};

const ANSWER: &str = "Run update.packages() to update every installed package [1].";
const BOT_ID: i64 = 7_001_002_003;
const CHAT_ID: i64 = 5_550_001;
const PUBLIC: &str = "https://avatars.example.com";

struct Bot {
    chat: Chat,
    telegram: FakeTelegram,
    token: String,
}

/// The chat app (a project, an avatar that knows the guide, the fake LLM answering `reply`)
/// with the fake Bot API, and the project's bot connected in webhook mode.
async fn connected(reply: Reply) -> Bot {
    let telegram = FakeTelegram::start().await;
    let chat = chat_app_with(
        &[
            ("APP__OUTBOUND__ALLOWED_HOSTS", "127.0.0.1"),
            ("APP__TELEGRAM__API_BASE_URL", telegram.url.as_str()),
            ("APP__TELEGRAM__EDIT_INTERVAL_MS", "50"),
            ("APP__TELEGRAM__CHAT_MESSAGES_PER_SEC", "100"),
            ("APP__TELEGRAM__CHAT_BURST", "20"),
            ("APP__SERVER__PUBLIC_BASE_URL", PUBLIC),
        ],
        reply,
        true,
    )
    .await;
    let token = token_for(BOT_ID);
    telegram.add_bot(&token, BOT_ID, "guide_bot");
    let response = put_bot(&chat, &json!({"bot_token": token, "avatar_id": chat.aid})).await;
    assert_eq!(response.status, 200, "{}", response.text);
    Bot {
        chat,
        telegram,
        token,
    }
}

async fn put_bot(chat: &Chat, body: &Value) -> TestResponse {
    chat.app
        .put_as(
            &chat.owner,
            &format!("/api/v1/projects/{}/telegram", chat.pid),
            body,
        )
        .await
}

impl Bot {
    /// A request to the bot's webhook carrying `secret`.
    fn webhook_request(&self, secret: &str) -> reqwest::RequestBuilder {
        let app = &self.chat.app;
        app.client
            .post(app.url(&format!("/api/v1/telegram/webhook/{BOT_ID}")))
            .header("X-Telegram-Bot-Api-Secret-Token", secret)
    }

    /// Posts `update` to the bot's webhook as Telegram does, with `secret` (the registered one
    /// when `None`).
    async fn post(&self, update: &Value, secret: Option<&str>) -> TestResponse {
        let registered = self.telegram.webhook(&self.token).map(|(_, secret)| secret);
        let secret = secret.or(registered.as_deref()).unwrap_or_default();
        self.chat
            .app
            .send(self.webhook_request(secret).json(update))
            .await
    }

    /// The project's `resource` (`conversations`, `end-users`) of the telegram channel, as
    /// the owner lists them.
    async fn telegram_list(&self, resource: &str) -> Value {
        let response = self
            .chat
            .app
            .get_as(
                &self.chat.owner,
                &format!(
                    "/api/v1/projects/{}/{resource}?channel=telegram",
                    self.chat.pid
                ),
            )
            .await;
        assert_eq!(response.status, 200, "{}", response.text);
        response.json
    }

    async fn deliver(&self, update: &Value) {
        let response = self.post(update, None).await;
        assert_eq!(response.status, 200, "{}", response.text);
    }

    /// The chat's messages once the last of them is `last` (answers are written by a job).
    async fn texts_ending(&self, chat_id: i64, last: &str) -> Vec<String> {
        eventually(Duration::from_secs(20), "the bot's answer", || async {
            let texts = self.telegram.chat_texts(chat_id);
            if texts.last().is_some_and(|text| text == last) {
                Ok(texts)
            } else {
                Err(texts)
            }
        })
        .await
    }
}

#[tokio::test]
async fn connecting_checks_the_token_registers_the_webhook_and_never_shows_the_token() {
    let bot = connected(Reply::answer(ANSWER, (5, 5))).await;
    let (chat, telegram) = (&bot.chat, &bot.telegram);
    let (url, secret) = telegram.webhook(&bot.token).unwrap();
    assert_eq!(url, format!("{PUBLIC}/api/v1/telegram/webhook/{BOT_ID}"));
    assert!(secret.len() >= 32, "{secret}");
    let set = telegram.calls_of("setWebhook");
    assert_eq!(set.len(), 1);
    assert_eq!(
        set[0]["allowed_updates"],
        json!(["message", "edited_message", "callback_query"])
    );

    let path = format!("/api/v1/projects/{}/telegram", chat.pid);
    let shown = chat.app.get_as(&chat.owner, &path).await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    assert_eq!(shown.json["bot_username"], "guide_bot");
    assert_eq!(shown.json["mode"], "webhook");
    assert_eq!(shown.json["status"], "active");
    assert_eq!(shown.json["avatar_id"], chat.aid.to_string());
    assert!(!shown.text.contains(&bot.token));
    let secrets = chat
        .app
        .get_as(
            &chat.owner,
            &format!("/api/v1/projects/{}/secrets", chat.pid),
        )
        .await;
    assert!(
        secrets.text.contains("TELEGRAM_BOT_TOKEN"),
        "{}",
        secrets.text
    );
    assert!(!secrets.text.contains(&bot.token));

    // A malformed token never reaches Telegram; one Telegram refuses is 422 with its reason.
    let calls = telegram.calls().len();
    let bad = put_bot(
        chat,
        &json!({"bot_token": "12345:short", "avatar_id": chat.aid}),
    )
    .await;
    assert_eq!(bad.error(422, "VALIDATION_ERROR")["field"], "bot_token");
    assert_eq!(telegram.calls().len(), calls);
    let unknown = token_for(9_999);
    let refused = put_bot(chat, &json!({"bot_token": unknown, "avatar_id": chat.aid})).await;
    let error = refused.error(422, "VALIDATION_ERROR");
    assert_eq!(error["field"], "bot_token");
    assert!(
        error["message"].as_str().unwrap().contains("Unauthorized"),
        "{error}"
    );
    let elsewhere = put_bot(
        chat,
        &json!({"bot_token": bot.token, "avatar_id": Uuid::now_v7()}),
    )
    .await;
    assert_eq!(
        elsewhere.error(422, "VALIDATION_ERROR")["field"],
        "avatar_id"
    );

    // One bot, one project.
    let other = chat.app.project(&chat.owner, "other").await;
    let other_avatar = crate::chat::id_of(
        &chat
            .app
            .create_avatar(
                &chat.owner,
                other,
                &json!({"name": "O", "system_prompt": "Hi."}),
            )
            .await
            .json,
    );
    let taken = chat
        .app
        .put_as(
            &chat.owner,
            &format!("/api/v1/projects/{other}/telegram"),
            &json!({"bot_token": bot.token, "avatar_id": other_avatar}),
        )
        .await;
    taken.error(409, "CONFLICT");
    chat.app
        .get_as(&chat.owner, &format!("/api/v1/projects/{other}/telegram"))
        .await
        .error(404, "NOT_FOUND");

    // Who may: a viewer reads, only managers change; a stranger finds nothing.
    let viewer = chat.app.member(chat.pid, &chat.owner, "viewer").await;
    assert_eq!(chat.app.get_as(&viewer, &path).await.status, 200);
    chat.app
        .put_as(
            &viewer,
            &path,
            &json!({"bot_token": bot.token, "avatar_id": chat.aid}),
        )
        .await
        .error(403, "FORBIDDEN");
    let stranger = chat.app.user("stranger").await;
    chat.app
        .get_as(&stranger, &path)
        .await
        .error(404, "NOT_FOUND");
    chat.app
        .delete_as(&stranger, &path)
        .await
        .error(404, "NOT_FOUND");

    // Polling: the webhook is removed. Disconnecting removes the bot and its token.
    let polling = put_bot(
        chat,
        &json!({"bot_token": bot.token, "avatar_id": chat.aid, "mode": "polling"}),
    )
    .await;
    assert_eq!(polling.json["mode"], "polling", "{}", polling.text);
    assert!(telegram.webhook(&bot.token).is_none());
    let gone = chat.app.delete_as(&chat.owner, &path).await;
    assert_eq!(gone.status, 204, "{}", gone.text);
    chat.app
        .get_as(&chat.owner, &path)
        .await
        .error(404, "NOT_FOUND");
    let secrets = chat
        .app
        .get_as(
            &chat.owner,
            &format!("/api/v1/projects/{}/secrets", chat.pid),
        )
        .await;
    assert!(
        !secrets.text.contains("TELEGRAM_BOT_TOKEN"),
        "{}",
        secrets.text
    );
}

#[tokio::test]
async fn webhook_mode_needs_a_public_address() {
    let telegram = FakeTelegram::start().await;
    let chat = chat_app_with(
        &[("APP__TELEGRAM__API_BASE_URL", telegram.url.as_str())],
        Reply::answer(ANSWER, (5, 5)),
        false,
    )
    .await;
    let token = token_for(BOT_ID);
    telegram.add_bot(&token, BOT_ID, "guide_bot");
    let refused = put_bot(
        &chat,
        &json!({"bot_token": token, "avatar_id": chat.aid, "mode": "webhook"}),
    )
    .await;
    let error = refused.error(422, "VALIDATION_ERROR");
    assert_eq!(error["field"], "mode");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("public_base_url")
    );
    let polling = put_bot(&chat, &json!({"bot_token": token, "avatar_id": chat.aid})).await;
    assert_eq!(polling.status, 200, "{}", polling.text);
    assert_eq!(
        polling.json["mode"], "polling",
        "the default without a public address"
    );
}

#[tokio::test]
async fn the_webhook_checks_the_secret_and_answers_each_update_once_by_streamed_edits() {
    let slow = Reply::Stream {
        chunks: pieces(ANSWER),
        gap: Duration::from_millis(40),
        usage: Some((5, 5)),
        break_after: None,
    };
    let bot = connected(slow).await;
    let update = text_update(1, CHAT_ID, 42, "Ada", "How do I update packages?");
    bot.post(&update, Some("not-the-secret-but-long-enough-to-compare"))
        .await
        .error(401, "AUTHENTICATION_REQUIRED");
    let secret = bot.telegram.webhook(&bot.token).unwrap().1;
    let malformed = bot
        .chat
        .app
        .send(
            bot.webhook_request(&secret)
                .header("Content-Type", "application/json")
                .body("{not json"),
        )
        .await;
    malformed.error(400, "BAD_REQUEST");

    // The update and Telegram's retries of it, arriving at once: the webhook stores calls
    // made together with one statement, so duplicates meet inside one batch too.
    let posted = futures_util::future::join_all((0..7).map(|_| bot.post(&update, None))).await;
    for response in &posted {
        assert_eq!(response.status, 200, "{}", response.text);
    }
    let texts = bot.texts_ending(CHAT_ID, ANSWER).await;
    assert_eq!(texts, [ANSWER], "one answer, in one message");
    let edits = bot.telegram.calls_of("editMessageText");
    assert!(
        !edits.is_empty(),
        "streamed: the first message was edited as the answer grew"
    );
    assert_eq!(
        bot.chat.llm.requests().len(),
        1,
        "the duplicate was not answered"
    );
    assert!(!bot.telegram.calls_of("sendChatAction").is_empty());
    let conversations = bot.telegram_list("conversations").await;
    assert_eq!(conversations["total"], 1, "{conversations}");
    let end_users = bot.telegram_list("end-users").await;
    assert_eq!(end_users["items"][0]["external_id"], "42", "{end_users}");
    assert_eq!(end_users["items"][0]["display_name"], "Ada");

    // The same chat continues its conversation; /reset starts a new one.
    bot.deliver(&text_update(2, CHAT_ID, 42, "Ada", "And again?"))
        .await;
    bot.texts_ending(CHAT_ID, ANSWER).await;
    eventually(Duration::from_secs(20), "two answers", || async {
        let texts = bot.telegram.chat_texts(CHAT_ID);
        if texts.len() == 2 { Ok(()) } else { Err(texts) }
    })
    .await;
    bot.deliver(&text_update(3, CHAT_ID, 42, "Ada", "/reset"))
        .await;
    bot.texts_ending(CHAT_ID, "Let's start over: this is a new conversation.")
        .await;
    // A NUL the user typed comes as `\u0000`, which PostgreSQL's jsonb refuses: it is taken
    // as U+FFFD rather than failing the update (and every retry of it) for good.
    bot.deliver(&text_update(4, CHAT_ID, 42, "Ada", "New\u{0} topic?"))
        .await;
    eventually(Duration::from_secs(20), "the third answer", || async {
        let texts = bot.telegram.chat_texts(CHAT_ID);
        if texts.len() == 4 && texts[3] == ANSWER {
            Ok(())
        } else {
            Err(texts)
        }
    })
    .await;
    let asked = bot.chat.llm.requests().last().unwrap().to_string();
    assert!(asked.contains("New\u{fffd} topic?"), "{asked}");
    let conversations = bot.telegram_list("conversations").await;
    assert_eq!(conversations["total"], 2, "{conversations}");
}

#[tokio::test]
async fn commands_other_kinds_and_refusals_get_a_polite_reply_without_the_llm() {
    let bot = connected(Reply::answer(ANSWER, (5, 5))).await;
    let greeting = "Welcome! I am the R guide.";
    let patched = bot
        .chat
        .app
        .patch_as(
            &bot.chat.owner,
            &format!("/api/v1/projects/{}/avatars/{}", bot.chat.pid, bot.chat.aid),
            &json!({"greeting": greeting}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    bot.deliver(&text_update(10, CHAT_ID, 42, "Ada", "/start"))
        .await;
    bot.texts_ending(CHAT_ID, greeting).await;
    bot.deliver(&text_update(11, CHAT_ID, 42, "Ada", "/help"))
        .await;
    eventually(Duration::from_secs(20), "the help", || async {
        let texts = bot.telegram.chat_texts(CHAT_ID);
        if texts.last().is_some_and(|text| text.contains("/reset")) {
            Ok(())
        } else {
            Err(texts)
        }
    })
    .await;
    bot.deliver(&photo_update(12, CHAT_ID, 42)).await;
    bot.texts_ending(CHAT_ID, "I can only read text messages for now.")
        .await;
    // Kinds the bot does not answer are acknowledged and ignored.
    bot.deliver(&callback_query_update(13, CHAT_ID, 42, "x"))
        .await;
    assert!(bot.chat.llm.requests().is_empty());

    // A blocked end user: one polite refusal, no LLM call, then silence.
    bot.deliver(&text_update(14, CHAT_ID, 42, "Ada", "Hello?"))
        .await;
    bot.texts_ending(CHAT_ID, ANSWER).await;
    let end_users = bot.telegram_list("end-users").await;
    let end_user = end_users["items"][0]["id"].as_str().unwrap().to_owned();
    let blocked = bot
        .chat
        .app
        .post_as(
            &bot.chat.owner,
            &format!(
                "/api/v1/projects/{}/end-users/{end_user}/block",
                bot.chat.pid
            ),
            &json!({}),
        )
        .await;
    assert!(blocked.status < 300, "{}", blocked.text);
    let asked = bot.chat.llm.requests().len();
    bot.deliver(&text_update(15, CHAT_ID, 42, "Ada", "Still there?"))
        .await;
    let refusal = "Sorry, this assistant is not available to you.";
    let texts = bot.texts_ending(CHAT_ID, refusal).await;
    bot.deliver(&text_update(16, CHAT_ID, 42, "Ada", "Hello??"))
        .await;
    bot.deliver(&text_update(17, CHAT_ID, 77, "Bob", "/help"))
        .await;
    eventually(Duration::from_secs(20), "the other user's help", || async {
        if bot.telegram.chat_texts(CHAT_ID).len() > texts.len() {
            Ok(())
        } else {
            Err(())
        }
    })
    .await;
    let after = bot.telegram.chat_texts(CHAT_ID);
    assert_eq!(
        after.iter().filter(|text| text.as_str() == refusal).count(),
        1,
        "{after:?}"
    );
    assert_eq!(
        bot.chat.llm.requests().len(),
        asked,
        "no LLM call for a blocked user"
    );
}

#[tokio::test]
async fn long_answers_continue_in_new_messages_and_telegram_s_limits_are_honoured() {
    let paragraph = "All work and no play makes Jack a dull boy. ".repeat(40);
    let long = format!("{paragraph}\n\n{paragraph}\n\n{paragraph}");
    let bot = connected(Reply::answer(&long, (5, 500))).await;
    // The first send is refused with 429: the answer still arrives, whole.
    bot.telegram.fail_next(
        "editMessageText",
        1,
        TelegramFault::TooManyRequests { retry_after: 1 },
    );
    bot.deliver(&text_update(20, CHAT_ID, 42, "Ada", "Tell me a long story"))
        .await;
    let texts = eventually(Duration::from_secs(30), "the long answer", || async {
        let texts = bot.telegram.chat_texts(CHAT_ID);
        if texts.concat().replace(char::is_whitespace, "") == long.replace(char::is_whitespace, "")
        {
            Ok(texts)
        } else {
            Err(texts.len())
        }
    })
    .await;
    assert!(texts.len() >= 2, "split: {} messages", texts.len());
    assert!(texts.iter().all(|text| text.encode_utf16().count() <= 4096));
    assert!(
        texts[0].ends_with('.'),
        "split at a sentence: {:?}",
        &texts[0][texts[0].len() - 20..]
    );

    // The user blocked the bot: recorded, nothing more is sent to them.
    bot.telegram
        .fail_next("sendChatAction", 1, TelegramFault::BlockedByUser);
    let sent = bot.telegram.calls_of("sendMessage").len();
    bot.deliver(&text_update(21, CHAT_ID, 42, "Ada", "Another?"))
        .await;
    eventually(Duration::from_secs(20), "the update handled", || async {
        let calls = bot.telegram.calls_of("sendChatAction").len();
        if calls >= 2 { Ok(()) } else { Err(calls) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bot.telegram.calls_of("sendMessage").len(), sent);
}

#[tokio::test]
async fn polling_bots_have_one_poller_across_processes_and_restarts_lose_or_repeat_nothing() {
    let telegram = FakeTelegram::start().await;
    let polling = [
        ("APP__OUTBOUND__ALLOWED_HOSTS", "127.0.0.1"),
        ("APP__TELEGRAM__API_BASE_URL", telegram.url.as_str()),
        ("APP__TELEGRAM__EDIT_INTERVAL_MS", "50"),
        ("APP__TELEGRAM__CHAT_MESSAGES_PER_SEC", "100"),
        ("APP__TELEGRAM__CHAT_BURST", "20"),
        ("APP__TELEGRAM__POLL_TIMEOUT_SECS", "1"),
        ("APP__TELEGRAM__POLL_SUPERVISE_MS", "100"),
        ("APP__TELEGRAM__POLL_LEASE_SECS", "5"),
    ];
    // The API process runs jobs but polls nothing: the pollers are the processes below.
    let mut api = polling.to_vec();
    api.push(("APP__TELEGRAM__POLLING_ENABLED", "false"));
    let chat = chat_app_with(&api, Reply::answer(ANSWER, (5, 5)), true).await;
    let token = token_for(BOT_ID);
    telegram.add_bot(&token, BOT_ID, "guide_bot");
    let connected = put_bot(&chat, &json!({"bot_token": token, "avatar_id": chat.aid})).await;
    assert_eq!(connected.json["mode"], "polling", "{}", connected.text);
    let url = chat.app.database_url();

    // Two processes: one poller between them.
    let first = spawn_worker(&url, &polling).await;
    let second = spawn_worker(&url, &polling).await;
    let chats = |range: std::ops::Range<i64>| {
        range
            .map(|n| text_update(n, CHAT_ID + n, 40 + n, "Ada", "How do I update packages?"))
            .collect::<Vec<_>>()
    };
    telegram.queue_updates(&token, chats(1..4));
    for n in 1..4 {
        answered_once(&telegram, CHAT_ID + n).await;
    }
    // A few long polls (1 s each) with both processes up.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(telegram.poll_conflicts(), 0, "never two pollers at once");

    // Both stop; updates arrive meanwhile; a new process takes over from the stored offset.
    first.stop().await;
    second.stop().await;
    // One batch of 11 chats: two jobs (8 chats at most each). One chat's messages are
    // answered in the order they were written.
    let talkative = CHAT_ID + 100;
    let mut queued = chats(4..14);
    queued.extend([
        text_update(20, talkative, 49, "Bo", "/help"),
        text_update(21, talkative, 49, "Bo", "/reset"),
        text_update(22, talkative, 49, "Bo", "/start"),
    ]);
    telegram.queue_updates(&token, queued);
    let third = spawn_worker(&url, &polling).await;
    for n in 4..14 {
        answered_once(&telegram, CHAT_ID + n).await;
    }
    eventually(Duration::from_secs(20), "three replies", || async {
        let texts = telegram.chat_texts(talkative);
        if texts.len() == 3 { Ok(()) } else { Err(texts) }
    })
    .await;
    let texts = telegram.chat_texts(talkative);
    assert!(texts[0].contains("/reset"), "the help first: {texts:?}");
    assert!(texts[1].contains("new conversation"), "{texts:?}");
    assert!(
        texts[2].starts_with("Hello!"),
        "the greeting last: {texts:?}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for n in 1..14 {
        assert_eq!(
            telegram.chat_texts(CHAT_ID + n),
            [ANSWER],
            "update {n}: once"
        );
    }
    assert_eq!(chat.llm.requests().len(), 13);
    third.stop().await;
}

/// Waits until `chat_id` has its answer.
async fn answered_once(telegram: &FakeTelegram, chat_id: i64) {
    eventually(
        Duration::from_secs(20),
        "the polled update's answer",
        || async {
            let texts = telegram.chat_texts(chat_id);
            if texts == [ANSWER] {
                Ok(())
            } else {
                Err(texts)
            }
        },
    )
    .await;
}

#[tokio::test]
async fn messages_to_one_chat_are_paced_as_telegram_asks() {
    let telegram = FakeTelegram::start().await;
    let chat = chat_app_with(
        &[
            ("APP__TELEGRAM__API_BASE_URL", telegram.url.as_str()),
            ("APP__SERVER__PUBLIC_BASE_URL", PUBLIC),
            ("APP__TELEGRAM__CHAT_MESSAGES_PER_SEC", "4"),
            ("APP__TELEGRAM__CHAT_BURST", "1"),
        ],
        Reply::answer(ANSWER, (5, 5)),
        false,
    )
    .await;
    let token = token_for(BOT_ID);
    telegram.add_bot(&token, BOT_ID, "guide_bot");
    let connected = put_bot(&chat, &json!({"bot_token": token, "avatar_id": chat.aid})).await;
    assert_eq!(connected.status, 200, "{}", connected.text);
    let bot = Bot {
        chat,
        telegram,
        token,
    };
    for n in 0..4 {
        bot.deliver(&text_update(30 + n, CHAT_ID, 42, "Ada", "/help"))
            .await;
    }
    eventually(Duration::from_secs(20), "four replies", || async {
        let sent = bot.telegram.chat_texts(CHAT_ID).len();
        if sent == 4 { Ok(()) } else { Err(sent) }
    })
    .await;
    let mut times: Vec<_> = bot
        .telegram
        .calls()
        .into_iter()
        .filter(|call| call.method == "sendmessage")
        .map(|call| call.at)
        .collect();
    times.sort();
    let span = times[3] - times[0];
    // Four messages at four a second, no burst: at least three intervals of 250 ms.
    assert!(span >= Duration::from_millis(700), "{span:?}");
}

#[tokio::test]
async fn a_deleted_project_s_bot_is_disconnected() {
    let bot = connected(Reply::answer(ANSWER, (5, 5))).await;
    assert!(bot.telegram.webhook(&bot.token).is_some());
    let deleted = bot
        .chat
        .app
        .delete_as(
            &bot.chat.owner,
            &format!("/api/v1/projects/{}", bot.chat.pid),
        )
        .await;
    assert!(deleted.status < 300, "{}", deleted.text);
    eventually(Duration::from_secs(20), "the webhook removed", || async {
        match bot.telegram.webhook(&bot.token) {
            None => Ok(()),
            Some(webhook) => Err(webhook),
        }
    })
    .await;
    // Its updates are refused from now on.
    let update = text_update(40, CHAT_ID, 42, "Ada", "Hello?");
    let response = bot
        .post(&update, Some("whatever-it-was-before-0123456789"))
        .await;
    response.error(401, "AUTHENTICATION_REQUIRED");
}

#[tokio::test]
async fn a_token_never_follows_a_changed_bot_api_address_and_the_bot_says_why() {
    let bot = connected(Reply::answer(ANSWER, (5, 5))).await;
    let (app, owner, pid) = (&bot.chat.app, &bot.chat.owner, bot.chat.pid);
    let moved = app
        .put_as(
            owner,
            &format!("/api/v1/projects/{pid}/secrets/TELEGRAM_API_BASE_URL"),
            &json!({"value": "https://bot-api.example.com"}),
        )
        .await;
    assert_eq!(moved.status, 204, "{}", moved.text);
    let calls = bot.telegram.calls().len();
    bot.deliver(&text_update(50, CHAT_ID, 42, "Ada", "Hello?"))
        .await;
    let path = format!("/api/v1/projects/{pid}/telegram");
    let shown = eventually(Duration::from_secs(20), "the bot's error", || async {
        let shown = app.get_as(owner, &path).await.json;
        if shown["status"] == "failing" {
            Ok(shown)
        } else {
            Err(shown)
        }
    })
    .await;
    let error = shown["last_error"].as_str().unwrap();
    assert!(error.contains("another Bot API address"), "{error}");
    assert_eq!(
        bot.telegram.calls().len(),
        calls,
        "nothing was sent anywhere"
    );
}

#[tokio::test]
async fn a_group_is_one_conversation_and_the_bot_answers_only_when_addressed() {
    const GROUP: i64 = -900_100;
    let bot = connected(Reply::answer(ANSWER, (5, 5))).await;
    bot.deliver(&group_text_update(1, GROUP, 11, "Ann", "lunch at noon?"))
        .await;
    bot.deliver(&group_text_update(
        2,
        GROUP,
        11,
        "Ann",
        "@guide_bot how do I update packages?",
    ))
    .await;
    let texts = bot.texts_ending(GROUP, ANSWER).await;
    assert_eq!(texts, vec![ANSWER.to_owned()], "one answer, to the mention");
    assert_eq!(bot.chat.llm.requests().len(), 1);

    // Another member asks: the same conversation, its history included.
    bot.deliver(&group_text_update(
        3,
        GROUP,
        12,
        "Bob",
        "@guide_bot and R itself?",
    ))
    .await;
    eventually(Duration::from_secs(20), "the second answer", || async {
        let texts = bot.telegram.chat_texts(GROUP);
        if texts.len() == 2 { Ok(()) } else { Err(texts) }
    })
    .await;
    let second = bot.chat.llm.requests()[1].to_string();
    assert!(second.contains("how do I update packages?"), "{second}");
    assert!(!second.contains("@guide_bot"), "{second}");
    let conversations = bot.telegram_list("conversations").await;
    assert_eq!(conversations["total"], 1, "{conversations}");
    let end_users = bot.telegram_list("end-users").await;
    assert_eq!(end_users["total"], 1, "{end_users}");
    assert_eq!(end_users["items"][0]["display_name"], "Test group");
    assert_eq!(end_users["items"][0]["external_id"], GROUP.to_string());
}

#[tokio::test]
async fn an_update_queued_with_the_earlier_per_update_job_is_still_answered_once() {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let bot = connected(Reply::answer(ANSWER, (5, 5))).await;
    let update = text_update(70, CHAT_ID, 42, "Ada", "How do I update packages?");
    let db = bot.chat.app.context.db.clone();
    // As an earlier version stored it: the update, and a `telegram.handle_update` job for it
    // (twice, as fang may run it).
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO telegram_updates (bot_id, update_id, project_id, payload, received_at) \
         VALUES ($1, 70, $2, $3, now())",
        [BOT_ID.into(), bot.chat.pid.into(), update.into()],
    ))
    .await
    .unwrap();
    for _ in 0..2 {
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO fang_tasks (id, metadata, task_type, scheduled_at) \
             VALUES (gen_random_uuid(), $1, 'common', now())",
            [json!({"type": "telegram.handle_update", "bot_id": BOT_ID, "update_id": 70}).into()],
        ))
        .await
        .unwrap();
    }
    bot.texts_ending(CHAT_ID, ANSWER).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bot.telegram.chat_texts(CHAT_ID), [ANSWER], "answered once");
    assert_eq!(bot.chat.llm.requests().len(), 1);
}

#[tokio::test]
async fn telegram_failing_on_its_side_mid_answer_still_shows_the_whole_answer() {
    let answer = "Slow and steady wins the race, one careful step after another. ".repeat(6);
    let bot = connected(Reply::Stream {
        chunks: pieces(&answer),
        gap: Duration::from_millis(40),
        usage: Some((5, 60)),
        break_after: None,
    })
    .await;
    // The first message and then two edits fail on Telegram's side (5xx).
    bot.telegram.fail_next(
        "sendMessage",
        1,
        TelegramFault::Status {
            code: 500,
            description: "Internal Server Error".into(),
        },
    );
    bot.telegram.fail_next(
        "editMessageText",
        2,
        TelegramFault::Status {
            code: 502,
            description: "Bad Gateway".into(),
        },
    );
    bot.deliver(&text_update(30, CHAT_ID, 42, "Ada", "How to win?"))
        .await;
    eventually(Duration::from_secs(30), "the whole answer", || async {
        let texts = bot.telegram.chat_texts(CHAT_ID);
        if texts.concat().trim() == answer.trim() {
            Ok(())
        } else {
            Err(texts)
        }
    })
    .await;
    // The failures happened (the fake records refused calls too), and the answer was asked once.
    assert!(bot.telegram.calls_of("sendMessage").len() >= 2);
    assert!(bot.telegram.calls_of("editMessageText").len() >= 3);
    assert_eq!(bot.chat.llm.requests().len(), 1);
}
