//! Writing chunks: multi-row INSERTs (one round trip per batch), with the pgvector embedding
//! (or none yet: filled in later by the background indexing) and the JSONB `chunk_metadata`;
//! the tsvector column is computed by PostgreSQL with the avatar's text search configuration.

use chrono::{DateTime, Utc};
use sea_orm::prelude::PgVector;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};
use serde_json::Value as Json;
use uuid::Uuid;

use crate::core::db::{Db, new_id};
use crate::core::ids::{AvatarId, DocumentId, ProjectId};

use super::chunking::Chunk;
use super::domain::entities::document;

/// Whose chunks these are.
#[derive(Debug, Clone, Copy)]
pub struct ChunkOwner {
    pub document_id: DocumentId,
    pub project_id: ProjectId,
    pub avatar_id: AvatarId,
}

/// A document's chunks. Every statement on them names their avatar too: `document_chunks` is
/// partitioned by the avatar's hash, and a statement that names it is planned against its
/// partition alone (a large avatar's vector index is a partial index there, and the planner
/// checks each partial index of every partition it plans for).
#[derive(Debug, Clone, Copy)]
pub struct DocumentChunks {
    pub document_id: DocumentId,
    pub avatar_id: AvatarId,
}

impl DocumentChunks {
    pub fn of(document: &document::Model) -> Self {
        DocumentChunks {
            document_id: document.id,
            avatar_id: document.avatar_id,
        }
    }
}

const COLUMNS_PER_ROW: usize = 12;

pub async fn delete_chunks<C: ConnectionTrait>(
    conn: &C,
    chunks: DocumentChunks,
) -> Result<u64, DbErr> {
    let result = conn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "DELETE FROM document_chunks WHERE document_id = $1 AND avatar_id = $2",
            [chunks.document_id.into(), chunks.avatar_id.into()],
        ))
        .await?;
    Ok(result.rows_affected())
}

/// Inserts `rows` (a chunk and its embedding, if it has one yet, each) of `document` in one
/// statement, stamped `created_at`, their full text indexed with the text search
/// configuration `language` (the avatar's).
pub async fn insert_chunks<C: ConnectionTrait>(
    conn: &C,
    document: ChunkOwner,
    rows: &[(&Chunk, Option<Vec<f32>>)],
    embedding_model: &str,
    language: &str,
    created_at: DateTime<Utc>,
) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut placeholders = Vec::with_capacity(rows.len());
    let mut values: Vec<Value> = Vec::with_capacity(rows.len() * COLUMNS_PER_ROW + 1);
    values.push(language.to_owned().into());
    for (index, (chunk, embedding)) in rows.iter().enumerate() {
        let base = index * COLUMNS_PER_ROW + 1;
        let mut row: Vec<String> = (1..=COLUMNS_PER_ROW)
            .map(|n| format!("${}", base + n))
            .collect();
        // The text (7th value) indexed with the language ($1).
        row.push(format!("to_tsvector($1::regconfig, ${})", base + 7));
        placeholders.push(format!("({})", row.join(", ")));
        values.extend([
            new_id().into(),
            document.document_id.into(),
            document.project_id.into(),
            document.avatar_id.into(),
            chunk.ordinal.into(),
            chunk.page.into(),
            chunk.text.clone().into(),
            chunk.token_count.into(),
            Value::Vector(embedding.clone().map(PgVector::from)),
            embedding_model.to_owned().into(),
            Json::Object(chunk.chunk_metadata.clone()).into(),
            created_at.into(),
        ]);
    }
    let sql = format!(
        "INSERT INTO document_chunks (id, document_id, project_id, avatar_id, ordinal, page, text, \
         token_count, embedding, embedding_model, chunk_metadata, created_at, search_vector) \
         VALUES {}",
        placeholders.join(", ")
    );
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        values,
    ))
    .await?;
    Ok(())
}

/// Computes the full-text vectors of a document's chunks again, with `language`.
pub async fn reindex_text<C: ConnectionTrait>(
    conn: &C,
    chunks: DocumentChunks,
    language: &str,
) -> Result<u64, DbErr> {
    let result = conn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE document_chunks SET search_vector = to_tsvector($2::regconfig, text) \
             WHERE document_id = $1 AND avatar_id = $3",
            [
                chunks.document_id.into(),
                language.to_owned().into(),
                chunks.avatar_id.into(),
            ],
        ))
        .await?;
    Ok(result.rows_affected())
}

/// Drops the vectors of a document's chunks (they are computed again, by the indexing job)
/// and its count of chunks with one. Returns how many chunks lost theirs.
pub async fn forget_vectors<C: ConnectionTrait>(
    conn: &C,
    chunks: DocumentChunks,
) -> Result<u64, DbErr> {
    let forgotten = conn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE document_chunks SET embedding = NULL \
             WHERE document_id = $1 AND avatar_id = $2 AND embedding IS NOT NULL",
            [chunks.document_id.into(), chunks.avatar_id.into()],
        ))
        .await?;
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE documents SET semantic_indexed_chunks = 0 WHERE id = $1",
        [chunks.document_id.into()],
    ))
    .await?;
    Ok(forgotten.rows_affected())
}

/// A chunk waiting for its vector.
pub struct PendingChunk {
    pub id: Uuid,
    pub text: String,
    pub token_count: i32,
}

/// Up to `limit` chunks of a `ready` document that have no vector yet, in document order.
pub async fn pending_chunks<C: ConnectionTrait>(
    conn: &C,
    chunks: DocumentChunks,
    limit: u64,
) -> Result<Vec<PendingChunk>, DbErr> {
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT c.id, c.text, c.token_count FROM document_chunks c \
             JOIN documents d ON d.id = c.document_id AND d.status = 'ready' \
             WHERE c.document_id = $1 AND c.avatar_id = $3 AND c.embedding IS NULL \
             ORDER BY c.ordinal LIMIT $2",
            [
                chunks.document_id.into(),
                i64::try_from(limit).unwrap_or(i64::MAX).into(),
                chunks.avatar_id.into(),
            ],
        ))
        .await?;
    rows.into_iter()
        .map(|row| {
            Ok(PendingChunk {
                id: row.try_get("", "id")?,
                text: row.try_get("", "text")?,
                token_count: row.try_get("", "token_count")?,
            })
        })
        .collect()
}

/// Stores the vectors of chunks that still have none (one statement), and sets the
/// document's count of chunks with a vector from the table. Returns how many were stored:
/// a chunk deleted meanwhile (the document was processed again) is skipped.
pub async fn store_vectors<C: ConnectionTrait>(
    conn: &C,
    chunks: DocumentChunks,
    vectors: &[(Uuid, Vec<f32>)],
) -> Result<u64, DbErr> {
    if vectors.is_empty() {
        return Ok(0);
    }
    let mut values: Vec<Value> = Vec::with_capacity(vectors.len() * 2 + 2);
    values.push(chunks.document_id.into());
    values.push(chunks.avatar_id.into());
    let rows: Vec<String> = vectors
        .iter()
        .enumerate()
        .map(|(index, (id, vector))| {
            values.push((*id).into());
            values.push(Value::Vector(Some(PgVector::from(vector.clone()))));
            format!("(${}::uuid, ${}::vector)", 2 * index + 3, 2 * index + 4)
        })
        .collect();
    let stored = conn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "UPDATE document_chunks c SET embedding = v.embedding \
                 FROM (VALUES {}) AS v(id, embedding) \
                 WHERE c.id = v.id AND c.document_id = $1 AND c.avatar_id = $2 \
                   AND c.embedding IS NULL",
                rows.join(", ")
            ),
            values,
        ))
        .await?;
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE documents SET semantic_indexed_chunks = (SELECT count(*) FROM document_chunks \
             WHERE document_id = $1 AND avatar_id = $2 AND embedding IS NOT NULL) WHERE id = $1",
        [chunks.document_id.into(), chunks.avatar_id.into()],
    ))
    .await?;
    Ok(stored.rows_affected())
}

/// The chunks' vector column must have the dimension the embedder produces; a mismatch is a
/// deployment error that `documents reembed` resolves, never something to write garbage over.
pub(super) async fn check_embedding_dimension(db: Db, wanted: usize) -> anyhow::Result<()> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT atttypmod AS dimension FROM pg_attribute \
             WHERE attrelid = 'document_chunks'::regclass AND attname = 'embedding'",
        ))
        .await;
    let stored = match row {
        Ok(Some(row)) => row.try_get::<i32>("", "dimension")?,
        // Not migrated yet (`serve --no-migrate` on an empty database): nothing to compare.
        _ => return Ok(()),
    };
    if usize::try_from(stored).ok() != Some(wanted) {
        anyhow::bail!(
            "setting `embeddings.dimension` is {wanted} but stored chunks have {stored} dimensions; \
             run `avatar-platform documents reembed` to change it"
        );
    }
    Ok(())
}

/// Chunks embedded by another model than `model` (the built-in embedder in force) cannot be
/// compared with its vectors: the deployment changed `embeddings.provider`, and `documents
/// reembed` must run before it serves.
pub(super) async fn check_embedding_model(db: Db, model: String) -> anyhow::Result<()> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT embedding_model FROM document_chunks WHERE embedding_model <> $1 LIMIT 1",
            [model.clone().into()],
        ))
        .await;
    let other = match row {
        Ok(Some(row)) => row.try_get::<String>("", "embedding_model")?,
        // None, or not migrated yet: nothing to compare.
        _ => return Ok(()),
    };
    anyhow::bail!(
        "stored chunks were embedded by `{other}` but `embeddings.provider` now embeds with \
         `{model}`; run `avatar-platform documents reembed` to embed them again"
    )
}
