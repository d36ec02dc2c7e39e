//! `end_users`: the people who talk to avatars through a channel (public API, Telegram).
//! Other modules find or create them through [`EndUsersService::find_or_create`].

pub mod api;
pub mod domain;
pub mod service;

pub use service::EndUsersService;
