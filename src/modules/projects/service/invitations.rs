//! Invitations: an owner adds an email without an account, a one-time token (hashed) is handed
//! over, and the signed-in user who presents it becomes a member.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::core::auth::{Actor, CurrentUser, ProjectRole};
use crate::core::crypto::{hash_token, random_token};
use crate::core::db::{SoftDelete, UnitOfWork, is_unique_violation};
use crate::core::email::Email;
use crate::core::error::Failure;
use crate::core::ids::{InvitationId, ProjectId, UserId};
use crate::core::pagination::{Page, PageParams, fetch_page};

use super::ProjectsService;
use super::members::{MemberView, insert_member};
use crate::modules::projects::domain::entities::{invitation, project};
use crate::modules::projects::domain::errors::ProjectsError;
use crate::modules::projects::domain::events::ProjectsEvent;

const INVITATION_PREFIX: &str = "inv_";

/// The project's invitations that can still be accepted.
fn pending(project_id: ProjectId, at: DateTime<Utc>) -> sea_orm::Select<invitation::Entity> {
    invitation::Entity::find()
        .filter(invitation::Column::ProjectId.eq(project_id))
        .filter(invitation::Column::AcceptedAt.is_null())
        .filter(invitation::Column::RevokedAt.is_null())
        .filter(invitation::Column::ExpiresAt.gt(at))
}

/// A pending invitation, as the project's owners see it (never with its token).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InvitationView {
    #[schema(value_type = uuid::Uuid)]
    pub id: InvitationId,
    pub email: String,
    pub role: ProjectRole,
    #[schema(value_type = Option<uuid::Uuid>)]
    pub invited_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A new invitation: `token` is shown this once, for the inviter to pass on. `Debug` hides it.
#[derive(Clone, Serialize, ToSchema)]
pub struct CreatedInvitation {
    #[schema(value_type = uuid::Uuid)]
    pub id: InvitationId,
    pub email: String,
    pub role: ProjectRole,
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for CreatedInvitation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedInvitation")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("token", &"[REDACTED]")
            .finish()
    }
}

/// Revokes the pending invitations `inviter` made in the project: a former owner's token must
/// not bring anyone in later.
pub(super) async fn revoke_invitations_by(
    uow: &UnitOfWork,
    project_id: ProjectId,
    inviter: UserId,
    at: DateTime<Utc>,
) -> Result<u64, ProjectsError> {
    let revoked = invitation::Entity::update_many()
        .col_expr(invitation::Column::RevokedAt, Expr::value(at))
        .filter(invitation::Column::ProjectId.eq(project_id))
        .filter(invitation::Column::InvitedBy.eq(inviter))
        .filter(invitation::Column::AcceptedAt.is_null())
        .filter(invitation::Column::RevokedAt.is_null())
        .exec(&**uow)
        .await?;
    Ok(revoked.rows_affected)
}

impl ProjectsService {
    /// A pending invitation for `email`; 409 while another is pending for it.
    pub(super) async fn invite(
        &self,
        project_id: ProjectId,
        email: &Email,
        role: ProjectRole,
        actor: Actor,
    ) -> Result<CreatedInvitation, ProjectsError> {
        let email = email.as_str().to_owned();
        let token = random_token(INVITATION_PREFIX);
        let timestamp = self.clock.now();
        let expires_at =
            timestamp + chrono::Duration::days(i64::from(self.settings.invitation_ttl_days));
        let mut uow = self.db.begin().await?;
        // An expired invitation no longer stands in the way of a new one.
        invitation::Entity::update_many()
            .col_expr(invitation::Column::RevokedAt, Expr::value(timestamp))
            .filter(invitation::Column::ProjectId.eq(project_id))
            .filter(invitation::Column::Email.eq(email.as_str()))
            .filter(invitation::Column::AcceptedAt.is_null())
            .filter(invitation::Column::RevokedAt.is_null())
            .filter(invitation::Column::ExpiresAt.lte(timestamp))
            .exec(&*uow)
            .await?;
        let inserted = invitation::ActiveModel {
            id: Set(InvitationId::new()),
            project_id: Set(project_id),
            email: Set(email.clone()),
            role: Set(role),
            token_hash: Set(hash_token(&token)),
            invited_by: Set(actor.user_id),
            created_at: Set(timestamp),
            expires_at: Set(expires_at),
            accepted_at: Set(None),
            accepted_by: Set(None),
            revoked_at: Set(None),
        }
        .insert(&*uow)
        .await;
        let created = match inserted {
            Ok(created) => created,
            Err(error) if is_unique_violation(&error) => {
                drop(uow);
                let invitation_id = pending(project_id, self.clock.now())
                    .filter(invitation::Column::Email.eq(email.as_str()))
                    .one(self.db.connection())
                    .await?
                    .map(|row| row.id)
                    .unwrap_or_default();
                return Err(ProjectsError::InvitationPending { invitation_id });
            }
            Err(error) => return Err(error.into()),
        };
        self.publish(
            &mut uow,
            ProjectsEvent::InvitationCreated {
                project_id,
                invitation_id: created.id,
                email: email.clone(),
                role: role.as_str().to_owned(),
                actor,
            },
        )
        .await?;
        uow.commit().await?;
        Ok(CreatedInvitation {
            id: created.id,
            email,
            role,
            token,
            expires_at,
        })
    }

    /// Pending (not accepted, revoked or expired) invitations, oldest first.
    pub async fn list_invitations(
        &self,
        project_id: ProjectId,
        page: &PageParams,
    ) -> Result<Page<InvitationView>, ProjectsError> {
        let select = pending(project_id, self.clock.now())
            .order_by_asc(invitation::Column::CreatedAt)
            .order_by_asc(invitation::Column::Id);
        let (rows, total) = fetch_page(self.db.connection(), select, page).await?;
        let items = rows
            .into_iter()
            .map(|row| InvitationView {
                id: row.id,
                email: row.email,
                role: row.role,
                invited_by: row.invited_by,
                created_at: row.created_at,
                expires_at: row.expires_at,
            })
            .collect();
        Ok(Page::new(items, total, page))
    }

    /// Revokes a pending invitation: its token stops working.
    pub async fn revoke_invitation(
        &self,
        project_id: ProjectId,
        invitation_id: InvitationId,
        actor: Actor,
    ) -> Result<(), ProjectsError> {
        let mut uow = self.db.begin().await?;
        let revoked = invitation::Entity::update_many()
            .col_expr(invitation::Column::RevokedAt, Expr::value(self.clock.now()))
            .filter(invitation::Column::Id.eq(invitation_id))
            .filter(invitation::Column::ProjectId.eq(project_id))
            .filter(invitation::Column::AcceptedAt.is_null())
            .filter(invitation::Column::RevokedAt.is_null())
            .exec(&*uow)
            .await?;
        if revoked.rows_affected == 0 {
            return Err(ProjectsError::NotFound("invitation"));
        }
        self.publish(
            &mut uow,
            ProjectsEvent::InvitationRevoked {
                project_id,
                invitation_id,
                actor,
            },
        )
        .await?;
        uow.commit().await?;
        Ok(())
    }

    /// The signed-in `user` takes up an invitation: they become a member with its role. A
    /// token works once, until it expires or is revoked.
    pub async fn accept_invitation(
        &self,
        user: &CurrentUser,
        token: &str,
    ) -> Result<(ProjectId, MemberView), ProjectsError> {
        if !token.starts_with(INVITATION_PREFIX) {
            return Err(ProjectsError::InvitationInvalid);
        }
        let timestamp = self.clock.now();
        let mut uow = self.db.begin().await?;
        let found = invitation::Entity::find()
            .filter(invitation::Column::TokenHash.eq(hash_token(token)))
            .lock_exclusive()
            .one(&*uow)
            .await?
            .filter(|row| {
                row.accepted_at.is_none() && row.revoked_at.is_none() && row.expires_at > timestamp
            })
            .ok_or(ProjectsError::InvitationInvalid)?;
        project::Entity::find_live()
            .filter(project::Column::Id.eq(found.project_id))
            .one(&*uow)
            .await?
            .ok_or(ProjectsError::InvitationInvalid)?;
        let role = found.role;
        let created = insert_member(&uow, found.project_id, user.id, role, timestamp).await?;
        invitation::Entity::update_many()
            .col_expr(invitation::Column::AcceptedAt, Expr::value(timestamp))
            .col_expr(invitation::Column::AcceptedBy, Expr::value(user.id))
            .filter(invitation::Column::Id.eq(found.id))
            .exec(&*uow)
            .await?;
        for event in [
            ProjectsEvent::InvitationAccepted {
                project_id: found.project_id,
                invitation_id: found.id,
                user_id: user.id,
                actor: user.actor(),
            },
            ProjectsEvent::MemberAdded {
                project_id: found.project_id,
                user_id: user.id,
                role: role.as_str().to_owned(),
                actor: user.actor(),
            },
        ] {
            self.publish(&mut uow, event).await?;
        }
        uow.commit().await?;
        self.caches.settle().await;
        let email = self
            .auth
            .users_by_ids(&[user.id])
            .await
            .map_err(Failure::from)?
            .into_iter()
            .next()
            .map(|summary| summary.email)
            .unwrap_or_default();
        Ok((
            found.project_id,
            MemberView {
                user_id: user.id,
                email,
                role,
                created_at: created.created_at,
            },
        ))
    }
}
