pub(in crate::modules::avatars) mod entities;
pub mod errors;
pub mod events;
