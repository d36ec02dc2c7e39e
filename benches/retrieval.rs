//! Retrieval benchmark: synthetic clustered 384-dimension chunks over many avatars plus one
//! large avatar, queries filtered by avatar through the platform's own `vector_candidates`
//! (exact scan for small avatars, the avatar's own partial HNSW index for the large one, built
//! by the platform's own `vector_index::build`). Reports p50/p99 latency and recall@10
//! against brute-force exact search, and the exact scan's own latency for the large avatar.
//!
//! Scale (environment): BENCH_CHUNKS (default 1_000_000 in all), BENCH_AVATARS (100 small
//! avatars), BENCH_LARGE (200_000 chunks in the large avatar), BENCH_QUERIES (200 per group).
//! Needs DATABASE_URL (`make bench` sets it). Stays on 127.0.0.1; every loop is bounded.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use avatar_platform::core::config::RetrievalSettings;
use avatar_platform::core::db::Db;
use avatar_platform::modules::documents::retrieval::{
    SearchRequest, VectorPath, vector_candidates,
};
use avatar_platform::modules::documents::vector_index::{self, BuildOutcome};
use migration::MigratorTrait;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::prelude::PgVector;
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement, Value};
use uuid::Uuid;

const DIMENSION: usize = 384;
const CLUSTERS: usize = 2_000;
const INSERT_ROWS: usize = 400;
const TOP_K: usize = 10;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn normalize(mut vector: Vec<f32>) -> Vec<f32> {
    let norm = vector
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    vector.iter_mut().for_each(|x| *x /= norm);
    vector
}

fn random_unit(rng: &mut StdRng) -> Vec<f32> {
    normalize((0..DIMENSION).map(|_| rng.random::<f32>() - 0.5).collect())
}

/// A point near `center`: clustered data is what makes filtered ANN hard.
fn near(center: &[f32], rng: &mut StdRng, spread: f32) -> Vec<f32> {
    normalize(
        center
            .iter()
            .map(|x| x + spread * (rng.random::<f32>() - 0.5))
            .collect(),
    )
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

struct Avatar {
    project_id: Uuid,
    avatar_id: Uuid,
    vectors: Vec<(Uuid, Vec<f32>)>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total = env_usize("BENCH_CHUNKS", 1_000_000);
    let small_avatars = env_usize("BENCH_AVATARS", 100);
    let large = env_usize("BENCH_LARGE", 200_000).min(total);
    let queries = env_usize("BENCH_QUERIES", 200);
    let per_small = (total - large) / small_avatars.max(1);
    common::with_bench_database("bench_retrieval", |url| async move {
        run(&url, total, small_avatars, per_small, large, queries).await
    })
    .await
}

async fn run(
    url: &str,
    total: usize,
    small_avatars: usize,
    per_small: usize,
    large: usize,
    queries: usize,
) -> anyhow::Result<()> {
    let connection = Database::connect(url).await?;
    migration::Migrator::up(&connection, None).await?;
    let db = Db::new(connection);
    let mut rng = StdRng::seed_from_u64(42);
    let centers: Vec<Vec<f32>> = (0..CLUSTERS).map(|_| random_unit(&mut rng)).collect();

    println!(
        "== Retrieval: {total} chunks ({small_avatars} avatars × {per_small} + one of {large}), {DIMENSION} dims, {CLUSTERS} clusters"
    );
    let started = Instant::now();
    let mut avatars = Vec::new();
    for index in 0..=small_avatars {
        let size = if index == small_avatars {
            large
        } else {
            per_small
        };
        if size == 0 {
            continue;
        }
        // Each avatar's content concentrates on a few topics, as real knowledge bases do.
        let topics: Vec<usize> = (0..8).map(|_| rng.random_range(0..CLUSTERS)).collect();
        let vectors: Vec<(Uuid, Vec<f32>)> = (0..size)
            .map(|_| {
                let center = &centers[topics[rng.random_range(0..topics.len())]];
                (Uuid::now_v7(), near(center, &mut rng, 0.6))
            })
            .collect();
        let avatar = Avatar {
            project_id: Uuid::now_v7(),
            avatar_id: Uuid::now_v7(),
            vectors,
        };
        load(&db, &avatar).await?;
        avatars.push(avatar);
    }
    let loaded = started.elapsed();
    println!(
        "load: {:.1} s ({:.0} chunks/s)",
        loaded.as_secs_f64(),
        total as f64 / loaded.as_secs_f64()
    );
    db.execute_unprepared("ANALYZE document_chunks").await?;
    // The values of config/default.toml; BENCH_EF_SEARCH varies the search breadth.
    let settings = RetrievalSettings {
        exact_scan_max_chunks: 20_000,
        candidates_per_result: 4,
        hnsw_ef_search: env_usize("BENCH_EF_SEARCH", 100) as i64,
        hnsw_max_scan_tuples: 40_000,
        hnsw_m: 16,
        hnsw_ef_construction: 64,
        index_build_memory: "1GB".into(),
        index_build_timeout_secs: 7_200,
        rrf_k: 60.0,
    };
    let large_avatar = avatars.pop().ok_or_else(|| anyhow::anyhow!("no avatars"))?;
    let started = Instant::now();
    let outcome = vector_index::build(&db, &settings, large_avatar.avatar_id).await?;
    anyhow::ensure!(outcome == BuildOutcome::Built, "index build: {outcome:?}");
    println!(
        "HNSW build, large avatar's partial index ({large} vectors): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut query_rng = StdRng::seed_from_u64(7);

    // Small avatars: the platform chooses the exact path.
    let mut latencies = Vec::new();
    let mut recall = 0.0;
    for n in 0..queries {
        let avatar = &avatars[n % avatars.len()];
        let query = near(
            &avatar.vectors[query_rng.random_range(0..avatar.vectors.len())].1,
            &mut query_rng,
            0.3,
        );
        let (path, took, found) = timed_search(&db, &settings, avatar, &query).await?;
        assert_eq!(path, VectorPath::Exact);
        latencies.push(took);
        recall += recall_at_k(avatar, &query, &found);
    }
    report(
        "small avatars (exact path)",
        &mut latencies,
        recall / queries as f64,
    );

    // The large avatar: its own HNSW index, against its exact scan.
    let mut latencies = Vec::new();
    let mut recall = 0.0;
    let exact_settings = RetrievalSettings {
        exact_scan_max_chunks: i64::MAX,
        ..settings.clone()
    };
    let mut exact_latencies = Vec::new();
    for _ in 0..queries {
        let query = near(
            &large_avatar.vectors[query_rng.random_range(0..large_avatar.vectors.len())].1,
            &mut query_rng,
            0.3,
        );
        let (path, took, found) = timed_search(&db, &settings, &large_avatar, &query).await?;
        assert_eq!(path, VectorPath::Index);
        latencies.push(took);
        recall += recall_at_k(&large_avatar, &query, &found);
        if exact_latencies.len() < queries.min(30) {
            let (_, exact_took, _) =
                timed_search(&db, &exact_settings, &large_avatar, &query).await?;
            exact_latencies.push(exact_took);
        }
    }
    // The planner really used the partial index (statistics reach the view within a second).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let scans: i64 = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = $1",
            [vector_index::index_name(large_avatar.avatar_id).into()],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("the partial index is missing"))?
        .try_get("", "idx_scan")?;
    println!("partial index scans: {scans} (for {queries} indexed queries)");
    report(
        &format!(
            "large avatar (own HNSW index, ef_search {})",
            settings.hnsw_ef_search
        ),
        &mut latencies,
        recall / queries as f64,
    );
    report(
        "large avatar (exact scan, for comparison)",
        &mut exact_latencies,
        1.0,
    );
    Ok(())
}

async fn load(db: &Db, avatar: &Avatar) -> anyhow::Result<()> {
    let document_id = Uuid::now_v7();
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO documents (id, project_id, avatar_id, filename, content_type, format, size_bytes, \
         sha256, blob_key, status, chunks_count, created_at, updated_at) \
         VALUES ($1, $2, $3, 'synthetic', 'text/plain', 'text', 0, $4, 'none', 'ready', $5, now(), now())",
        [
            document_id.into(),
            avatar.project_id.into(),
            avatar.avatar_id.into(),
            document_id.to_string().into(),
            i32::try_from(avatar.vectors.len()).unwrap_or(i32::MAX).into(),
        ],
    ))
    .await?;
    for (batch_index, batch) in avatar.vectors.chunks(INSERT_ROWS).enumerate() {
        let mut rows = Vec::with_capacity(batch.len());
        let mut values: Vec<Value> = Vec::with_capacity(batch.len() * 6);
        for (index, (id, vector)) in batch.iter().enumerate() {
            let base = index * 6;
            rows.push(format!(
                "(${}, ${}, ${}, ${}, ${}, 'synthetic text', 1, ${}, 'bench', now())",
                base + 1,
                base + 2,
                base + 3,
                base + 4,
                base + 5,
                base + 6
            ));
            values.extend([
                (*id).into(),
                document_id.into(),
                avatar.project_id.into(),
                avatar.avatar_id.into(),
                i32::try_from(batch_index * INSERT_ROWS + index)
                    .unwrap_or(i32::MAX)
                    .into(),
                Value::Vector(Some(PgVector::from(vector.clone()))),
            ]);
        }
        let sql = format!(
            "INSERT INTO document_chunks (id, document_id, project_id, avatar_id, ordinal, text, \
             token_count, embedding, embedding_model, created_at) VALUES {}",
            rows.join(", ")
        );
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?;
    }
    Ok(())
}

async fn timed_search(
    db: &Db,
    settings: &RetrievalSettings,
    avatar: &Avatar,
    query: &[f32],
) -> anyhow::Result<(VectorPath, Duration, Vec<Uuid>)> {
    let request = SearchRequest {
        project_id: avatar.project_id,
        avatar_id: avatar.avatar_id,
        query: "",
        embedding: query.to_vec(),
        top_k: TOP_K,
        similarity_threshold: 0.0,
    };
    // As the search does: `candidates_per_result` candidates per result wanted; the best
    // TOP_K of them are what recall is measured on.
    let limit = (TOP_K as i64) * settings.candidates_per_result;
    let started = Instant::now();
    let (path, hits) = vector_candidates(db, settings, &request, limit).await?;
    let took = started.elapsed();
    Ok((
        path,
        took,
        hits.into_iter().take(TOP_K).map(|(id, _)| id).collect(),
    ))
}

/// Share of the true 10 nearest (brute force over the avatar's own vectors) that were found.
fn recall_at_k(avatar: &Avatar, query: &[f32], found: &[Uuid]) -> f64 {
    let mut scored: Vec<(f32, Uuid)> = avatar
        .vectors
        .iter()
        .map(|(id, v)| (dot(v, query), *id))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let truth: HashSet<Uuid> = scored.iter().take(TOP_K).map(|(_, id)| *id).collect();
    found.iter().filter(|id| truth.contains(id)).count() as f64 / TOP_K as f64
}

fn report(label: &str, latencies: &mut [Duration], recall: f64) {
    latencies.sort();
    let pick = |quantile: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * quantile).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{label}: {} queries, p50 {:.2} ms, p99 {:.2} ms, recall@10 {:.3}",
        latencies.len(),
        pick(0.5).as_secs_f64() * 1000.0,
        pick(0.99).as_secs_f64() * 1000.0,
        recall
    );
}
