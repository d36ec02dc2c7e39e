//! A small or medium avatar's vectors in memory, searched exactly by a scan in process: the
//! same answer as PostgreSQL's exact scan of the avatar's rows (recall 1.0), without reading
//! thousands of heap pages per question. An avatar's vectors are loaded by one statement on the
//! first question after a change and kept in an [`ExactCache`]: every change to its chunks or
//! to a document's status drops them in every process (the `avatar:<id>` tag, from the
//! triggers of migration `m20261204_120000_documents_vectors_cache_invalidation`). The memory
//! they take is bounded (`retrieval.vector_cache_mb`); avatars past
//! `retrieval.exact_scan_max_chunks` are searched through their own HNSW index instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use sea_orm::prelude::PgVector;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use uuid::Uuid;

use crate::core::cache::{ExactCache, ExactCaches};
use crate::core::db::Db;
use crate::core::ids::{AvatarId, ProjectId};

/// The vectors of an avatar's ready chunks, each scaled to unit length (so that a dot product
/// is the cosine), one row after the other.
pub(super) struct AvatarVectors {
    ids: Vec<Uuid>,
    vectors: Vec<f32>,
    dimensions: usize,
}

impl AvatarVectors {
    fn bytes(&self) -> usize {
        self.vectors.len() * std::mem::size_of::<f32>() + self.ids.len() * 16
    }

    /// The `limit` chunks nearest to `query` by cosine similarity, nearest first — as
    /// pgvector's `1 - (embedding <=> query)` ranks them. A question without a direction (all
    /// zeros: stop words only) is near nothing.
    pub(super) fn nearest(&self, query: &[f32], limit: usize) -> Vec<(Uuid, f64)> {
        let Some(query) = unit(query) else {
            return Vec::new();
        };
        if query.len() != self.dimensions || limit == 0 {
            return Vec::new();
        }
        let mut scored: Vec<(f32, u32)> = self
            .vectors
            .chunks_exact(self.dimensions)
            .enumerate()
            .map(|(row, vector)| (dot(vector, &query), row as u32))
            .collect();
        let by_similarity =
            |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if scored.len() > limit {
            scored.select_nth_unstable_by(limit - 1, by_similarity);
            scored.truncate(limit);
        }
        scored.sort_unstable_by(by_similarity);
        scored
            .into_iter()
            .map(|(similarity, row)| (self.ids[row as usize], f64::from(similarity)))
            .collect()
    }
}

/// `vector` scaled to unit length; `None` for a zero vector.
fn unit(vector: &[f32]) -> Option<Vec<f32>> {
    let norm = dot(vector, vector).sqrt();
    (norm > 0.0 && norm.is_finite()).then(|| vector.iter().map(|value| value / norm).collect())
}

/// In eight independent sums, so that the compiler keeps them in vector registers.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0.0f32; 8];
    let (chunks_a, chunks_b) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in chunks_a.zip(chunks_b) {
        for lane in 0..8 {
            sums[lane] += x[lane] * y[lane];
        }
    }
    sums.iter().sum::<f32>() + tail
}

type Key = (ProjectId, AvatarId);

/// The avatars' vectors this process keeps, and one load at a time per avatar.
pub(super) struct VectorCache {
    vectors: ExactCache<Key, Arc<AvatarVectors>>,
    loading: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    caches: ExactCaches,
}

impl VectorCache {
    /// At most `megabytes` of vectors.
    pub(super) fn new(caches: &ExactCaches, megabytes: usize) -> Self {
        VectorCache {
            vectors: caches.weighted_cache(megabytes.saturating_mul(1 << 20)),
            loading: Mutex::new(HashMap::new()),
            caches: caches.clone(),
        }
    }

    /// Whether the cache can hold anything now (its process's listener keeps up).
    pub(super) fn in_use(&self) -> bool {
        self.caches.in_use()
    }

    pub(super) fn get(
        &self,
        project_id: ProjectId,
        avatar_id: AvatarId,
    ) -> Option<Arc<AvatarVectors>> {
        self.vectors.get(&(project_id, avatar_id))
    }

    /// The avatar's vectors, loaded by one statement if they are not kept already (and kept
    /// if they fit). Concurrent questions to an avatar wait for one load.
    pub(super) async fn load(
        &self,
        db: &Db,
        project_id: ProjectId,
        avatar_id: AvatarId,
    ) -> Result<Arc<AvatarVectors>, DbErr> {
        let key = (project_id, avatar_id);
        let lock = self
            .loading
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default()
            .clone();
        let loaded = {
            let _turn = lock.lock().await;
            match self.vectors.get(&key) {
                Some(vectors) => Ok(vectors),
                None => self.read(db, key).await,
            }
        };
        // The last one out forgets the avatar's lock.
        let mut loading = self.loading.lock().unwrap_or_else(PoisonError::into_inner);
        if Arc::strong_count(&lock) == 2 {
            loading.remove(&key);
        }
        loaded
    }

    async fn read(&self, db: &Db, key: Key) -> Result<Arc<AvatarVectors>, DbErr> {
        let ticket = self.vectors.ticket();
        let rows = db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT c.id, c.embedding FROM document_chunks c \
                 JOIN documents d ON d.id = c.document_id \
                 WHERE c.avatar_id = $2 AND c.project_id = $1 AND d.status = 'ready' \
                   AND c.embedding IS NOT NULL",
                [key.0.into(), key.1.into()],
            ))
            .await?;
        let mut ids = Vec::with_capacity(rows.len());
        let mut vectors = Vec::new();
        let mut dimensions = 0;
        for row in rows {
            let vector: PgVector = row.try_get("", "embedding")?;
            let vector = vector.as_slice();
            dimensions = vector.len();
            ids.push(row.try_get("", "id")?);
            match unit(vector) {
                Some(unit) => vectors.extend(unit),
                None => vectors.extend(std::iter::repeat_n(0.0, vector.len())),
            }
        }
        let vectors = Arc::new(AvatarVectors {
            ids,
            vectors,
            dimensions,
        });
        self.vectors.insert_weighted(
            ticket,
            key,
            vectors.clone(),
            vec![format!("avatar:{}", key.1)],
            vectors.bytes(),
        );
        Ok(vectors)
    }
}

#[cfg(test)]
mod tests {
    use super::{AvatarVectors, dot, unit};
    use uuid::Uuid;

    fn vectors(rows: &[[f32; 3]]) -> AvatarVectors {
        AvatarVectors {
            ids: (0..rows.len()).map(|_| Uuid::now_v7()).collect(),
            vectors: rows.iter().flat_map(|row| unit(row).unwrap()).collect(),
            dimensions: 3,
        }
    }

    #[test]
    fn the_nearest_come_first_with_their_cosine_as_pgvector_gives_it() {
        let avatar = vectors(&[
            [1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [1.0, 1.0, 0.0],
            [-1.0, 0.0, 0.0],
        ]);
        let nearest = avatar.nearest(&[2.0, 0.1, 0.0], 3);
        let order: Vec<Uuid> = nearest.iter().map(|(id, _)| *id).collect();
        assert_eq!(order, vec![avatar.ids[0], avatar.ids[2], avatar.ids[1]]);
        let expected = 2.0 / (4.01f64).sqrt();
        assert!((nearest[0].1 - expected).abs() < 1e-6, "{nearest:?}");
        assert_eq!(avatar.nearest(&[0.0, 0.0, 0.0], 3), vec![]);
        assert_eq!(avatar.nearest(&[1.0, 0.0], 3), vec![], "another size");
        assert_eq!(avatar.nearest(&[1.0, 0.0, 0.0], 10).len(), 4);
    }

    #[test]
    fn dot_products_over_any_length() {
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let expected: f32 = a.iter().map(|x| x * x).sum();
        assert_eq!(dot(&a, &a), expected);
    }
}
