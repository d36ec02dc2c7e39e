pub(in crate::modules::end_users) mod entities;
pub(in crate::modules::end_users) mod errors;
pub(in crate::modules::end_users) mod events;
