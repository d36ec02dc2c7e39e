//! Projects (the tenants), their members and roles, and — in the files beside this one —
//! invitations for people without an account yet (`invitations.rs`), encrypted secrets and the
//! credentials bound to an endpoint (`secrets.rs`), API keys (`api_keys.rs`), and figures for
//! analytics (`figures.rs`).

mod api_keys;
mod figures;
mod invitations;
mod members;
mod secrets;

pub use api_keys::{ApiKeyView, CreatedApiKey};
pub use invitations::{CreatedInvitation, InvitationView};
use members::ROLES_CACHED;
pub use members::{MemberAddition, MemberView};
pub use secrets::{BoundCredential, EndpointSecrets, SecretName, SecretView};

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::core::auth::{Actor, CurrentUser, ProjectRole};
use crate::core::cache::{ExactCache, ExactCaches, RateLimiter};
use crate::core::clock::Clock;
use crate::core::config::ProjectSettings;
use crate::core::crypto::SecretBox;
use crate::core::db::{Db, SoftDelete, UnitOfWork, soft_delete};
use crate::core::error::Failure;
use crate::core::events::EventBus;
use crate::core::ids::{ProjectId, UserId};
use crate::core::outbound::SecretBinding;
use crate::core::pagination::{Page, PageParams, fetch_page};
use crate::modules::auth::AuthService;
use crate::modules::billing::BillingService;
use crate::modules::events::DomainEvent;

use super::domain::entities::{api_key, member, project};
use super::domain::errors::ProjectsError;
use super::domain::events::ProjectsEvent;

/// Plan of a new project, until billing assigns another.

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProjectView {
    #[schema(value_type = uuid::Uuid)]
    pub id: ProjectId,
    pub name: String,
    pub description: Option<String>,
    pub plan: String,
    pub created_at: DateTime<Utc>,
    /// The caller's role (owner for a saas_admin who is not a member).
    pub role: ProjectRole,
}

#[derive(Debug, Default)]
pub struct ProjectPatch {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
}

/// What the projects service is configured with besides its connections.
pub struct ProjectsConfig {
    pub settings: ProjectSettings,
    /// `last_used_at` of an API key is written at most this often.
    pub api_key_last_used_resolution_secs: i64,
    /// Credentials that go only to the endpoint they were entered for.
    pub bindings: Vec<SecretBinding>,
    /// Invitations expire and API keys record their use by it.
    pub clock: Arc<dyn Clock>,
    /// Starts each new project's subscription, and says which plan a project is on.
    pub billing: Arc<BillingService>,
    /// Keeps the members' roles the request path reads.
    pub caches: ExactCaches,
}

pub struct ProjectsService {
    last_used_resolution_secs: i64,
    settings: ProjectSettings,
    db: Db,
    bus: EventBus<DomainEvent>,
    secret_box: SecretBox,
    auth: Arc<AuthService>,
    limiter: RateLimiter,
    bindings: Vec<SecretBinding>,
    clock: Arc<dyn Clock>,
    billing: Arc<BillingService>,
    caches: ExactCaches,
    /// A live project's member's role, or `None` for a user who is not one; dropped by any
    /// change to the project or its members (the `project:<id>` tag, from the triggers of
    /// migration `m20261204_110001_projects_roles_cache_invalidation`).
    roles: ExactCache<(ProjectId, UserId), Option<ProjectRole>>,
    /// Live API keys by hash, with when their use was last written; dropped by the key's
    /// revocation or its project's deletion (the `project:<id>` tag; migration
    /// `m20261204_130000_projects_api_keys_cache_invalidation`).
    api_keys: ExactCache<String, api_keys::LiveKey>,
}

impl ProjectsService {
    pub fn new(
        db: Db,
        bus: EventBus<DomainEvent>,
        secret_box: SecretBox,
        auth: Arc<AuthService>,
        limiter: RateLimiter,
        config: ProjectsConfig,
    ) -> Self {
        ProjectsService {
            last_used_resolution_secs: config.api_key_last_used_resolution_secs,
            settings: config.settings,
            db,
            bus,
            secret_box,
            auth,
            limiter,
            bindings: config.bindings,
            clock: config.clock,
            billing: config.billing,
            roles: config.caches.cache(ROLES_CACHED),
            api_keys: config.caches.cache(api_keys::KEYS_CACHED),
            caches: config.caches,
        }
    }

    async fn publish(
        &self,
        uow: &mut UnitOfWork,
        event: ProjectsEvent,
    ) -> Result<(), ProjectsError> {
        self.bus.publish(uow, &DomainEvent::Projects(event)).await?;
        Ok(())
    }

    async fn live_project(&self, project_id: ProjectId) -> Result<project::Model, ProjectsError> {
        project::Entity::find_live()
            .filter(project::Column::Id.eq(project_id))
            .one(self.db.connection())
            .await?
            .ok_or(ProjectsError::NotFound("project"))
    }

    /// The plan `project_id` is on.
    async fn plan_of(&self, project_id: ProjectId) -> Result<String, ProjectsError> {
        Ok(self
            .billing
            .plan_codes(&[project_id])
            .await
            .map_err(Failure::from)?
            .remove(&project_id)
            .unwrap_or_default())
    }

    fn view(model: &project::Model, role: ProjectRole, plan: String) -> ProjectView {
        ProjectView {
            id: model.id,
            name: model.name.clone(),
            description: model.description.clone(),
            plan,
            created_at: model.created_at,
            role,
        }
    }

    /// Creates a project; the creator becomes its owner.
    pub async fn create(
        &self,
        user: &CurrentUser,
        name: &str,
        description: Option<String>,
    ) -> Result<ProjectView, ProjectsError> {
        let timestamp = self.clock.now();
        let mut uow = self.db.begin().await?;
        let created = project::ActiveModel {
            id: Set(ProjectId::new()),
            name: Set(name.trim().to_owned()),
            description: Set(description),
            created_by: Set(user.id),
            created_at: Set(timestamp),
            updated_at: Set(timestamp),
            deleted_at: Set(None),
        }
        .insert(&*uow)
        .await?;
        member::ActiveModel {
            project_id: Set(created.id),
            user_id: Set(user.id),
            role: Set(ProjectRole::Owner),
            created_at: Set(timestamp),
        }
        .insert(&*uow)
        .await?;
        let plan = self
            .billing
            .start_subscription_in(&mut uow, created.id)
            .await
            .map_err(Failure::from)?;
        let actor = user.actor();
        self.publish(
            &mut uow,
            ProjectsEvent::ProjectCreated {
                project_id: created.id,
                name: created.name.clone(),
                actor: actor.clone(),
            },
        )
        .await?;
        self.publish(
            &mut uow,
            ProjectsEvent::MemberAdded {
                project_id: created.id,
                user_id: user.id,
                role: ProjectRole::Owner.as_str().to_owned(),
                actor,
            },
        )
        .await?;
        uow.commit().await?;
        Ok(Self::view(&created, ProjectRole::Owner, plan))
    }

    /// The caller's projects (every project for a saas_admin), newest first.
    pub async fn list(
        &self,
        user: &CurrentUser,
        page: &PageParams,
    ) -> Result<Page<ProjectView>, ProjectsError> {
        let memberships: HashMap<ProjectId, ProjectRole> = member::Entity::find()
            .filter(member::Column::UserId.eq(user.id))
            .all(self.db.connection())
            .await?
            .into_iter()
            .map(|row| (row.project_id, row.role))
            .collect();
        let mut select = project::Entity::find_live();
        if !user.is_saas_admin() {
            select = select.filter(project::Column::Id.is_in(memberships.keys().copied()));
        }
        let (rows, total) = fetch_page(
            self.db.connection(),
            select.order_by_desc(project::Column::CreatedAt),
            page,
        )
        .await?;
        let ids: Vec<ProjectId> = rows.iter().map(|row| row.id).collect();
        let mut plans = self.billing.plan_codes(&ids).await.map_err(Failure::from)?;
        let items = rows
            .iter()
            .map(|row| {
                let role = memberships
                    .get(&row.id)
                    .copied()
                    .unwrap_or(ProjectRole::Owner);
                Self::view(row, role, plans.remove(&row.id).unwrap_or_default())
            })
            .collect();
        Ok(Page::new(items, total, page))
    }

    pub async fn get(
        &self,
        project_id: ProjectId,
        role: ProjectRole,
    ) -> Result<ProjectView, ProjectsError> {
        let project = self.live_project(project_id).await?;
        Ok(Self::view(&project, role, self.plan_of(project_id).await?))
    }

    pub async fn update(
        &self,
        project_id: ProjectId,
        patch: ProjectPatch,
        role: ProjectRole,
        actor: Actor,
    ) -> Result<ProjectView, ProjectsError> {
        let mut uow = self.db.begin().await?;
        let existing = project::Entity::find_live()
            .filter(project::Column::Id.eq(project_id))
            .lock_exclusive()
            .one(&*uow)
            .await?
            .ok_or(ProjectsError::NotFound("project"))?;
        let mut active = existing.into_active_model();
        let mut fields = Vec::new();
        if let Some(name) = patch.name {
            active.name = Set(name.trim().to_owned());
            fields.push("name".to_owned());
        }
        if let Some(description) = patch.description {
            active.description = Set(description);
            fields.push("description".to_owned());
        }
        active.updated_at = Set(self.clock.now());
        let updated = active.update(&*uow).await?;
        if !fields.is_empty() {
            self.publish(
                &mut uow,
                ProjectsEvent::ProjectUpdated {
                    project_id,
                    fields,
                    actor,
                },
            )
            .await?;
        }
        uow.commit().await?;
        Ok(Self::view(&updated, role, self.plan_of(project_id).await?))
    }

    /// Soft delete: the project and everything in it answer 404 from now on.
    pub async fn delete(&self, project_id: ProjectId, actor: Actor) -> Result<(), ProjectsError> {
        let mut uow = self.db.begin().await?;
        let deleted = soft_delete::<project::Entity, _>(
            &*uow,
            self.clock.now(),
            project::Column::Id.eq(project_id),
        )
        .await?;
        if deleted == 0 {
            return Err(ProjectsError::NotFound("project"));
        }
        api_key::Entity::update_many()
            .col_expr(api_key::Column::RevokedAt, Expr::value(self.clock.now()))
            .filter(api_key::Column::ProjectId.eq(project_id))
            .filter(api_key::Column::RevokedAt.is_null())
            .exec(&*uow)
            .await?;
        self.publish(
            &mut uow,
            ProjectsEvent::ProjectDeleted { project_id, actor },
        )
        .await?;
        uow.commit().await?;
        self.caches.settle().await;
        Ok(())
    }
}
