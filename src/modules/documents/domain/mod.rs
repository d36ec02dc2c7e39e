pub(in crate::modules::documents) mod entities;
pub(in crate::modules::documents) mod errors;
pub(in crate::modules::documents) mod events;
