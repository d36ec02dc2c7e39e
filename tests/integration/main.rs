//! One integration-test binary (one link): the real app over HTTP on a random port, against
//! real PostgreSQL with pgvector, Redis and an in-process S3 server.

mod cache;
mod db;
mod events;
mod helpers;
mod jobs;
mod service;
mod storage;
