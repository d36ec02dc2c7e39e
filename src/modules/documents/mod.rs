//! `documents`: an avatar's knowledge. Upload (streamed to the blob store, type sniffed,
//! de-duplicated by hash), processing as a durable job (parse → chunk → embed → store in
//! pgvector + full text), reprocess, delete, and hybrid retrieval for the chat pipeline.

pub mod api;
pub mod chunking;
pub mod domain;
pub mod embedding;
pub mod handlers;
pub mod parsing;
pub mod retrieval;
mod sandbox;
pub mod service;
pub mod store;
pub mod tasks;
pub mod vector_index;

pub(crate) use sandbox::Sandbox;
pub use sandbox::{ChildLimits, ParseRequest, run_child as parse_document_command};
pub use service::DocumentsService;
