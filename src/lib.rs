//! Avatar Platform: a multi-tenant backend for RAG-powered AI avatars.
//! See docs/ and ARCHITECTURE.md for the shape; `app` wires everything together.

pub mod app;
pub mod core;
pub mod modules;
