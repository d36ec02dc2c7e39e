//! What the usage read model counts: facts, each about one conversation or message, from
//! chat's events or (once) from chat's history. A fact's id is its conversation's or message's,
//! so a redelivered event, or the backfill meeting an event, never counts twice.

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use serde::Serialize;
use uuid::Uuid;

use crate::core::ids::{AvatarId, EndUserId, ProjectId};
use crate::modules::chat::{ChatEvent, ConversationRecord, MessageRecord};
use crate::modules::events::DomainEvent;

/// One conversation or message, counted on its UTC day.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Fact {
    pub id: Uuid,
    pub project_id: Uuid,
    pub avatar_id: Uuid,
    pub day: NaiveDate,
    /// Active that day (they asked, or were answered).
    pub end_user_id: Option<Uuid>,
    pub messages: i64,
    pub conversations: i64,
    pub answers: i64,
    pub retrieval_only_answers: i64,
    pub failed_answers: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub time_to_first_token_ms: Option<i64>,
    pub total_ms: Option<i64>,
}

fn base(
    id: Uuid,
    project_id: ProjectId,
    avatar_id: AvatarId,
    end_user_id: Option<EndUserId>,
    at: DateTime<Utc>,
) -> Fact {
    Fact {
        id,
        project_id: project_id.uuid(),
        avatar_id: avatar_id.uuid(),
        day: at.date_naive(),
        end_user_id: end_user_id.map(EndUserId::uuid),
        ..Fact::default()
    }
}

/// Whether usage analytics counts anything of `event`.
pub fn concerns(event: &DomainEvent) -> bool {
    matches!(
        event,
        DomainEvent::Chat(
            ChatEvent::ConversationStarted { .. }
                | ChatEvent::MessageCompleted { .. }
                | ChatEvent::QuestionUnanswered { .. }
        )
    )
}

/// The facts an event reports (none for events usage analytics does not count).
pub fn of_event(event: &DomainEvent, at: DateTime<Utc>) -> Vec<Fact> {
    let DomainEvent::Chat(event) = event else {
        return Vec::new();
    };
    match event {
        ChatEvent::ConversationStarted {
            project_id,
            avatar_id,
            conversation_id,
            ..
        } => vec![Fact {
            conversations: 1,
            ..base(conversation_id.uuid(), *project_id, *avatar_id, None, at)
        }],
        ChatEvent::MessageCompleted {
            project_id,
            avatar_id,
            message_id,
            question_id,
            end_user_id,
            prompt_tokens,
            completion_tokens,
            retrieval_only,
            failed,
            time_to_first_token_ms,
            total_ms,
            ..
        } => {
            let answer = Fact {
                messages: 1,
                answers: 1,
                retrieval_only_answers: i64::from(*retrieval_only),
                failed_answers: i64::from(*failed),
                prompt_tokens: i64::from(*prompt_tokens),
                completion_tokens: i64::from(*completion_tokens),
                time_to_first_token_ms: time_to_first_token_ms.map(i64::from),
                total_ms: total_ms.map(i64::from),
                ..base(message_id.uuid(), *project_id, *avatar_id, *end_user_id, at)
            };
            let question = question_id.map(|question_id| Fact {
                messages: 1,
                ..base(
                    question_id.uuid(),
                    *project_id,
                    *avatar_id,
                    *end_user_id,
                    at,
                )
            });
            question.into_iter().chain([answer]).collect()
        }
        ChatEvent::QuestionUnanswered {
            project_id,
            avatar_id,
            question_id,
            end_user_id,
            failed,
            ..
        } => vec![Fact {
            messages: 1,
            failed_answers: i64::from(*failed),
            ..base(
                question_id.uuid(),
                *project_id,
                *avatar_id,
                *end_user_id,
                at,
            )
        }],
        ChatEvent::UsageRecorded { .. } => Vec::new(),
    }
}

/// A stored conversation, as the backfill counts it.
pub fn of_conversation(record: &ConversationRecord) -> Fact {
    Fact {
        conversations: 1,
        ..base(
            record.id.uuid(),
            record.project_id,
            record.avatar_id,
            None,
            record.created_at,
        )
    }
}

/// A stored message, as the backfill counts it. (Why a question went unanswered is not stored:
/// only answers broken off upstream count as failed here.)
pub fn of_message(record: &MessageRecord) -> Fact {
    let fact = base(
        record.id.uuid(),
        record.project_id,
        record.avatar_id,
        record.end_user_id,
        record.created_at,
    );
    if !record.is_answer {
        return Fact {
            messages: 1,
            ..fact
        };
    }
    Fact {
        messages: 1,
        answers: 1,
        retrieval_only_answers: i64::from(record.retrieval_only),
        failed_answers: i64::from(record.failed),
        prompt_tokens: i64::from(record.prompt_tokens),
        completion_tokens: i64::from(record.completion_tokens),
        time_to_first_token_ms: record.time_to_first_token_ms.map(i64::from),
        total_ms: record.total_ms.map(i64::from),
        ..fact
    }
}

/// Adds the facts not applied before to the daily counters and the active end users, and
/// remembers them — one statement, so it is all or nothing. Returns how many were new.
pub async fn apply(
    conn: &impl ConnectionTrait,
    facts: &[Fact],
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    if facts.is_empty() {
        return Ok(0);
    }
    let json = serde_json::to_value(facts).map_err(|error| DbErr::Custom(error.to_string()))?;
    let applied = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "WITH input AS ( \
                 SELECT DISTINCT ON (id) * FROM jsonb_to_recordset($1::jsonb) AS f( \
                     id uuid, project_id uuid, avatar_id uuid, day date, end_user_id uuid, \
                     messages bigint, conversations bigint, answers bigint, \
                     retrieval_only_answers bigint, failed_answers bigint, prompt_tokens bigint, \
                     completion_tokens bigint, time_to_first_token_ms bigint, total_ms bigint) \
                 ORDER BY id \
             ), fresh AS ( \
                 INSERT INTO analytics_applied_facts (id, applied_at) \
                 SELECT id, $2 FROM input ON CONFLICT (id) DO NOTHING RETURNING id \
             ), applied AS ( \
                 SELECT input.* FROM input JOIN fresh USING (id) \
             ), active AS ( \
                 INSERT INTO analytics_active_end_users (project_id, day, avatar_id, end_user_id) \
                 SELECT DISTINCT project_id, day, avatar_id, end_user_id FROM applied \
                 WHERE end_user_id IS NOT NULL ORDER BY 1, 2, 3, 4 \
                 ON CONFLICT DO NOTHING \
             ), counted AS ( \
                 INSERT INTO analytics_daily AS d (project_id, day, avatar_id, messages, \
                     conversations, answers, retrieval_only_answers, failed_answers, \
                     prompt_tokens, completion_tokens, first_token_ms_sum, first_token_count, \
                     total_ms_sum, total_ms_count) \
                 SELECT project_id, day, avatar_id, sum(messages), sum(conversations), \
                     sum(answers), sum(retrieval_only_answers), sum(failed_answers), \
                     sum(prompt_tokens), sum(completion_tokens), \
                     coalesce(sum(time_to_first_token_ms), 0), count(time_to_first_token_ms), \
                     coalesce(sum(total_ms), 0), count(total_ms) \
                 FROM applied GROUP BY project_id, day, avatar_id ORDER BY 1, 2, 3 \
                 ON CONFLICT (project_id, day, avatar_id) DO UPDATE SET \
                     messages = d.messages + excluded.messages, \
                     conversations = d.conversations + excluded.conversations, \
                     answers = d.answers + excluded.answers, \
                     retrieval_only_answers = \
                         d.retrieval_only_answers + excluded.retrieval_only_answers, \
                     failed_answers = d.failed_answers + excluded.failed_answers, \
                     prompt_tokens = d.prompt_tokens + excluded.prompt_tokens, \
                     completion_tokens = d.completion_tokens + excluded.completion_tokens, \
                     first_token_ms_sum = d.first_token_ms_sum + excluded.first_token_ms_sum, \
                     first_token_count = d.first_token_count + excluded.first_token_count, \
                     total_ms_sum = d.total_ms_sum + excluded.total_ms_sum, \
                     total_ms_count = d.total_ms_count + excluded.total_ms_count \
             ) \
             SELECT count(*) AS n FROM applied",
            [json.into(), now.into()],
        ))
        .await?;
    let applied = applied
        .map(|row| row.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0);
    Ok(u64::try_from(applied).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::auth::Actor;
    use crate::core::channel::Channel;
    use crate::core::ids::{ConversationId, MessageId};

    #[test]
    fn an_answer_is_two_messages_and_an_unanswered_question_one() {
        let at = DateTime::parse_from_rfc3339("2026-12-02T23:59:59Z")
            .unwrap()
            .to_utc();
        let (project_id, avatar_id) = (ProjectId::new(), AvatarId::new());
        let question_id = MessageId::new();
        let answered = of_event(
            &DomainEvent::Chat(ChatEvent::MessageCompleted {
                project_id,
                avatar_id,
                conversation_id: ConversationId::new(),
                message_id: MessageId::new(),
                question_id: Some(question_id),
                end_user_id: None,
                channel: Channel::Api,
                model: "m".into(),
                finish_reason: "stop".into(),
                prompt_tokens: 7,
                completion_tokens: 3,
                retrieval_only: false,
                failed: false,
                time_to_first_token_ms: Some(40),
                total_ms: Some(90),
                actor: Actor::system(),
            }),
            at,
        );
        assert_eq!(answered.len(), 2);
        assert_eq!(answered[0].id, question_id.uuid());
        assert_eq!(answered.iter().map(|fact| fact.messages).sum::<i64>(), 2);
        assert_eq!(answered[1].prompt_tokens, 7);
        assert_eq!(answered[1].day.to_string(), "2026-12-02");
        let unanswered = of_event(
            &DomainEvent::Chat(ChatEvent::QuestionUnanswered {
                project_id,
                avatar_id,
                conversation_id: ConversationId::new(),
                question_id,
                end_user_id: None,
                channel: Channel::Api,
                failed: true,
                actor: Actor::system(),
            }),
            at,
        );
        assert_eq!(
            (unanswered[0].messages, unanswered[0].failed_answers),
            (1, 1)
        );
    }
}
