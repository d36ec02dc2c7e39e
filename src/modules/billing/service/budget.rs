//! Token budgets: a reservation before an LLM call, settled with the real usage after it (in
//! the caller's transaction), the usage ledger, and the release of reservations whose process
//! died.
//!
//! A reservation is one statement: the subscription row is updated only while
//! `used + reserved + estimate <= limit`, and PostgreSQL re-checks that condition on the row it
//! waited for, so concurrent reservations — from any process — cannot together pass the limit.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    Statement,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::Validate;

use crate::core::db::{UnitOfWork, new_id};
use crate::core::error::Failure;
use crate::core::ids::{AvatarId, ConversationId, DocumentId, ProjectId};
use crate::core::pagination::{Page, PageParams, fetch_page};

use super::super::domain::entities::usage;
use super::super::domain::errors::BillingError;
use super::super::domain::events::BillingEvent;
use super::{BillingService, UsageKind};

/// Tokens set aside for one answer until it is settled or released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: Uuid,
    pub project_id: ProjectId,
    pub tokens: i64,
}

/// One LLM call or embedding batch, as the caller measured it.
#[derive(Debug, Clone)]
pub struct UsageRecord {
    pub kind: UsageKind,
    pub model: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Paid through the project's own key (its `LLM_API_KEY` secret), not the platform's.
    pub own_key: bool,
    pub avatar_id: Option<AvatarId>,
    pub conversation_id: Option<ConversationId>,
    pub document_id: Option<DocumentId>,
}

/// A row of the usage ledger.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageView {
    #[schema(value_type = uuid::Uuid)]
    pub id: Uuid,
    pub kind: UsageKind,
    pub model: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    /// Whether it counted against the plan's budget.
    pub counted: bool,
    #[schema(value_type = Option<uuid::Uuid>)]
    pub avatar_id: Option<AvatarId>,
    #[schema(value_type = Option<uuid::Uuid>)]
    pub conversation_id: Option<ConversationId>,
    #[schema(value_type = Option<uuid::Uuid>)]
    pub document_id: Option<DocumentId>,
    /// The period's tokens used after this row.
    pub tokens_used_after: i64,
    pub created_at: DateTime<Utc>,
}

/// `?from=&to=&kind=` of the usage ledger (`to` exclusive).
#[derive(Debug, Clone, Default, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageFilter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub kind: Option<UsageKind>,
}

#[derive(Debug, FromQueryResult)]
struct Settled {
    tokens_used: i64,
    tokens_limit: i64,
    threshold_announced: i16,
    period_end: DateTime<Utc>,
}

#[derive(Debug, FromQueryResult)]
struct Standing {
    tokens_used: i64,
    tokens_reserved: i64,
    tokens_limit: i64,
}

/// The budget thresholds announced, in percent of the limit.
const THRESHOLDS: [i16; 2] = [80, 100];

fn usage_view(row: usage::Model) -> UsageView {
    UsageView {
        id: row.id,
        kind: row.kind,
        model: row.model,
        prompt_tokens: row.prompt_tokens,
        completion_tokens: row.completion_tokens,
        total_tokens: row.total_tokens,
        counted: row.counted,
        avatar_id: row.avatar_id,
        conversation_id: row.conversation_id,
        document_id: row.document_id,
        tokens_used_after: row.tokens_used_after,
        created_at: row.created_at,
    }
}

impl BillingService {
    /// Sets aside `estimate` tokens (plus the configured margin) for an answer of
    /// `project_id`; `TOKEN_LIMIT_EXCEEDED` when the period's budget has no room for them.
    pub async fn reserve(
        &self,
        project_id: ProjectId,
        estimate: u32,
    ) -> Result<Reservation, BillingError> {
        let tokens = i64::from(estimate) + i64::from(self.settings.reservation_margin_tokens);
        let now = self.clock.now();
        let expires_at = now
            + chrono::Duration::seconds(
                i64::try_from(self.settings.reservation_ttl_secs).unwrap_or(i64::MAX),
            );
        let id = new_id();
        let reserved = self
            .db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "WITH taken AS ( \
                     UPDATE subscriptions s SET tokens_reserved = s.tokens_reserved + $2, \
                            updated_at = $4 \
                     FROM plans p \
                     WHERE s.project_id = $1 AND p.code = s.plan_code \
                       AND s.tokens_used + s.tokens_reserved + $2 <= p.monthly_token_limit \
                     RETURNING s.project_id) \
                 INSERT INTO token_reservations (id, project_id, tokens, created_at, expires_at) \
                 SELECT $3, project_id, $2, $4, $5 FROM taken",
                [
                    project_id.into(),
                    tokens.into(),
                    id.into(),
                    now.into(),
                    expires_at.into(),
                ],
            ))
            .await?;
        if reserved.rows_affected() == 1 {
            return Ok(Reservation {
                id,
                project_id,
                tokens,
            });
        }
        let standing = Standing::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT s.tokens_used, s.tokens_reserved, p.monthly_token_limit AS tokens_limit \
             FROM subscriptions s JOIN plans p ON p.code = s.plan_code WHERE s.project_id = $1",
            [project_id.into()],
        ))
        .one(self.db.connection())
        .await?
        .ok_or(BillingError::NotFound("project"))?;
        Err(Failure::TokenLimit {
            limit: standing.tokens_limit,
            used: standing.tokens_used,
            reserved: standing.tokens_reserved,
            needed: tokens,
        }
        .into())
    }

    /// Replaces `reservation` with what the call really used, inside the caller's unit of work
    /// (the one that stores the answer), and writes the ledger row; `None`: no call was made
    /// (a retrieval-only answer), the reservation is released and nothing is recorded. A
    /// reservation already released (expired) is not released twice; the usage is recorded
    /// all the same.
    pub async fn settle_in(
        &self,
        uow: &mut UnitOfWork,
        reservation: &Reservation,
        record: Option<UsageRecord>,
    ) -> Result<(), BillingError> {
        self.account(uow, reservation.project_id, Some(reservation.id), record)
            .await
    }

    /// [`BillingService::settle_in`] in a transaction of its own (the answer could not be
    /// stored, but its usage must not be lost).
    pub async fn settle(
        &self,
        reservation: &Reservation,
        record: Option<UsageRecord>,
    ) -> Result<(), BillingError> {
        let mut uow = self.db.begin().await?;
        self.settle_in(&mut uow, reservation, record).await?;
        uow.commit().await?;
        Ok(())
    }

    /// Gives a reservation back unused (the call never happened or stored nothing).
    pub async fn release(&self, reservation: &Reservation) -> Result<(), BillingError> {
        self.settle(reservation, None).await
    }

    /// Records usage that had no reservation (an embedding batch), inside the caller's unit of
    /// work.
    pub async fn record_usage_in(
        &self,
        uow: &mut UnitOfWork,
        project_id: ProjectId,
        record: UsageRecord,
    ) -> Result<(), BillingError> {
        self.account(uow, project_id, None, Some(record)).await
    }

    /// Whether `record` counts against the plan's budget (it is recorded either way).
    fn counts(&self, record: &UsageRecord) -> bool {
        match record.kind {
            UsageKind::Embedding => self.settings.count_embedding_tokens,
            UsageKind::Chat => !record.own_key || self.settings.count_own_key_usage,
        }
    }

    /// The one place tokens move: releases `reservation` (if still held), adds the counted
    /// usage, writes the ledger row and announces crossed thresholds.
    async fn account(
        &self,
        uow: &mut UnitOfWork,
        project_id: ProjectId,
        reservation: Option<Uuid>,
        record: Option<UsageRecord>,
    ) -> Result<(), BillingError> {
        let now = self.clock.now();
        let total = record
            .as_ref()
            .map(|record| i64::from(record.prompt_tokens) + i64::from(record.completion_tokens))
            .unwrap_or(0);
        let counted = record.as_ref().is_some_and(|record| self.counts(record));
        let added = if counted { total } else { 0 };
        // One statement (one round trip, the subscription row locked only from here to the
        // commit): the reservation released, the usage added, the ledger row written.
        let ledgered = record.is_some();
        let (kind, model, prompt, completion, avatar, conversation, document) = match record {
            Some(record) => (
                record.kind,
                record.model,
                i64::from(record.prompt_tokens),
                i64::from(record.completion_tokens),
                record.avatar_id,
                record.conversation_id,
                record.document_id,
            ),
            None => (UsageKind::Chat, String::new(), 0, 0, None, None, None),
        };
        let settled = Settled::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "WITH released AS (DELETE FROM token_reservations WHERE id = $2 RETURNING tokens), \
             updated AS ( \
                 UPDATE subscriptions s SET \
                     tokens_reserved = greatest(s.tokens_reserved \
                         - coalesce((SELECT sum(tokens) FROM released), 0), 0), \
                     tokens_used = s.tokens_used + $3, updated_at = $4 \
                 FROM plans p WHERE s.project_id = $1 AND p.code = s.plan_code \
                 RETURNING s.tokens_used, p.monthly_token_limit AS tokens_limit, \
                           s.threshold_announced, s.period_end), \
             ledgered AS ( \
                 INSERT INTO usage_ledger (id, project_id, kind, model, prompt_tokens, \
                     completion_tokens, total_tokens, counted, avatar_id, conversation_id, \
                     document_id, tokens_used_after, created_at) \
                 SELECT $5, $1, $6, $7, $8, $9, $8 + $9, $10, $11, $12, $13, \
                        updated.tokens_used, $4 \
                 FROM updated WHERE $14) \
             SELECT tokens_used, tokens_limit, threshold_announced, period_end FROM updated",
            [
                project_id.into(),
                reservation.into(),
                added.into(),
                now.into(),
                new_id().into(),
                kind.into(),
                model.into(),
                prompt.into(),
                completion.into(),
                counted.into(),
                avatar.into(),
                conversation.into(),
                document.into(),
                ledgered.into(),
            ],
        ))
        .one(&**uow)
        .await?
        .ok_or(BillingError::NotFound("project"))?;
        if added > 0 {
            self.announce_thresholds(uow, project_id, &settled).await?;
        }
        Ok(())
    }

    /// `BudgetThresholdReached` for each threshold the period's usage crossed, once per period:
    /// the subscription remembers the highest announced, and only one transaction can raise it.
    async fn announce_thresholds(
        &self,
        uow: &mut UnitOfWork,
        project_id: ProjectId,
        settled: &Settled,
    ) -> Result<(), BillingError> {
        let reached: Vec<i16> = THRESHOLDS
            .into_iter()
            .filter(|percent| {
                *percent > settled.threshold_announced
                    && settled.tokens_used.saturating_mul(100)
                        >= settled.tokens_limit.saturating_mul(i64::from(*percent))
            })
            .collect();
        let Some(highest) = reached.last().copied() else {
            return Ok(());
        };
        let raised = uow
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE subscriptions SET threshold_announced = $2 \
                 WHERE project_id = $1 AND threshold_announced < $2",
                [project_id.into(), highest.into()],
            ))
            .await?;
        if raised.rows_affected() == 0 {
            return Ok(());
        }
        for percent in reached {
            self.publish(
                uow,
                BillingEvent::BudgetThresholdReached {
                    project_id,
                    percent,
                    tokens_used: settled.tokens_used,
                    tokens_limit: settled.tokens_limit,
                    period_end: settled.period_end,
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Releases reservations past their expiry (their process died mid-answer). Returns how
    /// many.
    pub async fn expire_reservations(&self) -> Result<u64, BillingError> {
        let now = self.clock.now();
        #[derive(FromQueryResult)]
        struct Count {
            released: i64,
        }
        let released = Count::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "WITH expired AS ( \
                 DELETE FROM token_reservations WHERE expires_at <= $1 \
                 RETURNING project_id, tokens), \
             per_project AS ( \
                 SELECT project_id, sum(tokens) AS tokens, count(*) AS n \
                 FROM expired GROUP BY project_id), \
             updated AS ( \
                 UPDATE subscriptions s \
                 SET tokens_reserved = greatest(s.tokens_reserved - per_project.tokens, 0), \
                     updated_at = $1 \
                 FROM per_project WHERE s.project_id = per_project.project_id \
                 RETURNING per_project.n) \
             SELECT coalesce(sum(n), 0)::bigint AS released FROM updated",
            [now.into()],
        ))
        .one(self.db.connection())
        .await?
        .map(|count| count.released)
        .unwrap_or(0);
        Ok(u64::try_from(released).unwrap_or(0))
    }

    /// The project's usage ledger, newest first.
    pub async fn usage(
        &self,
        project_id: ProjectId,
        filter: &UsageFilter,
        page: &PageParams,
    ) -> Result<Page<UsageView>, BillingError> {
        let mut select = usage::Entity::find().filter(usage::Column::ProjectId.eq(project_id));
        if let Some(from) = filter.from {
            select = select.filter(usage::Column::CreatedAt.gte(from));
        }
        if let Some(to) = filter.to {
            select = select.filter(usage::Column::CreatedAt.lt(to));
        }
        if let Some(kind) = filter.kind {
            select = select.filter(usage::Column::Kind.eq(kind));
        }
        let (rows, total) = fetch_page(
            self.db.connection(),
            select
                .order_by_desc(usage::Column::CreatedAt)
                .order_by_desc(usage::Column::Id),
            page,
        )
        .await?;
        Ok(Page::new(
            rows.into_iter().map(usage_view).collect(),
            total,
            page,
        ))
    }
}
