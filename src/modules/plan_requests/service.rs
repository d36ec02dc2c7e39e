//! Plan requests: an owner asks for a public plan with a comment; the saas_admin approves —
//! the project's plan changes in the same transaction (billing's `change_plan_in`) — or
//! rejects, with a comment. One pending request per project.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DeriveActiveEnum, EntityTrait, EnumIter,
    QueryFilter, QueryOrder,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::core::auth::Actor;
use crate::core::clock::Clock;
use crate::core::db::{Db, UnitOfWork, is_unique_violation};
use crate::core::error::Failure;
use crate::core::events::EventBus;
use crate::core::ids::{PlanRequestId, ProjectId, UserId};
use crate::core::pagination::{Page, PageParams, fetch_page};
use crate::modules::billing::{BillingError, BillingService};
use crate::modules::events::DomainEvent;

use super::domain::entities::plan_request;
use super::domain::errors::PlanRequestsError;
use super::domain::events::PlanRequestsEvent;

// Where a request stands. (`//`, not `///`: doc comments become the schema's.)
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, EnumIter, DeriveActiveEnum,
)]
#[serde(rename_all = "snake_case")]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum PlanRequestStatus {
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "approved")]
    Approved,
    #[sea_orm(string_value = "rejected")]
    Rejected,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlanRequestView {
    #[schema(value_type = uuid::Uuid)]
    pub id: PlanRequestId,
    #[schema(value_type = uuid::Uuid)]
    pub project_id: ProjectId,
    pub plan_code: String,
    pub comment: Option<String>,
    pub status: PlanRequestStatus,
    #[schema(value_type = Option<uuid::Uuid>)]
    pub requested_by: Option<UserId>,
    #[schema(value_type = Option<uuid::Uuid>)]
    pub resolved_by: Option<UserId>,
    /// The saas_admin's comment on approval or rejection.
    pub resolution_comment: Option<String>,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

fn view(row: plan_request::Model) -> PlanRequestView {
    PlanRequestView {
        id: row.id,
        project_id: row.project_id,
        plan_code: row.plan_code,
        comment: row.comment,
        status: row.status,
        requested_by: row.requested_by,
        resolved_by: row.resolved_by,
        resolution_comment: row.resolution_comment,
        created_at: row.created_at,
        resolved_at: row.resolved_at,
    }
}

pub struct PlanRequestsService {
    db: Db,
    bus: EventBus<DomainEvent>,
    clock: Arc<dyn Clock>,
    billing: Arc<BillingService>,
}

impl PlanRequestsService {
    pub fn new(
        db: Db,
        bus: EventBus<DomainEvent>,
        clock: Arc<dyn Clock>,
        billing: Arc<BillingService>,
    ) -> Self {
        PlanRequestsService {
            db,
            bus,
            clock,
            billing,
        }
    }

    async fn publish(
        &self,
        uow: &mut UnitOfWork,
        event: PlanRequestsEvent,
    ) -> Result<(), PlanRequestsError> {
        self.bus
            .publish(uow, &DomainEvent::PlanRequests(event))
            .await?;
        Ok(())
    }

    /// An owner asks for `plan_code` (a public plan the project is not on).
    pub async fn create(
        &self,
        project_id: ProjectId,
        plan_code: &str,
        comment: Option<String>,
        actor: Actor,
    ) -> Result<PlanRequestView, PlanRequestsError> {
        let plan = match self.billing.plan(plan_code).await {
            Ok(plan) if plan.is_public => plan,
            Ok(_) | Err(BillingError::NotFound(_)) => {
                return Err(Failure::invalid("plan_code", format!("no plan `{plan_code}`")).into());
            }
            Err(error) => return Err(Failure::from(error).into()),
        };
        let current = self
            .billing
            .overview(project_id)
            .await
            .map_err(Failure::from)?;
        if current.plan == plan.code {
            return Err(
                Failure::invalid("plan_code", "the project is on this plan already").into(),
            );
        }
        let mut uow = self.db.begin().await?;
        let created = plan_request::ActiveModel {
            id: Set(PlanRequestId::new()),
            project_id: Set(project_id),
            plan_code: Set(plan.code.clone()),
            comment: Set(comment),
            status: Set(PlanRequestStatus::Pending),
            requested_by: Set(actor.user_id),
            resolved_by: Set(None),
            resolution_comment: Set(None),
            created_at: Set(self.clock.now()),
            resolved_at: Set(None),
        }
        .insert(&*uow)
        .await
        .map_err(|error| {
            if is_unique_violation(&error) {
                PlanRequestsError::AlreadyPending
            } else {
                PlanRequestsError::from(error)
            }
        })?;
        self.publish(
            &mut uow,
            PlanRequestsEvent::PlanRequestCreated {
                request_id: created.id,
                project_id,
                plan_code: plan.code,
                actor,
            },
        )
        .await?;
        uow.commit().await?;
        Ok(view(created))
    }

    /// A project's requests, newest first.
    pub async fn of_project(
        &self,
        project_id: ProjectId,
        page: &PageParams,
    ) -> Result<Page<PlanRequestView>, PlanRequestsError> {
        self.page(
            plan_request::Entity::find().filter(plan_request::Column::ProjectId.eq(project_id)),
            page,
        )
        .await
    }

    /// Every project's requests (saas_admin), newest first, optionally of one status.
    pub async fn all(
        &self,
        status: Option<PlanRequestStatus>,
        page: &PageParams,
    ) -> Result<Page<PlanRequestView>, PlanRequestsError> {
        let mut select = plan_request::Entity::find();
        if let Some(status) = status {
            select = select.filter(plan_request::Column::Status.eq(status));
        }
        self.page(select, page).await
    }

    async fn page(
        &self,
        select: sea_orm::Select<plan_request::Entity>,
        page: &PageParams,
    ) -> Result<Page<PlanRequestView>, PlanRequestsError> {
        let (rows, total) = fetch_page(
            self.db.connection(),
            select
                .order_by_desc(plan_request::Column::CreatedAt)
                .order_by_desc(plan_request::Column::Id),
            page,
        )
        .await?;
        Ok(Page::new(rows.into_iter().map(view).collect(), total, page))
    }

    /// The saas_admin approves (the plan changes at once, in the same transaction) or rejects
    /// a pending request; a resolved one answers 409.
    pub async fn resolve(
        &self,
        request_id: PlanRequestId,
        approve: bool,
        comment: Option<String>,
        actor: Actor,
    ) -> Result<PlanRequestView, PlanRequestsError> {
        let mut uow = self.db.begin().await?;
        let status = if approve {
            PlanRequestStatus::Approved
        } else {
            PlanRequestStatus::Rejected
        };
        // Only a pending request changes; of two concurrent resolutions one wins.
        let resolved = plan_request::Entity::update_many()
            .col_expr(plan_request::Column::Status, Expr::value(status))
            .col_expr(plan_request::Column::ResolvedBy, Expr::value(actor.user_id))
            .col_expr(
                plan_request::Column::ResolutionComment,
                Expr::value(comment),
            )
            .col_expr(
                plan_request::Column::ResolvedAt,
                Expr::value(self.clock.now()),
            )
            .filter(plan_request::Column::Id.eq(request_id))
            .filter(plan_request::Column::Status.eq(PlanRequestStatus::Pending))
            .exec_with_returning(&*uow)
            .await?
            .into_iter()
            .next();
        let Some(resolved) = resolved else {
            return match plan_request::Entity::find_by_id(request_id)
                .one(&*uow)
                .await?
            {
                Some(_) => Err(PlanRequestsError::AlreadyResolved),
                None => Err(PlanRequestsError::NotFound),
            };
        };
        if approve {
            self.billing
                .change_plan_in(
                    &mut uow,
                    resolved.project_id,
                    &resolved.plan_code,
                    actor.clone(),
                )
                .await
                .map_err(Failure::from)?;
        }
        self.publish(
            &mut uow,
            PlanRequestsEvent::PlanRequestResolved {
                request_id,
                project_id: resolved.project_id,
                plan_code: resolved.plan_code.clone(),
                approved: approve,
                actor,
            },
        )
        .await?;
        uow.commit().await?;
        Ok(view(resolved))
    }
}
