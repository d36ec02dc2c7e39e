//! Usage analytics over HTTP: figures equal to what the chat did (per UTC day across midnight,
//! empty buckets, distinct end users per week), the backfill from chat's history agreeing with
//! the events, per-avatar totals and latencies, the platform overview, range validation and
//! who may read what.

use std::time::Duration;

use avatar_platform::core::clock::{Clock, ManualClock};
use avatar_platform::modules::analytics::AnalyticsService;
use chrono::{DateTime, Days};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::chat::{Chat, chat_app_at, id_of};
use crate::fake_openai::{Reply, pieces};
use crate::fixtures::TestUser;
use crate::helpers::{TestApp, eventually, spawn_app};

const ANSWER: &str = "Run update.packages() to update every installed package [1].";
const ALLOW_LOOPBACK: (&str, &str) = ("APP__OUTBOUND__ALLOWED_HOSTS", "127.0.0.1");

/// `path`'s JSON once `ready` holds for it (events are counted after the request answers).
async fn once(app: &TestApp, user: &TestUser, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(20), path, || async {
        let response = app.get_as(user, path).await;
        assert_eq!(response.status, 200, "{}", response.text);
        if ready(&response.json) {
            Ok(response.json)
        } else {
            Err(response.json)
        }
    })
    .await
}

/// A public-API question from `external_id`, in `conversation` or a new one.
async fn ask(chat: &Chat, key: &str, external_id: &str, conversation: Option<&Value>) -> Value {
    let mut body = json!({"end_user": {"external_id": external_id},
                          "message": "How do I update packages?"});
    if let Some(conversation) = conversation {
        body["conversation_id"] = conversation.clone();
    }
    let response = chat.public_chat(key, chat.aid, &body).await;
    assert_eq!(response.status, 200, "{}", response.text);
    response.json["conversation_id"].clone()
}

fn figures(bucket: &Value) -> [u64; 7] {
    [
        "messages",
        "conversations",
        "active_end_users",
        "prompt_tokens",
        "completion_tokens",
        "retrieval_only_answers",
        "failed_answers",
    ]
    .map(|name| {
        bucket[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} in {bucket}"))
    })
}

#[tokio::test]
async fn usage_counts_what_the_chat_did_per_utc_day_and_the_backfill_agrees() {
    // 20 minutes before midnight UTC, between a Wednesday and a Thursday.
    let clock = ManualClock::starting_now();
    let midnight = DateTime::parse_from_rfc3339("2027-03-11T00:00:00Z")
        .unwrap()
        .to_utc();
    clock.advance(midnight - chrono::Duration::minutes(20) - clock.now());
    let chat = chat_app_at(
        &[ALLOW_LOOPBACK],
        Reply::answer(ANSWER, (5, 5)),
        true,
        Some(clock.clone()),
    )
    .await;
    let key = chat.api_key().await;
    let (day1, day2) = (midnight.date_naive() - Days::new(1), midnight.date_naive());

    // Before midnight: Ada and Bob start a conversation each; Bob's second question fails.
    let ada = ask(&chat, &key, "ada", None).await;
    let bob = ask(&chat, &key, "bob", None).await;
    chat.llm.then([Reply::Status(401)]);
    let failed = chat
        .public_chat(
            &key,
            chat.aid,
            &json!({"end_user": {"external_id": "bob"}, "conversation_id": bob,
                    "message": "And memory?"}),
        )
        .await;
    failed.error(502, "EXTERNAL_SERVICE_ERROR");
    // After midnight: Ada again in her conversation, Carol in a new one.
    clock.advance(chrono::Duration::minutes(30));
    ask(&chat, &key, "ada", Some(&ada)).await;
    ask(&chat, &key, "carol", None).await;
    let owner = chat
        .app
        .logged_in(chat.owner.id, chat.owner.email.clone())
        .await;

    let from = day1 - Days::new(1);
    let to = day2 + Days::new(2);
    let path = format!(
        "/api/v1/projects/{}/analytics/usage?from={from}&to={to}",
        chat.pid
    );
    let daily = once(&chat.app, &owner, &path, |json| {
        json["total"]["messages"] == 9
    })
    .await;
    let buckets = daily["buckets"].as_array().unwrap();
    let days: Vec<&str> = buckets
        .iter()
        .map(|b| b["start"].as_str().unwrap())
        .collect();
    assert_eq!(
        days,
        [from, day1, day2, day2 + Days::new(1)].map(|day| day.to_string()),
        "every day of the range, empty ones included"
    );
    // messages, conversations, end users, prompt, completion, retrieval-only, failed
    assert_eq!(figures(&buckets[0]), [0; 7]);
    assert_eq!(figures(&buckets[1]), [5, 2, 2, 10, 10, 0, 1]);
    assert_eq!(figures(&buckets[2]), [4, 1, 2, 10, 10, 0, 0]);
    assert_eq!(figures(&buckets[3]), [0; 7]);
    // Distinct over the range: Ada counts once, though active on both days.
    assert_eq!(figures(&daily["total"]), [9, 3, 3, 20, 20, 0, 1]);

    // One ISO week (clipped to the range, Tuesday to Saturday): three people, not the four
    // the days add up to.
    let weekly = once(
        &chat.app,
        &owner,
        &format!("{path}&granularity=week"),
        |_| true,
    )
    .await;
    let weeks = weekly["buckets"].as_array().unwrap();
    assert_eq!(weeks.len(), 1, "{weekly}");
    assert_eq!(weeks[0]["start"], from.to_string());
    assert_eq!(weeks[0]["end"], to.to_string());
    assert_eq!(figures(&weeks[0]), [9, 3, 3, 20, 20, 0, 1]);

    // One avatar's figures, and another project's avatar is not found.
    let one = once(
        &chat.app,
        &owner,
        &format!("{path}&avatar_id={}", chat.aid),
        |_| true,
    )
    .await;
    assert_eq!(one["total"], daily["total"]);

    // The backfill, from chat's history alone, counts the same (save why a question went
    // unanswered: chat does not store it), and counts nothing twice when run again.
    chat.app
        .context
        .db
        .execute_unprepared(
            "TRUNCATE analytics_daily, analytics_active_end_users, analytics_applied_facts, \
             analytics_backfill",
        )
        .await
        .unwrap();
    let analytics = chat.app.service::<AnalyticsService>();
    assert_eq!(analytics.backfill().await.unwrap(), 3 + 9);
    let rebuilt = chat.app.get_as(&owner, &path).await.json;
    assert_eq!(figures(&rebuilt["buckets"][1]), [5, 2, 2, 10, 10, 0, 0]);
    assert_eq!(rebuilt["buckets"][2], daily["buckets"][2]);
    chat.app
        .context
        .db
        .execute_unprepared("TRUNCATE analytics_backfill")
        .await
        .unwrap();
    assert_eq!(
        analytics.backfill().await.unwrap(),
        0,
        "facts are counted once"
    );
    assert_eq!(chat.app.get_as(&owner, &path).await.json, rebuilt);
}

#[tokio::test]
async fn avatars_have_totals_and_latencies_and_the_admin_sees_the_platform() {
    let chat = chat_app_at(&[ALLOW_LOOPBACK], Reply::answer(ANSWER, (7, 3)), true, None).await;
    let (app, owner) = (&chat.app, &chat.owner);
    let conversation = chat.conversation().await;
    let answered = chat.ask(conversation, "How do I update packages?").await;
    assert_eq!(answered.status, 200, "{}", answered.text);
    // Broken off upstream after it started: stored, and counted as failed.
    chat.llm.then([Reply::Stream {
        chunks: pieces(ANSWER),
        gap: Duration::from_millis(20),
        usage: Some((7, 3)),
        break_after: Some(2),
    }]);
    chat.ask(conversation, "Again?").await;
    let second = app
        .create_avatar(
            owner,
            chat.pid,
            &json!({"name": "Second", "system_prompt": "Hi."}),
        )
        .await;
    let second_id = id_of(&second.json);
    let idle = app
        .create_avatar(
            owner,
            chat.pid,
            &json!({"name": "Idle", "system_prompt": "Hi."}),
        )
        .await;
    let idle_id = id_of(&idle.json);
    let other = app
        .post_as(
            owner,
            &format!(
                "/api/v1/projects/{}/avatars/{second_id}/conversations",
                chat.pid
            ),
            &json!({}),
        )
        .await;
    let asked = app
        .post_as(
            owner,
            &format!(
                "/api/v1/projects/{}/conversations/{}/messages",
                chat.pid,
                id_of(&other.json)
            ),
            &json!({"content": "Hello?"}),
        )
        .await;
    assert_eq!(asked.status, 200, "{}", asked.text);
    let deleted = app
        .delete_as(
            owner,
            &format!("/api/v1/projects/{}/avatars/{second_id}", chat.pid),
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);

    // A second project without an LLM: its answer is retrieval-only.
    let plain = app.project(owner, "plain").await;
    let plain_avatar = id_of(
        &app.create_avatar(owner, plain, &json!({"name": "P", "system_prompt": "Hi."}))
            .await
            .json,
    );
    let plain_conversation = id_of(
        &app.post_as(
            owner,
            &format!("/api/v1/projects/{plain}/avatars/{plain_avatar}/conversations"),
            &json!({}),
        )
        .await
        .json,
    );
    let retrieval_only = app
        .post_as(
            owner,
            &format!("/api/v1/projects/{plain}/conversations/{plain_conversation}/messages"),
            &json!({"content": "Anything?"}),
        )
        .await;
    assert_eq!(retrieval_only.status, 200, "{}", retrieval_only.text);
    let plain_usage = once(
        app,
        owner,
        &format!("/api/v1/projects/{plain}/analytics/usage"),
        |json| json["total"]["messages"] == 2,
    )
    .await;
    assert_eq!(plain_usage["total"]["retrieval_only_answers"], 1);

    let list = once(
        app,
        owner,
        &format!("/api/v1/projects/{}/analytics/avatars", chat.pid),
        |json| {
            json["items"].as_array().is_some_and(|items| {
                items
                    .iter()
                    .map(|i| i["messages"].as_u64().unwrap())
                    .sum::<u64>()
                    == 6
            })
        },
    )
    .await;
    let items = list["items"].as_array().unwrap();
    let names: Vec<&Value> = items.iter().map(|item| &item["name"]).collect();
    assert_eq!(names, [&json!("R guide"), &json!("Idle"), &Value::Null]);
    let guide = &items[0];
    assert_eq!(guide["avatar_id"], chat.aid.to_string());
    assert_eq!(
        (guide["messages"].as_u64(), guide["conversations"].as_u64()),
        (Some(4), Some(1))
    );
    assert_eq!(guide["failed_answers"], 1);
    // The tokens each answer stored (the broken one's are estimated).
    let messages = app
        .get_as(
            owner,
            &format!(
                "/api/v1/projects/{}/conversations/{conversation}/messages",
                chat.pid
            ),
        )
        .await;
    let stored: u64 = messages.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| message["usage"]["prompt_tokens"].as_u64().unwrap())
        .sum();
    assert!(stored > 7);
    assert_eq!(guide["prompt_tokens"], stored);
    assert!(
        guide["avg_first_token_ms"].as_f64().unwrap() >= 0.0,
        "{guide}"
    );
    assert!(
        guide["avg_total_ms"].as_f64().unwrap() >= guide["avg_first_token_ms"].as_f64().unwrap()
    );
    assert_eq!(items[1]["avatar_id"], idle_id.to_string());
    assert_eq!(items[1]["messages"], 0);
    assert!(items[1]["avg_total_ms"].is_null());
    assert_eq!(items[2]["avatar_id"], second_id.to_string());
    assert_eq!(items[2]["messages"], 2);

    // The platform: counts from each module, traffic from the read model.
    app.get_as(owner, "/api/v1/admin/analytics/overview")
        .await
        .error(403, "FORBIDDEN");
    let admin = app.admin().await;
    let overview = app.get_as(&admin, "/api/v1/admin/analytics/overview").await;
    assert_eq!(overview.status, 200, "{}", overview.text);
    let overview = overview.json;
    assert_eq!(overview["users"], 2);
    assert_eq!(overview["projects"], 2);
    assert_eq!(overview["avatars"], 3, "the deleted one is not counted");
    assert_eq!(overview["documents"], 1);
    assert_eq!(overview["messages"], 8);
    assert_eq!(overview["prompt_tokens"], stored + 7);
    let top = overview["top_projects"].as_array().unwrap();
    assert_eq!(top[0]["project_id"], chat.pid.to_string());
    assert_eq!(top[0]["name"], "chat");
    assert_eq!(top[1]["project_id"], plain.to_string());
}

#[tokio::test]
async fn ranges_are_checked_and_only_members_read_their_project() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "measured").await;
    let viewer = app.member(pid, &owner, "viewer").await;
    let usage = format!("/api/v1/projects/{pid}/analytics/usage");
    let avatars = format!("/api/v1/projects/{pid}/analytics/avatars");
    for path in [&usage, &avatars] {
        let seen = app.get_as(&viewer, path).await;
        assert_eq!(seen.status, 200, "{}", seen.text);
    }
    let default = app.get_as(&viewer, &usage).await.json;
    assert_eq!(default["buckets"].as_array().unwrap().len(), 30);
    assert_eq!(default["total"]["messages"], 0);
    let stranger = app.user("stranger").await;
    for path in [&usage, &avatars] {
        app.get_as(&stranger, path).await.error(404, "NOT_FOUND");
    }
    let elsewhere = app.project(&stranger, "theirs").await;
    let theirs = app
        .create_avatar(
            &stranger,
            elsewhere,
            &json!({"name": "T", "system_prompt": "Hi."}),
        )
        .await;
    app.get_as(
        &owner,
        &format!("{usage}?avatar_id={}", id_of(&theirs.json)),
    )
    .await
    .error(404, "NOT_FOUND");
    app.get_as(&owner, &format!("{usage}?avatar_id={}", Uuid::now_v7()))
        .await
        .error(404, "NOT_FOUND");

    let refused = [
        ("from=yesterday", "from"),
        ("to=2026-02-30", "to"),
        ("from=2026-12-05&to=2026-12-01", "from"),
        ("from=2026-12-01T10:00:00Z", "from"),
        ("from=2020-01-01&to=2026-01-01", "to"),
        ("granularity=hour", "granularity"),
    ];
    for (query, field) in refused {
        let response = app.get_as(&owner, &format!("{usage}?{query}")).await;
        assert_eq!(
            response.error(422, "VALIDATION_ERROR")["field"],
            field,
            "{query}"
        );
    }
    let admin = app.admin().await;
    let response = app
        .get_as(&admin, "/api/v1/admin/analytics/overview?from=later")
        .await;
    assert_eq!(response.error(422, "VALIDATION_ERROR")["field"], "from");
    let months = app
        .get_as(
            &owner,
            &format!("{usage}?from=2026-01-15&to=2026-04-01&granularity=month"),
        )
        .await;
    let starts: Vec<&str> = months.json["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|bucket| bucket["start"].as_str().unwrap())
        .collect();
    assert_eq!(starts, ["2026-01-15", "2026-02-01", "2026-03-01"]);
}
