//! Chat benchmark: the platform's own overhead per message. The public chat API, streamed
//! (SSE), against a local OpenAI-compatible server that answers at once, so what is measured is
//! everything else: API-key check, rate limit, end user, conversation, history, token
//! reservation, embedding the question with the default (local) model, hybrid retrieval over an
//! avatar of 100k chunks (its own HNSW index), the prompt, storing both messages and the events.
//!
//! The chunks' vectors are synthetic but in the model's space: 500 passages embedded by the
//! local model, each chunk one of them plus noise (embedding 100k chunks would take an hour).
//!
//! Reports time to acceptance (the `start` frame: the question checked, reserved and stored),
//! to the first token (first `delta` frame) and to the end (`done`), p50/p99,
//! messages/s and database statements per message, at 1, 16 and 64 concurrent clients; the
//! question's embedding alone, as its own stage; then memory: the process's RSS idle and at its
//! peak while 64 answers stream at once (each 2 s long). Scale: BENCH_CHAT_CHUNKS (default
//! 100_000), BENCH_CHAT_MESSAGES (per client, default 20). Needs DATABASE_URL and the local
//! model (`make bench` sets up both).

// Helpers outside `#[test]` functions: a panic there is a failed test, as in the tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../tests/integration/fake_openai.rs"]
#[allow(dead_code)]
mod fake_openai;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use avatar_platform::core::db::statements_run;
use avatar_platform::core::embeddings::{Embedder, SemanticEmbedder};
use avatar_platform::modules::documents::testkit::vector_index;
use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use uuid::Uuid;

use avatar_platform::core::ids::{AvatarId, ProjectId};
use fake_openai::{FakeOpenAi, Reply};

const CONCURRENCY: [usize; 3] = [1, 16, 64];
const SYLLABLES: [&str; 24] = [
    "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "po", "da", "fi", "gu", "he", "jo", "ke",
    "la", "mo", "nu", "pe", "ri", "su", "te", "wa",
];
/// Distinct passages embedded by the model; every chunk's vector is one of them plus noise.
const BASE_PASSAGES: usize = 500;
/// Answers streaming at once in the memory phase, and how long each streams.
const STREAMS: usize = 64;
const STREAM_PIECES: usize = 40;
const STREAM_GAP: Duration = Duration::from_millis(50);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// A vocabulary of pronounceable words, so full-text search has real terms to match.
fn vocabulary(rng: &mut StdRng, size: usize) -> Vec<String> {
    (0..size)
        .map(|_| {
            (0..3)
                .map(|_| SYLLABLES[rng.random_range(0..SYLLABLES.len())])
                .collect::<String>()
        })
        .collect()
}

fn sentence(rng: &mut StdRng, words: &[String], length: usize) -> String {
    (0..length)
        .map(|_| words[rng.random_range(0..words.len())].as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `base` plus Gaussian-like noise (the sum of uniforms), unit length: a neighbour of `base`.
fn near(rng: &mut StdRng, base: &[f32], noise: f32) -> Vec<f32> {
    let mut vector: Vec<f32> = base
        .iter()
        .map(|x| x + noise * (0..3).map(|_| rng.random_range(-1.0f32..1.0)).sum::<f32>())
        .collect();
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    vector.iter_mut().for_each(|x| *x /= norm);
    vector
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The process's resident set, in bytes (`VmRSS`).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::with_bench_database("bench_chat", |url| async move { run(&url).await }).await
}

/// What the phases need: where to ask, with which key, and the questions' words.
#[derive(Clone)]
struct Target {
    url: String,
    key: String,
    words: Arc<Vec<String>>,
}

async fn run(url: &str) -> anyhow::Result<()> {
    let chunks = env_usize("BENCH_CHAT_CHUNKS", 100_000);
    let per_client = env_usize("BENCH_CHAT_MESSAGES", 20);
    let llm = FakeOpenAi::chat(Reply::answer(
        "The procedure starts with the first step and ends with a check [1].",
        (900, 16),
    ))
    .await;
    let app = common::start_app(
        url,
        &[
            ("APP__CHAT__LLM_BASE_URL", llm.url.as_str()),
            ("APP__CHAT__PUBLIC_REQUESTS_PER_MINUTE", "1000000"),
            // The default embedder (the tests' configuration uses the keyword one).
            ("APP__EMBEDDINGS__PROVIDER", "local"),
        ],
    )
    .await?;
    let (base, db, settings) = (app.base.clone(), app.db.clone(), app.settings.clone());
    let client = reqwest::Client::new();

    // An owner, a project, an avatar, an API key — through the API.
    let owned = common::owner_with_avatar(
        &client,
        &base,
        json!({"name": "Bench", "system_prompt": "Answer from the documents."}),
    )
    .await?;
    let pid = owned.pid;
    common::unlimited_plan(&db, &pid).await?;
    let aid = AvatarId::from_uuid(owned.aid.parse()?);
    let key: Value = client
        .post(format!("{base}/api/v1/projects/{pid}/api-keys"))
        .bearer_auth(&owned.token)
        .json(&json!({"name": "bench"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let key = key["key"].as_str().unwrap_or_default().to_owned();

    // The avatar's knowledge: synthetic passages; vectors near the model's own.
    let embedder = SemanticEmbedder::load(
        Path::new(&settings.embeddings.local_model_dir),
        settings.embeddings.local_threads(),
    )?;
    let mut rng = StdRng::seed_from_u64(11);
    let words = vocabulary(&mut rng, 5_000);
    let started = Instant::now();
    let bases: Vec<String> = (0..BASE_PASSAGES)
        .map(|_| sentence(&mut rng, &words, 60))
        .collect();
    let bases = embedder.embed(&bases).await?;
    let rows: Vec<(Uuid, String, Vec<f32>)> = (0..chunks)
        .map(|index| {
            let text = sentence(&mut rng, &words, 60);
            let vector = near(&mut rng, &bases[index % bases.len()], 0.02);
            (Uuid::now_v7(), text, vector)
        })
        .collect();
    common::load_chunks(
        &db,
        ProjectId::from_uuid(Uuid::parse_str(&pid)?),
        aid,
        &rows,
    )
    .await?;
    drop(rows);
    sea_orm::ConnectionTrait::execute_unprepared(db.connection(), "ANALYZE document_chunks")
        .await?;
    println!(
        "== Chat: {chunks} chunks in one avatar (made and loaded in {:.1} s), questions \
         embedded by the local model",
        started.elapsed().as_secs_f64()
    );
    if i64::try_from(chunks)? > settings.retrieval.exact_scan_max_chunks {
        let started = Instant::now();
        vector_index::build(&db, &settings.retrieval, aid).await?;
        println!("its HNSW index: {:.1} s", started.elapsed().as_secs_f64());
    }

    let target = Target {
        url: format!("{base}/api/v1/public/avatars/{aid}/chat"),
        key,
        words: Arc::new(words),
    };
    // One message to warm up (the model's session, the pool, the caches).
    ask(
        &client,
        &target,
        &question_body(0, None, "How does it work?"),
    )
    .await?;
    for concurrency in CONCURRENCY {
        throughput(&client, &db, &target, concurrency, per_client).await?;
    }
    question_embedding(&embedder, &target.words).await?;
    memory(&client, &llm, &target).await?;
    println!(
        "(the LLM server received {} requests)",
        llm.requests().len()
    );

    app.stop().await;
    Ok(())
}

fn question_body(client_index: usize, conversation: Option<&str>, question: &str) -> Value {
    let mut body = json!({
        "end_user": {"external_id": format!("bench-user-{client_index}")},
        "message": question,
    });
    if let Some(id) = conversation {
        body["conversation_id"] = json!(id);
    }
    body
}

/// `per_client` questions from each of `concurrency` clients, each continuing its own
/// conversation: messages/s, first token and total latencies, statements per message.
async fn throughput(
    client: &reqwest::Client,
    db: &avatar_platform::core::db::Db,
    target: &Target,
    concurrency: usize,
    per_client: usize,
) -> anyhow::Result<()> {
    let phase_start = chrono::Utc::now();
    let statements = statements_run();
    let started = Instant::now();
    let mut clients = Vec::new();
    for client_index in 0..concurrency {
        let (client, target) = (client.clone(), target.clone());
        let mut rng = StdRng::seed_from_u64(1_000 + client_index as u64);
        let questions: Vec<String> = (0..per_client)
            .map(|_| format!("How does {} work?", sentence(&mut rng, &target.words, 4)))
            .collect();
        clients.push(tokio::spawn(async move {
            let mut conversation: Option<String> = None;
            let mut timings = Vec::new();
            for question in questions {
                let body = question_body(client_index, conversation.as_deref(), &question);
                let asked = ask(&client, &target, &body).await?;
                conversation = Some(asked.conversation.clone());
                timings.push(asked);
            }
            Ok::<_, anyhow::Error>(timings)
        }));
    }
    let (mut accepted, mut first_tokens, mut totals) = (Vec::new(), Vec::new(), Vec::new());
    for client in clients {
        for asked in client.await?? {
            accepted.push(asked.accepted);
            first_tokens.push(asked.first);
            totals.push(asked.total);
        }
    }
    let elapsed = started.elapsed();
    let statements = statements_run() - statements;
    accepted.sort();
    first_tokens.sort();
    totals.sort();
    println!(
        "{concurrency:>2} concurrent: {} messages, {:.1} msg/s; accepted p50 {:.1} ms; first token \
         p50 {:.1} ms p99 {:.1} ms; total p50 {:.1} ms p99 {:.1} ms; {:.1} statements per message",
        totals.len(),
        totals.len() as f64 / elapsed.as_secs_f64(),
        ms(common::percentile(&accepted, 0.5)),
        ms(common::percentile(&first_tokens, 0.5)),
        ms(common::percentile(&first_tokens, 0.99)),
        ms(common::percentile(&totals, 0.5)),
        ms(common::percentile(&totals, 0.99)),
        statements as f64 / totals.len() as f64,
    );
    // Where the time went, as the pipeline recorded it on each answer.
    let row = sea_orm::ConnectionTrait::query_one_raw(
        db.connection(),
        sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY retrieval_ms)::float8 AS retrieval, \
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY time_to_first_token_ms)::float8 AS first_token, \
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY total_ms)::float8 AS total \
             FROM messages WHERE role = 'assistant' AND created_at >= $1",
            [phase_start.into()],
        ),
    )
    .await?
    .ok_or_else(|| anyhow::anyhow!("no answers"))?;
    println!(
        "   inside the pipeline (p50): embedding and retrieval {:.1} ms, first token {:.1} ms, \
         total {:.1} ms",
        row.try_get::<f64>("", "retrieval")?,
        row.try_get::<f64>("", "first_token")?,
        row.try_get::<f64>("", "total")?,
    );
    Ok(())
}

/// The question's embedding alone (the first stage of retrieval), on the model's question
/// session as the pipeline runs it, one question at a time.
async fn question_embedding(embedder: &SemanticEmbedder, words: &[String]) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(7);
    let mut times = Vec::new();
    for _ in 0..200 {
        let question = format!("How does {} work?", sentence(&mut rng, words, 4));
        let started = Instant::now();
        embedder.embed_query(&question).await?;
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "question embedding alone: p50 {:.2} ms, p99 {:.2} ms",
        ms(common::percentile(&times, 0.5)),
        ms(common::percentile(&times, 0.99))
    );
    Ok(())
}

/// RSS idle, then at its peak while `STREAMS` answers stream at once.
async fn memory(client: &reqwest::Client, llm: &FakeOpenAi, target: &Target) -> anyhow::Result<()> {
    let piece = "word ".repeat(3);
    llm.then((0..STREAMS).map(|_| Reply::Stream {
        chunks: vec![piece.clone(); STREAM_PIECES],
        gap: STREAM_GAP,
        usage: Some((900, 120)),
        break_after: None,
    }));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_bytes();
    let peak = Arc::new(AtomicU64::new(idle));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let started = Instant::now();
    let streams: Vec<_> = (0..STREAMS)
        .map(|index| {
            let body = question_body(10_000 + index, None, "How does the procedure start?");
            let (client, target) = (client.clone(), target.clone());
            tokio::spawn(async move { ask(&client, &target, &body).await })
        })
        .collect();
    let mut longest = Duration::ZERO;
    for stream in streams {
        longest = longest.max(stream.await??.total);
    }
    done.store(true, Ordering::Relaxed);
    sampler.await?;
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let peak = peak.load(Ordering::Relaxed);
    println!(
        "memory: RSS idle {:.1} MiB, peak with {STREAMS} answers streaming at once {:.1} MiB \
         (+{:.1} MiB; the longest answer {:.1} s, all done in {:.1} s; client, app and LLM \
         server in this one process)",
        mib(idle),
        mib(peak),
        mib(peak.saturating_sub(idle)),
        longest.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One streamed question's times at the client.
struct Asked {
    /// To the `start` frame: the question checked, reserved and stored.
    accepted: Duration,
    /// To the first `delta` frame.
    first: Duration,
    /// To `done`.
    total: Duration,
    conversation: String,
}

/// One streamed question.
async fn ask(client: &reqwest::Client, target: &Target, body: &Value) -> anyhow::Result<Asked> {
    let sent = Instant::now();
    let response = client
        .post(&target.url)
        .header("X-Api-Key", &target.key)
        .header("Accept", "text/event-stream")
        .json(body)
        .send()
        .await?
        .error_for_status()?;
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    let (mut accepted, mut first) = (None, None);
    while let Some(piece) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&piece?));
        if accepted.is_none() && text.contains("event: start") {
            accepted = Some(sent.elapsed());
        }
        if first.is_none() && text.contains("event: delta") {
            first = Some(sent.elapsed());
        }
        if text.contains("event: done") || text.contains("event: error") {
            break;
        }
    }
    let total = sent.elapsed();
    anyhow::ensure!(text.contains("event: done"), "no answer: {text}");
    let start = text
        .lines()
        .find_map(|line| line.strip_prefix("data: "))
        .ok_or_else(|| anyhow::anyhow!("no start frame"))?;
    let start: Value = serde_json::from_str(start)?;
    let conversation = start["conversation_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok(Asked {
        accepted: accepted.unwrap_or(total),
        first: first.unwrap_or(total),
        total,
        conversation,
    })
}
