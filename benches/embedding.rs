//! The local semantic embedder (all-MiniLM-L6-v2 in ONNX Runtime, `core::embeddings`) on this
//! machine, as the platform calls it:
//! - documents: chunks of a real fixture sized to the model's window (254 word pieces plus
//!   `[CLS]`/`[SEP]`), embedded in calls of 64 like ingestion does, with 1 and with 2 threads;
//! - questions: a short question alone (`embed_query`), then again while documents are being
//!   embedded (questions have a session of their own);
//! - agreement with the reference vectors (tests/fixtures/embedder/reference.json).
//!
//! Issue 14's goals: ≥ 20 chunks/s of 256 word pieces, ≤ 5 ms per short question, cosine ≥
//! 0.999. The machine's speed drifts, so a fixed CPU reference (a single-threaded f32
//! multiply-add loop, GFLOP/s) is measured in the same run.

// Helpers outside `#[test]` functions: a panic there is a failed test, as in the tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use avatar_platform::core::embeddings::{
    Embedder, MAX_PIECES, SemanticEmbedder, TokenUnit, WordPieceCounter, cosine,
};
use avatar_platform::modules::documents::testkit::chunk_sections;
use avatar_platform::modules::documents::testkit::parsing::{self, DocumentFormat, ParseLimits};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
const QUESTION: &str = "How do I reset my password on the website?";
/// Chunks embedded per measurement, and per call (as `documents.embed_batch_size`).
const CHUNKS: usize = 96;
const CALL: usize = 64;
const QUESTIONS: usize = 300;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::var("APP__EMBEDDINGS__LOCAL_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/embedder"));
    let reference = reference_gflops();
    println!(
        "== Local embedder (all-MiniLM-L6-v2, ONNX Runtime); CPU reference: {reference:.2} \
         GFLOP/s single-threaded; load average {}",
        load_average()
    );

    let counter =
        WordPieceCounter::load(&dir.join("tokenizer.json")).map_err(anyhow::Error::msg)?;
    let chunks = fixture_chunks(&dir, &counter)?;
    let pieces: usize = chunks.iter().map(|chunk| counter.count(chunk) + 2).sum();
    println!(
        "documents: {} chunks of gnu-maintain.pdf, {:.0} word pieces each on average \
         (window {MAX_PIECES})",
        chunks.len(),
        pieces as f64 / chunks.len() as f64
    );
    for threads in [1, 2] {
        let embedder = SemanticEmbedder::load(&dir, threads)?;
        embedder.embed(&chunks[..8]).await?; // warm-up
        let started = Instant::now();
        for call in chunks.chunks(CALL) {
            embedder.embed(call).await?;
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "  {threads} thread(s): {:.1} chunks/s, {:.0} word pieces/s (goal ≥ 20 chunks/s)",
            chunks.len() as f64 / seconds,
            pieces as f64 / seconds
        );
    }

    let embedder = SemanticEmbedder::load(&dir, 1)?;
    let alone = question_latencies(&embedder).await?;
    println!(
        "questions alone: p50 {:.2} ms, p99 {:.2} ms (goal ≤ 5 ms)",
        ms(common::percentile(&alone, 0.5)),
        ms(common::percentile(&alone, 0.99))
    );
    // Documents embedded without pause meanwhile, on the documents' session.
    let busy = Arc::new(AtomicBool::new(true));
    let background = {
        let (embedder, chunks, busy) = (embedder.clone(), chunks.clone(), busy.clone());
        tokio::spawn(async move {
            let mut embedded = 0;
            while busy.load(Ordering::Relaxed) {
                embedder.embed(&chunks[..CALL]).await.unwrap();
                embedded += CALL;
            }
            embedded
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let during = question_latencies(&embedder).await?;
    let elapsed = started.elapsed();
    busy.store(false, Ordering::Relaxed);
    let embedded = background.await?;
    println!(
        "questions while documents are embedded: p50 {:.2} ms, p99 {:.2} ms \
         ({embedded} chunks embedded meanwhile, over {:.1} s)",
        ms(common::percentile(&during, 0.5)),
        ms(common::percentile(&during, 0.99)),
        elapsed.as_secs_f64()
    );

    let worst = reference_agreement(&embedder).await?;
    println!("agreement with the reference vectors: min cosine {worst:.6} (goal ≥ 0.999)");
    Ok(())
}

/// Chunks of a real document at the model's window: those of at least 200 pieces.
fn fixture_chunks(dir: &Path, counter: &WordPieceCounter) -> anyhow::Result<Vec<String>> {
    let bytes = std::fs::read(format!("{FIXTURES}/gnu-maintain.pdf"))?;
    let parsed = parsing::parse(DocumentFormat::Pdf, &bytes, ParseLimits::default())?;
    let unit = TokenUnit::WordPieces(dir.join("tokenizer.json"));
    let chunks: Vec<String> = chunk_sections(&parsed.sections, MAX_PIECES - 2, 0, &unit)?
        .into_iter()
        .map(|chunk| chunk.text)
        .filter(|text| counter.count(text) >= 200)
        .take(CHUNKS)
        .collect();
    anyhow::ensure!(chunks.len() == CHUNKS, "only {} long chunks", chunks.len());
    Ok(chunks)
}

/// [`QUESTIONS`] embeddings of a short question, one at a time, sorted.
async fn question_latencies(embedder: &SemanticEmbedder) -> anyhow::Result<Vec<Duration>> {
    for _ in 0..20 {
        embedder.embed_query(QUESTION).await?;
    }
    let mut latencies = Vec::with_capacity(QUESTIONS);
    for _ in 0..QUESTIONS {
        let started = Instant::now();
        embedder.embed_query(QUESTION).await?;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    Ok(latencies)
}

#[derive(serde::Deserialize)]
struct Reference {
    items: Vec<ReferenceItem>,
}

#[derive(serde::Deserialize)]
struct ReferenceItem {
    text: String,
    n_pieces_untruncated: usize,
    embedding: Vec<f32>,
}

/// The lowest cosine between the embedder's vectors and the reference's, for the texts the
/// reference did not truncate.
async fn reference_agreement(embedder: &SemanticEmbedder) -> anyhow::Result<f32> {
    let path = format!("{FIXTURES}/embedder/reference.json");
    let reference: Reference = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let items: Vec<&ReferenceItem> = reference
        .items
        .iter()
        .filter(|item| item.n_pieces_untruncated <= MAX_PIECES)
        .collect();
    let texts: Vec<String> = items.iter().map(|item| item.text.clone()).collect();
    let vectors = embedder.embed(&texts).await?;
    Ok(items
        .iter()
        .zip(&vectors)
        .map(|(item, vector)| cosine(vector, &item.embedding))
        .fold(1.0, f32::min))
}

/// GFLOP/s of a fixed single-threaded f32 multiply-add loop (a 384 × 1536 matrix times
/// vectors), to compare runs on a machine whose speed drifts.
fn reference_gflops() -> f64 {
    let (rows, columns) = (1536, 384);
    let matrix: Vec<f32> = (0..rows * columns).map(|n| (n % 7) as f32 * 0.1).collect();
    let mut vector: Vec<f32> = (0..columns).map(|n| (n % 5) as f32 * 0.2).collect();
    let mut out = vec![0.0_f32; rows];
    let rounds = 400;
    let started = Instant::now();
    for _ in 0..rounds {
        for (row, value) in out.iter_mut().enumerate() {
            let weights = &matrix[row * columns..(row + 1) * columns];
            *value = weights.iter().zip(&vector).map(|(w, x)| w * x).sum();
        }
        vector[0] = std::hint::black_box(out[0]) * 1e-9;
    }
    let flops = 2.0 * (rows * columns * rounds) as f64;
    flops / started.elapsed().as_secs_f64() / 1e9
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
