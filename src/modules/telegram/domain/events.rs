//! What the telegram module tells the others.

use serde::{Deserialize, Serialize};

use crate::core::auth::Actor;
use crate::core::ids::{AvatarId, ProjectId};

use super::BotMode;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TelegramEvent {
    /// Connected, or connected again with another token, avatar or mode.
    BotConnected {
        project_id: ProjectId,
        bot_id: i64,
        bot_username: String,
        avatar_id: AvatarId,
        mode: BotMode,
        actor: Actor,
    },
    BotDisconnected {
        project_id: ProjectId,
        bot_id: i64,
        actor: Actor,
    },
}

impl TelegramEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            TelegramEvent::BotConnected { .. } => "telegram.bot_connected",
            TelegramEvent::BotDisconnected { .. } => "telegram.bot_disconnected",
        }
    }
}
