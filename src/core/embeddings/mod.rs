//! Text embeddings: the [`Embedder`] trait and its three implementations, plus [`cosine`]:
//! - [`SemanticEmbedder`] (the default, provider `local`): all-MiniLM-L6-v2 in-process, the
//!   model installed by `scripts/embedder.sh`, nothing fetched at run time;
//! - [`LexicalEmbedder`] (provider `lexical`): keywords only, nothing to install;
//! - [`OpenAiEmbedder`] (provider `openai`): any OpenAI-compatible `/v1/embeddings` endpoint.
//!
//! Every vector an embedder returns is L2-normalised (or all zeros, see below), so cosine
//! similarity is a dot product and pgvector's `<=>` (cosine distance) ranks them correctly.
//! Each embedder names itself with a stable [`Embedder::model_id`] that is stored with every
//! chunk: vectors from different models are not comparable, and a changed model or dimension
//! must be handled by re-embedding, never by mixing.
//!
//! # The lexical embedder matches words, not meaning
//! [`LexicalEmbedder`] hashes words and character trigrams into a fixed number of buckets
//! ("feature hashing"). Two texts are close when they share words or word stems: it finds the
//! passage for "How do I install R packages?" because that passage says "install" and
//! "packages", and it tolerates inflections ("installing", "packages" vs "package"). It does
//! not know that "car" and "automobile" mean the same thing, nor anything about word order.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

mod lexical;
mod openai;
mod semantic;

pub use lexical::{LEXICAL_MODEL_ID, LexicalEmbedder};
pub use openai::{
    DEFAULT_BATCH_SIZE, DEFAULT_MAX_RETRIES, DEFAULT_RETRY_BASE, DEFAULT_TIMEOUT, OpenAiEmbedder,
    OpenAiEmbedderConfig,
};
pub use semantic::{
    MAX_CHUNK_PIECES, MAX_PIECES, SEMANTIC_DIMENSION, SEMANTIC_MODEL_ID, SemanticEmbedder,
    WordPieceCounter,
};

use crate::core::config::EmbeddingProvider;

/// The most tokens a chunk may hold with `provider`'s embedder (see
/// [`Embedder::max_chunk_tokens`]), known from the settings alone.
pub fn max_chunk_tokens(provider: EmbeddingProvider) -> Option<usize> {
    match provider {
        EmbeddingProvider::Local => Some(MAX_CHUNK_PIECES),
        EmbeddingProvider::Lexical | EmbeddingProvider::Openai => None,
    }
}

/// A chunk size and overlap as used with an embedder that reads at most `max` tokens at once:
/// the size capped to it, the overlap shrunk in proportion.
pub fn fit_chunk(size: usize, overlap: usize, max: Option<usize>) -> (usize, usize) {
    match max {
        Some(max) if size > max => (max, overlap * max / size),
        _ => (size, overlap),
    }
}

/// Computes embeddings. Implementations are cheap to share (`Arc<dyn Embedder>`).
#[async_trait]
pub trait Embedder: Send + Sync + fmt::Debug {
    /// Length of every vector this embedder returns.
    fn dimension(&self) -> usize;

    /// Stable identifier stored with each chunk, e.g. `"local-lexical-v1"` or
    /// `"openai:text-embedding-3-small"`, so that a model change is detectable.
    fn model_id(&self) -> String;

    /// Embeds `texts` in order: one L2-normalised vector of [`Self::dimension`] values per text
    /// (all zeros for a text with nothing to embed). Implementations batch internally.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbeddingError>;

    /// What a document's chunks are measured in for this embedder.
    fn token_unit(&self) -> TokenUnit {
        TokenUnit::Cl100k
    }

    /// The most tokens (of [`Self::token_unit`]) a chunk may hold for this embedder to read it
    /// whole; `None` when chunking need not care.
    fn max_chunk_tokens(&self) -> Option<usize> {
        None
    }

    /// This embedder for documents and questions in `language` (an avatar's `rag.language`, a
    /// PostgreSQL text search configuration), when its vectors depend on the language; `None`
    /// when they do not (use it as it is: [`in_language`]).
    fn for_language(&self, _language: &str) -> Option<Arc<dyn Embedder>> {
        None
    }

    /// Whether documents' vectors are filled in by a background job after the document is
    /// `ready`, rather than during its processing. True for an embedder that spends this
    /// machine's CPU, so that a document is searchable (by its full text) at once.
    fn embeds_in_background(&self) -> bool {
        false
    }

    /// Embeds one question. An embedder that runs in-process serves it on a path of its own,
    /// so that a question never waits behind documents being indexed.
    async fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbeddingError> {
        let mut vectors = self.embed(&[text.to_owned()]).await?;
        vectors
            .pop()
            .ok_or_else(|| EmbeddingError::Permanent("no vector for the question".to_owned()))
    }
}

/// `embedder` for texts in `language` (see [`Embedder::for_language`]).
pub fn in_language(embedder: Arc<dyn Embedder>, language: &str) -> Arc<dyn Embedder> {
    embedder.for_language(language).unwrap_or(embedder)
}

/// The unit chunk sizes are counted in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenUnit {
    /// OpenAI's cl100k BPE (`core::tokens`): OpenAI's embedding models read it, and the
    /// lexical embedder has no tokens of its own.
    Cl100k,
    /// The local model's word pieces, by the `tokenizer.json` at this path.
    WordPieces(PathBuf),
}

/// Why embedding failed, split by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmbeddingError {
    /// Worth retrying later: timeouts, rate limits (429), server errors (5xx), connection errors.
    #[error("embedding failed, temporarily: {0}")]
    Transient(String),
    /// Retrying will not help: a rejected request (4xx other than 408 and 429), a dimension
    /// mismatch, a malformed response, an invalid configuration.
    #[error("embedding failed: {0}")]
    Permanent(String),
}

impl EmbeddingError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }

    /// The explanation, without the "embedding failed" prefix.
    pub fn message(&self) -> &str {
        match self {
            Self::Transient(message) | Self::Permanent(message) => message,
        }
    }
}

/// Cosine similarity of two vectors, in `[-1, 1]`. It is 0 when either vector is all zeros
/// (e.g. the local embedding of an empty text) or when their lengths differ, never NaN.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut dot, mut norm_a, mut norm_b) = (0.0_f64, 0.0_f64, 0.0_f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        norm_a += x * x;
        norm_b += y * y;
    }
    if norm_a == 0.0 || norm_b == 0.0 {
        return 0.0;
    }
    (dot / (norm_a.sqrt() * norm_b.sqrt())).clamp(-1.0, 1.0) as f32
}

/// Scales `vector` to unit length in place; an all-zero vector stays all zeros.
pub(super) fn normalize(vector: &mut [f32]) {
    let norm = vector
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 && norm.is_finite() {
        for x in vector.iter_mut() {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
}

pub(super) fn check_dimension(dimension: usize) -> Result<(), EmbeddingError> {
    if dimension == 0 {
        return Err(EmbeddingError::Permanent(
            "the embedding dimension must be at least 1".to_owned(),
        ));
    }
    Ok(())
}
