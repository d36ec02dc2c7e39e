pub(in crate::modules::projects) mod entities;
pub(in crate::modules::projects) mod errors;
pub(in crate::modules::projects) mod events;
