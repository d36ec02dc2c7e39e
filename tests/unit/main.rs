//! Fast tests: no servers, no network.

mod cache;
mod config;
mod errors;
mod secrets;
