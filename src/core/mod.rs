//! Shared infrastructure. Knows no module.

pub mod auth;
pub mod cache;
pub mod channel;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod db;
pub mod email;
pub mod embeddings;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod ids;
pub mod jobs;
pub mod llm;
pub mod openapi;
pub mod outbound;
pub mod pagination;
pub mod storage;
pub mod telegram;
pub mod telemetry;
pub mod tokens;
pub mod upstream;
