pub(in crate::modules::avatars) mod entities;
pub(in crate::modules::avatars) mod errors;
pub(in crate::modules::avatars) mod events;
