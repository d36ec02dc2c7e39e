//! Fast tests: no servers, no network.

// Helpers outside `#[test]` functions: a panic there is a failed test, as in the tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cache;
mod config;
mod embeddings;
mod errors;
mod routes;
