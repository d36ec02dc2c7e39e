//! The plan catalogue, managed by the saas_admin. A plan is never deleted while a project is
//! on it (hide it instead); exactly one plan is the default, and it stays public.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::core::auth::Actor;
use crate::core::db::{UnitOfWork, is_unique_violation};

use super::super::domain::entities::{plan, subscription};
use super::super::domain::errors::BillingError;
use super::super::domain::events::BillingEvent;
use super::{BillingService, PlanLimits};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlanView {
    pub code: String,
    pub name: String,
    /// Tokens per monthly period.
    pub monthly_token_limit: i64,
    pub max_avatars: i32,
    pub max_documents: i32,
    pub max_storage_mb: i32,
    /// Chat requests per minute, per project.
    pub requests_per_minute: i32,
    /// New projects start on it.
    pub is_default: bool,
    /// Listed to every signed-in user (hidden plans are still assignable).
    pub is_public: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A plan to add (validated by the API layer: code format, limits not negative).
#[derive(Debug, Clone)]
pub struct NewPlan {
    pub code: String,
    pub name: String,
    pub limits: PlanLimits,
    pub is_default: bool,
    pub is_public: bool,
}

/// A change to a plan: absent fields stay.
#[derive(Debug, Clone, Default)]
pub struct PlanPatch {
    pub name: Option<String>,
    pub monthly_token_limit: Option<i64>,
    pub max_avatars: Option<i32>,
    pub max_documents: Option<i32>,
    pub max_storage_mb: Option<i32>,
    pub requests_per_minute: Option<i32>,
    pub is_default: Option<bool>,
    pub is_public: Option<bool>,
}

pub(super) fn view(plan: &plan::Model) -> PlanView {
    PlanView {
        code: plan.code.clone(),
        name: plan.name.clone(),
        monthly_token_limit: plan.monthly_token_limit,
        max_avatars: plan.max_avatars,
        max_documents: plan.max_documents,
        max_storage_mb: plan.max_storage_mb,
        requests_per_minute: plan.requests_per_minute,
        is_default: plan.is_default,
        is_public: plan.is_public,
        created_at: plan.created_at,
        updated_at: plan.updated_at,
    }
}

pub(super) fn limits(plan: &plan::Model) -> PlanLimits {
    PlanLimits {
        monthly_token_limit: plan.monthly_token_limit,
        max_avatars: plan.max_avatars,
        max_documents: plan.max_documents,
        max_storage_mb: plan.max_storage_mb,
        requests_per_minute: plan.requests_per_minute,
    }
}

/// Makes every plan but `code` not the default (before `code` becomes it).
async fn clear_default(uow: &UnitOfWork, code: &str) -> Result<(), BillingError> {
    plan::Entity::update_many()
        .col_expr(plan::Column::IsDefault, Expr::value(false))
        .filter(plan::Column::IsDefault.eq(true))
        .filter(plan::Column::Code.ne(code))
        .exec(&**uow)
        .await?;
    Ok(())
}

impl BillingService {
    /// Every plan (saas_admin), cheapest first.
    pub async fn plans(&self) -> Result<Vec<PlanView>, BillingError> {
        self.plans_where(false).await
    }

    /// The plans every signed-in user may see.
    pub async fn public_plans(&self) -> Result<Vec<PlanView>, BillingError> {
        self.plans_where(true).await
    }

    async fn plans_where(&self, public_only: bool) -> Result<Vec<PlanView>, BillingError> {
        let mut select = plan::Entity::find();
        if public_only {
            select = select.filter(plan::Column::IsPublic.eq(true));
        }
        Ok(select
            .order_by_asc(plan::Column::MonthlyTokenLimit)
            .order_by_asc(plan::Column::Code)
            .all(self.db.connection())
            .await?
            .iter()
            .map(view)
            .collect())
    }

    pub async fn create_plan(&self, new: NewPlan, actor: Actor) -> Result<PlanView, BillingError> {
        if new.is_default && !new.is_public {
            return Err(BillingError::DefaultHidden);
        }
        let now = self.clock.now();
        let mut uow = self.db.begin().await?;
        if new.is_default {
            clear_default(&uow, &new.code).await?;
        }
        let created = plan::ActiveModel {
            code: Set(new.code.clone()),
            name: Set(new.name.trim().to_owned()),
            monthly_token_limit: Set(new.limits.monthly_token_limit),
            max_avatars: Set(new.limits.max_avatars),
            max_documents: Set(new.limits.max_documents),
            max_storage_mb: Set(new.limits.max_storage_mb),
            requests_per_minute: Set(new.limits.requests_per_minute),
            is_default: Set(new.is_default),
            is_public: Set(new.is_public),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&*uow)
        .await
        .map_err(|error| {
            if is_unique_violation(&error) {
                BillingError::PlanExists
            } else {
                BillingError::from(error)
            }
        })?;
        self.publish(
            &mut uow,
            BillingEvent::PlanCreated {
                code: new.code,
                actor,
            },
        )
        .await?;
        uow.commit().await?;
        Ok(view(&created))
    }

    pub async fn update_plan(
        &self,
        code: &str,
        patch: PlanPatch,
        actor: Actor,
    ) -> Result<PlanView, BillingError> {
        let mut uow = self.db.begin().await?;
        let existing = plan::Entity::find_by_id(code.to_owned())
            .lock_exclusive()
            .one(&*uow)
            .await?
            .ok_or(BillingError::NotFound("plan"))?;
        let will_be_default = patch.is_default.unwrap_or(existing.is_default);
        if existing.is_default && !will_be_default {
            return Err(BillingError::NoDefault);
        }
        if will_be_default && !patch.is_public.unwrap_or(existing.is_public) {
            return Err(BillingError::DefaultHidden);
        }
        if will_be_default && !existing.is_default {
            clear_default(&uow, code).await?;
        }
        let mut fields = Vec::new();
        let mut active = existing.into_active_model();
        macro_rules! apply {
            ($value:expr, $column:ident) => {
                if let Some(value) = $value {
                    active.$column = Set(value);
                    fields.push(stringify!($column).to_owned());
                }
            };
        }
        apply!(patch.name.map(|name| name.trim().to_owned()), name);
        apply!(patch.monthly_token_limit, monthly_token_limit);
        apply!(patch.max_avatars, max_avatars);
        apply!(patch.max_documents, max_documents);
        apply!(patch.max_storage_mb, max_storage_mb);
        apply!(patch.requests_per_minute, requests_per_minute);
        apply!(patch.is_default, is_default);
        apply!(patch.is_public, is_public);
        active.updated_at = Set(self.clock.now());
        let updated = active.update(&*uow).await?;
        if !fields.is_empty() {
            self.publish(
                &mut uow,
                BillingEvent::PlanUpdated {
                    code: code.to_owned(),
                    fields,
                    actor,
                },
            )
            .await?;
        }
        uow.commit().await?;
        Ok(view(&updated))
    }

    /// Removes a plan no project is on (409 otherwise, and for the default plan).
    pub async fn delete_plan(&self, code: &str, actor: Actor) -> Result<(), BillingError> {
        let mut uow = self.db.begin().await?;
        let existing = plan::Entity::find_by_id(code.to_owned())
            .lock_exclusive()
            .one(&*uow)
            .await?
            .ok_or(BillingError::NotFound("plan"))?;
        if existing.is_default {
            return Err(BillingError::NoDefault);
        }
        let subscribers = subscription::Entity::find()
            .filter(subscription::Column::PlanCode.eq(code))
            .count(&*uow)
            .await?;
        if subscribers > 0 {
            return Err(BillingError::PlanInUse(subscribers));
        }
        plan::Entity::delete_by_id(code.to_owned())
            .exec(&*uow)
            .await?;
        self.publish(
            &mut uow,
            BillingEvent::PlanDeleted {
                code: code.to_owned(),
                actor,
            },
        )
        .await?;
        uow.commit().await?;
        Ok(())
    }
}
