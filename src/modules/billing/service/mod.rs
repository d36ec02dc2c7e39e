//! Billing: the plan catalogue, one subscription per project (plan, monthly period, counters),
//! token reservations settled with the real usage, the usage ledger and plan limits.
//!
//! Other modules call it inside their own unit of work (`*_in` methods take the caller's
//! transaction), so a slot, a subscription or a settlement commits with the caller's writes.
//! Billing's tables are its own; nothing else reads or writes them.

mod budget;
mod limits;
mod periods;
mod plans;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Months, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DeriveActiveEnum, EntityTrait, EnumIter,
    QueryFilter, QuerySelect,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::core::auth::Actor;
use crate::core::clock::Clock;
use crate::core::config::BillingSettings;
use crate::core::db::{Db, UnitOfWork};
use crate::core::error::Failure;
use crate::core::events::EventBus;
use crate::core::ids::ProjectId;
use crate::modules::events::DomainEvent;

use super::domain::entities::{plan, subscription};
use super::domain::errors::BillingError;
use super::domain::events::BillingEvent;

pub use budget::{Reservation, UsageFilter, UsageRecord, UsageView};
pub use limits::Slot;
pub use plans::{NewPlan, PlanPatch, PlanView};

/// What a ledger row is for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, EnumIter, DeriveActiveEnum,
)]
#[serde(rename_all = "snake_case")]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum UsageKind {
    /// An answer of the LLM.
    #[sea_orm(string_value = "chat")]
    Chat,
    /// A batch of embeddings (documents, questions).
    #[sea_orm(string_value = "embedding")]
    Embedding,
}

/// A project's plan limits.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlanLimits {
    pub monthly_token_limit: i64,
    pub max_avatars: i32,
    pub max_documents: i32,
    pub max_storage_mb: i32,
    pub requests_per_minute: i32,
}

/// `GET /projects/{pid}/billing`: the plan, the period and where the project stands against
/// each limit.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BillingView {
    /// The plan's code.
    pub plan: String,
    pub plan_name: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub tokens_limit: i64,
    pub tokens_used: i64,
    /// Set aside for answers in progress.
    pub tokens_reserved: i64,
    pub avatars_count: i32,
    pub documents_count: i32,
    /// Stored documents, in MB (two decimals).
    pub storage_mb: f64,
    pub storage_bytes: i64,
    pub limits: PlanLimits,
}

pub struct BillingService {
    db: Db,
    bus: EventBus<DomainEvent>,
    clock: Arc<dyn Clock>,
    settings: BillingSettings,
}

/// The end of the `n`-th monthly period from `anchor` (clamped to month ends: a subscription
/// that started on the 31st renews on the last day of shorter months, then on the 31st again).
fn period_bound(anchor: DateTime<Utc>, n: u32) -> DateTime<Utc> {
    anchor
        .checked_add_months(Months::new(n))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl BillingService {
    pub fn new(
        db: Db,
        bus: EventBus<DomainEvent>,
        clock: Arc<dyn Clock>,
        settings: BillingSettings,
    ) -> Self {
        BillingService {
            db,
            bus,
            clock,
            settings,
        }
    }

    async fn publish(&self, uow: &mut UnitOfWork, event: BillingEvent) -> Result<(), BillingError> {
        self.bus.publish(uow, &DomainEvent::Billing(event)).await?;
        Ok(())
    }

    /// A new project's subscription, on the default plan, its first period starting now —
    /// inside the project's own creation. Returns the plan's code.
    pub async fn start_subscription_in(
        &self,
        uow: &mut UnitOfWork,
        project_id: ProjectId,
    ) -> Result<String, BillingError> {
        let default = plan::Entity::find()
            .filter(plan::Column::IsDefault.eq(true))
            .one(&**uow)
            .await?
            .ok_or_else(|| BillingError::internal("the plan catalogue has no default plan"))?;
        let now = self.clock.now();
        let period_end = period_bound(now, 1);
        subscription::ActiveModel {
            project_id: Set(project_id),
            plan_code: Set(default.code.clone()),
            period_anchor: Set(now),
            period_start: Set(now),
            period_end: Set(period_end),
            tokens_used: Set(0),
            tokens_reserved: Set(0),
            threshold_announced: Set(0),
            avatars_count: Set(0),
            documents_count: Set(0),
            storage_bytes: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&**uow)
        .await?;
        self.publish(
            uow,
            BillingEvent::SubscriptionStarted {
                project_id,
                plan_code: default.code.clone(),
                period_start: now,
                period_end,
            },
        )
        .await?;
        Ok(default.code)
    }

    /// The plan codes of `projects` (a project without a subscription is left out).
    pub async fn plan_codes(
        &self,
        projects: &[ProjectId],
    ) -> Result<HashMap<ProjectId, String>, BillingError> {
        Ok(subscription::Entity::find()
            .filter(subscription::Column::ProjectId.is_in(projects.iter().copied()))
            .all(self.db.connection())
            .await?
            .into_iter()
            .map(|row| (row.project_id, row.plan_code))
            .collect())
    }

    async fn subscription_and_plan<C: sea_orm::ConnectionTrait>(
        conn: &C,
        project_id: ProjectId,
    ) -> Result<(subscription::Model, plan::Model), BillingError> {
        let subscription = subscription::Entity::find_by_id(project_id)
            .one(conn)
            .await?
            .ok_or(BillingError::NotFound("project"))?;
        let plan = plan::Entity::find_by_id(subscription.plan_code.clone())
            .one(conn)
            .await?
            .ok_or_else(|| BillingError::internal("a subscription names a missing plan"))?;
        Ok((subscription, plan))
    }

    /// Where the project stands.
    pub async fn overview(&self, project_id: ProjectId) -> Result<BillingView, BillingError> {
        let (subscription, plan) =
            Self::subscription_and_plan(self.db.connection(), project_id).await?;
        Ok(billing_view(&subscription, &plan))
    }

    /// The saas_admin moves a project to another plan at once: the period stays, the new
    /// limits apply from now.
    pub async fn change_plan(
        &self,
        project_id: ProjectId,
        plan_code: &str,
        actor: Actor,
    ) -> Result<BillingView, BillingError> {
        let mut uow = self.db.begin().await?;
        self.change_plan_in(&mut uow, project_id, plan_code, actor)
            .await?;
        uow.commit().await?;
        self.overview(project_id).await
    }

    /// [`BillingService::change_plan`] inside the caller's unit of work (an approved request).
    /// An unknown plan is a bad `plan_code`.
    pub async fn change_plan_in(
        &self,
        uow: &mut UnitOfWork,
        project_id: ProjectId,
        plan_code: &str,
        actor: Actor,
    ) -> Result<(), BillingError> {
        if plan::Entity::find_by_id(plan_code.to_owned())
            .one(&**uow)
            .await?
            .is_none()
        {
            return Err(Failure::invalid("plan_code", format!("no plan `{plan_code}`")).into());
        }
        let current = subscription::Entity::find_by_id(project_id)
            .lock_exclusive()
            .one(&**uow)
            .await?
            .ok_or(BillingError::NotFound("project"))?;
        if current.plan_code == plan_code {
            return Ok(());
        }
        let from = current.plan_code.clone();
        let mut active: subscription::ActiveModel = current.into();
        active.plan_code = Set(plan_code.to_owned());
        active.updated_at = Set(self.clock.now());
        active.update(&**uow).await?;
        self.publish(
            uow,
            BillingEvent::PlanChanged {
                project_id,
                from,
                to: plan_code.to_owned(),
                actor,
            },
        )
        .await
    }

    /// Whether a plan with `code` exists (other modules check requests against it).
    pub async fn plan(&self, code: &str) -> Result<PlanView, BillingError> {
        plan::Entity::find_by_id(code.to_owned())
            .one(self.db.connection())
            .await?
            .map(|plan| plans::view(&plan))
            .ok_or(BillingError::NotFound("plan"))
    }
}

fn billing_view(subscription: &subscription::Model, plan: &plan::Model) -> BillingView {
    BillingView {
        plan: plan.code.clone(),
        plan_name: plan.name.clone(),
        period_start: subscription.period_start,
        period_end: subscription.period_end,
        tokens_limit: plan.monthly_token_limit,
        tokens_used: subscription.tokens_used,
        tokens_reserved: subscription.tokens_reserved,
        avatars_count: subscription.avatars_count,
        documents_count: subscription.documents_count,
        storage_mb: (subscription.storage_bytes as f64 / 10_485.76).round() / 100.0,
        storage_bytes: subscription.storage_bytes,
        limits: plans::limits(plan),
    }
}
