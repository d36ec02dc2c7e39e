//! Fast tests: no servers, no network.

mod cache;
mod config;
mod embeddings;
mod errors;
