//! What the chat module tells the others.

use serde::{Deserialize, Serialize};

use crate::core::auth::Actor;
use crate::core::ids::{AvatarId, ConversationId, EndUserId, MessageId, ProjectId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatEvent {
    ConversationStarted {
        project_id: ProjectId,
        avatar_id: AvatarId,
        conversation_id: ConversationId,
        channel: crate::core::channel::Channel,
        end_user_id: Option<EndUserId>,
        actor: Actor,
    },
    /// An answer was stored (whole, cut short by the client, or broken off upstream).
    MessageCompleted {
        project_id: ProjectId,
        avatar_id: AvatarId,
        conversation_id: ConversationId,
        message_id: MessageId,
        end_user_id: Option<EndUserId>,
        channel: crate::core::channel::Channel,
        model: String,
        finish_reason: String,
        prompt_tokens: u32,
        completion_tokens: u32,
        actor: Actor,
    },
    /// Tokens consumed, for billing and analytics.
    UsageRecorded {
        project_id: ProjectId,
        avatar_id: AvatarId,
        message_id: MessageId,
        kind: String,
        model: String,
        prompt_tokens: u32,
        completion_tokens: u32,
    },
}

impl ChatEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            ChatEvent::ConversationStarted { .. } => "chat.conversation_started",
            ChatEvent::MessageCompleted { .. } => "chat.message_completed",
            ChatEvent::UsageRecorded { .. } => "chat.usage_recorded",
        }
    }
}
