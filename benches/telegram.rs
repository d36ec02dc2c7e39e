//! Telegram: webhook acknowledgements per second — the secret checked, the update stored and
//! its job enqueued in one transaction, 200 — sent by wrk from its own process at Telegram's
//! default concurrency per bot (`max_connections` = 40) and at 16, against a reference measured
//! in the same run on the same server: pgbench's TPS for a single-row
//! `INSERT ... ON CONFLICT DO NOTHING` at the same concurrency. A breakdown follows: `GET
//! /health` from the same sender (HTTP alone), the acknowledgements without HTTP (`receive`
//! called in-process), the webhook's statement alone under pgbench and the single-row insert
//! through the app's driver. Then end-to-end updates per second: private-chat questions through
//! the webhook, answered by the job workers through the chat pipeline (an instant local LLM)
//! into the local fake Bot API, with the per-bot pacing lifted (at Telegram's 30 messages/s per
//! bot the pacing is all one would see). `make bench` runs it; figures go to
//! docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../tests/integration/fake_openai.rs"]
#[allow(dead_code)]
mod fake_openai;
#[path = "../tests/integration/fake_telegram.rs"]
#[allow(dead_code)]
mod fake_telegram;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use avatar_platform::modules::telegram::TelegramService;
use common::load::{pgbench_script_tps, wrk};
use fake_openai::{FakeOpenAi, Reply};
use fake_telegram::{FakeTelegram, text_update, token_for};

/// Telegram's default `max_connections`: how many webhook calls one bot gets at once.
const TELEGRAM_CONCURRENCY: usize = 40;
/// The concurrency of the in-process references.
const CONCURRENCY: usize = 16;
/// Updates for each in-process phase.
const ACKS: usize = 20_000;
const ANSWERED: usize = 300;
const BOT_ID: i64 = 7_000_000_001;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::with_bench_database("bench_telegram", |url| async move { run(&url).await }).await
}

/// pgbench's TPS for one `INSERT ... ON CONFLICT DO NOTHING` per transaction.
fn pgbench_insert_tps(url: &str, clients: usize) -> anyhow::Result<f64> {
    pgbench_script_tps(
        url,
        clients,
        "\\set k random(1, 1000000000)\n\
         INSERT INTO bench_upserts (bot_id, update_id, payload) \
         VALUES (1, :k, '{\"update_id\": 1}') ON CONFLICT DO NOTHING;\n",
    )
}

/// Registers an owner, makes a project and avatar, points the project at `llm`, connects the
/// bot; returns the webhook secret.
async fn set_up(base: &str, llm: &FakeOpenAi, telegram: &FakeTelegram) -> anyhow::Result<String> {
    let client = reqwest::Client::new();
    let common::OwnedAvatar { token, pid, aid } = common::owner_with_avatar(
        &client,
        base,
        json!({"name": "Bench", "system_prompt": "Answer briefly.", "llm": {"max_tokens": 50}}),
    )
    .await?;
    let call = |method: reqwest::Method, path: &str, token: &str, body: Value| {
        client
            .request(method, format!("{base}{path}"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    call(
        reqwest::Method::PUT,
        &format!("/api/v1/projects/{pid}/secrets/LLM_BASE_URL"),
        &token,
        json!({"value": llm.url}),
    )
    .await?
    .error_for_status()?;
    let bot_token = token_for(BOT_ID);
    telegram.add_bot(&bot_token, BOT_ID, "bench_bot");
    call(
        reqwest::Method::PUT,
        &format!("/api/v1/projects/{pid}/telegram"),
        &token,
        json!({"bot_token": bot_token, "avatar_id": aid, "mode": "webhook"}),
    )
    .await?
    .error_for_status()?;
    let (_, secret) = telegram
        .webhook(&bot_token)
        .ok_or_else(|| anyhow::anyhow!("no webhook was set"))?;
    Ok(secret)
}

/// wrk's Lua for webhook calls: each request a new private-chat update, `update_id`s from
/// `first` up, none repeated across wrk's threads.
fn webhook_script(secret: &str, first: u64) -> anyhow::Result<String> {
    // A real update with markers where the numbers go (update_id, chat and sender ids).
    let update = text_update(
        111_111_111,
        222_222_222,
        333_333_333,
        "Ada",
        "How do I update?",
    );
    let body = serde_json::to_string(&update)?;
    // The body as Lua concatenation: its text in pieces, the numbers where the markers were.
    // (Cheaper per request than substituting into a template: wrk's Lua shares the CPU.)
    let mut expression = Vec::new();
    let mut rest = body.as_str();
    let marker = |text: &str| {
        [
            ("111111111", "n"),
            ("222222222", "(1000000 + n)"),
            ("333333333", "(500000 + n)"),
        ]
        .into_iter()
        .filter_map(|(marker, value)| text.find(marker).map(|at| (at, marker.len(), value)))
        .min()
    };
    while let Some((at, length, value)) = marker(rest) {
        expression.push(format!("[==[{}]==]", &rest[..at]));
        expression.push(value.to_owned());
        rest = &rest[at + length..];
    }
    anyhow::ensure!(expression.len() >= 6, "markers missing in {body}");
    expression.push(format!("[==[{rest}]==]"));
    let expression = expression.join(" .. ");
    Ok(format!(
        r#"
local threads = 0
local counter = 0
local headers = {{
    ["Content-Type"] = "application/json",
    ["X-Telegram-Bot-Api-Secret-Token"] = "{secret}",
}}
function setup(thread)
    thread:set("index", threads)
    threads = threads + 1
end
function request()
    local n = {first} + index + counter * 2
    counter = counter + 1
    return wrk.format("POST", nil, headers, {expression})
end
"#
    ))
}

/// Posts updates `first..first + count` from `CONCURRENCY` senders; returns the elapsed time.
async fn post_updates(
    base: &str,
    secret: &str,
    first: usize,
    count: usize,
) -> anyhow::Result<Duration> {
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(first));
    let end = first + count;
    let url = format!("{base}/api/v1/telegram/webhook/{BOT_ID}");
    let started = Instant::now();
    let mut senders = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, next, url, secret) =
            (client.clone(), next.clone(), url.clone(), secret.to_owned());
        senders.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= end {
                    return Ok::<_, anyhow::Error>(());
                }
                let n = i64::try_from(n)?;
                let update = text_update(n, 1_000_000 + n, 500_000 + n, "Ada", "How do I update?");
                let response = client
                    .post(&url)
                    .header("X-Telegram-Bot-Api-Secret-Token", &secret)
                    .json(&update)
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "webhook answered {}",
                    response.status()
                );
            }
        }));
    }
    for sender in senders {
        sender.await??;
    }
    Ok(started.elapsed())
}

/// Hands updates `first..first + count` to the service's `receive` from `concurrency` tasks
/// in this process: the acknowledgement without HTTP. Returns the elapsed time.
async fn receive_directly(
    telegram: Arc<TelegramService>,
    secret: &str,
    first: usize,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let next = Arc::new(AtomicUsize::new(first));
    let end = first + count;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (telegram, next, secret) = (telegram.clone(), next.clone(), secret.to_owned());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= end {
                    return Ok::<_, anyhow::Error>(());
                }
                let n = i64::try_from(n)?;
                let update = text_update(n, 1_000_000 + n, 500_000 + n, "Ada", "How do I update?");
                let body = serde_json::to_vec(&update)?;
                telegram
                    .receive(BOT_ID, Some(&secret), &body)
                    .await
                    .map_err(|error| anyhow::anyhow!("{error}"))?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed())
}

/// Updates per statement between two readings of `TelegramService::webhook_statements`.
fn mean_batch(before: (u64, u64), after: (u64, u64)) -> f64 {
    (after.1 - before.1) as f64 / (after.0 - before.0).max(1) as f64
}

/// How many updates of the bench's bot are stored.
async fn service_updates(db: &avatar_platform::core::db::Db) -> anyhow::Result<u64> {
    let row = sea_orm::ConnectionTrait::query_one_raw(
        db.connection(),
        sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT count(*) AS n FROM telegram_updates WHERE bot_id = {BOT_ID}"),
        ),
    )
    .await?
    .ok_or_else(|| anyhow::anyhow!("no count"))?;
    Ok(u64::try_from(row.try_get::<i64>("", "n")?)?)
}

/// pgbench's single-row insert made by the app's own driver (SeaORM over sqlx, the app's pool)
/// from `concurrency` tasks, `count` times: what the stack costs per statement, without the
/// webhook's logic. Returns statements per second.
async fn driver_insert_rate(
    db: &avatar_platform::core::db::Db,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (db, next) = (db.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let key = i64::from(rand::random::<u32>());
                sea_orm::ConnectionTrait::execute_raw(
                    db.connection(),
                    sea_orm::Statement::from_sql_and_values(
                        sea_orm::DbBackend::Postgres,
                        "INSERT INTO bench_upserts (bot_id, update_id, payload) \
                         VALUES (1, $1, '{\"update_id\": 1}') ON CONFLICT DO NOTHING",
                        [key.into()],
                    ),
                )
                .await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// pgbench's TPS for a statement of the webhook's shape (`service/store.rs`: the update
/// and its job by one data-modifying CTE) carrying one update, with a real one as payload.
fn pgbench_webhook_statement_tps(url: &str, clients: usize) -> anyhow::Result<f64> {
    // Pretty-printed (then on one line): pgbench would read `"is_bot":false` as a variable.
    let update = serde_json::to_string_pretty(&text_update(
        1,
        1_000_001,
        500_001,
        "Ada",
        "How do I update?",
    ))?
    .replace('\n', " ");
    let script = format!(
        "\\set k random(1, 1000000000)\n\
         WITH stored AS (INSERT INTO telegram_updates (bot_id, update_id, project_id, payload, \
         received_at) VALUES (1, :k, gen_random_uuid(), '{update}', now()) \
         ON CONFLICT DO NOTHING RETURNING 1) \
         INSERT INTO fang_tasks (id, metadata, task_type, scheduled_at) \
         SELECT gen_random_uuid(), '{{\"type\": \"telegram.handle_updates\"}}', 'common', \
         now() FROM stored;\n"
    );
    pgbench_script_tps(url, clients, &script)
}

async fn run(url: &str) -> anyhow::Result<()> {
    let telegram = FakeTelegram::start().await;
    let llm = FakeOpenAi::chat(Reply::answer("Use update.packages().", (20, 5))).await;
    let env = [
        ("APP__TELEGRAM__API_BASE_URL", telegram.url.as_str()),
        ("APP__SERVER__PUBLIC_BASE_URL", "https://bench.example.com"),
        ("APP__OUTBOUND__ALLOWED_HOSTS", "127.0.0.1"),
        ("APP__TELEGRAM__EDIT_INTERVAL_MS", "1000"),
        ("APP__DATABASE__MAX_CONNECTIONS", "30"),
        // Telegram's own limit (30 messages/s per bot) would be all that is measured.
        ("APP__TELEGRAM__BOT_MESSAGES_PER_SEC", "100000"),
    ];

    // Acknowledgements: no workers, so only the webhook's path is measured.
    let app = common::start_app_with(url, &env, 0).await?;
    let secret = set_up(&app.base, &llm, &telegram).await?;
    let service = app.registry.get::<TelegramService>()?;
    let webhook = format!("{}/api/v1/telegram/webhook/{BOT_ID}", app.base);
    post_updates(&app.base, &secret, 0, 200).await?; // warm-up
    sea_orm::ConnectionTrait::execute_unprepared(
        app.db.connection(),
        "CREATE TABLE bench_upserts (bot_id bigint, update_id bigint, payload jsonb, \
         PRIMARY KEY (bot_id, update_id))",
    )
    .await?;
    let mut answered = 200;
    for (round, connections) in [TELEGRAM_CONCURRENCY, CONCURRENCY].into_iter().enumerate() {
        let before = service.webhook_statements();
        let first = 100_000_000 * (round as u64 + 1);
        let acks = wrk(&webhook, connections, &webhook_script(&secret, first)?)?;
        let batch = mean_batch(before, service.webhook_statements());
        answered += acks.requests;
        let health = wrk(&format!("{}/health", app.base), connections, "")?;
        let reference = pgbench_insert_tps(url, connections)?;
        println!(
            "webhook, wrk at {connections} connections: {:.0} acks/s, {batch:.1} updates per \
             statement; pgbench INSERT ... ON CONFLICT at {connections} clients: {reference:.0} \
             tps; ratio {:.2}; GET /health by the same wrk: {:.0} req/s (acks are {:.2} of it)",
            acks.rate,
            acks.rate / reference,
            health.rate,
            acks.rate / health.rate
        );
    }
    // Every acknowledged update was stored (those wrk cut off at the end may be too).
    let stored = service_updates(&app.db).await?;
    anyhow::ensure!(
        stored >= answered,
        "{answered} updates acknowledged but {stored} stored"
    );

    let tasks = TELEGRAM_CONCURRENCY;
    let before = service.webhook_statements();
    let direct = receive_directly(service.clone(), &secret, 20_000, ACKS, tasks).await?;
    let direct = ACKS as f64 / direct.as_secs_f64();
    let direct_batch = mean_batch(before, service.webhook_statements());
    sea_orm::ConnectionTrait::execute_unprepared(app.db.connection(), "DELETE FROM fang_tasks")
        .await?;
    let reference = pgbench_insert_tps(url, tasks)?;
    let driver = driver_insert_rate(&app.db, ACKS, tasks).await?;
    let statement = pgbench_webhook_statement_tps(url, tasks)?;
    // pgbench's rows are not updates of a connected bot, nor runnable tasks.
    sea_orm::ConnectionTrait::execute_unprepared(
        app.db.connection(),
        "DELETE FROM fang_tasks; DELETE FROM telegram_updates WHERE bot_id = 1",
    )
    .await?;
    // The job table's dead rows would slow the workers' polling in the next phase.
    sea_orm::ConnectionTrait::execute_unprepared(app.db.connection(), "VACUUM fang_tasks").await?;
    println!(
        "breakdown at {tasks}, against pgbench's insert at {tasks} clients ({reference:.0} tps): \
         receive() called in-process: {direct:.0}/s ({:.2}; {direct_batch:.1} updates per \
         statement); the webhook's statement under pgbench (one update each): {statement:.0} tps \
         ({:.2}); pgbench's insert through the app's driver (SeaORM/sqlx pool): {driver:.0}/s \
         ({:.2})",
        direct / reference,
        statement / reference,
        driver / reference
    );
    app.stop().await;

    // End to end: the same app with workers answers questions into the fake Bot API.
    let app = common::start_app_with(url, &env, 4).await?;
    let first = 100_000;
    let started = Instant::now();
    post_updates(&app.base, &secret, first, ANSWERED).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let answered = (first..first + ANSWERED)
            .filter(|n| !telegram.chat_texts(1_000_000 + *n as i64).is_empty())
            .count();
        if answered == ANSWERED {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {answered} of {ANSWERED} answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    println!(
        "end to end: {ANSWERED} questions answered in {:.1} s: {:.1} updates/s (4 workers)",
        elapsed.as_secs_f64(),
        ANSWERED as f64 / elapsed.as_secs_f64()
    );
    app.stop().await;
    Ok(())
}
