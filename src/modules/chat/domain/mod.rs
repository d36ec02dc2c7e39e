pub(in crate::modules::chat) mod entities;
pub mod errors;
pub mod events;
