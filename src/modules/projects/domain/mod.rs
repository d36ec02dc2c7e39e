pub(in crate::modules::projects) mod entities;
pub mod errors;
pub mod events;
