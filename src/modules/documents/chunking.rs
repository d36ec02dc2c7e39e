//! Token-aware chunking: each section of a parsed document is split with text-splitter,
//! preferring paragraph, then sentence, then word boundaries, with the avatar's overlap. Sizes
//! are counted in the active embedder's tokens ([`TokenUnit`]): cl100k (tiktoken-rs, tables
//! built in) or the local model's word pieces (its `tokenizer.json`). A chunk never spans two
//! sections, so its page and heading are exact.

use serde_json::{Map, Value, json};
use text_splitter::{ChunkConfig, ChunkSizer, TextSplitter};
use tiktoken_rs::CoreBPE;

use crate::core::embeddings::{TokenUnit, WordPieceCounter};

use super::parsing::Section;

/// The most bytes a token stands for: the parser's output is bounded by it. A cl100k token is
/// never longer; the local model's tokenizer reads a long unknown word as one `[UNK]`, so
/// word-piece sizes count a text's bytes too.
pub const MAX_BYTES_PER_TOKEN: usize = 32;

/// Counts a text's tokens in one [`TokenUnit`].
enum Sizer {
    Cl100k(&'static CoreBPE),
    WordPieces(Box<WordPieceCounter>),
}

impl Sizer {
    fn new(unit: &TokenUnit) -> Result<Self, ChunkError> {
        Ok(match unit {
            TokenUnit::Cl100k => {
                Sizer::Cl100k(crate::core::tokens::cl100k().map_err(ChunkError::Tokenizer)?)
            }
            TokenUnit::WordPieces(path) => {
                let counter = WordPieceCounter::load(path).map_err(ChunkError::Tokenizer)?;
                Sizer::WordPieces(Box::new(counter))
            }
        })
    }
}

impl ChunkSizer for &Sizer {
    fn size(&self, chunk: &str) -> usize {
        match self {
            Sizer::Cl100k(bpe) => bpe.encode_ordinary(chunk).len(),
            Sizer::WordPieces(counter) => counter
                .count(chunk)
                .max(chunk.len().div_ceil(MAX_BYTES_PER_TOKEN)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk overlap {overlap} must be less than chunk size {size}")]
    Overlap { size: usize, overlap: usize },
    #[error("the tokenizer could not be loaded: {0}")]
    Tokenizer(String),
}

/// One piece of a document, ready to embed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Chunk {
    pub ordinal: i32,
    pub text: String,
    pub token_count: i32,
    pub page: Option<i32>,
    pub chunk_metadata: Map<String, Value>,
}

/// Splits `sections` into chunks of at most `size` tokens of `unit`, sharing `overlap`.
pub fn chunk_sections(
    sections: &[Section],
    size: usize,
    overlap: usize,
    unit: &TokenUnit,
) -> Result<Vec<Chunk>, ChunkError> {
    let sizer = Sizer::new(unit)?;
    let config = ChunkConfig::new(size)
        .with_overlap(overlap)
        .map_err(|_| ChunkError::Overlap { size, overlap })?
        .with_sizer(&sizer);
    let splitter = TextSplitter::new(config);
    let mut chunks = Vec::new();
    for section in sections {
        for piece in splitter.chunks(&section.text) {
            let text = piece.trim();
            if text.is_empty() {
                continue;
            }
            let mut chunk_metadata = Map::new();
            if let Some(page) = section.page {
                chunk_metadata.insert("page".into(), json!(page));
            }
            if let Some(heading) = &section.heading {
                chunk_metadata.insert("heading".into(), json!(heading));
            }
            chunks.push(Chunk {
                ordinal: i32::try_from(chunks.len()).unwrap_or(i32::MAX),
                text: text.to_owned(),
                token_count: i32::try_from((&sizer).size(text)).unwrap_or(i32::MAX),
                page: section.page.and_then(|page| i32::try_from(page).ok()),
                chunk_metadata,
            });
        }
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    /// The local model's tokenizer, as `scripts/embedder.sh` installed it.
    fn word_pieces() -> (TokenUnit, WordPieceCounter) {
        let dir = std::env::var("APP__EMBEDDINGS__LOCAL_MODEL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/embedder"));
        let path = dir.join("tokenizer.json");
        let counter = WordPieceCounter::load(&path).unwrap();
        (TokenUnit::WordPieces(path), counter)
    }

    fn section(text: String) -> Section {
        Section {
            text,
            page: Some(3),
            heading: Some("Packages".to_owned()),
        }
    }

    #[test]
    fn chunks_in_word_pieces_fit_the_model_s_window_and_count_their_pieces() {
        let (unit, counter) = word_pieces();
        let text = (0..60)
            .map(|n| {
                format!(
                    "Paragraph {n}: install.packages() downloads package number {n} from CRAN, \
                     then library() attaches it so that its functions can be called.\n\n"
                )
            })
            .collect::<String>();
        let chunks = chunk_sections(&[section(text.clone())], 254, 20, &unit).unwrap();
        assert!(chunks.len() > 5, "{}", chunks.len());
        for chunk in &chunks {
            let pieces = counter.count(&chunk.text);
            assert!(pieces <= 254, "{pieces} pieces");
            assert_eq!(chunk.token_count as usize, pieces);
            assert_eq!(chunk.page, Some(3));
        }
        // Word pieces are not cl100k tokens: the same text chunks differently.
        let cl100k = chunk_sections(&[section(text)], 254, 20, &TokenUnit::Cl100k).unwrap();
        assert_ne!(
            cl100k
                .iter()
                .map(|chunk| chunk.token_count)
                .collect::<Vec<_>>(),
            chunks
                .iter()
                .map(|chunk| chunk.token_count)
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_long_unknown_word_is_sized_by_its_bytes() {
        let (unit, counter) = word_pieces();
        // One [UNK] to the tokenizer, whatever its length.
        let word = "x".repeat(20_000);
        assert_eq!(counter.count(&word), 1);
        let chunks = chunk_sections(&[section(word)], 254, 0, &unit).unwrap();
        assert!(chunks.len() >= 20_000 / (254 * MAX_BYTES_PER_TOKEN));
        assert!(
            chunks
                .iter()
                .all(|chunk| chunk.text.len() <= 254 * MAX_BYTES_PER_TOKEN)
        );
    }
}
