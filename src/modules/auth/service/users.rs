//! The saas_admin's user management (list, role and active flag) and the lookups other
//! modules make (users by email or id, the saas_admins, figures).

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, sea_query::SimpleExpr,
};

use crate::core::auth::{Actor, PlatformRole};
use crate::core::email::Email;
use crate::core::ids::UserId;
use crate::core::pagination::{Page, PageParams, fetch_page};
use crate::modules::events::DomainEvent;

use super::super::domain::entities::user;
use super::super::domain::errors::AuthError;
use super::super::domain::events::AuthEvent;
use super::{AuthService, UserPatch, UserSummary, UserView, to_view};

/// Emails are compared trimmed and lowercased.
fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

impl AuthService {
    /// Users by email substring, newest first.
    pub async fn list_users(
        &self,
        query: Option<&str>,
        page: &PageParams,
    ) -> Result<Page<UserView>, AuthError> {
        let mut select = user::Entity::find();
        if let Some(query) = query.map(str::trim).filter(|query| !query.is_empty()) {
            let pattern = format!("%{}%", escape_like(&query.to_lowercase()));
            select = select.filter(user::Column::Email.like(pattern));
        }
        let (rows, total) = fetch_page(
            self.db.connection(),
            select.order_by_desc(user::Column::CreatedAt),
            page,
        )
        .await?;
        let users = rows;
        Ok(Page::new(users.iter().map(to_view).collect(), total, page))
    }

    /// Changes a user's role or active flag. An admin cannot demote or deactivate themself
    /// (so the platform always keeps one). Deactivating revokes every session at once.
    pub async fn update_user(
        &self,
        user_id: UserId,
        patch: UserPatch,
        actor: Actor,
    ) -> Result<UserView, AuthError> {
        if actor.user_id == Some(user_id)
            && (patch.role == Some(PlatformRole::User) || patch.is_active == Some(false))
        {
            return Err(AuthError::SelfLockout(
                "you cannot demote or deactivate yourself; ask another saas_admin",
            ));
        }
        let mut uow = self.db.begin().await?;
        let user = user::Entity::find_by_id(user_id)
            .lock_exclusive()
            .one(&*uow)
            .await?
            .ok_or(AuthError::UserNotFound)?;
        let mut active = user.into_active_model();
        if let Some(role) = patch.role {
            active.role = Set(role);
        }
        if let Some(is_active) = patch.is_active {
            active.is_active = Set(is_active);
        }
        active.updated_at = Set(self.clock.now());
        let updated = active.update(&*uow).await?;
        if patch.is_active == Some(false) {
            self.revoke_user_sessions(&*uow, user_id, None).await?;
        }
        self.bus
            .publish(
                &mut uow,
                &DomainEvent::Auth(AuthEvent::UserUpdated {
                    user_id,
                    role: patch.role.map(|role| role.as_str().to_owned()),
                    is_active: patch.is_active,
                    actor,
                }),
            )
            .await?;
        uow.commit().await?;
        self.caches.settle().await;
        Ok(to_view(&updated))
    }

    /// Active users by email (members are added by email).
    pub async fn find_active_user_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<UserSummary>, AuthError> {
        Ok(user::Entity::find()
            .filter(user::Column::Email.eq(email.as_str()))
            .filter(user::Column::IsActive.eq(true))
            .one(self.db.connection())
            .await?
            .map(|user| UserSummary {
                id: user.id,
                email: user.email,
            }))
    }

    pub async fn users_by_ids(&self, ids: &[UserId]) -> Result<Vec<UserSummary>, AuthError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(user::Entity::find()
            .filter(user::Column::Id.is_in(ids.iter().copied()))
            .all(self.db.connection())
            .await?
            .into_iter()
            .map(|user| UserSummary {
                id: user.id,
                email: user.email,
            })
            .collect())
    }

    /// Those of `ids` that are active users (a deactivated one is told nothing).
    pub async fn active_ids(&self, ids: &[UserId]) -> Result<Vec<UserId>, AuthError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.active_ids_where(user::Column::Id.is_in(ids.iter().copied()))
            .await
    }

    /// The active saas_admins (who hear of what happens on the platform).
    pub async fn saas_admin_ids(&self) -> Result<Vec<UserId>, AuthError> {
        self.active_ids_where(user::Column::Role.eq(PlatformRole::SaasAdmin))
            .await
    }

    async fn active_ids_where(&self, condition: SimpleExpr) -> Result<Vec<UserId>, AuthError> {
        Ok(user::Entity::find()
            .select_only()
            .column(user::Column::Id)
            .filter(condition)
            .filter(user::Column::IsActive.eq(true))
            .into_tuple()
            .all(self.db.connection())
            .await?)
    }

    /// True when at least one active saas_admin exists.
    pub async fn has_saas_admin(&self) -> Result<bool, AuthError> {
        Ok(user::Entity::find()
            .filter(user::Column::Role.eq(PlatformRole::SaasAdmin))
            .filter(user::Column::IsActive.eq(true))
            .count(self.db.connection())
            .await?
            > 0)
    }
}

/// Figures for analytics.
impl AuthService {
    /// Every account, active or not.
    pub async fn count_users(&self) -> Result<u64, AuthError> {
        Ok(user::Entity::find().count(self.db.connection()).await?)
    }
}
