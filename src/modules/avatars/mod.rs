//! `avatars`: a project's AI consultants — system prompt, LLM settings, retrieval settings,
//! status. Other modules read an avatar through [`AvatarsService::get`].

pub mod api;
pub mod domain;
pub mod service;

pub use service::AvatarsService;
