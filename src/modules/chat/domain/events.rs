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
    /// An answer was stored (whole, cut short by the client, or broken off upstream). With the
    /// question it answers, that is two messages of the conversation.
    MessageCompleted {
        project_id: ProjectId,
        avatar_id: AvatarId,
        conversation_id: ConversationId,
        message_id: MessageId,
        /// The question it answers.
        #[serde(default)]
        question_id: Option<MessageId>,
        end_user_id: Option<EndUserId>,
        channel: crate::core::channel::Channel,
        model: String,
        finish_reason: String,
        prompt_tokens: u32,
        completion_tokens: u32,
        /// No LLM was configured: the answer is the passages found.
        #[serde(default)]
        retrieval_only: bool,
        /// Broken off upstream (finish reason `error`).
        #[serde(default)]
        failed: bool,
        /// From the request to the first token (none if nothing came), and to the end.
        #[serde(default)]
        time_to_first_token_ms: Option<u32>,
        #[serde(default)]
        total_ms: Option<u32>,
        actor: Actor,
    },
    /// A question that got no stored answer: retrieval, the model or the store failed before
    /// the answer started (`failed`), or the client left first.
    QuestionUnanswered {
        project_id: ProjectId,
        avatar_id: AvatarId,
        conversation_id: ConversationId,
        /// The stored question.
        question_id: MessageId,
        end_user_id: Option<EndUserId>,
        channel: crate::core::channel::Channel,
        failed: bool,
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
            ChatEvent::QuestionUnanswered { .. } => "chat.question_unanswered",
            ChatEvent::UsageRecorded { .. } => "chat.usage_recorded",
        }
    }
}
