//! Chat's history for analytics' one-time backfill: every conversation and message as it is
//! stored, in id order, a batch at a time (analytics reads no chat table itself).

use chrono::{DateTime, Utc};
use sea_orm::{DbBackend, FromQueryResult, Statement};

use crate::core::ids::{AvatarId, ConversationId, EndUserId, MessageId, ProjectId};
use crate::core::llm::RETRIEVAL_ONLY_MODEL;
use crate::modules::chat::domain::MessageRole;

use super::super::domain::errors::ChatError;
use super::{ChatService, non_negative};

/// A conversation, as analytics counts it.
#[derive(Debug, Clone, FromQueryResult)]
pub struct ConversationRecord {
    pub id: ConversationId,
    pub project_id: ProjectId,
    pub avatar_id: AvatarId,
    pub created_at: DateTime<Utc>,
}

/// A stored message, as analytics counts it (questions and answers alike).
#[derive(Debug, Clone)]
pub struct MessageRecord {
    pub id: MessageId,
    pub project_id: ProjectId,
    pub avatar_id: AvatarId,
    /// The conversation's end user.
    pub end_user_id: Option<EndUserId>,
    /// An answer (the assistant's); otherwise a question.
    pub is_answer: bool,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Answered from the passages alone (no LLM configured).
    pub retrieval_only: bool,
    /// Broken off upstream.
    pub failed: bool,
    pub time_to_first_token_ms: Option<u32>,
    pub total_ms: Option<u32>,
    pub created_at: DateTime<Utc>,
}

#[derive(FromQueryResult)]
struct MessageRow {
    id: MessageId,
    project_id: ProjectId,
    avatar_id: AvatarId,
    end_user_id: Option<EndUserId>,
    role: MessageRole,
    prompt_tokens: i32,
    completion_tokens: i32,
    model: Option<String>,
    finish_reason: Option<String>,
    time_to_first_token_ms: Option<i32>,
    total_ms: Option<i32>,
    created_at: DateTime<Utc>,
}

impl ChatService {
    /// Up to `limit` conversations with ids after `after`, in id order.
    pub async fn conversations_after(
        &self,
        after: Option<ConversationId>,
        limit: u64,
    ) -> Result<Vec<ConversationRecord>, ChatError> {
        Ok(
            ConversationRecord::find_by_statement(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT id, project_id, avatar_id, created_at FROM conversations \
                 WHERE $1::uuid IS NULL OR id > $1 ORDER BY id LIMIT $2",
                [
                    after.into(),
                    i64::try_from(limit).unwrap_or(i64::MAX).into(),
                ],
            ))
            .all(self.db.connection())
            .await?,
        )
    }

    /// Up to `limit` messages with ids after `after`, in id order.
    pub async fn messages_after(
        &self,
        after: Option<MessageId>,
        limit: u64,
    ) -> Result<Vec<MessageRecord>, ChatError> {
        let rows = MessageRow::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT m.id, m.project_id, c.avatar_id, c.end_user_id, m.role, m.prompt_tokens, \
                    m.completion_tokens, m.model, m.finish_reason, m.time_to_first_token_ms, \
                    m.total_ms, m.created_at \
             FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             WHERE $1::uuid IS NULL OR m.id > $1 ORDER BY m.id LIMIT $2",
            [
                after.into(),
                i64::try_from(limit).unwrap_or(i64::MAX).into(),
            ],
        ))
        .all(self.db.connection())
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| MessageRecord {
                id: row.id,
                project_id: row.project_id,
                avatar_id: row.avatar_id,
                end_user_id: row.end_user_id,
                is_answer: row.role == MessageRole::Assistant,
                prompt_tokens: non_negative(row.prompt_tokens),
                completion_tokens: non_negative(row.completion_tokens),
                retrieval_only: row.model.as_deref() == Some(RETRIEVAL_ONLY_MODEL),
                failed: row.finish_reason.as_deref() == Some("error"),
                time_to_first_token_ms: row.time_to_first_token_ms.map(non_negative),
                total_ms: row.total_ms.map(non_negative),
                created_at: row.created_at,
            })
            .collect())
    }
}
