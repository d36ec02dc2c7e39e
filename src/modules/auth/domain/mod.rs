pub(in crate::modules::auth) mod entities;
pub mod errors;
pub mod events;
