//! Ingestion benchmark on the real fixtures (tests/fixtures): parse, chunk, embed (built-in
//! lexical embedder) and store, each timed separately. Pages/s for the PDFs, chunks/s for the
//! rest. Needs DATABASE_URL for the store step (`make bench` sets it).

// Helpers outside `#[test]` functions: a panic there is a failed test, as in the tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use avatar_platform::core::db::Db;
use avatar_platform::core::embeddings::{Embedder, LexicalEmbedder, TokenUnit};
use avatar_platform::core::ids::{AvatarId, DocumentId, ProjectId};
use avatar_platform::modules::documents::testkit::parsing::{self, DocumentFormat};
use avatar_platform::modules::documents::testkit::{
    Chunk, ChunkOwner, chunk_sections, insert_chunks,
};
use migration::MigratorTrait;
use sea_orm::{ConnectionTrait, Database};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
const CHUNK_SIZE: usize = 512;
const CHUNK_OVERLAP: usize = 64;
const EMBED_BATCH: usize = 64;
const INSERT_BATCH: usize = 256;
/// Each file is processed this many times; the figures are the totals.
const ROUNDS: usize = 3;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::with_bench_database("bench_ingestion", |url| async move { run(&url).await }).await
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
            let parsed = parsing::parse(format, &bytes)?;
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
