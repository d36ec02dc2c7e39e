pub(in crate::modules::end_users) mod entities;
pub mod errors;
pub mod events;
