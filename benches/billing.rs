//! Token budgets under load: reserve+settle pairs per second — each pair as the chat pipeline
//! makes it (one reserving statement; one transaction that settles, writes the ledger row and
//! checks thresholds) — on one hot project and spread over 1 000 projects, at the same
//! concurrency as a reference of two single-row UPDATE transactions per pair on the same pool
//! (the least a reserve+settle pair can cost). `make bench` runs it; figures go to
//! docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use avatar_platform::core::auth::{Actor, CurrentUser, PlatformRole};
use avatar_platform::core::db::Db;
use avatar_platform::core::email::Email;
use avatar_platform::core::ids::ProjectId;
use avatar_platform::modules::auth::AuthService;
use avatar_platform::modules::billing::{BillingService, UsageKind, UsageRecord};
use avatar_platform::modules::projects::ProjectsService;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

const PAIRS: usize = 6_000;
const CONCURRENCY: usize = 16;
const PROJECTS: usize = 1_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::with_bench_database("bench_billing", |url| async move { run(&url).await }).await
}

async fn run(url: &str) -> anyhow::Result<()> {
    let (app, _settings, _data_dir) =
        common::build_app(url, &[("APP__DATABASE__MAX_CONNECTIONS", "20")]).await?;
    let db = app.context().db.clone();
    let billing = app.service::<BillingService>()?;
    let projects = app.service::<ProjectsService>()?;
    let auth = app.service::<AuthService>()?;

    let owner = auth
        .create_user(
            &Email::parse("bench-owner@example.com")?,
            "bench-password-123",
            None,
            PlatformRole::User,
            Actor::system(),
        )
        .await?;
    let user = CurrentUser {
        id: owner.id,
        role: PlatformRole::User,
        session_id: None,
        ip: None,
    };
    let started = Instant::now();
    let mut ids = Vec::with_capacity(PROJECTS);
    for n in 0..PROJECTS {
        let project = projects.create(&user, &format!("p{n}"), None).await?;
        ids.push(project.id);
    }
    // Budgets that the bench cannot exhaust.
    db.execute_unprepared("UPDATE subscriptions SET plan_code = 'enterprise'")
        .await?;
    println!(
        "{PROJECTS} projects with subscriptions created in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    db.execute_unprepared(
        "CREATE TABLE bench_counters (id integer PRIMARY KEY, n bigint NOT NULL); \
         INSERT INTO bench_counters SELECT g, 0 FROM generate_series(0, 999) g",
    )
    .await?;

    println!("== Billing: reserve+settle pairs, {CONCURRENCY} concurrent");
    let hot = vec![ids[0]];
    let reference_hot = reference(&db, 1).await?;
    let pairs_hot = pairs(&billing, &hot).await?;
    report("one hot project", pairs_hot, reference_hot);
    let reference_spread = reference(&db, PROJECTS).await?;
    let pairs_spread = pairs(&billing, &ids).await?;
    report(
        &format!("spread over {PROJECTS} projects"),
        pairs_spread,
        reference_spread,
    );

    let standing = billing.overview(ids[0]).await?;
    println!(
        "hot project after the runs: {} tokens used, {} reserved",
        standing.tokens_used, standing.tokens_reserved
    );
    anyhow::ensure!(standing.tokens_reserved == 0, "every reservation settled");
    Ok(())
}

fn report(what: &str, pairs: (f64, Duration), reference: f64) {
    let (rate, p99) = pairs;
    println!(
        "{what}: {rate:.0} pairs/s (p99 {p99:?}); reference (2 single-row UPDATE transactions \
         per pair) {reference:.0} pairs/s; ratio {:.2}",
        rate / reference
    );
}

/// `PAIRS` reserve+settle pairs on `projects` (round robin); pairs per second and the p99 of
/// a pair.
async fn pairs(
    billing: &Arc<BillingService>,
    projects: &[ProjectId],
) -> anyhow::Result<(f64, Duration)> {
    let next = Arc::new(AtomicUsize::new(0));
    let projects = Arc::new(projects.to_vec());
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (billing, next, projects) = (billing.clone(), next.clone(), projects.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= PAIRS {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let project = projects[n % projects.len()];
                let began = Instant::now();
                let reservation = billing.reserve(project, 1_500).await?;
                let record = UsageRecord {
                    kind: UsageKind::Chat,
                    model: "bench".into(),
                    prompt_tokens: 900,
                    completion_tokens: 100,
                    own_key: false,
                    avatar_id: None,
                    conversation_id: None,
                    document_id: None,
                };
                billing.settle(&reservation, Some(record)).await?;
                latencies.push(began.elapsed());
            }
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok((
        latencies.len() as f64 / elapsed.as_secs_f64(),
        common::percentile(&latencies, 0.99),
    ))
}

/// The floor: per pair, two autocommitted single-row UPDATEs of `rows` counters (round robin),
/// at the same concurrency on the same pool.
async fn reference(db: &Db, rows: usize) -> anyhow::Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (db, next) = (db.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= PAIRS {
                    return Ok::<_, anyhow::Error>(());
                }
                let row = i32::try_from(n % rows).unwrap_or(0);
                for _ in 0..2 {
                    db.execute_raw(Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        "UPDATE bench_counters SET n = n + 1 WHERE id = $1",
                        [row.into()],
                    ))
                    .await?;
                }
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    Ok(PAIRS as f64 / started.elapsed().as_secs_f64())
}
