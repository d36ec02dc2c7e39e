//! What the platform_config module tells the others.

use serde::{Deserialize, Serialize};

use crate::core::auth::Actor;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PlatformConfigEvent {
    /// Settings changed; `fields` names them (never their values).
    PlatformConfigChanged { fields: Vec<String>, actor: Actor },
}

impl PlatformConfigEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            PlatformConfigEvent::PlatformConfigChanged { .. } => {
                "platform_config.platform_config_changed"
            }
        }
    }
}
