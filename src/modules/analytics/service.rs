//! The audit log: written by the `analytics.audit` subscriber, one entry per event (the entry's
//! id is the event's, so a retried delivery writes nothing twice), read newest first with
//! filters and keyset pagination (a cursor names the last entry seen, so paging is stable while
//! entries are added).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement, Value};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use std::sync::Arc;

use chrono::NaiveDate;

use crate::core::auth::{Actor, ActorKind};
use crate::core::clock::Clock;
use crate::core::config::AnalyticsSettings;
use crate::core::db::Db;
use crate::core::error::Failure;
use crate::core::events::Delivery;
use crate::core::ids::{ProjectId, UserId};
use crate::modules::auth::AuthService;
use crate::modules::avatars::AvatarsService;
use crate::modules::chat::ChatService;
use crate::modules::documents::DocumentsService;
use crate::modules::end_users::EndUsersEvent;
use crate::modules::events::DomainEvent;
use crate::modules::projects::ProjectsService;

use super::audit;
use super::domain::errors::AnalyticsError;
use super::usage::Backfill;

#[derive(Debug, Clone, Serialize, ToSchema, FromQueryResult)]
pub struct AuditEntryView {
    pub id: Uuid,
    pub project_id: Option<Uuid>,
    /// `user`, `api_key`, `anonymous` or `system`.
    pub actor_kind: String,
    pub actor_user_id: Option<Uuid>,
    pub actor_api_key_id: Option<Uuid>,
    /// `avatar.updated`, `member.added`, ...
    pub action: String,
    pub entity_type: String,
    pub entity_id: Option<String>,
    /// The event's fields (names of changed fields, never secret values).
    pub details: serde_json::Value,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

/// The list envelope plus `next_cursor` (absent on the last page), which continues after the
/// last item; `total` counts every entry the filters match.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntryView>,
    pub total: u64,
    pub limit: u64,
    /// Entries skipped (`?offset=`; 0 when paging by cursor).
    pub offset: u64,
    pub next_cursor: Option<String>,
}

/// Which entries (all optional; `to` exclusive).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub project_id: Option<ProjectId>,
    pub action: Option<String>,
    pub actor_id: Option<UserId>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

fn actor_kind(actor: &Actor) -> &'static str {
    match actor.kind() {
        ActorKind::User => "user",
        ActorKind::ApiKey => "api_key",
        ActorKind::Anonymous => "anonymous",
        ActorKind::System => "system",
    }
}

/// `<micros since the epoch>.<id>`, URL-safe.
fn encode_cursor(at: DateTime<Utc>, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}.{id}", at.timestamp_micros()))
}

fn decode_cursor(cursor: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let (micros, id) = text.split_once('.')?;
    Some((
        DateTime::from_timestamp_micros(micros.parse().ok()?)?,
        Uuid::parse_str(id).ok()?,
    ))
}

/// The services analytics asks for what it does not keep: chat's history (backfill), the
/// project's avatars, and the platform's counts.
pub struct Sources {
    pub auth: Arc<AuthService>,
    pub projects: Arc<ProjectsService>,
    pub avatars: Arc<AvatarsService>,
    pub documents: Arc<DocumentsService>,
    pub chat: Arc<ChatService>,
}

pub struct AnalyticsService {
    pub(super) db: Db,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) settings: AnalyticsSettings,
    pub(super) sources: Sources,
}

/// What a maintenance run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Maintenance {
    pub entries_deleted: u64,
    pub ips_dropped: u64,
    pub facts_forgotten: u64,
    pub backfilled: u64,
}

impl AnalyticsService {
    pub fn new(
        db: Db,
        clock: Arc<dyn Clock>,
        settings: AnalyticsSettings,
        sources: Sources,
    ) -> Self {
        AnalyticsService {
            db,
            clock,
            settings,
            sources,
        }
    }

    /// The day it is now (UTC), for default ranges.
    pub fn today(&self) -> NaiveDate {
        self.clock.now().date_naive()
    }

    pub fn max_range_days(&self) -> u32 {
        self.settings.max_range_days
    }

    /// Retention (audit entries, their IPs, the applied facts once the backfill is done) and
    /// the backfill's next batches — at most `backfill_batches` of them per run.
    pub async fn maintain(&self, backfill_batches: u32) -> Result<Maintenance, AnalyticsError> {
        let now = self.clock.now();
        let days = |days: u32| now - chrono::Duration::days(i64::from(days));
        let mut done = Maintenance::default();
        if self.settings.audit_retention_days > 0 {
            done.entries_deleted = self
                .db
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "DELETE FROM audit_log WHERE occurred_at < $1",
                    [days(self.settings.audit_retention_days).into()],
                ))
                .await?
                .rows_affected();
        }
        done.ips_dropped = self
            .db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE audit_log SET ip = NULL WHERE occurred_at < $1 AND ip IS NOT NULL",
                [days(self.settings.audit_ip_retention_days).into()],
            ))
            .await?
            .rows_affected();
        for _ in 0..backfill_batches {
            let (step, applied) = self.backfill_step().await?;
            done.backfilled += applied;
            if step == Backfill::Finished {
                break;
            }
        }
        // Facts are remembered until no event or backfill can bring them again.
        if self.backfill_finished().await? {
            done.facts_forgotten = self
                .db
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "DELETE FROM analytics_applied_facts WHERE applied_at < $1",
                    [days(self.settings.applied_facts_retention_days).into()],
                ))
                .await?
                .rows_affected();
        }
        Ok(done)
    }

    /// Writes the audit entry of `event` (if it has one), once whatever the delivery attempt.
    pub async fn record(
        &self,
        event: &DomainEvent,
        delivery: &Delivery,
    ) -> Result<(), AnalyticsError> {
        let Some(entry) = audit::entry_of(event) else {
            return Ok(());
        };
        let json = serde_json::to_value(event).map_err(AnalyticsError::internal)?;
        let actor: Actor = json["event"]
            .get("actor")
            .cloned()
            .and_then(|actor| serde_json::from_value(actor).ok())
            .unwrap_or_else(Actor::system);
        let project_id = json["event"]
            .get("project_id")
            .and_then(serde_json::Value::as_str)
            .and_then(|id| Uuid::parse_str(id).ok());
        self.db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO audit_log (id, project_id, actor_kind, actor_user_id, \
                     actor_api_key_id, action, entity_type, entity_id, details, ip, request_id, \
                     occurred_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 ON CONFLICT (id) DO NOTHING",
                [
                    delivery.event_id.into(),
                    project_id.into(),
                    actor_kind(&actor).into(),
                    actor.user_id.into(),
                    actor.api_key_id.into(),
                    entry.action.into(),
                    entry.entity_type.into(),
                    entry.entity_id.into(),
                    audit::details(&json).into(),
                    actor.ip.clone().into(),
                    actor.request_id.clone().into(),
                    delivery.occurred_at.into(),
                ],
            ))
            .await?;
        if let DomainEvent::EndUsers(EndUsersEvent::EndUserDeleted { end_user_id, .. }) = event {
            self.forget_end_user(end_user_id.uuid()).await?;
        }
        Ok(())
    }

    /// An erased end user's trace in the log: what they said about themselves (names,
    /// profile) and the IPs of what they did go; their id and the actions stay.
    async fn forget_end_user(&self, end_user_id: Uuid) -> Result<(), AnalyticsError> {
        self.db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE audit_log SET details = details - $2::text[], \
                     ip = CASE WHEN actor_kind = 'anonymous' THEN NULL ELSE ip END \
                 WHERE (entity_type = 'end_user' AND entity_id = $1) \
                    OR (details ? 'end_user_id' AND details->>'end_user_id' = $1)",
                [
                    end_user_id.to_string().into(),
                    audit::END_USER_PROFILE_FIELDS
                        .map(str::to_owned)
                        .to_vec()
                        .into(),
                ],
            ))
            .await?;
        Ok(())
    }

    /// Entries matching `filter`, newest first: `limit` of them after `cursor`, or (without
    /// one) after skipping `offset`.
    pub async fn audit_log(
        &self,
        filter: &AuditFilter,
        cursor: Option<&str>,
        limit: u64,
        offset: u64,
    ) -> Result<AuditPage, AnalyticsError> {
        let mut conditions = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        let mut bind = |condition: &str, value: Value| {
            values.push(value);
            conditions.push(condition.replace('?', &format!("${}", values.len())));
        };
        if let Some(project_id) = filter.project_id {
            bind("project_id = ?", project_id.into());
        }
        if let Some(action) = &filter.action {
            bind("action = ?", action.clone().into());
        }
        if let Some(actor_id) = filter.actor_id {
            bind("actor_user_id = ?", actor_id.into());
        }
        if let Some(entity_type) = &filter.entity_type {
            bind("entity_type = ?", entity_type.clone().into());
        }
        if let Some(entity_id) = &filter.entity_id {
            bind("entity_id = ?", entity_id.clone().into());
        }
        if let Some(from) = filter.from {
            bind("occurred_at >= ?", from.into());
        }
        if let Some(to) = filter.to {
            bind("occurred_at < ?", to.into());
        }
        let filtered_sql = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let total = self
            .db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!("SELECT count(*) AS n FROM audit_log {filtered_sql}"),
                values.clone(),
            ))
            .await?
            .map(|row| row.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        let offset = if cursor.is_some() { 0 } else { offset };
        if let Some(cursor) = cursor {
            let (at, id) = decode_cursor(cursor)
                .ok_or_else(|| Failure::invalid("cursor", "not a cursor this API gave out"))?;
            values.push(at.into());
            values.push(id.into());
            conditions.push(format!(
                "(occurred_at, id) < (${}, ${})",
                values.len() - 1,
                values.len()
            ));
        }
        let filter_sql = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        values.push(i64::try_from(limit + 1).unwrap_or(i64::MAX).into());
        values.push(i64::try_from(offset).unwrap_or(i64::MAX).into());
        let sql = format!(
            "SELECT id, project_id, actor_kind, actor_user_id, actor_api_key_id, action, \
                    entity_type, entity_id, details, ip, request_id, occurred_at \
             FROM audit_log {filter_sql} ORDER BY occurred_at DESC, id DESC \
             LIMIT ${} OFFSET ${}",
            values.len() - 1,
            values.len()
        );
        let mut items = AuditEntryView::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .all(self.db.connection())
        .await?;
        let more = items.len() as u64 > limit;
        items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next_cursor = more
            .then(|| {
                items
                    .last()
                    .map(|last| encode_cursor(last.occurred_at, last.id))
            })
            .flatten();
        Ok(AuditPage {
            items,
            total: u64::try_from(total).unwrap_or(0),
            limit,
            offset,
            next_cursor,
        })
    }
}
