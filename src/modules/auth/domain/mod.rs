pub(in crate::modules::auth) mod entities;
pub(in crate::modules::auth) mod errors;
pub(in crate::modules::auth) mod events;
