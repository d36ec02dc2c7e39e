//! Usage analytics: a read model of chat's activity (per UTC day and avatar: counters, and the
//! end users active that day), fed by chat's events and once backfilled from chat's history
//! (`backfill.rs`), read as time series, per-avatar totals and platform totals.

mod backfill;
pub mod facts;
mod overview;
pub mod range;

pub use backfill::Backfill;
pub use overview::{Overview, ProjectTraffic, Traffic};

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use sea_orm::{DbBackend, FromQueryResult, Statement};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::events::Delivery;
use crate::core::ids::{AvatarId, ProjectId};
use crate::modules::events::DomainEvent;

use super::domain::errors::AnalyticsError;
use super::service::AnalyticsService;
use range::{DayRange, Granularity};

/// What happened in a bucket (or a range).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct UsageFigures {
    /// Messages stored: questions and answers alike.
    pub messages: u64,
    /// Conversations started.
    pub conversations: u64,
    /// Distinct end users who asked or were answered.
    pub active_end_users: u64,
    /// The answers' LLM tokens (question embeddings are not included).
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Answers made of the passages alone (no LLM configured).
    pub retrieval_only_answers: u64,
    /// Questions whose answer failed: broken off upstream, or never started because of an
    /// error (a client leaving is not a failure).
    pub failed_answers: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageBucket {
    /// First day of the bucket within the range (UTC).
    pub start: NaiveDate,
    /// The day after its last (exclusive).
    pub end: NaiveDate,
    #[serde(flatten)]
    pub figures: UsageFigures,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageSeries {
    pub from: NaiveDate,
    /// Exclusive.
    pub to: NaiveDate,
    pub granularity: Granularity,
    #[schema(value_type = Option<uuid::Uuid>)]
    pub avatar_id: Option<AvatarId>,
    /// Every bucket of the range, empty ones included.
    pub buckets: Vec<UsageBucket>,
    /// The whole range (its `active_end_users` are distinct over the range, not a sum).
    pub total: UsageFigures,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AvatarUsage {
    #[schema(value_type = uuid::Uuid)]
    pub avatar_id: AvatarId,
    /// None once the avatar is deleted (its figures remain).
    pub name: Option<String>,
    #[serde(flatten)]
    pub figures: UsageFigures,
    /// Mean time to the first token, over answers that streamed one.
    pub avg_first_token_ms: Option<f64>,
    /// Mean time to the whole answer.
    pub avg_total_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AvatarUsageList {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub items: Vec<AvatarUsage>,
}

/// A row of the counters or of the distinct end users, for a bucket / avatar or (`key` null)
/// the whole range; the side a row does not come from is null.
#[derive(Debug, FromQueryResult)]
struct Row {
    key: Option<Uuid>,
    bucket: Option<NaiveDate>,
    messages: Option<i64>,
    conversations: Option<i64>,
    active_end_users: Option<i64>,
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    retrieval_only_answers: Option<i64>,
    failed_answers: Option<i64>,
    first_token_ms_sum: Option<i64>,
    first_token_count: Option<i64>,
    total_ms_sum: Option<i64>,
    total_ms_count: Option<i64>,
}

pub(super) fn count(value: Option<i64>) -> u64 {
    value.map_or(0, |value| u64::try_from(value).unwrap_or(0))
}

/// Latency sums and counts, for means.
#[derive(Debug, Default, Clone, Copy)]
struct Latency {
    first_token_sum: u64,
    first_token_count: u64,
    total_sum: u64,
    total_count: u64,
}

impl Latency {
    fn mean(sum: u64, count: u64) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)]
        (count > 0).then(|| (sum as f64 / count as f64 * 10.0).round() / 10.0)
    }
}

/// Adds a row's non-null side to `figures` and `latency`.
fn merge(figures: &mut UsageFigures, latency: &mut Latency, row: &Row) {
    figures.messages += count(row.messages);
    figures.conversations += count(row.conversations);
    figures.active_end_users += count(row.active_end_users);
    figures.prompt_tokens += count(row.prompt_tokens);
    figures.completion_tokens += count(row.completion_tokens);
    figures.retrieval_only_answers += count(row.retrieval_only_answers);
    figures.failed_answers += count(row.failed_answers);
    latency.first_token_sum += count(row.first_token_ms_sum);
    latency.first_token_count += count(row.first_token_count);
    latency.total_sum += count(row.total_ms_sum);
    latency.total_count += count(row.total_ms_count);
}

/// The counters' columns, summed (as bigint: `sum` of bigint is numeric).
const SUMS: &str = "sum(messages)::bigint AS messages, \
    sum(conversations)::bigint AS conversations, NULL::bigint AS active_end_users, \
    sum(prompt_tokens)::bigint AS prompt_tokens, \
    sum(completion_tokens)::bigint AS completion_tokens, \
    sum(retrieval_only_answers)::bigint AS retrieval_only_answers, \
    sum(failed_answers)::bigint AS failed_answers, \
    sum(first_token_ms_sum)::bigint AS first_token_ms_sum, \
    sum(first_token_count)::bigint AS first_token_count, \
    sum(total_ms_sum)::bigint AS total_ms_sum, sum(total_ms_count)::bigint AS total_ms_count";

/// The distinct end users' side of a row.
const DISTINCT_USERS: &str = "NULL::bigint, NULL::bigint, \
    count(DISTINCT end_user_id)::bigint, NULL::bigint, NULL::bigint, NULL::bigint, \
    NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint";

impl AnalyticsService {
    /// Counts what a chat event reports, once however often it is delivered.
    pub async fn record_usage(
        &self,
        event: &DomainEvent,
        delivery: &Delivery,
    ) -> Result<(), AnalyticsError> {
        let facts = facts::of_event(event, delivery.occurred_at);
        facts::apply(self.db.connection(), &facts, self.clock.now()).await?;
        Ok(())
    }

    /// `project_id`'s figures per bucket over `range` (one avatar's, with `avatar_id`).
    pub async fn usage(
        &self,
        project_id: ProjectId,
        range: DayRange,
        granularity: Granularity,
        avatar_id: Option<AvatarId>,
    ) -> Result<UsageSeries, AnalyticsError> {
        if let Some(avatar_id) = avatar_id {
            // Another project's avatar is not found (nor a deleted one: its figures stay in
            // the project's totals and the per-avatar list).
            self.sources
                .avatars
                .get(project_id, avatar_id)
                .await
                .map_err(|error| AnalyticsError::Common(error.into()))?;
        }
        let filter = "project_id = $1 AND day >= $2 AND day < $3 \
                      AND ($4::uuid IS NULL OR avatar_id = $4)";
        let bucket = "date_trunc($5, day::timestamp)::date";
        let sql = format!(
            "SELECT NULL::uuid AS key, {bucket} AS bucket, {SUMS} FROM analytics_daily \
             WHERE {filter} GROUP BY GROUPING SETS ((bucket), ()) \
             UNION ALL \
             SELECT NULL::uuid, {bucket} AS bucket, {DISTINCT_USERS} \
             FROM analytics_active_end_users WHERE {filter} GROUP BY GROUPING SETS ((bucket), ())"
        );
        let rows = Row::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [
                project_id.into(),
                range.from.into(),
                range.to.into(),
                avatar_id.into(),
                granularity.unit().into(),
            ],
        ))
        .all(self.db.connection())
        .await?;
        let mut by_bucket: BTreeMap<Option<NaiveDate>, UsageFigures> = BTreeMap::new();
        for row in &rows {
            let figures = by_bucket.entry(row.bucket).or_default();
            merge(figures, &mut Latency::default(), row);
        }
        let buckets = range
            .buckets(granularity)
            .into_iter()
            .map(|bucket| UsageBucket {
                start: bucket.start,
                end: bucket.end,
                figures: by_bucket.remove(&Some(bucket.key)).unwrap_or_default(),
            })
            .collect();
        Ok(UsageSeries {
            from: range.from,
            to: range.to,
            granularity,
            avatar_id,
            buckets,
            total: by_bucket.remove(&None).unwrap_or_default(),
        })
    }

    /// Per-avatar totals over `range`: every live avatar of the project (idle ones with
    /// zeros), then deleted avatars that have figures in the range.
    pub async fn avatar_usage(
        &self,
        project_id: ProjectId,
        range: DayRange,
    ) -> Result<AvatarUsageList, AnalyticsError> {
        let filter = "project_id = $1 AND day >= $2 AND day < $3";
        let sql = format!(
            "SELECT avatar_id AS key, NULL::date AS bucket, {SUMS} FROM analytics_daily \
             WHERE {filter} GROUP BY avatar_id \
             UNION ALL \
             SELECT avatar_id, NULL::date, {DISTINCT_USERS} FROM analytics_active_end_users \
             WHERE {filter} GROUP BY avatar_id"
        );
        let rows = Row::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [project_id.into(), range.from.into(), range.to.into()],
        ))
        .all(self.db.connection())
        .await?;
        let mut by_avatar: HashMap<Uuid, (UsageFigures, Latency)> = HashMap::new();
        for row in &rows {
            let Some(key) = row.key else { continue };
            let (figures, latency) = by_avatar.entry(key).or_default();
            merge(figures, latency, row);
        }
        let usage =
            |avatar_id: AvatarId, name: Option<String>, found: Option<(UsageFigures, Latency)>| {
                let (figures, latency) = found.unwrap_or_default();
                AvatarUsage {
                    avatar_id,
                    name,
                    figures,
                    avg_first_token_ms: Latency::mean(
                        latency.first_token_sum,
                        latency.first_token_count,
                    ),
                    avg_total_ms: Latency::mean(latency.total_sum, latency.total_count),
                }
            };
        let live = self
            .sources
            .avatars
            .names(project_id)
            .await
            .map_err(|error| AnalyticsError::Common(error.into()))?;
        let mut items: Vec<AvatarUsage> = live
            .into_iter()
            .map(|(id, name)| {
                let found = by_avatar.remove(&id.uuid());
                usage(id, Some(name), found)
            })
            .collect();
        let mut deleted: Vec<_> = by_avatar.into_iter().collect();
        deleted.sort_by_key(|(id, _)| *id);
        items.extend(
            deleted
                .into_iter()
                .map(|(id, found)| usage(AvatarId::from_uuid(id), None, Some(found))),
        );
        Ok(AvatarUsageList {
            from: range.from,
            to: range.to,
            items,
        })
    }
}
