//! The documents module's internals that benches and the tests measuring them drive directly
//! (feature `testkit`, off in every build that serves): parsing, chunking, bulk chunk writes,
//! the vector paths of retrieval and the per-avatar vector index.

pub use super::chunk_store::{ChunkOwner, insert_chunks};
pub use super::chunking::{Chunk, chunk_sections};

pub mod parsing {
    pub use crate::modules::documents::parsing::{
        DocumentFormat, ParseError, ParseLimits, ParsedDocument, Section, parse,
    };
}

pub mod retrieval {
    pub use crate::modules::documents::retrieval::{Retriever, SearchRequest, VectorPath};
}

pub mod vector_index {
    pub use crate::modules::documents::vector_index::{BuildOutcome, build, index_name, is_ready};
}
