//! `projects`: the tenants. Projects, members with roles (owner > manager > operator >
//! viewer), encrypted secrets and API keys. Other modules authorize through the extractors in
//! `core::auth`, backed by [`ProjectsService`], and read secrets with
//! [`ProjectsService::secret_value`].

pub mod api;
pub mod domain;
pub mod service;

pub use service::ProjectsService;
