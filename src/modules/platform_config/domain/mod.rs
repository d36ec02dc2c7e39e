pub(in crate::modules::platform_config) mod entities;
pub mod errors;
pub mod events;
