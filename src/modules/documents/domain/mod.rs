pub(in crate::modules::documents) mod entities;
pub mod errors;
pub mod events;
