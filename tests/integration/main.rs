//! One integration-test binary (one link): the real app over HTTP on a random port, against
//! real PostgreSQL with pgvector, Redis and an in-process S3 server.

// Helpers outside `#[test]` functions: a panic there is a failed test, as in the tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod analytics;
mod api_fuzzing;
mod auth;
mod avatars;
mod billing;
mod cache;
mod chat;
mod db;
mod documents;
mod embeddings;
mod events;
mod exact_caches;
mod fake_openai;
mod fake_telegram;
mod faults;
mod fixtures;
mod helpers;
mod ingestion_limits;
mod isolation;
mod jobs;
mod llm_faults;
mod notifications;
mod openai;
mod outages;
mod outbound;
mod platform_config;
mod processes;
mod projects;
mod races;
mod retrieval;
mod semantic;
mod service;
mod storage;
mod telegram;
mod usage_analytics;
