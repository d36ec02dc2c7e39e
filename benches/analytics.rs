//! Analytics at scale: 1 000 000 messages (100 000 conversations, 50 end users and 3 avatars
//! per project) across 1 000 projects over the past year, loaded into chat's tables with
//! multi-row INSERTs, then counted into analytics' read model by the one-time backfill (the
//! same code path the events take). Then the latencies of the dashboard's queries — a
//! project's 90-day daily usage, its year by week, its per-avatar totals, the admin overview —
//! against the latency of a pgbench -S transaction measured in the same run on the same server.
//! `make bench` runs it; figures go to docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use avatar_platform::core::ids::ProjectId;
use avatar_platform::modules::analytics::{AnalyticsService, DayRange, Granularity};
use chrono::{Days, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use uuid::Uuid;

const PROJECTS: i64 = 1_000;
const CONVERSATIONS_PER_PROJECT: i64 = 100;
const MESSAGES_PER_CONVERSATION: i64 = 10;
const RUNS: usize = 200;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::with_bench_database("bench_analytics", |url| async move { run(&url).await }).await
}

/// The mean latency of a pgbench -S transaction (one primary-key SELECT), one client.
fn pgbench_select_latency(url: &str) -> anyhow::Result<Duration> {
    let program = common::pgbench();
    let init = Command::new(&program)
        .args(["-i", "-q", "-s", "10", url])
        .output()?;
    anyhow::ensure!(
        init.status.success(),
        "pgbench -i: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let run = Command::new(&program)
        .args(["-S", "-n", "-c", "1", "-T", "5", url])
        .output()?;
    let out = String::from_utf8_lossy(&run.stdout);
    let line = out
        .lines()
        .find(|line| line.starts_with("latency average"))
        .ok_or_else(|| anyhow::anyhow!("no latency in pgbench's output: {out}"))?;
    let ms: f64 = line
        .split('=')
        .nth(1)
        .and_then(|rest| rest.trim().split(' ').next())
        .and_then(|number| number.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("unreadable pgbench line: {line}"))?;
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

async fn load_chat(db: &impl ConnectionTrait) -> anyhow::Result<()> {
    // Fifty end users per project (conversations refer to them by a foreign key).
    db.execute_unprepared(&format!(
        "INSERT INTO end_users (id, project_id, channel, external_id, created_at, updated_at) \
         SELECT md5('e' || p || '-' || e)::uuid, md5('p' || p)::uuid, 'api', 'e' || e, now(), now() \
         FROM generate_series(1, {PROJECTS}) p, generate_series(0, 49) e"
    ))
    .await?;
    db.execute_unprepared(&format!(
        "INSERT INTO conversations (id, project_id, avatar_id, channel, end_user_id, \
             messages_count, created_at, updated_at) \
         SELECT gen_random_uuid(), md5('p' || p)::uuid, md5('a' || p || '-' || c % 3)::uuid, \
             'api', md5('e' || p || '-' || c % 50)::uuid, {MESSAGES_PER_CONVERSATION}, t, t \
         FROM (SELECT p, c, now() - random() * interval '365 days' AS t \
               FROM generate_series(1, {PROJECTS}) p, \
                    generate_series(1, {CONVERSATIONS_PER_PROJECT}) c) s"
    ))
    .await?;
    db.execute_unprepared(&format!(
        "INSERT INTO messages (id, project_id, conversation_id, role, content, prompt_tokens, \
             completion_tokens, model, finish_reason, retrieval_ms, time_to_first_token_ms, \
             total_ms, created_at) \
         SELECT gen_random_uuid(), c.project_id, c.id, \
             CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END, 'text', \
             CASE WHEN i % 2 = 1 THEN 300 + i ELSE 0 END, CASE WHEN i % 2 = 1 THEN 80 ELSE 0 END, \
             CASE WHEN i % 2 = 1 THEN 'gpt-4o-mini' END, \
             CASE WHEN i % 2 = 1 THEN (CASE WHEN i = 9 AND get_byte(uuid_send(c.id), 0) % 7 = 0 \
                                            THEN 'error' ELSE 'stop' END) END, \
             CASE WHEN i % 2 = 1 THEN 20 END, CASE WHEN i % 2 = 1 THEN 400 + i END, \
             CASE WHEN i % 2 = 1 THEN 1500 + i END, \
             c.created_at + i * interval '1 minute' \
         FROM conversations c, generate_series(0, {MESSAGES_PER_CONVERSATION} - 1) i"
    ))
    .await?;
    db.execute_unprepared("ANALYZE conversations; ANALYZE messages")
        .await?;
    Ok(())
}

fn summary(label: &str, mut runs: Vec<Duration>, reference: Duration) {
    runs.sort();
    let p50 = common::percentile(&runs, 0.5);
    let p95 = common::percentile(&runs, 0.95);
    println!(
        "{label:<40} p50 {:>8.2} ms  p95 {:>8.2} ms  p50/pgbench-S {:>6.1}x",
        p50.as_secs_f64() * 1e3,
        p95.as_secs_f64() * 1e3,
        p50.as_secs_f64() / reference.as_secs_f64()
    );
}

async fn run(url: &str) -> anyhow::Result<()> {
    let (app, _settings, _data_dir) =
        common::build_app(url, &[("APP__ANALYTICS__BACKFILL_BATCH", "10000")]).await?;
    let db = app.context().db.clone();
    let analytics = app.service::<AnalyticsService>()?;

    let started = Instant::now();
    load_chat(db.connection()).await?;
    let messages = PROJECTS * CONVERSATIONS_PER_PROJECT * MESSAGES_PER_CONVERSATION;
    println!(
        "loaded {messages} messages in {} conversations over {PROJECTS} projects in {:.1} s",
        PROJECTS * CONVERSATIONS_PER_PROJECT,
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let counted = analytics.backfill().await?;
    let took = started.elapsed();
    println!(
        "backfill: {counted} facts in {:.1} s ({:.0} facts/s)",
        took.as_secs_f64(),
        counted as f64 / took.as_secs_f64()
    );
    for table in ["analytics_daily", "analytics_active_end_users"] {
        db.connection()
            .execute_unprepared(&format!("VACUUM ANALYZE {table}"))
            .await?;
    }
    let rows = db
        .connection()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT (SELECT count(*) FROM analytics_daily) AS daily, \
                    (SELECT count(*) FROM analytics_active_end_users) AS active",
        ))
        .await?
        .unwrap();
    println!(
        "read model: {} daily rows, {} active-end-user rows",
        rows.try_get::<i64>("", "daily")?,
        rows.try_get::<i64>("", "active")?
    );

    let reference = pgbench_select_latency(url)?;
    println!(
        "reference: pgbench -S (1 client), mean latency {:.3} ms",
        reference.as_secs_f64() * 1e3
    );

    let today = Utc::now().date_naive();
    let to = today + Days::new(1);
    let days = |n: u64| DayRange {
        from: to - Days::new(n),
        to,
    };
    let project = |n: usize| {
        ProjectId::from_uuid(
            Uuid::from_slice(&md5_of(&format!("p{}", n % PROJECTS as usize + 1))).unwrap(),
        )
    };
    let mut daily = Vec::with_capacity(RUNS);
    let mut weekly = Vec::with_capacity(RUNS);
    let mut avatars = Vec::with_capacity(RUNS);
    let mut checked = 0;
    for n in 0..RUNS {
        let pid = project(n * 37);
        let started = Instant::now();
        let series = analytics
            .usage(pid, days(90), Granularity::Day, None)
            .await?;
        daily.push(started.elapsed());
        checked += series.total.messages;
        let started = Instant::now();
        analytics
            .usage(pid, days(365), Granularity::Week, None)
            .await?;
        weekly.push(started.elapsed());
        let started = Instant::now();
        analytics.avatar_usage(pid, days(90)).await?;
        avatars.push(started.elapsed());
    }
    anyhow::ensure!(
        checked > 0,
        "the projects have no usage: the load went wrong"
    );
    let mut overview = Vec::new();
    let mut overview_year = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        analytics.overview(days(90)).await?;
        overview.push(started.elapsed());
        let started = Instant::now();
        analytics.overview(days(365)).await?;
        overview_year.push(started.elapsed());
    }
    summary("project usage, 90 days by day", daily, reference);
    summary("project usage, 365 days by week", weekly, reference);
    summary("project per-avatar totals, 90 days", avatars, reference);
    summary("admin overview, 90 days", overview, reference);
    summary("admin overview, 365 days", overview_year, reference);
    Ok(())
}

/// The bytes of `md5(text)`, as PostgreSQL's `md5(text)::uuid` reads them.
fn md5_of(text: &str) -> [u8; 16] {
    use md5::{Digest, Md5};
    Md5::digest(text.as_bytes()).into()
}
