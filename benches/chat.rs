//! Chat benchmark: the platform's own overhead per message. The public chat API, streamed
//! (SSE), against a local OpenAI-compatible server that answers at once, so what is measured is
//! everything else: API-key check, rate limit, end user, conversation, history, token
//! reservation, embedding the question, hybrid retrieval over an avatar of 100k chunks (its own
//! HNSW index), the prompt, storing both messages and the events.
//!
//! Reports time to the first token (first `delta` frame) and to the end (`done`), p50/p99, and
//! messages/s, at 1, 16 and 64 concurrent clients. Scale: BENCH_CHAT_CHUNKS (default 100_000),
//! BENCH_CHAT_MESSAGES (per client, default 20). Needs DATABASE_URL (`make bench` sets it).

// Helpers outside `#[test]` functions: a panic there is a failed test, as in the tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../tests/integration/fake_openai.rs"]
#[allow(dead_code)]
mod fake_openai;

use std::time::{Duration, Instant};

use avatar_platform::core::embeddings::LexicalEmbedder;
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::with_bench_database("bench_chat", |url| async move { run(&url).await }).await
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
        ],
    )
    .await?;
    let (base, db, settings) = (app.base.clone(), app.db.clone(), app.settings.clone());
    let client = reqwest::Client::new();

    // An owner, a project, an avatar, an API key — through the API.
    let token = common::owner_token(&client, &base).await?;
    let post = |path: &str, token: Option<&str>, body: Value| {
        let mut request = client.post(format!("{base}{path}")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let project: Value = post("/api/v1/projects", Some(&token), json!({"name": "bench"}))
        .await?
        .error_for_status()?
        .json()
        .await?;
    let pid = project["id"].as_str().unwrap_or_default().to_owned();
    common::unlimited_plan(&db, &pid).await?;
    let avatar: Value = post(
        &format!("/api/v1/projects/{pid}/avatars"),
        Some(&token),
        json!({"name": "Bench", "system_prompt": "Answer from the documents."}),
    )
    .await?
    .error_for_status()?
    .json()
    .await?;
    let aid = AvatarId::from_uuid(avatar["id"].as_str().unwrap_or_default().parse()?);
    let key: Value = post(
        &format!("/api/v1/projects/{pid}/api-keys"),
        Some(&token),
        json!({"name": "bench"}),
    )
    .await?
    .error_for_status()?
    .json()
    .await?;
    let key = key["key"].as_str().unwrap_or_default().to_owned();

    // The avatar's knowledge: synthetic passages, embedded by the platform's local embedder.
    let mut rng = StdRng::seed_from_u64(11);
    let words = vocabulary(&mut rng, 5_000);
    let embedder = LexicalEmbedder::new(settings.embeddings.dimension)?;
    let started = Instant::now();
    let rows: Vec<(Uuid, String, Vec<f32>)> = (0..chunks)
        .map(|_| {
            let text = sentence(&mut rng, &words, 60);
            let vector = embedder.embed_text(&text);
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
        "== Chat: {chunks} chunks in one avatar (embedded and loaded in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    if i64::try_from(chunks)? > settings.retrieval.exact_scan_max_chunks {
        let started = Instant::now();
        vector_index::build(&db, &settings.retrieval, aid).await?;
        println!("its HNSW index: {:.1} s", started.elapsed().as_secs_f64());
    }

    for concurrency in CONCURRENCY {
        let phase_start = chrono::Utc::now();
        let started = Instant::now();
        let mut clients = Vec::new();
        for client_index in 0..concurrency {
            let (client, url, key) = (
                client.clone(),
                format!("{base}/api/v1/public/avatars/{aid}/chat"),
                key.clone(),
            );
            let mut rng = StdRng::seed_from_u64(1_000 + client_index as u64);
            let questions: Vec<String> = (0..per_client)
                .map(|_| format!("How does {} work?", sentence(&mut rng, &words, 4)))
                .collect();
            clients.push(tokio::spawn(async move {
                let mut conversation: Option<String> = None;
                let mut timings = Vec::new();
                for question in questions {
                    let mut body = json!({
                        "end_user": {"external_id": format!("bench-user-{client_index}")},
                        "message": question,
                    });
                    if let Some(id) = &conversation {
                        body["conversation_id"] = json!(id);
                    }
                    let (first, total, id) = ask(&client, &url, &key, &body).await?;
                    conversation = Some(id);
                    timings.push((first, total));
                }
                Ok::<_, anyhow::Error>(timings)
            }));
        }
        let mut first_tokens = Vec::new();
        let mut totals = Vec::new();
        for client in clients {
            for (first, total) in client.await?? {
                first_tokens.push(first);
                totals.push(total);
            }
        }
        let elapsed = started.elapsed();
        first_tokens.sort();
        totals.sort();
        let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
        println!(
            "{concurrency:>2} concurrent: {} messages, {:.1} msg/s; first token p50 {:.1} ms p99 {:.1} ms; \
             total p50 {:.1} ms p99 {:.1} ms",
            totals.len(),
            totals.len() as f64 / elapsed.as_secs_f64(),
            ms(common::percentile(&first_tokens, 0.5)),
            ms(common::percentile(&first_tokens, 0.99)),
            ms(common::percentile(&totals, 0.5)),
            ms(common::percentile(&totals, 0.99)),
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
            "   inside the pipeline (p50): retrieval {:.1} ms, first token {:.1} ms, total {:.1} ms",
            row.try_get::<f64>("", "retrieval")?,
            row.try_get::<f64>("", "first_token")?,
            row.try_get::<f64>("", "total")?,
        );
    }
    println!(
        "(the LLM server received {} requests)",
        llm.requests().len()
    );

    app.stop().await;
    Ok(())
}

/// One streamed question: time to the first `delta`, time to `done`, the conversation id.
async fn ask(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: &Value,
) -> anyhow::Result<(Duration, Duration, String)> {
    let sent = Instant::now();
    let response = client
        .post(url)
        .header("X-Api-Key", key)
        .header("Accept", "text/event-stream")
        .json(body)
        .send()
        .await?
        .error_for_status()?;
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    let mut first = None;
    while let Some(piece) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&piece?));
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
    Ok((first.unwrap_or(total), total, conversation))
}
