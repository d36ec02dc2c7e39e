//! Hybrid retrieval over an avatar's ready chunks: a vector k-NN list (of the chunks that have
//! a vector: with the local model they get theirs after `ready`) and a full-text list, each
//! thresholded on similarity, fused with weighted reciprocal-rank fusion.
//!
//! Filtered vector search is where multi-tenant RAG quietly fails: one global HNSW index
//! asked for the 10 nearest chunks *of one avatar* returns only the few that happen to sit in
//! the part of the graph it visits. So there is no global index, and:
//! - an avatar with at most `retrieval.exact_scan_max_chunks` chunks is searched exactly: its
//!   vectors are kept in memory (`vector_cache.rs`) and scanned in process, or, when they are
//!   not kept (no room, caches off), its rows are scanned (btree on `avatar_id`); recall 1.0;
//! - a larger avatar has an HNSW index of its own (`vector_index.rs`), and is searched through
//!   it with the avatar id written into the query as a literal, which is what lets the planner
//!   match the partial index's predicate. Breadth `hnsw_ef_search` (and an iterative scan,
//!   `relaxed_order` with budget `hnsw_max_scan_tuples`, should the planner add a filter), all
//!   `SET LOCAL` inside the query's transaction; candidates are re-sorted exactly. Chunks of a
//!   document that is not `ready` (being processed again) are dropped after the index's `LIMIT`,
//!   so for that short while the list can hold fewer candidates. Until its index is built, a
//!   large avatar is still scanned exactly: slower, never wrong.
//!
//! The full-text list ranks `ts_rank` over the chunks' `tsvector`, computed with the avatar's
//! `rag.language` (GIN index), matching any of the question's words (OR), so a question does
//! not need every word to appear. (`ts_rank_cd`
//! costs twice as much per matching row — 68 ms against 40 ms for 4 700 matches in a 100k-chunk
//! avatar — and an OR question is not about word proximity.) At most
//! `retrieval.text_rank_max_rows` matches are ranked, multi-word matches first (see
//! [`text_candidates`]). The two lists are fetched at once.

use std::collections::HashMap;

use sea_orm::prelude::PgVector;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, TransactionTrait, Value};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::config::RetrievalSettings;
use crate::core::db::Db;
use crate::core::ids::{AvatarId, DocumentId, ProjectId};

use super::vector_cache::VectorCache;
use super::vector_index;
use crate::core::cache::ExactCaches;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchHit {
    pub chunk_id: Uuid,
    #[schema(value_type = uuid::Uuid)]
    pub document_id: DocumentId,
    pub filename: String,
    pub text: String,
    /// Reciprocal-rank-fusion score: what the results are ordered by.
    pub score: f64,
    /// Cosine similarity of the chunk to the question (what the threshold applies to);
    /// `null` while the chunk waits for its vector (found by its text).
    pub similarity: Option<f64>,
    pub page: Option<i32>,
}

/// Which vector path answered (for benchmarks and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorPath {
    /// The avatar's vectors kept in this process, scanned exactly.
    Memory,
    /// The avatar's rows scanned exactly in PostgreSQL.
    Exact,
    /// The avatar's own HNSW index.
    Index,
}

/// Searches avatars' chunks: the settings, the pool and the vectors kept in memory.
pub struct Retriever {
    db: Db,
    settings: RetrievalSettings,
    vectors: Option<VectorCache>,
}

pub struct SearchRequest<'a> {
    pub project_id: ProjectId,
    pub avatar_id: AvatarId,
    pub query: &'a str,
    pub embedding: Vec<f32>,
    pub top_k: usize,
    pub similarity_threshold: f64,
    /// The avatar's text search configuration (`rag.language`), for the question's words.
    pub language: &'a str,
}

/// Ready chunks of the avatar (from the documents' counts: cheaper than counting chunks), and
/// whether its own vector index is ready.
pub(super) async fn avatar_size<C: ConnectionTrait>(
    conn: &C,
    project_id: ProjectId,
    avatar_id: AvatarId,
) -> Result<(i64, bool), DbErr> {
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "SELECT coalesce(sum(chunks_count), 0)::bigint AS n, {} AS indexed FROM documents \
                 WHERE project_id = $1 AND avatar_id = $2 AND status = 'ready'",
                vector_index::index_ready_sql("$3")
            ),
            [
                project_id.into(),
                avatar_id.into(),
                vector_index::index_name(avatar_id).into(),
            ],
        ))
        .await?;
    match row {
        Some(row) => Ok((row.try_get("", "n")?, row.try_get("", "indexed")?)),
        None => Ok((0, false)),
    }
}

impl Retriever {
    /// Keeps up to `settings.vector_cache_mb` of vectors in `caches` (none with 0).
    pub fn new(db: Db, settings: RetrievalSettings, caches: &ExactCaches) -> Self {
        let vectors = (settings.vector_cache_mb > 0)
            .then(|| VectorCache::new(caches, settings.vector_cache_mb));
        Retriever {
            db,
            settings,
            vectors,
        }
    }

    pub fn settings(&self) -> &RetrievalSettings {
        &self.settings
    }

    /// The nearest chunks by cosine distance: `(chunk id, similarity)`, nearest first.
    pub async fn vector_candidates(
        &self,
        request: &SearchRequest<'_>,
        limit: i64,
    ) -> Result<(VectorPath, Vec<(Uuid, f64)>), DbErr> {
        let (project_id, avatar_id) = (request.project_id, request.avatar_id);
        let kept = self.vectors.as_ref().filter(|cache| cache.in_use());
        if let Some(vectors) = kept.and_then(|cache| cache.get(project_id, avatar_id)) {
            return Ok((VectorPath::Memory, nearest(vectors, request, limit).await?));
        }
        let (size, indexed) = avatar_size(self.db.connection(), project_id, avatar_id).await?;
        if size <= self.settings.exact_scan_max_chunks
            && let Some(cache) = kept
        {
            let vectors = cache.load(&self.db, project_id, avatar_id).await?;
            return Ok((VectorPath::Memory, nearest(vectors, request, limit).await?));
        }
        vector_candidates_in_database(&self.db, &self.settings, request, limit, size, indexed).await
    }

    /// Full-text matches of any of the question's words, best first.
    pub async fn text_candidates(
        &self,
        request: &SearchRequest<'_>,
        limit: i64,
    ) -> Result<Vec<Uuid>, DbErr> {
        text_candidates(&self.db, &self.settings, request, limit).await
    }

    /// Hybrid search: see [`search`].
    pub async fn search(&self, request: &SearchRequest<'_>) -> Result<Vec<SearchHit>, DbErr> {
        search(self, request).await
    }
}

/// The scan of kept vectors, on a blocking thread (a few milliseconds for 20 000 chunks).
async fn nearest(
    vectors: std::sync::Arc<super::vector_cache::AvatarVectors>,
    request: &SearchRequest<'_>,
    limit: i64,
) -> Result<Vec<(Uuid, f64)>, DbErr> {
    let query = request.embedding.clone();
    let limit = usize::try_from(limit).unwrap_or(0);
    tokio::task::spawn_blocking(move || vectors.nearest(&query, limit))
        .await
        .map_err(|error| DbErr::Custom(format!("the vector scan failed: {error}")))
}

/// The nearest chunks found in PostgreSQL: a scan of the avatar's rows, or its own index.
async fn vector_candidates_in_database(
    db: &Db,
    settings: &RetrievalSettings,
    request: &SearchRequest<'_>,
    limit: i64,
    size: i64,
    indexed: bool,
) -> Result<(VectorPath, Vec<(Uuid, f64)>), DbErr> {
    let vector = Value::Vector(Some(PgVector::from(request.embedding.clone())));
    let (path, sql, params) = if size <= settings.exact_scan_max_chunks || !indexed {
        (
            VectorPath::Exact,
            // MATERIALIZED: the avatar's own rows, scanned and sorted exactly — never an
            // index, which would return an approximation.
            "WITH own AS MATERIALIZED ( \
                 SELECT c.id, c.embedding <=> $1 AS distance FROM document_chunks c \
                 JOIN documents d ON d.id = c.document_id \
                 WHERE c.avatar_id = $4 AND c.project_id = $2 AND d.status = 'ready' \
                   AND c.embedding IS NOT NULL) \
             SELECT id, (1 - distance)::float8 AS similarity FROM own ORDER BY distance LIMIT $3"
                .to_owned(),
            vec![
                vector,
                request.project_id.into(),
                limit.into(),
                request.avatar_id.into(),
            ],
        )
    } else {
        (
            VectorPath::Index,
            // The literal avatar id matches the partial index's predicate (a parameter would
            // not, in a generic plan).
            format!(
                "SELECT t.id, (1 - t.distance)::float8 AS similarity FROM ( \
                     SELECT c.id, c.document_id, c.embedding <=> $1 AS distance \
                     FROM document_chunks c \
                     WHERE c.avatar_id = '{avatar}' AND c.project_id = $2 \
                     ORDER BY c.embedding <=> $1 LIMIT $3) t \
                 JOIN documents d ON d.id = t.document_id AND d.status = 'ready' \
                 ORDER BY t.distance",
                avatar = request.avatar_id
            ),
            vec![vector, request.project_id.into(), limit.into()],
        )
    };
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, sql, params);
    let rows = if path == VectorPath::Index {
        // The index's settings, for this query only.
        let transaction = db.connection().begin().await?;
        // One round trip for the three.
        transaction
            .execute_unprepared(&format!(
                "SET LOCAL hnsw.ef_search = {}; SET LOCAL hnsw.iterative_scan = relaxed_order; \
                 SET LOCAL hnsw.max_scan_tuples = {}",
                settings.hnsw_ef_search,
                settings.hnsw_max_scan_tuples.max(1)
            ))
            .await?;
        let rows = transaction.query_all_raw(statement).await?;
        transaction.commit().await?;
        rows
    } else {
        db.query_all_raw(statement).await?
    };
    let hits = rows
        .into_iter()
        .map(|row| {
            Ok((
                row.try_get::<Uuid>("", "id")?,
                row.try_get::<f64>("", "similarity")?,
            ))
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    Ok((path, hits))
}

/// [`text_candidates`]' statement. Parameters: $1 the question, $2 the avatar, $3 its project,
/// $4 the list's length, $5 the text search configuration, $6 the most rows ranked.
///
/// `question`: the question's words as `tsquery` lexemes (quoted as `tsquery` prints them, so
/// any character is safe), and two queries made of them: any word, and any two of its first
/// 16 words (a long pasted text would otherwise make thousands of pairs). `matches`: the
/// chunks holding two of them, then those holding one, at most $6 in all.
const TEXT_CANDIDATES: &str = "\
    WITH question AS MATERIALIZED ( \
        WITH words AS ( \
            SELECT r.m[1] AS w, min(r.n) AS n FROM regexp_matches( \
                plainto_tsquery($5::regconfig, $1)::text, '(''(?:[^'']|'''')*'')', 'g') \
                WITH ORDINALITY AS r(m, n) GROUP BY r.m[1]), \
        first_words AS (SELECT w FROM words ORDER BY n LIMIT 16) \
        SELECT (SELECT string_agg(w, ' | ') FROM words)::tsquery AS any_word, \
               (SELECT string_agg(a.w || ' & ' || b.w, ' | ') \
                FROM first_words a JOIN first_words b ON a.w < b.w)::tsquery AS two_words), \
    matches AS ( \
        (SELECT c.id, c.search_vector FROM document_chunks c \
         JOIN documents d ON d.id = c.document_id \
         WHERE c.avatar_id = $2 AND c.project_id = $3 AND d.status = 'ready' \
           AND c.search_vector @@ (SELECT two_words FROM question) \
         LIMIT $6) \
        UNION ALL \
        (SELECT c.id, c.search_vector FROM document_chunks c \
         JOIN documents d ON d.id = c.document_id \
         WHERE c.avatar_id = $2 AND c.project_id = $3 AND d.status = 'ready' \
           AND c.search_vector @@ (SELECT any_word FROM question) \
           AND NOT coalesce(c.search_vector @@ (SELECT two_words FROM question), false) \
         LIMIT $6)) \
    SELECT m.id FROM (SELECT * FROM matches LIMIT $6) m \
    ORDER BY ts_rank(m.search_vector, (SELECT any_word FROM question)) DESC, m.id \
    LIMIT $4";

/// Full-text matches of any of the question's words, best first (`ts_rank`), ranking at most
/// `settings.text_rank_max_rows` of them.
///
/// A common word can match thousands of an avatar's chunks, and ranking reads every matching
/// row. Chunks holding two or more of the question's words are taken first: with `ts_rank`
/// every one of them ranks above every chunk holding a single word (each distinct word adds
/// between 0.61 and 1 times its weight, the same weight for all), so while they fit under the
/// bound, the list of a question of up to 16 distinct words is exactly the unbounded one.
/// Single-word matches fill the rest in storage order, a bounded sample of the weakest
/// evidence. Both kinds are found by the GIN index alone; only the rows taken are read.
async fn text_candidates(
    db: &Db,
    settings: &RetrievalSettings,
    request: &SearchRequest<'_>,
    limit: i64,
) -> Result<Vec<Uuid>, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            TEXT_CANDIDATES,
            [
                request.query.into(),
                request.avatar_id.into(),
                request.project_id.into(),
                limit.into(),
                request.language.to_owned().into(),
                settings.text_rank_max_rows.into(),
            ],
        ))
        .await?;
    rows.into_iter()
        .map(|row| row.try_get::<Uuid>("", "id"))
        .collect()
}

/// Weighted reciprocal-rank fusion: each list gives `weight / (k + rank)` to its members.
pub fn fuse(lists: &[(Vec<Uuid>, f64)], k: f64) -> Vec<(Uuid, f64)> {
    let mut scores: HashMap<Uuid, f64> = HashMap::new();
    for (list, weight) in lists {
        for (rank, id) in list.iter().enumerate() {
            *scores.entry(*id).or_default() += weight / (k + rank as f64 + 1.0);
        }
    }
    let mut fused: Vec<(Uuid, f64)> = scores.into_iter().collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    fused
}

/// Hybrid search: both lists, each thresholded on similarity, fused, `top_k` best.
///
/// The threshold applies before fusion to every candidate whose similarity is known: the
/// vector list's, and a full-text match whose chunk has a vector (a word in common does not
/// make a passage that the model finds unrelated relevant). A chunk still waiting for its
/// vector is judged by its text alone.
async fn search(
    retriever: &Retriever,
    request: &SearchRequest<'_>,
) -> Result<Vec<SearchHit>, DbErr> {
    let (db, settings) = (&retriever.db, &retriever.settings);
    let top_k = request.top_k.max(1);
    let limit = i64::try_from(top_k).unwrap_or(50) * settings.candidates_per_result.max(1);
    // Independent lists, on two connections at once.
    let (vector, text) = tokio::join!(
        retriever.vector_candidates(request, limit),
        retriever.text_candidates(request, limit)
    );
    let ((_, vector_hits), text_hits) = (vector?, text?);
    let relevant = |similarity: f64| {
        request.similarity_threshold <= 0.0 || similarity >= request.similarity_threshold
    };
    let vector_ids: Vec<Uuid> = vector_hits
        .iter()
        .filter(|(_, similarity)| relevant(*similarity))
        .map(|(id, _)| *id)
        .collect();
    let mut candidate_ids = vector_ids.clone();
    candidate_ids.extend(text_hits.iter().filter(|id| !vector_ids.contains(id)));
    if candidate_ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT c.id, c.document_id, d.filename, c.text, c.page, \
                    (1 - (c.embedding <=> $1))::float8 AS similarity \
             FROM document_chunks c JOIN documents d ON d.id = c.document_id \
             WHERE c.id = ANY($2) AND c.project_id = $3",
            [
                Value::Vector(Some(PgVector::from(request.embedding.clone()))),
                candidate_ids.into(),
                request.project_id.into(),
            ],
        ))
        .await?;
    let mut details: HashMap<Uuid, SearchHit> = HashMap::new();
    for row in rows {
        let hit = SearchHit {
            chunk_id: row.try_get("", "id")?,
            document_id: row.try_get("", "document_id")?,
            filename: row.try_get("", "filename")?,
            text: row.try_get("", "text")?,
            page: row.try_get("", "page")?,
            // NULL without a vector yet; NaN when either vector is all zeros (a question of
            // stop words only): no similarity at all.
            similarity: row
                .try_get::<Option<f64>>("", "similarity")?
                .map(|similarity| {
                    if similarity.is_finite() {
                        similarity
                    } else {
                        0.0
                    }
                }),
            score: 0.0,
        };
        details.insert(hit.chunk_id, hit);
    }
    let text_ids: Vec<Uuid> = text_hits
        .into_iter()
        .filter(|id| {
            details
                .get(id)
                .is_some_and(|hit| hit.similarity.is_none_or(relevant))
        })
        .collect();
    let fused = fuse(
        &[(vector_ids, 1.0), (text_ids, settings.rrf_text_weight)],
        settings.rrf_k,
    );
    let mut hits: Vec<SearchHit> = fused
        .into_iter()
        .filter_map(|(id, score)| {
            details.remove(&id).map(|mut hit| {
                hit.score = score;
                hit
            })
        })
        .collect();
    // Equal fused scores (one list's first is the other's second) are settled by similarity.
    hits.sort_by(|a, b| {
        b.score.total_cmp(&a.score).then(
            b.similarity
                .unwrap_or(0.0)
                .total_cmp(&a.similarity.unwrap_or(0.0)),
        )
    });
    hits.truncate(top_k);
    Ok(hits)
}
