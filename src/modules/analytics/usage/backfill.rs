//! The one-time backfill: chat's history before analytics listened, read through chat's
//! service a batch at a time (conversations, then messages), each batch counted and the
//! position saved in one transaction, so an interrupted backfill resumes where it stopped.
//! Facts the events already counted are skipped by their ids.

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use uuid::Uuid;

use crate::core::ids::{ConversationId, MessageId};
use crate::modules::chat::ChatError;

use super::super::domain::errors::AnalyticsError;
use super::super::service::AnalyticsService;
use super::facts::{self, Fact};

/// The backfill's sources, in order.
const SOURCES: [&str; 2] = ["chat.conversations", "chat.messages"];

/// How far the backfill got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backfill {
    /// A batch was counted; call again.
    Continuing,
    /// Every source is read.
    Finished,
}

impl AnalyticsService {
    /// The backfill, to its end. Returns the facts it counted.
    pub async fn backfill(&self) -> Result<u64, AnalyticsError> {
        let mut counted = 0;
        loop {
            let (step, applied) = self.backfill_step().await?;
            counted += applied;
            if step == Backfill::Finished {
                return Ok(counted);
            }
        }
    }

    /// Whether the backfill has read all of chat's history.
    pub async fn backfill_finished(&self) -> Result<bool, AnalyticsError> {
        let row = self
            .db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT count(*) AS n FROM analytics_backfill \
                 WHERE source = ANY($1) AND finished_at IS NOT NULL",
                [SOURCES.map(str::to_owned).to_vec().into()],
            ))
            .await?;
        let finished = row.map(|row| row.try_get::<i64>("", "n")).transpose()?;
        Ok(finished == Some(SOURCES.len() as i64))
    }

    /// One batch of the first unfinished source, and the facts it counted.
    pub async fn backfill_step(&self) -> Result<(Backfill, u64), AnalyticsError> {
        let batch = u64::from(self.settings.backfill_batch.max(1));
        let uow = self.db.begin().await?;
        for source in SOURCES {
            uow.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO analytics_backfill (source) VALUES ($1) ON CONFLICT DO NOTHING",
                [source.into()],
            ))
            .await?;
            // Locked until the batch is counted: two runs never read the same batch.
            let state = uow
                .query_one_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT after_id, finished_at IS NOT NULL AS finished \
                     FROM analytics_backfill WHERE source = $1 FOR UPDATE",
                    [source.into()],
                ))
                .await?
                .ok_or_else(|| AnalyticsError::internal("the backfill's position is missing"))?;
            if state.try_get::<bool>("", "finished")? {
                continue;
            }
            let after: Option<Uuid> = state.try_get("", "after_id")?;
            let (facts, last) = self.history(source, after, batch).await?;
            let applied = facts::apply(&*uow, &facts, self.clock.now()).await?;
            let finished = (facts.len() as u64) < batch;
            uow.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE analytics_backfill SET after_id = coalesce($2, after_id), \
                     finished_at = CASE WHEN $3 THEN $4 END \
                 WHERE source = $1",
                [
                    source.into(),
                    last.into(),
                    finished.into(),
                    self.clock.now().into(),
                ],
            ))
            .await?;
            uow.commit().await?;
            if finished {
                tracing::info!(source, "analytics backfill: source read to its end");
            }
            return Ok((Backfill::Continuing, applied));
        }
        uow.commit().await?;
        Ok((Backfill::Finished, 0))
    }

    /// A batch of `source` after `after`, as facts, and the last id read.
    async fn history(
        &self,
        source: &str,
        after: Option<Uuid>,
        batch: u64,
    ) -> Result<(Vec<Fact>, Option<Uuid>), AnalyticsError> {
        let chat = &self.sources.chat;
        let failure = |error: ChatError| match error {
            ChatError::Common(failure) => AnalyticsError::Common(failure),
            other => AnalyticsError::internal(other),
        };
        if source == "chat.conversations" {
            let records = chat
                .conversations_after(after.map(ConversationId::from_uuid), batch)
                .await
                .map_err(failure)?;
            let last = records.last().map(|record| record.id.uuid());
            Ok((records.iter().map(facts::of_conversation).collect(), last))
        } else {
            let records = chat
                .messages_after(after.map(MessageId::from_uuid), batch)
                .await
                .map_err(failure)?;
            let last = records.last().map(|record| record.id.uuid());
            Ok((records.iter().map(facts::of_message).collect(), last))
        }
    }
}
