//! Billing over HTTP: the plan catalogue, subscriptions and their periods, token budgets that
//! concurrency cannot overspend (against the fake LLM), the usage ledger, plan limits with
//! races for the last slot, lowering a plan, the plan's request rate, and who may see what.

use std::sync::Arc;
use std::time::Duration;

use avatar_platform::core::clock::ManualClock;
use avatar_platform::core::ids::ProjectId;
use avatar_platform::modules::billing::BillingService;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::fake_openai::{FakeOpenAi, Reply, pieces};
use crate::fixtures::TestUser;
use crate::helpers::{AppOptions, TestApp, eventually, spawn_app, spawn_app_with};

/// Usage the fake LLM reports for every answer: within what an answer reserves (about 470
/// tokens with [`counted_app_overrides`] and [`avatar_with_llm`]'s settings), as the real
/// provider's usage is within the estimate.
const PROMPT_TOKENS: u32 = 300;
const COMPLETION_TOKENS: u32 = 100;

fn plan(code: &str, tokens: i64, avatars: i32, documents: i32, storage_mb: i32) -> Value {
    json!({"code": code, "name": code, "monthly_token_limit": tokens, "max_avatars": avatars,
           "max_documents": documents, "max_storage_mb": storage_mb,
           "requests_per_minute": 1000})
}

/// The saas_admin, an owner, and the owner's project moved onto a new plan made from `body`.
async fn project_on(app: &TestApp, body: Value) -> (TestUser, Uuid) {
    let admin = app.admin().await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "billed").await;
    let created = app.post_as(&admin, "/api/v1/admin/plans", &body).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let moved = app
        .put_as(
            &admin,
            &format!("/api/v1/admin/projects/{pid}/plan"),
            &json!({"plan_code": body["code"]}),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.text);
    (owner, pid)
}

async fn billing(app: &TestApp, user: &TestUser, pid: Uuid) -> Value {
    let response = app
        .get_as(user, &format!("/api/v1/projects/{pid}/billing"))
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    response.json
}

async fn ledger(app: &TestApp, user: &TestUser, pid: Uuid, query: &str) -> Vec<Value> {
    let response = app
        .get_as(
            user,
            &format!("/api/v1/projects/{pid}/billing/usage?limit=200{query}"),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    response.json["items"].as_array().unwrap().clone()
}

/// An avatar of `pid` answering through the fake LLM (the project's own endpoint is a project
/// secret; the platform's counts: see `count_own_key_usage`, set to true in these apps).
async fn avatar_with_llm(app: &TestApp, owner: &TestUser, pid: Uuid, llm: &FakeOpenAi) -> Uuid {
    let created = app
        .create_avatar(
            owner,
            pid,
            &json!({"name": "Counter", "system_prompt": "You count.",
                    "llm": {"model": "fake-model", "max_tokens": 200},
                    "rag": {"top_k": 1, "chunk_size": 100, "chunk_overlap": 10}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let put = app
        .put_as(
            owner,
            &format!("/api/v1/projects/{pid}/secrets/LLM_BASE_URL"),
            &json!({"value": llm.url}),
        )
        .await;
    assert_eq!(put.status, 204, "{}", put.text);
    Uuid::parse_str(created.json["id"].as_str().unwrap()).unwrap()
}

async fn conversation(app: &TestApp, owner: &TestUser, pid: Uuid, aid: Uuid) -> Uuid {
    let response = app
        .post_as(
            owner,
            &format!("/api/v1/projects/{pid}/avatars/{aid}/conversations"),
            &json!({}),
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.text);
    Uuid::parse_str(response.json["id"].as_str().unwrap()).unwrap()
}

fn counted_app_overrides() -> Vec<(&'static str, &'static str)> {
    vec![
        ("APP__OUTBOUND__ALLOWED_HOSTS", "127.0.0.1"),
        // The fake LLM is the project's own endpoint here; make its usage count.
        ("APP__BILLING__COUNT_OWN_KEY_USAGE", "true"),
        // Small estimates (history is part of what an answer reserves).
        ("APP__CHAT__HISTORY_TOKEN_BUDGET", "100"),
    ]
}

fn slow_answer() -> Reply {
    Reply::Stream {
        chunks: pieces("one two three four five"),
        gap: Duration::from_millis(40),
        usage: Some((PROMPT_TOKENS, COMPLETION_TOKENS)),
        break_after: None,
    }
}

#[tokio::test]
async fn the_catalogue_is_seeded_and_the_saas_admin_manages_it() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let user = app.user("shopper").await;

    let public = app.get_as(&user, "/api/v1/billing/plans").await;
    assert_eq!(public.status, 200, "{}", public.text);
    let codes: Vec<&str> = public.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|plan| plan["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["free", "standard", "pro", "enterprise"]);
    assert_eq!(public.json["items"][0]["is_default"], true);

    // Only the saas_admin edits it.
    app.get_as(&user, "/api/v1/admin/plans")
        .await
        .error(403, "FORBIDDEN");
    app.post_as(&user, "/api/v1/admin/plans", &plan("mine", 1, 1, 1, 1))
        .await
        .error(403, "FORBIDDEN");

    // Bad input names the field; nothing is created.
    let negative = app
        .post_as(&admin, "/api/v1/admin/plans", &plan("neg", 1, -1, 1, 1))
        .await;
    assert_eq!(
        negative.error(422, "VALIDATION_ERROR")["field"],
        "max_avatars"
    );
    let bad_code = app
        .post_as(
            &admin,
            "/api/v1/admin/plans",
            &plan("Not A Code", 1, 1, 1, 1),
        )
        .await;
    assert_eq!(bad_code.error(422, "VALIDATION_ERROR")["field"], "code");

    let created = app
        .post_as(
            &admin,
            "/api/v1/admin/plans",
            &plan("team", 500_000, 4, 40, 400),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["is_public"], true);
    app.post_as(&admin, "/api/v1/admin/plans", &plan("team", 1, 1, 1, 1))
        .await
        .error(409, "CONFLICT");

    // Hidden: gone from the public list, kept in the catalogue.
    let hidden = app
        .patch_as(
            &admin,
            "/api/v1/admin/plans/team",
            &json!({"is_public": false, "max_avatars": 6}),
        )
        .await;
    assert_eq!(hidden.status, 200, "{}", hidden.text);
    assert_eq!(hidden.json["max_avatars"], 6);
    let public = app.get_as(&user, "/api/v1/billing/plans").await;
    assert!(!public.text.contains("\"team\""), "{}", public.text);
    let all = app.get_as(&admin, "/api/v1/admin/plans").await;
    assert!(all.text.contains("\"team\""), "{}", all.text);
    app.patch_as(&admin, "/api/v1/admin/plans/nope", &json!({"name": "x"}))
        .await
        .error(404, "NOT_FOUND");
    // The default plan can be neither hidden nor left without a successor.
    app.patch_as(
        &admin,
        "/api/v1/admin/plans/free",
        &json!({"is_public": false}),
    )
    .await
    .error(409, "CONFLICT");
    app.patch_as(
        &admin,
        "/api/v1/admin/plans/free",
        &json!({"is_default": false}),
    )
    .await
    .error(409, "CONFLICT");

    // A plan in use is never deleted; an unused one may be.
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "on team").await;
    let moved = app
        .put_as(
            &admin,
            &format!("/api/v1/admin/projects/{pid}/plan"),
            &json!({"plan_code": "team"}),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.text);
    assert_eq!(moved.json["plan"], "team");
    app.delete_as(&admin, "/api/v1/admin/plans/team")
        .await
        .error(409, "CONFLICT");
    let spare = app
        .post_as(&admin, "/api/v1/admin/plans", &plan("spare", 1, 1, 1, 1))
        .await;
    assert_eq!(spare.status, 201, "{}", spare.text);
    assert_eq!(
        app.delete_as(&admin, "/api/v1/admin/plans/spare")
            .await
            .status,
        204
    );
    // An unknown plan is a bad plan_code; another project's id is unknown.
    let unknown = app
        .put_as(
            &admin,
            &format!("/api/v1/admin/projects/{pid}/plan"),
            &json!({"plan_code": "platinum"}),
        )
        .await;
    assert_eq!(unknown.error(422, "VALIDATION_ERROR")["field"], "plan_code");
    app.put_as(
        &admin,
        &format!("/api/v1/admin/projects/{}/plan", Uuid::now_v7()),
        &json!({"plan_code": "free"}),
    )
    .await
    .error(404, "NOT_FOUND");
    let changes = app.events_of_type("billing.plan_changed").await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["event"]["from"], "free");
    assert_eq!(changes[0]["event"]["to"], "team");
}

#[tokio::test]
async fn a_new_project_starts_on_the_default_plan_for_a_month_and_only_members_see_it() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "fresh").await;
    let project = app.get_as(&owner, &format!("/api/v1/projects/{pid}")).await;
    assert_eq!(project.json["plan"], "free");

    let standing = billing(&app, &owner, pid).await;
    assert_eq!(standing["plan"], "free");
    assert_eq!(standing["tokens_used"], 0);
    assert_eq!(standing["tokens_reserved"], 0);
    assert_eq!(standing["avatars_count"], 0);
    let start: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(standing["period_start"].clone()).unwrap();
    let end: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(standing["period_end"].clone()).unwrap();
    let days = (end - start).num_days();
    assert!((28..=31).contains(&days), "a monthly period: {days} days");
    assert_eq!(
        app.events_of_type("billing.subscription_started")
            .await
            .len(),
        1
    );

    // A viewer sees it; someone else's project, and a made-up one, answer 404.
    let viewer = app.member(pid, &owner, "viewer").await;
    billing(&app, &viewer, pid).await;
    let stranger = app.user("stranger").await;
    for path in [
        format!("/api/v1/projects/{pid}/billing"),
        format!("/api/v1/projects/{pid}/billing/usage"),
        format!("/api/v1/projects/{}/billing", Uuid::now_v7()),
    ] {
        app.get_as(&stranger, &path).await.error(404, "NOT_FOUND");
    }
    // Admin routes are the saas_admin's.
    app.put_as(
        &owner,
        &format!("/api/v1/admin/projects/{pid}/plan"),
        &json!({"plan_code": "pro"}),
    )
    .await
    .error(403, "FORBIDDEN");
}

#[tokio::test]
async fn two_creations_racing_for_the_last_avatar_slot_get_one_avatar_and_a_lower_plan_deletes_nothing()
 {
    let app = spawn_app().await;
    let (owner, pid) = project_on(&app, plan("two-avatars", 1000, 2, 10, 10)).await;
    let admin = app.admin().await;
    let first = app
        .create_avatar(
            &owner,
            pid,
            &json!({"name": "one", "system_prompt": "You help."}),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.text);

    let body = json!({"name": "racer", "system_prompt": "You help."});
    let (a, b) = tokio::join!(
        app.create_avatar(&owner, pid, &body),
        app.create_avatar(&owner, pid, &body)
    );
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 402], "{} / {}", a.text, b.text);
    let refused = if a.status == 402 { &a } else { &b };
    let error = refused.error(402, "PLAN_LIMIT_REACHED");
    assert_eq!(error["details"]["limit"], "max_avatars");
    assert_eq!(error["details"]["value"], 2);
    assert_eq!(billing(&app, &owner, pid).await["avatars_count"], 2);

    // A deleted avatar frees its slot.
    let first_id = first.json["id"].as_str().unwrap();
    let deleted = app
        .delete_as(
            &owner,
            &format!("/api/v1/projects/{pid}/avatars/{first_id}"),
        )
        .await;
    assert_eq!(deleted.status, 204);
    let again = app
        .create_avatar(
            &owner,
            pid,
            &json!({"name": "three", "system_prompt": "You help."}),
        )
        .await;
    assert_eq!(again.status, 201, "{}", again.text);

    // Lowered to one avatar: both stay, a new one is refused.
    let lowered = app
        .patch_as(
            &admin,
            "/api/v1/admin/plans/two-avatars",
            &json!({"max_avatars": 1}),
        )
        .await;
    assert_eq!(lowered.status, 200, "{}", lowered.text);
    let listed = app
        .get_as(&owner, &format!("/api/v1/projects/{pid}/avatars"))
        .await;
    assert_eq!(listed.json["total"], 2);
    app.create_avatar(
        &owner,
        pid,
        &json!({"name": "four", "system_prompt": "You help."}),
    )
    .await
    .error(402, "PLAN_LIMIT_REACHED");
}

#[tokio::test]
async fn documents_are_limited_by_count_and_by_their_real_size() {
    let app = spawn_app().await;
    let (owner, pid) = project_on(&app, plan("small-docs", 1000, 5, 2, 1)).await;
    let avatar = app
        .create_avatar(
            &owner,
            pid,
            &json!({"name": "reader", "system_prompt": "You read."}),
        )
        .await;
    let aid = avatar.json["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/projects/{pid}/avatars/{aid}/documents");

    // Too big for 1 MB of storage: refused, nothing kept.
    let big = "a kettle boils water. ".repeat(60_000).into_bytes();
    let refused = app.upload(&owner, &path, "big.txt", big).await;
    let error = refused.error(402, "PLAN_LIMIT_REACHED");
    assert_eq!(error["details"]["limit"], "max_storage_mb");
    assert_eq!(error["details"]["value"], 1);
    assert_eq!(app.get_as(&owner, &path).await.json["total"], 0);

    let first = app
        .upload(
            &owner,
            &path,
            "note-0.txt",
            b"note number 0 about kettles".to_vec(),
        )
        .await;
    assert_eq!(first.status, 202, "{}", first.text);
    // Two uploads racing for the last slot: one is stored, the other refused.
    let (a, b) = tokio::join!(
        app.upload(&owner, &path, "note-1.txt", b"note number 1".to_vec()),
        app.upload(&owner, &path, "note-2.txt", b"note number 2".to_vec())
    );
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [202, 402], "{} / {}", a.text, b.text);
    let refused = if a.status == 402 { &a } else { &b };
    assert_eq!(
        refused.error(402, "PLAN_LIMIT_REACHED")["details"]["limit"],
        "max_documents"
    );
    assert_eq!(app.get_as(&owner, &path).await.json["total"], 2);
    let ids = [first.json["id"].as_str().unwrap().to_owned()];
    let standing = billing(&app, &owner, pid).await;
    assert_eq!(standing["documents_count"], 2);
    assert!(standing["storage_bytes"].as_i64().unwrap() > 0);

    // Deleting one frees its slot and its bytes.
    let deleted = app.delete_as(&owner, &format!("{path}/{}", ids[0])).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    let standing = billing(&app, &owner, pid).await;
    assert_eq!(standing["documents_count"], 1);
    let retried = app
        .upload(&owner, &path, "note-3.txt", b"a third note".to_vec())
        .await;
    assert_eq!(retried.status, 202, "{}", retried.text);
}

#[tokio::test]
async fn an_exhausted_budget_refuses_before_any_llm_call() {
    let overrides = counted_app_overrides();
    let app = spawn_app_with(AppOptions {
        overrides: &overrides,
        workers: 1,
        ..AppOptions::default()
    })
    .await;
    let (owner, pid) = project_on(&app, plan("starved", 100, 5, 5, 5)).await;
    let llm = FakeOpenAi::chat(slow_answer()).await;
    let aid = avatar_with_llm(&app, &owner, pid, &llm).await;
    let cid = conversation(&app, &owner, pid, aid).await;
    let refused = app
        .post_as(
            &owner,
            &format!("/api/v1/projects/{pid}/conversations/{cid}/messages"),
            &json!({"content": "how many?"}),
        )
        .await;
    let error = refused.error(402, "TOKEN_LIMIT_EXCEEDED");
    assert_eq!(error["details"]["tokens_limit"], 100);
    assert!(llm.requests().is_empty(), "no LLM call was made");
    // Nothing was stored either.
    let messages = app
        .get_as(
            &owner,
            &format!("/api/v1/projects/{pid}/conversations/{cid}/messages"),
        )
        .await;
    assert_eq!(messages.json["total"], 0, "{}", messages.text);
    assert_eq!(billing(&app, &owner, pid).await["tokens_reserved"], 0);
}

#[tokio::test]
async fn forty_concurrent_chats_never_push_usage_over_the_limit() {
    let overrides = counted_app_overrides();
    let app = spawn_app_with(AppOptions {
        overrides: &overrides,
        workers: 1,
        ..AppOptions::default()
    })
    .await;
    let llm = FakeOpenAi::chat(slow_answer()).await;
    // Room for a few answers: each reserves its whole estimate until it is settled.
    let limit = 4_000;
    let (owner, pid) = project_on(&app, plan("few-answers", limit, 5, 5, 5)).await;
    let aid = avatar_with_llm(&app, &owner, pid, &llm).await;
    let cid = conversation(&app, &owner, pid, aid).await;
    let path = format!("/api/v1/projects/{pid}/conversations/{cid}/messages");

    let app = Arc::new(app);
    let asks = (0..40).map(|n| {
        let (app, owner, path) = (app.clone(), owner.clone(), path.clone());
        tokio::spawn(async move {
            app.post_as(&owner, &path, &json!({"content": format!("question {n}")}))
                .await
        })
    });
    let mut answered = 0;
    let mut refused = 0;
    for ask in futures_util::future::join_all(asks).await {
        let response = ask.unwrap();
        match response.status {
            200 => answered += 1,
            402 => {
                response.error(402, "TOKEN_LIMIT_EXCEEDED");
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", response.text),
        }
    }
    assert!(
        answered >= 1 && refused >= 1,
        "{answered} answered, {refused} refused"
    );

    let calls = llm.requests().len();
    assert_eq!(
        calls, answered,
        "one LLM call per answer, none for a refusal"
    );
    let rows = ledger(&app, &owner, pid, "&kind=chat").await;
    assert_eq!(rows.len(), calls, "one ledger row per LLM call");
    let per_answer = i64::from(PROMPT_TOKENS + COMPLETION_TOKENS);
    let standing = billing(&app, &owner, pid).await;
    let used = standing["tokens_used"].as_i64().unwrap();
    assert_eq!(used, per_answer * calls as i64, "{standing}");
    assert!(used <= limit, "used {used} of {limit}");
    assert_eq!(standing["tokens_reserved"], 0, "every reservation settled");
    let ledger_total: i64 = rows
        .iter()
        .map(|row| row["total_tokens"].as_i64().unwrap())
        .sum();
    assert_eq!(ledger_total, used);
}

#[tokio::test]
async fn usage_is_ledgered_thresholds_announced_once_per_period_and_periods_roll_over() {
    let clock = ManualClock::starting_now();
    let overrides = counted_app_overrides();
    let app = spawn_app_with(AppOptions {
        overrides: &overrides,
        workers: 1,
        clock: Some(clock.clone()),
        ..AppOptions::default()
    })
    .await;
    let llm = FakeOpenAi::chat(Reply::answer("counted", (PROMPT_TOKENS, COMPLETION_TOKENS))).await;
    // Two answers (800 tokens) reach 80 %; a third does not fit.
    let (owner, pid) = project_on(&app, plan("metered", 1_000, 5, 5, 5)).await;
    let aid = avatar_with_llm(&app, &owner, pid, &llm).await;
    let cid = conversation(&app, &owner, pid, aid).await;
    let path = format!("/api/v1/projects/{pid}/conversations/{cid}/messages");
    let ask = |owner: TestUser| {
        let (app, path) = (&app, path.clone());
        async move {
            app.post_as(&owner, &path, &json!({"content": "count"}))
                .await
        }
    };
    for _ in 0..2 {
        let answered = ask(owner.clone()).await;
        assert_eq!(answered.status, 200, "{}", answered.text);
    }
    ask(owner.clone()).await.error(402, "TOKEN_LIMIT_EXCEEDED");
    let first = billing(&app, &owner, pid).await;
    assert_eq!(first["tokens_used"], 800);
    let rows = ledger(&app, &owner, pid, "&kind=chat").await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["kind"], "chat");
    assert_eq!(rows[0]["model"], "fake-model");
    assert_eq!(rows[0]["prompt_tokens"], PROMPT_TOKENS);
    assert_eq!(rows[0]["counted"], true);
    assert_eq!(rows[0]["tokens_used_after"], 800, "newest first");
    assert_eq!(rows[0]["avatar_id"], aid.to_string());
    // Each question's embedding too: recorded, not counted (`count_embedding_tokens`).
    let embeddings = ledger(&app, &owner, pid, "&kind=embedding").await;
    assert_eq!(embeddings.len(), 2);
    assert_eq!(embeddings[0]["counted"], false);
    assert_eq!(embeddings[0]["completion_tokens"], 0);
    assert!(embeddings[0]["prompt_tokens"].as_i64().unwrap() > 0);
    assert_eq!(embeddings[0]["conversation_id"], rows[0]["conversation_id"]);
    let thresholds = app.events_of_type("billing.budget_threshold_reached").await;
    assert_eq!(thresholds.len(), 1, "{thresholds:?}");
    assert_eq!(thresholds[0]["event"]["percent"], 80);

    // A month later the maintenance job (its schedule on the same clock) starts a new period:
    // usage at zero, the old one's history kept.
    clock.advance(chrono::Duration::days(32));
    let owner = app.logged_in(owner.id, owner.email.clone()).await;
    let second = eventually(Duration::from_secs(20), "the period rolls over", || async {
        let standing = billing(&app, &owner, pid).await;
        if standing["period_start"] == first["period_end"] {
            Ok(standing)
        } else {
            Err(standing)
        }
    })
    .await;
    assert_eq!(second["tokens_used"], 0);
    assert_eq!(
        ledger(&app, &owner, pid, "").await.len(),
        4,
        "history stays"
    );
    let rolled = app.events_of_type("billing.period_rolled_over").await;
    assert_eq!(rolled.len(), 1);
    assert_eq!(rolled[0]["event"]["tokens_used"], 800);

    // The new period has its own budget and announces its own thresholds.
    for _ in 0..2 {
        let answered = ask(owner.clone()).await;
        assert_eq!(answered.status, 200, "{}", answered.text);
    }
    // (Announced for this period: the first period's event is past the outbox's retention.)
    let announced: Vec<Value> = app
        .events_of_type("billing.budget_threshold_reached")
        .await
        .into_iter()
        .filter(|event| event["event"]["period_end"] == second["period_end"])
        .collect();
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(announced[0]["event"]["percent"], 80);
    // The ledger filters by time (`to` exclusive) and kind.
    let new_period = format!(
        "&from={}",
        second["period_start"].as_str().unwrap().replace('+', "%2B")
    );
    assert_eq!(ledger(&app, &owner, pid, &new_period).await.len(), 4);
    let this_period_chats = format!("{new_period}&kind=chat");
    assert_eq!(ledger(&app, &owner, pid, &this_period_chats).await.len(), 2);
    let before_it = format!(
        "&to={}",
        second["period_start"].as_str().unwrap().replace('+', "%2B")
    );
    assert_eq!(ledger(&app, &owner, pid, &before_it).await.len(), 4);
}

#[tokio::test]
async fn a_reservation_left_by_a_dead_answer_is_released_by_the_job() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with(AppOptions {
        workers: 1,
        clock: Some(clock.clone()),
        ..AppOptions::default()
    })
    .await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "crashy").await;
    // What a process that died mid-answer leaves: a reservation nobody settles.
    let billing_service = app.service::<BillingService>();
    billing_service
        .reserve(ProjectId::from_uuid(pid), 5_000)
        .await
        .expect("room on the free plan");
    let held = billing(&app, &owner, pid).await["tokens_reserved"]
        .as_i64()
        .unwrap();
    assert!(held >= 5_000, "{held}");

    // Not yet expired: the job leaves it.
    assert_eq!(billing_service.expire_reservations().await.unwrap(), 0);
    // Past `billing.reservation_ttl_secs` (600 s) the scheduled job releases it.
    clock.advance(chrono::Duration::seconds(601));
    eventually(
        Duration::from_secs(20),
        "the reservation is released",
        || async {
            let reserved = billing(&app, &owner, pid).await["tokens_reserved"].clone();
            if reserved == 0 { Ok(()) } else { Err(reserved) }
        },
    )
    .await;
}

#[tokio::test]
async fn the_plan_limits_chat_requests_per_minute_per_project() {
    let overrides = counted_app_overrides();
    let app = spawn_app_with(AppOptions {
        overrides: &overrides,
        workers: 1,
        ..AppOptions::default()
    })
    .await;
    let mut body = plan("slow-lane", 1_000_000, 5, 5, 5);
    body["requests_per_minute"] = json!(2);
    let (owner, pid) = project_on(&app, body).await;
    let llm = FakeOpenAi::chat(Reply::answer("ok", (PROMPT_TOKENS, COMPLETION_TOKENS))).await;
    let aid = avatar_with_llm(&app, &owner, pid, &llm).await;
    let cid = conversation(&app, &owner, pid, aid).await;
    let path = format!("/api/v1/projects/{pid}/conversations/{cid}/messages");
    // Requests straddling the end of a minute would be counted in two windows.
    crate::helpers::early_in_window(std::time::Duration::from_secs(60)).await;
    for _ in 0..2 {
        let answered = app
            .post_as(&owner, &path, &json!({"content": "hello"}))
            .await;
        assert_eq!(answered.status, 200, "{}", answered.text);
    }
    let limited = app
        .post_as(&owner, &path, &json!({"content": "hello"}))
        .await;
    let error = limited.error(429, "RATE_LIMITED");
    assert_eq!(error["details"]["limit"], "requests_per_minute");
    assert!(limited.header("retry-after").is_some());
    assert_eq!(llm.requests().len(), 2);
}

#[tokio::test]
async fn an_owner_asks_for_a_plan_and_the_saas_admin_decides() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "growing").await;
    let requests = format!("/api/v1/projects/{pid}/plan-requests");
    // The free plan's three avatars, and no fourth.
    for n in 0..3 {
        let created = app
            .create_avatar(
                &owner,
                pid,
                &json!({"name": format!("a{n}"), "system_prompt": "You help."}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
    }
    let fourth = json!({"name": "a3", "system_prompt": "You help."});
    app.create_avatar(&owner, pid, &fourth)
        .await
        .error(402, "PLAN_LIMIT_REACHED");

    // Who may ask, and what.
    let manager = app.member(pid, &owner, "manager").await;
    app.post_as(&manager, &requests, &json!({"plan_code": "pro"}))
        .await
        .error(403, "FORBIDDEN");
    let stranger = app.user("stranger").await;
    app.post_as(&stranger, &requests, &json!({"plan_code": "pro"}))
        .await
        .error(404, "NOT_FOUND");
    let unknown = app
        .post_as(&owner, &requests, &json!({"plan_code": "platinum"}))
        .await;
    assert_eq!(unknown.error(422, "VALIDATION_ERROR")["field"], "plan_code");
    let same = app
        .post_as(&owner, &requests, &json!({"plan_code": "free"}))
        .await;
    assert_eq!(same.error(422, "VALIDATION_ERROR")["field"], "plan_code");

    let asked = app
        .post_as(
            &owner,
            &requests,
            &json!({"plan_code": "pro", "comment": "we are growing"}),
        )
        .await;
    assert_eq!(asked.status, 201, "{}", asked.text);
    assert_eq!(asked.json["status"], "pending");
    assert_eq!(asked.json["comment"], "we are growing");
    app.post_as(&owner, &requests, &json!({"plan_code": "standard"}))
        .await
        .error(409, "CONFLICT");
    let listed = app.get_as(&owner, &requests).await;
    assert_eq!(listed.json["total"], 1);
    app.get_as(&stranger, &requests)
        .await
        .error(404, "NOT_FOUND");

    // The saas_admin sees every project's pending requests, and rejects this one.
    app.get_as(&owner, "/api/v1/admin/plan-requests")
        .await
        .error(403, "FORBIDDEN");
    let pending = app
        .get_as(&admin, "/api/v1/admin/plan-requests?status=pending")
        .await;
    assert_eq!(pending.status, 200, "{}", pending.text);
    assert!(pending.text.contains(asked.json["id"].as_str().unwrap()));
    let first = asked.json["id"].as_str().unwrap();
    for decision in ["approve", "reject"] {
        app.post_as(
            &owner,
            &format!("/api/v1/admin/plan-requests/{first}/{decision}"),
            &json!({}),
        )
        .await
        .error(403, "FORBIDDEN");
    }
    let rejected = app
        .post_as(
            &admin,
            &format!("/api/v1/admin/plan-requests/{first}/reject"),
            &json!({"comment": "not this month"}),
        )
        .await;
    assert_eq!(rejected.status, 200, "{}", rejected.text);
    assert_eq!(rejected.json["status"], "rejected");
    assert_eq!(rejected.json["resolution_comment"], "not this month");
    app.post_as(
        &admin,
        &format!("/api/v1/admin/plan-requests/{first}/approve"),
        &json!({}),
    )
    .await
    .error(409, "CONFLICT");
    assert_eq!(billing(&app, &owner, pid).await["plan"], "free");

    // Asked again and approved: the plan changes at once, and its limits with it.
    let again = app
        .post_as(&owner, &requests, &json!({"plan_code": "standard"}))
        .await;
    assert_eq!(again.status, 201, "{}", again.text);
    let second = again.json["id"].as_str().unwrap();
    let approved = app
        .post_as(
            &admin,
            &format!("/api/v1/admin/plan-requests/{second}/approve"),
            &json!({}),
        )
        .await;
    assert_eq!(approved.status, 200, "{}", approved.text);
    assert_eq!(approved.json["status"], "approved");
    assert_eq!(billing(&app, &owner, pid).await["plan"], "standard");
    let created = app.create_avatar(&owner, pid, &fourth).await;
    assert_eq!(created.status, 201, "{}", created.text);
    app.post_as(
        &admin,
        &format!("/api/v1/admin/plan-requests/{}/approve", Uuid::now_v7()),
        &json!({}),
    )
    .await
    .error(404, "NOT_FOUND");

    assert_eq!(
        app.events_of_type("plan_requests.plan_request_created")
            .await
            .len(),
        2
    );
    let resolved = app
        .events_of_type("plan_requests.plan_request_resolved")
        .await;
    assert_eq!(resolved.len(), 2);
    assert_eq!(resolved[1]["event"]["approved"], true);
    assert_eq!(app.events_of_type("billing.plan_changed").await.len(), 1);
}
