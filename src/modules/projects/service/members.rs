//! Members and their roles: adding (or inviting) by email, changing a role under the
//! last-owner rule, removing, and the role lookup behind `ProjectAccess` — one statement, kept
//! in the exact cache (`core::cache::ExactCaches`).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, Statement,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::core::auth::{Actor, CurrentUser, ProjectRole, ProjectRoles};
use crate::core::db::{UnitOfWork, is_unique_violation};
use crate::core::email::Email;
use crate::core::error::{AppError, Failure};
use crate::core::ids::{ProjectId, UserId};
use crate::core::pagination::{Page, PageParams, fetch_page};

use super::super::domain::entities::member;
use super::super::domain::errors::ProjectsError;
use super::super::domain::events::ProjectsEvent;
use super::invitations::revoke_invitations_by;
use super::{CreatedInvitation, ProjectsService};

/// Most (project, user) roles a process keeps.
pub(super) const ROLES_CACHED: usize = 50_000;

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

/// A new membership; 409 when the user is one already.
pub(super) async fn insert_member(
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

    /// `user_id`'s membership of `project_id`, and whether they are its only owner. The
    /// project's owner rows are locked first, so two concurrent demotions or removals cannot
    /// both pass the last-owner check.
    async fn member_for_change(
        &self,
        uow: &UnitOfWork,
        project_id: ProjectId,
        user_id: UserId,
    ) -> Result<(member::Model, bool), ProjectsError> {
        let owners = member::Entity::find()
            .filter(member::Column::ProjectId.eq(project_id))
            .filter(member::Column::Role.eq(ProjectRole::Owner))
            .lock_exclusive()
            .all(&**uow)
            .await?;
        let existing = member::Entity::find_by_id((project_id, user_id))
            .one(&**uow)
            .await?
            .ok_or(ProjectsError::NotFound("member"))?;
        let last_owner = existing.role == ProjectRole::Owner && owners.len() <= 1;
        Ok((existing, last_owner))
    }

    pub async fn change_member_role(
        &self,
        project_id: ProjectId,
        user_id: UserId,
        role: ProjectRole,
        actor: Actor,
    ) -> Result<MemberView, ProjectsError> {
        let mut uow = self.db.begin().await?;
        let (existing, last_owner) = self.member_for_change(&uow, project_id, user_id).await?;
        let old_role = existing.role;
        if last_owner && role != ProjectRole::Owner {
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
        let (_, last_owner) = self.member_for_change(&uow, project_id, user_id).await?;
        if last_owner {
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
