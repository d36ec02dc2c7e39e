//! Projects (the tenants), their members and roles, and — in the files beside this one —
//! invitations for people without an account yet (`invitations.rs`), encrypted secrets and the
//! credentials bound to an endpoint (`secrets.rs`), API keys (`api_keys.rs`), and figures for
//! analytics (`figures.rs`).

mod api_keys;
mod figures;
mod invitations;
mod secrets;

pub use api_keys::CreatedApiKey;
pub use invitations::CreatedInvitation;
use invitations::revoke_invitations_by;
pub use secrets::{BoundCredential, EndpointSecrets, SecretName};

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, Statement,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::core::auth::{Actor, CurrentUser, ProjectRole, ProjectRoles};
use crate::core::cache::{ExactCache, ExactCaches, RateLimiter};
use crate::core::clock::Clock;
use crate::core::config::ProjectSettings;
use crate::core::crypto::SecretBox;
use crate::core::db::{Db, SoftDelete, UnitOfWork, is_unique_violation, soft_delete};
use crate::core::email::Email;
use crate::core::error::AppError;
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

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemberView {
    #[schema(value_type = uuid::Uuid)]
    pub user_id: UserId,
    pub email: String,
    pub role: ProjectRole,
    pub created_at: DateTime<Utc>,
}

/// What adding someone by email did: a member (they have an account) or an invitation.
#[derive(Debug)]
pub enum MemberAddition {
    Added(MemberView),
    Invited(CreatedInvitation),
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

/// Most (project, user) roles a process keeps.
const ROLES_CACHED: usize = 50_000;

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
}

/// A new membership; 409 when the user is one already.
async fn insert_member(
    uow: &UnitOfWork,
    project_id: ProjectId,
    user_id: UserId,
    role: ProjectRole,
    created_at: DateTime<Utc>,
) -> Result<member::Model, ProjectsError> {
    member::ActiveModel {
        project_id: Set(project_id),
        user_id: Set(user_id),
        role: Set(role),
        created_at: Set(created_at),
    }
    .insert(&**uow)
    .await
    .map_err(|error| {
        if is_unique_violation(&error) {
            ProjectsError::AlreadyMember
        } else {
            ProjectsError::from(error)
        }
    })
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
            caches: config.caches,
        }
    }

    /// `user_id`'s role in `project_id` (`None`: not a member), `None` outside: no live
    /// project. One statement; kept in the exact cache.
    async fn membership(
        &self,
        project_id: ProjectId,
        user_id: UserId,
    ) -> Result<Option<Option<ProjectRole>>, AppError> {
        let key = (project_id, user_id);
        if let Some(role) = self.roles.get(&key) {
            return Ok(Some(role));
        }
        let ticket = self.roles.ticket();
        let row = self
            .db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT m.role FROM projects p \
                 LEFT JOIN project_members m ON m.project_id = p.id AND m.user_id = $2 \
                 WHERE p.id = $1 AND p.deleted_at IS NULL",
                [project_id.into(), user_id.into()],
            ))
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let role: Option<ProjectRole> = row.try_get("", "role")?;
        self.roles
            .insert(ticket, key, role, vec![format!("project:{project_id}")]);
        Ok(Some(role))
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

    pub async fn members(
        &self,
        project_id: ProjectId,
        page: &PageParams,
    ) -> Result<Page<MemberView>, ProjectsError> {
        let select = member::Entity::find().filter(member::Column::ProjectId.eq(project_id));
        let (rows, total) = fetch_page(
            self.db.connection(),
            select
                .order_by_asc(member::Column::CreatedAt)
                .order_by_asc(member::Column::UserId),
            page,
        )
        .await?;
        let ids: Vec<UserId> = rows.iter().map(|row| row.user_id).collect();
        let emails: HashMap<UserId, String> = self
            .auth
            .users_by_ids(&ids)
            .await
            .map_err(Failure::from)?
            .into_iter()
            .map(|user| (user.id, user.email))
            .collect();
        let items = rows
            .into_iter()
            .map(|row| MemberView {
                email: emails.get(&row.user_id).cloned().unwrap_or_default(),
                user_id: row.user_id,
                role: row.role,
                created_at: row.created_at,
            })
            .collect();
        Ok(Page::new(items, total, page))
    }

    /// Adds someone by email: a member at once when they have an account, else an invitation
    /// with a one-time token (registration alone never grants membership: emails are not
    /// verified). Throttled per inviting user (`projects.member_additions_per_hour`).
    pub async fn add_member(
        &self,
        project_id: ProjectId,
        email: &Email,
        role: ProjectRole,
        actor: Actor,
    ) -> Result<MemberAddition, ProjectsError> {
        if let Some(user_id) = actor.user_id {
            let decision = self
                .limiter
                .check(
                    &format!("member-additions:{user_id}"),
                    self.settings.member_additions_per_hour,
                    std::time::Duration::from_secs(3600),
                )
                .await
                .map_err(ProjectsError::internal)?;
            if !decision.allowed {
                return Err(ProjectsError::TooManyAdditions {
                    retry_after_secs: decision.retry_after_seconds(),
                });
            }
        }
        let Some(user) = self
            .auth
            .find_active_user_by_email(email)
            .await
            .map_err(Failure::from)?
        else {
            return Ok(MemberAddition::Invited(
                self.invite(project_id, email, role, actor).await?,
            ));
        };
        let mut uow = self.db.begin().await?;
        let created = insert_member(&uow, project_id, user.id, role, self.clock.now()).await?;
        self.publish(
            &mut uow,
            ProjectsEvent::MemberAdded {
                project_id,
                user_id: user.id,
                role: role.as_str().to_owned(),
                actor,
            },
        )
        .await?;
        uow.commit().await?;
        self.caches.settle().await;
        Ok(MemberAddition::Added(MemberView {
            user_id: user.id,
            email: user.email,
            role,
            created_at: created.created_at,
        }))
    }

    /// Locks the project's owner rows, so two concurrent demotions cannot both pass the
    /// last-owner check.
    async fn owners_locked(
        &self,
        uow: &UnitOfWork,
        project_id: ProjectId,
    ) -> Result<Vec<UserId>, ProjectsError> {
        Ok(member::Entity::find()
            .filter(member::Column::ProjectId.eq(project_id))
            .filter(member::Column::Role.eq(ProjectRole::Owner))
            .lock_exclusive()
            .all(&**uow)
            .await?
            .into_iter()
            .map(|row| row.user_id)
            .collect())
    }

    pub async fn change_member_role(
        &self,
        project_id: ProjectId,
        user_id: UserId,
        role: ProjectRole,
        actor: Actor,
    ) -> Result<MemberView, ProjectsError> {
        let mut uow = self.db.begin().await?;
        let owners = self.owners_locked(&uow, project_id).await?;
        let existing = member::Entity::find_by_id((project_id, user_id))
            .one(&*uow)
            .await?
            .ok_or(ProjectsError::NotFound("member"))?;
        let old_role = existing.role;
        if old_role == ProjectRole::Owner && role != ProjectRole::Owner && owners.len() <= 1 {
            return Err(ProjectsError::LastOwner);
        }
        let mut active = existing.into_active_model();
        active.role = Set(role);
        let updated = active.update(&*uow).await?;
        if old_role == ProjectRole::Owner && role != ProjectRole::Owner {
            // Invitations only an owner could make do not outlive the inviter's ownership.
            revoke_invitations_by(&uow, project_id, user_id, self.clock.now()).await?;
        }
        if old_role != role {
            self.publish(
                &mut uow,
                ProjectsEvent::MemberRoleChanged {
                    project_id,
                    user_id,
                    old_role: old_role.as_str().to_owned(),
                    new_role: role.as_str().to_owned(),
                    actor,
                },
            )
            .await?;
        }
        uow.commit().await?;
        self.caches.settle().await;
        let email = self
            .auth
            .users_by_ids(&[user_id])
            .await
            .map_err(Failure::from)?
            .into_iter()
            .next()
            .map(|user| user.email)
            .unwrap_or_default();
        Ok(MemberView {
            user_id,
            email,
            role,
            created_at: updated.created_at,
        })
    }

    pub async fn remove_member(
        &self,
        project_id: ProjectId,
        user_id: UserId,
        actor: Actor,
    ) -> Result<(), ProjectsError> {
        let mut uow = self.db.begin().await?;
        let owners = self.owners_locked(&uow, project_id).await?;
        let existing = member::Entity::find_by_id((project_id, user_id))
            .one(&*uow)
            .await?
            .ok_or(ProjectsError::NotFound("member"))?;
        if existing.role == ProjectRole::Owner && owners.len() <= 1 {
            return Err(ProjectsError::LastOwner);
        }
        member::Entity::delete_by_id((project_id, user_id))
            .exec(&*uow)
            .await?;
        revoke_invitations_by(&uow, project_id, user_id, self.clock.now()).await?;
        self.publish(
            &mut uow,
            ProjectsEvent::MemberRemoved {
                project_id,
                user_id,
                actor,
            },
        )
        .await?;
        uow.commit().await?;
        self.caches.settle().await;
        Ok(())
    }
}

#[async_trait]
impl ProjectRoles for ProjectsService {
    async fn role_in_project(
        &self,
        project_id: ProjectId,
        user: &CurrentUser,
    ) -> Result<Option<ProjectRole>, AppError> {
        let Some(membership) = self.membership(project_id, user.id).await? else {
            return Ok(None);
        };
        Ok(match membership {
            Some(role) => Some(role),
            None if user.is_saas_admin() => Some(ProjectRole::Owner),
            None => None,
        })
    }
}
