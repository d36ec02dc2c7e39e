pub(in crate::modules::billing) mod entities;
pub(in crate::modules::billing) mod errors;
pub(in crate::modules::billing) mod events;
