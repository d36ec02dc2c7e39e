//! The authenticated request path: `GET /api/v1/projects/{pid}/avatars/{aid}` with a user's
//! access token, sent by wrk from its own process at 16 connections, against what the same
//! PostgreSQL answers to `pgbench -S` (one primary-key SELECT per transaction) at 16 clients in
//! the same run. Where the time goes is printed with it: the app's statements per request
//! (SeaORM's own count), the app's CPU per request, and `GET /health` by the same wrk (HTTP and
//! the middleware alone). `make bench` runs it; figures go to docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use serde_json::json;

use avatar_platform::core::db::statements_run;
use common::load::{pgbench_tps, process_cpu_seconds, wrk, wrk_for};

/// The issue's concurrency for this path.
const CONNECTIONS: usize = 16;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::with_bench_database("bench_auth_read", |url| async move { run(&url).await }).await
}

async fn run(url: &str) -> anyhow::Result<()> {
    let init = Command::new(common::pgbench())
        .args(["-i", "-q", "-s", "1"])
        .arg(url)
        .output()?;
    anyhow::ensure!(
        init.status.success(),
        "pgbench -i: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let mut rates = Vec::new();
    for (label, lease) in [("caches off", "0"), ("caches on", "100")] {
        let env = [
            ("APP__DATABASE__MAX_CONNECTIONS", "30"),
            ("APP__CACHE__EXACT_LEASE_MS", lease),
        ];
        let app = common::start_app(url, &env).await?;
        let (path, script) = authenticated_get(&app.base).await?;
        // Warm-up: connections opened, statements prepared, caches filled.
        wrk_for(&path, CONNECTIONS, &script, 2)?;
        let (statements, cpu) = (statements_run(), process_cpu_seconds());
        let read = wrk(&path, CONNECTIONS, &script)?;
        let per_request = |total: f64| total / read.requests as f64;
        let statements = per_request((statements_run() - statements) as f64);
        let cpu_us = per_request(process_cpu_seconds() - cpu) * 1e6;
        let health = wrk(&format!("{}/health", app.base), CONNECTIONS, "")?;
        println!(
            "{label}: {:.0} req/s; per request {statements:.2} statements and {cpu_us:.0} µs of \
             the app's CPU; GET /health by the same wrk: {:.0} req/s (the GET is {:.2} of it)",
            read.rate,
            health.rate,
            read.rate / health.rate
        );
        rates.push((label, read.rate));
        app.stop().await;
    }
    let reference = pgbench_tps(url, CONNECTIONS, &["-S"])?;
    for (label, rate) in rates {
        println!(
            "authenticated GET /api/v1/projects/{{pid}}/avatars/{{aid}} ({label}), wrk at \
             {CONNECTIONS} connections: {rate:.0} req/s; pgbench -S at {CONNECTIONS} clients: \
             {reference:.0} tps; ratio {:.2}",
            rate / reference
        );
    }
    Ok(())
}

/// A new owner's project and avatar through the API; the avatar's URL and wrk's Lua that
/// sends the owner's access token.
async fn authenticated_get(base: &str) -> anyhow::Result<(String, String)> {
    let client = reqwest::Client::new();
    let common::OwnedAvatar { token, pid, aid } = common::owner_with_avatar(
        &client,
        base,
        json!({"name": "Bench", "system_prompt": "Answer briefly."}),
    )
    .await?;
    let path = format!("{base}/api/v1/projects/{pid}/avatars/{aid}");
    client
        .get(&path)
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?;
    Ok((
        path,
        format!(r#"wrk.headers["Authorization"] = "Bearer {token}""#),
    ))
}
