//! The end of a turn: the answer, its conversation's counters, the settled reservation and
//! the events, in one transaction.

use sea_orm::ActiveModelTrait;
use sea_orm::ActiveValue::Set;

use crate::core::ids::MessageId;
use crate::core::llm::Usage;
use crate::modules::billing::UsageRecord;
use crate::modules::chat::domain::MessageRole;
use crate::modules::events::DomainEvent;

use super::super::domain::entities::message;
use super::super::domain::errors::ChatError;
use super::super::domain::events::ChatEvent;
use super::super::service::{ChatService, SourceRef, Timings, bump_conversation};
use super::Turn;

impl ChatService {
    /// The answer, its conversation's counters, the settled reservation (with its ledger row)
    /// and the events, in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn store_answer(
        &self,
        turn: &Turn,
        content: &str,
        sources: &[SourceRef],
        usage: Usage,
        model: &str,
        finish_reason: &str,
        timings: Timings,
        usage_estimated: bool,
        failure: Option<&str>,
        retrieval_only: bool,
        record: Option<UsageRecord>,
        question: UsageRecord,
    ) -> Result<message::Model, ChatError> {
        let project_id = turn.avatar.project_id;
        let timestamp = self.clock.now();
        let mut metadata = serde_json::json!({
            "reservation_id": turn.reservation.id,
            "usage_estimated": usage_estimated,
        });
        if let Some(failure) = failure {
            metadata["error"] = serde_json::Value::String(failure.to_owned());
        }
        let mut uow = self.db.begin().await?;
        let stored = message::ActiveModel {
            id: Set(MessageId::new()),
            project_id: Set(project_id),
            conversation_id: Set(turn.conversation_id),
            role: Set(MessageRole::Assistant),
            content: Set(content.to_owned()),
            sources: Set(serde_json::to_value(sources).unwrap_or_default()),
            prompt_tokens: Set(i32::try_from(usage.prompt_tokens).unwrap_or(i32::MAX)),
            completion_tokens: Set(i32::try_from(usage.completion_tokens).unwrap_or(i32::MAX)),
            model: Set(Some(model.to_owned())),
            finish_reason: Set(Some(finish_reason.to_owned())),
            retrieval_ms: Set(Some(
                i32::try_from(timings.retrieval_ms).unwrap_or(i32::MAX),
            )),
            time_to_first_token_ms: Set(timings
                .time_to_first_token_ms
                .map(|ms| i32::try_from(ms).unwrap_or(i32::MAX))),
            total_ms: Set(Some(i32::try_from(timings.total_ms).unwrap_or(i32::MAX))),
            message_metadata: Set(metadata),
            created_at: Set(timestamp),
        }
        .insert(&*uow)
        .await?;
        bump_conversation(&*uow, turn.conversation_id, timestamp).await?;
        self.billing
            .settle_in(&mut uow, &turn.reservation, record)
            .await
            .map_err(|error| ChatError::Common(error.into()))?;
        self.billing
            .record_usage_in(&mut uow, project_id, question)
            .await
            .map_err(|error| ChatError::Common(error.into()))?;
        for event in [
            ChatEvent::MessageCompleted {
                project_id,
                avatar_id: turn.avatar.id,
                conversation_id: turn.conversation_id,
                message_id: stored.id,
                question_id: Some(turn.question_id),
                end_user_id: turn.end_user_id,
                channel: turn.channel,
                model: model.to_owned(),
                finish_reason: finish_reason.to_owned(),
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                retrieval_only,
                failed: failure.is_some(),
                time_to_first_token_ms: timings.time_to_first_token_ms,
                total_ms: Some(timings.total_ms),
                actor: turn.actor.clone(),
            },
            ChatEvent::UsageRecorded {
                project_id,
                avatar_id: turn.avatar.id,
                message_id: stored.id,
                kind: "chat".to_owned(),
                model: model.to_owned(),
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
            },
        ] {
            self.bus
                .publish(&mut uow, &DomainEvent::Chat(event))
                .await?;
        }
        uow.commit().await?;
        Ok(stored)
    }

    /// A turn that ends without an answer: its reservation given back, and analytics told.
    pub(super) async fn unanswered(&self, turn: &Turn, failed: bool) {
        self.release(&turn.reservation).await;
        self.report_unanswered(turn, failed).await;
    }

    /// `QuestionUnanswered`, in a transaction of its own (the turn wrote nothing else).
    pub(super) async fn report_unanswered(&self, turn: &Turn, failed: bool) {
        let event = DomainEvent::Chat(ChatEvent::QuestionUnanswered {
            project_id: turn.avatar.project_id,
            avatar_id: turn.avatar.id,
            conversation_id: turn.conversation_id,
            question_id: turn.question_id,
            end_user_id: turn.end_user_id,
            channel: turn.channel,
            failed,
            actor: turn.actor.clone(),
        });
        let published = async {
            let mut uow = self.db.begin().await?;
            self.bus.publish(&mut uow, &event).await?;
            uow.commit().await
        };
        if let Err(error) = published.await {
            tracing::error!(conversation_id = %turn.conversation_id, "reporting an unanswered question failed: {error}");
        }
    }
}
