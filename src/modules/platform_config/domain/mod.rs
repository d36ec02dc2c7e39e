pub(in crate::modules::platform_config) mod entities;
pub(in crate::modules::platform_config) mod errors;
pub(in crate::modules::platform_config) mod events;
