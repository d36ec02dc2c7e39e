//! Ingestion benchmark on the real fixtures (tests/fixtures), in two parts:
//! - the pipeline's steps in-process: parse, chunk, embed (built-in lexical embedder) and
//!   store, each timed separately; pages/s for the PDFs, chunks/s for the rest;
//! - end to end through the app (upload over HTTP, job workers), once with the lexical
//!   embedder (the earlier default: embedded during processing) and once with the local model
//!   (ready after parsing, vectors filled in by the background job): the time until every
//!   document is `ready` and until every chunk has its vector, and `GET /health` latency —
//!   a paced probe, 100 requests/s — while it runs, against the same probe with the app idle.
//!
//! Needs DATABASE_URL (`make bench` sets it) and, for the local model, `make setup`.

// Helpers outside `#[test]` functions: a panic there is a failed test, as in the tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use avatar_platform::core::db::Db;
use avatar_platform::core::embeddings::{Embedder, LexicalEmbedder, TokenUnit};
use avatar_platform::core::ids::{AvatarId, DocumentId, ProjectId};
use avatar_platform::modules::documents::testkit::parsing::{self, DocumentFormat, ParseLimits};
use avatar_platform::modules::documents::testkit::{
    Chunk, ChunkOwner, chunk_sections, insert_chunks,
};
use migration::MigratorTrait;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
const CHUNK_SIZE: usize = 512;
const CHUNK_OVERLAP: usize = 64;
const EMBED_BATCH: usize = 64;
const INSERT_BATCH: usize = 256;
/// Each file is processed this many times; the figures are the totals.
const ROUNDS: usize = 3;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::with_bench_database("bench_ingestion", |url| async move { run(&url).await }).await?;
    println!(
        "== Ingestion end to end: the 4 fixtures uploaded at once to one avatar, {WORKERS} job workers; /health probed every {} ms",
        PROBE_EVERY.as_millis()
    );
    println!(
        "| embedder | chunks | all ready | all vectors | /health p50 / p99 idle | during | p99 ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    for provider in ["lexical", "local"] {
        common::with_bench_database("bench_ingestion_e2e", |url| async move {
            through_the_app(&url, provider).await
        })
        .await?;
    }
    Ok(())
}

async fn run(url: &str) -> anyhow::Result<()> {
    let connection = Database::connect(url).await?;
    migration::Migrator::up(&connection, None).await?;
    let db = Db::new(connection);
    let embedder = LexicalEmbedder::new(384)?;
    println!(
        "== Ingestion (chunk {CHUNK_SIZE}/{CHUNK_OVERLAP} tokens, lexical embedder, {ROUNDS} rounds per file)"
    );
    for (file, format) in [
        ("R-FAQ.pdf", DocumentFormat::Pdf),
        ("gnu-maintain.pdf", DocumentFormat::Pdf),
        ("debian-reference-ch02.html", DocumentFormat::Html),
    ] {
        let bytes = std::fs::read(format!("{FIXTURES}/{file}"))?;
        let (mut parse_s, mut chunk_s, mut embed_s, mut store_s) = (0.0, 0.0, 0.0, 0.0);
        let (mut pages, mut chunks_total) = (0usize, 0usize);
        for _ in 0..ROUNDS {
            let started = Instant::now();
            let parsed = parsing::parse(format, &bytes, ParseLimits::default())?;
            parse_s += started.elapsed().as_secs_f64();
            pages += parsed
                .sections
                .iter()
                .filter_map(|section| section.page)
                .collect::<std::collections::HashSet<_>>()
                .len();

            let started = Instant::now();
            let chunks: Vec<Chunk> = chunk_sections(
                &parsed.sections,
                CHUNK_SIZE,
                CHUNK_OVERLAP,
                &TokenUnit::Cl100k,
            )?;
            chunk_s += started.elapsed().as_secs_f64();
            chunks_total += chunks.len();

            let started = Instant::now();
            let mut vectors = Vec::with_capacity(chunks.len());
            for batch in chunks.chunks(EMBED_BATCH) {
                let texts: Vec<String> = batch.iter().map(|chunk| chunk.text.clone()).collect();
                vectors.extend(embedder.embed(&texts).await?);
            }
            embed_s += started.elapsed().as_secs_f64();

            let owner = ChunkOwner {
                document_id: DocumentId::new(),
                project_id: ProjectId::new(),
                avatar_id: AvatarId::new(),
            };
            db.execute_unprepared(&format!(
                "INSERT INTO documents (id, project_id, avatar_id, filename, content_type, format, size_bytes, \
                 sha256, blob_key, status, created_at, updated_at) VALUES ('{}', '{}', '{}', 'bench', 'x', 'pdf', 0, '{}', 'none', 'processing', now(), now())",
                owner.document_id, owner.project_id, owner.avatar_id, owner.document_id
            ))
            .await?;
            let started = Instant::now();
            let rows: Vec<(&Chunk, Option<Vec<f32>>)> =
                chunks.iter().zip(vectors.into_iter().map(Some)).collect();
            for batch in rows.chunks(INSERT_BATCH) {
                insert_chunks(
                    db.connection(),
                    owner,
                    batch,
                    "local-lexical-v1",
                    "english",
                    chrono::Utc::now(),
                )
                .await?;
            }
            store_s += started.elapsed().as_secs_f64();
        }
        let rate = |count: usize, seconds: f64| count as f64 / seconds.max(f64::EPSILON);
        let page_rate = if pages > 0 {
            format!("{:.1} pages/s", rate(pages, parse_s))
        } else {
            format!(
                "{:.1} MB/s",
                (bytes.len() * ROUNDS) as f64 / 1e6 / parse_s.max(f64::EPSILON)
            )
        };
        println!(
            "{file}: {} chunks/round; parse {page_rate}; chunk {:.0} chunks/s; embed {:.0} chunks/s; store {:.0} chunks/s",
            chunks_total / ROUNDS,
            rate(chunks_total, chunk_s),
            rate(chunks_total, embed_s),
            rate(chunks_total, store_s)
        );
    }
    Ok(())
}

/// Job workers of the app in the end-to-end runs (the `serve` default).
const WORKERS: usize = 2;
/// The health probe's pace.
const PROBE_EVERY: Duration = Duration::from_millis(10);
/// How long the idle probe runs.
const IDLE_PROBE: Duration = Duration::from_secs(5);
/// The end-to-end fixtures, all uploaded to one avatar.
const E2E_FIXTURES: [&str; 4] = [
    "R-FAQ.pdf",
    "R-data.pdf",
    "gnu-maintain.pdf",
    "debian-reference-ch02.html",
];

/// `GET /health` once every [`PROBE_EVERY`] until `stop` is set (or for `limit`): the
/// latencies, sorted.
async fn probe_health(
    client: &reqwest::Client,
    base: &str,
    stop: &AtomicBool,
    limit: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let mut ticks = tokio::time::interval(PROBE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut latencies = Vec::new();
    while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
        ticks.tick().await;
        let sent = Instant::now();
        client
            .get(format!("{base}/health"))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    Ok(latencies)
}

/// Uploads the fixtures to an app embedding with `provider` and waits until every chunk has
/// its vector, probing `/health` meanwhile; prints one row.
async fn through_the_app(url: &str, provider: &str) -> anyhow::Result<()> {
    let app = common::start_app_with(
        url,
        &[
            ("APP__EMBEDDINGS__PROVIDER", provider),
            ("APP__JOBS__WORKERS", &WORKERS.to_string()),
        ],
        WORKERS,
    )
    .await?;
    let client = reqwest::Client::new();
    let base = app.base.clone();
    let common::OwnedAvatar { token, pid, aid } = common::owner_with_avatar(
        &client,
        &base,
        json!({"name": "Bench", "system_prompt": "Answer from the documents."}),
    )
    .await?;
    common::unlimited_plan(&app.db, &pid).await?;
    let documents = format!("{base}/api/v1/projects/{pid}/avatars/{aid}/documents");

    let idle = probe_health(&client, &base, &AtomicBool::new(false), IDLE_PROBE).await?;
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let ingestion = async {
        for name in E2E_FIXTURES {
            let bytes = std::fs::read(format!("{FIXTURES}/{name}"))?;
            let form = reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
            );
            client
                .post(&documents)
                .bearer_auth(&token)
                .multipart(form)
                .send()
                .await?
                .error_for_status()?;
        }
        let (mut ready_at, mut chunks) = (None, 0);
        loop {
            let list: Value = client
                .get(format!("{documents}?per_page=100"))
                .bearer_auth(&token)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let items = list["items"].as_array().cloned().unwrap_or_default();
            anyhow::ensure!(
                items.iter().all(|item| item["status"] != "failed"),
                "a document failed: {items:?}"
            );
            let count = |field: &str| {
                items
                    .iter()
                    .map(|item| item[field].as_i64().unwrap_or(0))
                    .sum::<i64>()
            };
            if ready_at.is_none() && items.iter().all(|item| item["status"] == "ready") {
                ready_at = Some(started.elapsed());
                chunks = count("chunks_count");
            }
            if let Some(ready) = ready_at
                && count("semantic_indexed_chunks") == chunks
            {
                stop.store(true, Ordering::Relaxed);
                return Ok::<_, anyhow::Error>((ready, started.elapsed(), chunks));
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(900),
                "not indexed within 15 minutes"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (outcome, during) = tokio::join!(
        ingestion,
        probe_health(&client, &base, &stop, Duration::from_secs(900))
    );
    let ((ready, indexed, chunks), during) = (outcome?, during?);
    let p = |latencies: &[Duration], q: f64| common::percentile(latencies, q).as_secs_f64() * 1e3;
    println!(
        "| {provider} | {chunks} | {:.1} s | {:.1} s | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:.1} |",
        ready.as_secs_f64(),
        indexed.as_secs_f64(),
        p(&idle, 0.5),
        p(&idle, 0.99),
        p(&during, 0.5),
        p(&during, 0.99),
        p(&during, 0.99) / p(&idle, 0.99).max(f64::EPSILON)
    );
    app.stop().await;
    Ok(())
}
