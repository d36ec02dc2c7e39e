//! Token-aware chunking: each section of a parsed document is split with text-splitter,
//! measured in cl100k tokens (tiktoken-rs, BPE tables embedded, no download), preferring
//! paragraph, then sentence, then word boundaries, with the avatar's overlap. A chunk never
//! spans two sections, so its page and heading are exact.

use serde_json::{Map, Value, json};
use text_splitter::{ChunkConfig, TextSplitter};

use super::parsing::Section;

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

/// Splits `sections` into chunks of at most `size` tokens sharing `overlap` tokens.
pub fn chunk_sections(
    sections: &[Section],
    size: usize,
    overlap: usize,
) -> Result<Vec<Chunk>, ChunkError> {
    let bpe = crate::core::tokens::cl100k().map_err(ChunkError::Tokenizer)?;
    let config = ChunkConfig::new(size)
        .with_overlap(overlap)
        .map_err(|_| ChunkError::Overlap { size, overlap })?
        .with_sizer(bpe);
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
                token_count: i32::try_from(bpe.encode_ordinary(text).len()).unwrap_or(i32::MAX),
                page: section.page.and_then(|page| i32::try_from(page).ok()),
                chunk_metadata,
            });
        }
    }
    Ok(chunks)
}
