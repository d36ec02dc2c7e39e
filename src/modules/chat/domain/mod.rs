pub(in crate::modules::chat) mod entities;
pub(in crate::modules::chat) mod errors;
pub mod events;
