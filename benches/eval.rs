//! Retrieval evaluation (`make eval`, not part of `make test`): the real fixtures, chunked and
//! embedded as the platform does, and the fixed questions of `eval/questions.json` (written in
//! other words than the documents use) asked through the platform's own retrieval code.
//! Prints recall@3 and MRR@10 for each list alone and fused, and, for the hybrid search, how
//! the similarity threshold trades recall for silence on the off-topic questions of
//! `eval/off_topic.json`. Results are written down in docs/retrieval.md.
//!
//! A chunk is relevant to a question when its text, whitespace collapsed (and ligatures
//! unfolded, as `eval/check_questions.py` does), contains one of the question's evidence
//! snippets.
//!
//! Needs DATABASE_URL (`make eval` sets it) and the local model (`make setup`).

// Helpers outside `#[test]` functions: a panic there is a failed test, as in the tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::path::Path;

use avatar_platform::core::config::RetrievalSettings;
use avatar_platform::core::db::Db;
use avatar_platform::core::embeddings::{
    Embedder, LEXICAL_MODEL_ID, LexicalEmbedder, SEMANTIC_MODEL_ID, SemanticEmbedder, fit_chunk,
};
use avatar_platform::core::ids::{AvatarId, DocumentId, ProjectId};
use avatar_platform::modules::documents::testkit::parsing::{self, DocumentFormat, ParseLimits};
use avatar_platform::modules::documents::testkit::retrieval::{Retriever, SearchRequest};
use avatar_platform::modules::documents::testkit::{
    Chunk, ChunkOwner, chunk_sections, insert_chunks,
};
use migration::MigratorTrait;
use sea_orm::{ConnectionTrait, Database};
use serde::Deserialize;
use uuid::Uuid;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// An avatar's defaults (`avatars.default_chunk_size` / `_overlap`), capped for the model.
const CHUNK_SIZE: usize = 512;
const CHUNK_OVERLAP: usize = 64;
const DIMENSION: usize = 384;
const TOP_K: usize = 10;
/// The avatars' default full-text configuration.
const LANGUAGE: &str = "english";
const THRESHOLDS: [f64; 9] = [0.0, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5];
/// Weights of the full-text list in the fusion (the vector list's is 1).
const TEXT_WEIGHTS: [f64; 4] = [1.0, 0.5, 0.35, 0.25];

#[derive(Deserialize)]
struct QuestionSet {
    documents: HashMap<String, String>,
    questions: Vec<Question>,
}

#[derive(Deserialize)]
struct Question {
    id: String,
    document: String,
    question: String,
    evidence: Vec<String>,
}

#[derive(Deserialize)]
struct OffTopic {
    questions: Vec<String>,
}

/// One deployment's index of the fixtures: its avatar and the chunks' texts, normalised.
struct Corpus {
    project_id: ProjectId,
    avatar_id: AvatarId,
    texts: HashMap<Uuid, String>,
}

/// Ranks of the first relevant result, per question (`None`: not in the top 10).
#[derive(Default)]
struct Ranks(Vec<Option<usize>>);

impl Ranks {
    fn recall_at(&self, k: usize) -> f64 {
        let found = self.0.iter().filter(|rank| rank.is_some_and(|r| r < k));
        found.count() as f64 / self.0.len().max(1) as f64
    }

    fn mrr(&self) -> f64 {
        let sum: f64 = self
            .0
            .iter()
            .flatten()
            .map(|rank| 1.0 / (rank + 1) as f64)
            .sum();
        sum / self.0.len().max(1) as f64
    }
}

fn normalise(text: &str) -> String {
    let unfolded = text
        .replace('\u{fb00}', "ff")
        .replace('\u{fb01}', "fi")
        .replace('\u{fb02}', "fl")
        .replace('\u{fb03}', "ffi")
        .replace('\u{fb04}', "ffl")
        .replace(['\u{fb05}', '\u{fb06}'], "st")
        .replace('\u{ad}', "")
        .replace('\u{a0}', " ");
    unfolded.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn rank_of(ids: &[Uuid], corpus: &Corpus, question: &Question) -> Option<usize> {
    ids.iter().take(TOP_K).position(|id| {
        corpus.texts.get(id).is_some_and(|text| {
            question
                .evidence
                .iter()
                .any(|snippet| text.contains(snippet.as_str()))
        })
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::with_bench_database("eval", |url| async move { run(&url).await }).await
}

async fn run(url: &str) -> anyhow::Result<()> {
    let set: QuestionSet =
        serde_json::from_slice(&std::fs::read(format!("{ROOT}/eval/questions.json"))?)?;
    let off_topic: OffTopic =
        serde_json::from_slice(&std::fs::read(format!("{ROOT}/eval/off_topic.json"))?)?;
    let connection = Database::connect(url).await?;
    migration::Migrator::up(&connection, None).await?;
    let db = Db::new(connection);
    let model_dir = std::env::var("APP__EMBEDDINGS__LOCAL_MODEL_DIR")
        .unwrap_or_else(|_| format!("{ROOT}/.tools/embedder"));
    let threads = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    let semantic = SemanticEmbedder::load(Path::new(&model_dir), threads)?;
    let lexical = LexicalEmbedder::new(DIMENSION)?;

    // As deployed: the local model's chunks in its word pieces, capped to its window; the
    // lexical deployment's in cl100k tokens at the avatar's size.
    let (size, overlap) = fit_chunk(CHUNK_SIZE, CHUNK_OVERLAP, semantic.max_chunk_tokens());
    let semantic_corpus = index(&db, &set, &semantic, SEMANTIC_MODEL_ID, size, overlap).await?;
    let lexical_corpus = index(
        &db,
        &set,
        &lexical,
        LEXICAL_MODEL_ID,
        CHUNK_SIZE,
        CHUNK_OVERLAP,
    )
    .await?;
    let answerable = set
        .questions
        .iter()
        .filter(|question| {
            semantic_corpus.texts.values().any(|text| {
                question
                    .evidence
                    .iter()
                    .any(|snippet| text.contains(snippet.as_str()))
            })
        })
        .count();
    println!(
        "== Retrieval evaluation: {} questions over {} documents; chunks {} (local model, {size}/{overlap} word pieces), {} (lexical, {CHUNK_SIZE}/{CHUNK_OVERLAP} cl100k tokens); evidence held by a chunk for {answerable} questions",
        set.questions.len(),
        set.documents.len(),
        semantic_corpus.texts.len(),
        lexical_corpus.texts.len()
    );

    // As deployed (config/default.toml); the grid below varies the full-text weight.
    let settings = common::default_retrieval_settings(url)?;
    let limit = i64::try_from(TOP_K)? * settings.candidates_per_result;
    // Through the platform's own retriever, its in-memory vectors in use (as deployed).
    let caches = common::exact_caches(&db).await?;
    let retriever = Retriever::new(db.clone(), settings.clone(), &caches);
    let mut lists: Vec<(&str, Ranks)> = [
        "full text only",
        "lexical vectors only",
        "lexical hybrid (the earlier default)",
        "semantic vectors only",
        "semantic hybrid (RRF, threshold 0)",
    ]
    .into_iter()
    .map(|name| (name, Ranks::default()))
    .collect();
    let mut best_relevant_similarity = Vec::new();
    let grid: Vec<(f64, f64)> = THRESHOLDS
        .iter()
        .flat_map(|threshold| TEXT_WEIGHTS.map(|weight| (*threshold, weight)))
        .collect();
    let mut hybrid_at: Vec<Ranks> = grid.iter().map(|_| Ranks::default()).collect();
    for question in &set.questions {
        let semantic_vector = semantic.embed_query(&question.question).await?;
        let lexical_vector = lexical.embed_query(&question.question).await?;
        let request = |corpus: &Corpus, embedding: &Vec<f32>, threshold: f64| SearchRequest {
            project_id: corpus.project_id,
            avatar_id: corpus.avatar_id,
            query: &question.question,
            embedding: embedding.clone(),
            top_k: TOP_K,
            similarity_threshold: threshold,
            language: LANGUAGE,
        };
        let semantic_request = request(&semantic_corpus, &semantic_vector, 0.0);
        let lexical_request = request(&lexical_corpus, &lexical_vector, 0.0);

        let text = retriever.text_candidates(&semantic_request, limit).await?;
        lists[0]
            .1
            .0
            .push(rank_of(&text, &semantic_corpus, question));
        let (_, lexical_vectors) = retriever.vector_candidates(&lexical_request, limit).await?;
        let ids: Vec<Uuid> = lexical_vectors.iter().map(|(id, _)| *id).collect();
        lists[1].1.0.push(rank_of(&ids, &lexical_corpus, question));
        let hits = retriever.search(&lexical_request).await?;
        let ids: Vec<Uuid> = hits.iter().map(|hit| hit.chunk_id).collect();
        lists[2].1.0.push(rank_of(&ids, &lexical_corpus, question));
        let (_, semantic_vectors) = retriever
            .vector_candidates(&semantic_request, limit)
            .await?;
        let ids: Vec<Uuid> = semantic_vectors.iter().map(|(id, _)| *id).collect();
        lists[3].1.0.push(rank_of(&ids, &semantic_corpus, question));
        if let Some(rank) = rank_of(&ids, &semantic_corpus, question) {
            best_relevant_similarity.push(semantic_vectors[rank].1);
        }
        let hits = retriever.search(&semantic_request).await?;
        let ids: Vec<Uuid> = hits.iter().map(|hit| hit.chunk_id).collect();
        let rank = rank_of(&ids, &semantic_corpus, question);
        lists[4].1.0.push(rank);
        if std::env::var_os("EVAL_VERBOSE").is_some() {
            println!(
                "{} ({}): {:?}  {}",
                question.id, question.document, rank, question.question
            );
        }
        for ((threshold, weight), ranks) in grid.iter().zip(hybrid_at.iter_mut()) {
            let weighted = Retriever::new(
                db.clone(),
                RetrievalSettings {
                    rrf_text_weight: *weight,
                    ..settings.clone()
                },
                &caches,
            );
            let hits = weighted
                .search(&request(&semantic_corpus, &semantic_vector, *threshold))
                .await?;
            let ids: Vec<Uuid> = hits.iter().map(|hit| hit.chunk_id).collect();
            ranks.0.push(rank_of(&ids, &semantic_corpus, question));
        }
    }
    println!("| retrieval | recall@1 | recall@3 | recall@10 | MRR@10 |");
    println!("|---|---|---|---|---|");
    for (name, ranks) in &lists {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.3} |",
            ranks.recall_at(1),
            ranks.recall_at(3),
            ranks.recall_at(10),
            ranks.mrr()
        );
    }

    // The threshold: what it costs in recall, and how often an off-topic question is then
    // answered with nothing (rather than with a passage sharing a word with it).
    let mut off_topic_best = Vec::new();
    let mut silent_at = vec![0usize; THRESHOLDS.len()];
    for question in &off_topic.questions {
        let vector = semantic.embed_query(question).await?;
        let base = SearchRequest {
            project_id: semantic_corpus.project_id,
            avatar_id: semantic_corpus.avatar_id,
            query: question,
            embedding: vector.clone(),
            top_k: TOP_K,
            similarity_threshold: 0.0,
            language: LANGUAGE,
        };
        let (_, nearest) = retriever.vector_candidates(&base, 1).await?;
        off_topic_best.push(nearest.first().map_or(0.0, |(_, similarity)| *similarity));
        for (index, threshold) in THRESHOLDS.iter().enumerate() {
            let request = SearchRequest {
                similarity_threshold: *threshold,
                embedding: vector.clone(),
                ..base
            };
            if retriever.search(&request).await?.is_empty() {
                silent_at[index] += 1;
            }
        }
    }
    best_relevant_similarity.sort_by(f64::total_cmp);
    off_topic_best.sort_by(f64::total_cmp);
    let quantile = |values: &[f64], q: f64| {
        values
            .get(((values.len().max(1) - 1) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "similarity of the best relevant chunk (questions found in the top 10): min {:.3}, p10 {:.3}, p50 {:.3}; of the nearest chunk to an off-topic question: p50 {:.3}, p90 {:.3}, max {:.3}",
        quantile(&best_relevant_similarity, 0.0),
        quantile(&best_relevant_similarity, 0.1),
        quantile(&best_relevant_similarity, 0.5),
        quantile(&off_topic_best, 0.5),
        quantile(&off_topic_best, 0.9),
        quantile(&off_topic_best, 1.0),
    );
    println!(
        "semantic hybrid by threshold (rows) and full-text weight (columns): recall@3 / MRR@10"
    );
    let header: Vec<String> = TEXT_WEIGHTS
        .iter()
        .map(|weight| format!("weight {weight:.2}"))
        .collect();
    println!(
        "| threshold | {} | off-topic questions answered with nothing |",
        header.join(" | ")
    );
    println!("|---|{}---|", "---|".repeat(TEXT_WEIGHTS.len()));
    for (index, threshold) in THRESHOLDS.iter().enumerate() {
        let cells: Vec<String> = hybrid_at[index * TEXT_WEIGHTS.len()..][..TEXT_WEIGHTS.len()]
            .iter()
            .map(|ranks| format!("{:.2} / {:.3}", ranks.recall_at(3), ranks.mrr()))
            .collect();
        println!(
            "| {threshold:.2} | {} | {}/{} |",
            cells.join(" | "),
            silent_at[index],
            off_topic.questions.len()
        );
    }
    Ok(())
}

/// Parses, chunks, embeds and stores every evaluation document for one deployment (a project
/// and an avatar of its own); returns the chunks' normalised texts by id.
async fn index(
    db: &Db,
    set: &QuestionSet,
    embedder: &dyn Embedder,
    model: &str,
    size: usize,
    overlap: usize,
) -> anyhow::Result<Corpus> {
    let (project_id, avatar_id) = (ProjectId::new(), AvatarId::new());
    let mut names: Vec<&String> = set.documents.values().collect();
    names.sort();
    for name in names {
        let format = if name.ends_with(".pdf") {
            DocumentFormat::Pdf
        } else {
            DocumentFormat::Html
        };
        let bytes = std::fs::read(format!("{ROOT}/tests/fixtures/{name}"))?;
        let parsed = parsing::parse(format, &bytes, ParseLimits::default())?;
        let chunks: Vec<Chunk> =
            chunk_sections(&parsed.sections, size, overlap, &embedder.token_unit())?;
        let texts: Vec<String> = chunks.iter().map(|chunk| chunk.text.clone()).collect();
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(64) {
            vectors.extend(embedder.embed(batch).await?);
        }
        let owner = ChunkOwner {
            document_id: DocumentId::new(),
            project_id,
            avatar_id,
        };
        db.execute_unprepared(&format!(
            "INSERT INTO documents (id, project_id, avatar_id, filename, content_type, format, \
             size_bytes, sha256, blob_key, status, chunks_count, created_at, updated_at) \
             VALUES ('{}', '{project_id}', '{avatar_id}', '{name}', 'x', '{}', 0, '{}', 'none', \
             'ready', {}, now(), now())",
            owner.document_id,
            format.as_str(),
            owner.document_id,
            chunks.len()
        ))
        .await?;
        let rows: Vec<(&Chunk, Option<Vec<f32>>)> =
            chunks.iter().zip(vectors.into_iter().map(Some)).collect();
        for batch in rows.chunks(256) {
            insert_chunks(
                db.connection(),
                owner,
                batch,
                model,
                LANGUAGE,
                chrono::Utc::now(),
            )
            .await?;
        }
    }
    let rows = db
        .connection()
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT id, text FROM document_chunks WHERE avatar_id = $1",
            [avatar_id.into()],
        ))
        .await?;
    let mut texts = HashMap::new();
    for row in rows {
        let text: String = row.try_get("", "text")?;
        texts.insert(row.try_get::<Uuid>("", "id")?, normalise(&text));
    }
    Ok(Corpus {
        project_id,
        avatar_id,
        texts,
    })
}
