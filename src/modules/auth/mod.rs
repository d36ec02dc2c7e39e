//! `auth`: users, passwords, sessions (access and refresh tokens) and the saas_admin's user
//! management. Other modules use [`AuthService`]'s public methods to look users up.

pub mod api;
pub mod domain;
pub mod service;

pub use service::AuthService;
