//! `chat`: conversations with avatars and the RAG pipeline that answers them — retrieval,
//! prompt, a streamed LLM answer (or retrieval-only), stored with its sources, usage and
//! timings, the token reservation settled. Staff ask in the playground; end users through the
//! public API (and Telegram, later), all through [`ChatService`].

pub mod api;
pub mod budget;
pub mod domain;
pub mod handlers;
pub mod models;
pub mod pipeline;
pub mod prompt;
pub mod service;

pub use service::ChatService;
