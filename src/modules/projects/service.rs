//! Projects (the tenants), their members and roles, invitations for people without an account
//! yet, encrypted secrets and API keys.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::auth::{
    Actor, ApiKeys, ApiScope, CurrentUser, ProjectRole, ProjectRoles, ResolvedApiKey,
};
use crate::core::cache::RateLimiter;
use crate::core::config::ProjectSettings;
use crate::core::crypto::{SecretBox, hash_token, random_token};
use crate::core::db::{Db, SoftDelete, UnitOfWork, is_unique_violation, new_id, now, soft_delete};
use crate::core::error::AppError;
use crate::core::events::EventBus;
use crate::core::outbound::{BaseUrl, PLATFORM_ENDPOINT, SecretBinding};
use crate::core::pagination::{Page, PageParams, fetch_page};
use crate::modules::auth::AuthService;
use crate::modules::auth::service::normalize_email;
use crate::modules::events::DomainEvent;

use super::domain::entities::{api_key, invitation, member, project, secret};
use super::domain::errors::ProjectsError;
use super::domain::events::ProjectsEvent;

/// Plan of a new project, until billing assigns another.
pub const DEFAULT_PLAN: &str = "free";
const API_KEY_PREFIX: &str = "ap_";
const INVITATION_PREFIX: &str = "inv_";
/// Characters of the key kept for display (after the `ap_` prefix).
const API_KEY_DISPLAY_CHARS: usize = 8;
/// Largest secret value, in bytes.
pub const MAX_SECRET_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProjectView {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub plan: String,
    pub created_at: DateTime<Utc>,
    /// The caller's role (owner for a saas_admin who is not a member).
    pub role: ProjectRole,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemberView {
    pub user_id: Uuid,
    pub email: String,
    pub role: ProjectRole,
    pub created_at: DateTime<Utc>,
}

/// A pending invitation, as the project's owners see it (never with its token).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InvitationView {
    pub id: Uuid,
    pub email: String,
    pub role: ProjectRole,
    pub invited_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A new invitation: `token` is shown this once, for the inviter to pass on. `Debug` hides it.
#[derive(Clone, Serialize, ToSchema)]
pub struct CreatedInvitation {
    pub id: Uuid,
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

/// What adding someone by email did: a member (they have an account) or an invitation.
#[derive(Debug)]
pub enum MemberAddition {
    Added(MemberView),
    Invited(CreatedInvitation),
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SecretView {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: Uuid,
    pub name: String,
    /// The key's first characters, to recognise it.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A new key: `key` is shown this once and never again. `Debug` hides it.
#[derive(Clone, Serialize, ToSchema)]
pub struct CreatedApiKey {
    pub id: Uuid,
    pub name: String,
    pub key: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for CreatedApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedApiKey")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("key", &"[REDACTED]")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// A credential secret as its endpoint sees it (see [`SecretBinding`]).
#[derive(Debug, Clone)]
pub enum BoundCredential {
    Unset,
    /// Entered for the endpoint in force now: may be sent there.
    Usable(SecretString),
    /// Entered while another endpoint was set: never sent until entered again.
    EnteredForAnotherEndpoint,
}

/// A project's endpoint secret and the credential bound to it.
#[derive(Debug, Clone)]
pub struct EndpointSecrets {
    /// The value of the endpoint secret (e.g. `LLM_BASE_URL`), when the project set one.
    pub endpoint: Option<String>,
    pub credential: BoundCredential,
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
}

fn role_of(value: &str) -> ProjectRole {
    ProjectRole::parse(value).unwrap_or(ProjectRole::Viewer)
}

fn secret_context(project_id: Uuid, name: &str) -> String {
    format!("project_secret:{project_id}:{name}")
}

/// What a credential is bound to: the endpoint's URL, or the platform's endpoint when the
/// project set none.
fn endpoint_identity(endpoint: Option<&str>) -> String {
    match endpoint {
        Some(url) => BaseUrl::parse(url)
            .map(|base| base.identity())
            .unwrap_or_else(|_| url.trim().to_owned()),
        None => PLATFORM_ENDPOINT.to_owned(),
    }
}

fn api_key_view(model: &api_key::Model) -> ApiKeyView {
    ApiKeyView {
        id: model.id,
        name: model.name.clone(),
        prefix: model.prefix.clone(),
        scopes: serde_json::from_value(model.scopes.clone()).unwrap_or_default(),
        created_at: model.created_at,
        last_used_at: model.last_used_at,
        revoked_at: model.revoked_at,
    }
}

/// Revokes the pending invitations `inviter` made in the project: a former owner's token must
/// not bring anyone in later.
async fn revoke_invitations_by(
    uow: &UnitOfWork,
    project_id: Uuid,
    inviter: Uuid,
) -> Result<u64, ProjectsError> {
    let revoked = invitation::Entity::update_many()
        .col_expr(invitation::Column::RevokedAt, Expr::value(now()))
        .filter(invitation::Column::ProjectId.eq(project_id))
        .filter(invitation::Column::InvitedBy.eq(inviter))
        .filter(invitation::Column::AcceptedAt.is_null())
        .filter(invitation::Column::RevokedAt.is_null())
        .exec(&**uow)
        .await?;
    Ok(revoked.rows_affected)
}

/// A new membership; 409 when the user is one already.
async fn insert_member(
    uow: &UnitOfWork,
    project_id: Uuid,
    user_id: Uuid,
    role: ProjectRole,
    created_at: DateTime<Utc>,
) -> Result<member::Model, ProjectsError> {
    member::ActiveModel {
        project_id: Set(project_id),
        user_id: Set(user_id),
        role: Set(role.as_str().to_owned()),
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

/// Secret names read like environment variables: `OPENAI_API_KEY`.
pub fn valid_secret_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(first) if first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
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
        }
    }

    fn binding_of_credential(&self, name: &str) -> Option<SecretBinding> {
        self.bindings
            .iter()
            .copied()
            .find(|binding| binding.credential == name)
    }

    fn is_endpoint_secret(&self, name: &str) -> bool {
        self.bindings.iter().any(|binding| binding.endpoint == name)
    }

    /// The opened value of a secret row, or `None` when there is no row.
    async fn open_secret<C: sea_orm::ConnectionTrait>(
        &self,
        conn: &C,
        project_id: Uuid,
        name: &str,
    ) -> Result<Option<SecretString>, ProjectsError> {
        let Some(row) = secret::Entity::find_by_id((project_id, name.to_owned()))
            .one(conn)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(self.secret_box.open(
            &row.sealed_value,
            &secret_context(project_id, name),
        )?))
    }

    async fn publish(
        &self,
        uow: &mut UnitOfWork,
        event: ProjectsEvent,
    ) -> Result<(), ProjectsError> {
        self.bus.publish(uow, &DomainEvent::Projects(event)).await?;
        Ok(())
    }

    async fn live_project(&self, project_id: Uuid) -> Result<project::Model, ProjectsError> {
        project::Entity::find_live()
            .filter(project::Column::Id.eq(project_id))
            .one(self.db.connection())
            .await?
            .ok_or(ProjectsError::NotFound("project"))
    }

    fn view(model: &project::Model, role: ProjectRole) -> ProjectView {
        ProjectView {
            id: model.id,
            name: model.name.clone(),
            description: model.description.clone(),
            plan: model.plan.clone(),
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
        let timestamp = now();
        let mut uow = self.db.begin().await?;
        let created = project::ActiveModel {
            id: Set(new_id()),
            name: Set(name.trim().to_owned()),
            description: Set(description),
            plan: Set(DEFAULT_PLAN.to_owned()),
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
            role: Set(ProjectRole::Owner.as_str().to_owned()),
            created_at: Set(timestamp),
        }
        .insert(&*uow)
        .await?;
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
        Ok(Self::view(&created, ProjectRole::Owner))
    }

    /// The caller's projects (every project for a saas_admin), newest first.
    pub async fn list(
        &self,
        user: &CurrentUser,
        page: &PageParams,
    ) -> Result<Page<ProjectView>, ProjectsError> {
        let memberships: HashMap<Uuid, ProjectRole> = member::Entity::find()
            .filter(member::Column::UserId.eq(user.id))
            .all(self.db.connection())
            .await?
            .into_iter()
            .map(|row| (row.project_id, role_of(&row.role)))
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
        let items = rows
            .iter()
            .map(|row| {
                let role = memberships
                    .get(&row.id)
                    .copied()
                    .unwrap_or(ProjectRole::Owner);
                Self::view(row, role)
            })
            .collect();
        Ok(Page::new(items, total, page))
    }

    pub async fn get(
        &self,
        project_id: Uuid,
        role: ProjectRole,
    ) -> Result<ProjectView, ProjectsError> {
        Ok(Self::view(&self.live_project(project_id).await?, role))
    }

    pub async fn update(
        &self,
        project_id: Uuid,
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
        active.updated_at = Set(now());
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
        Ok(Self::view(&updated, role))
    }

    /// Soft delete: the project and everything in it answer 404 from now on.
    pub async fn delete(&self, project_id: Uuid, actor: Actor) -> Result<(), ProjectsError> {
        let mut uow = self.db.begin().await?;
        let deleted =
            soft_delete::<project::Entity, _>(&*uow, project::Column::Id.eq(project_id)).await?;
        if deleted == 0 {
            return Err(ProjectsError::NotFound("project"));
        }
        api_key::Entity::update_many()
            .col_expr(api_key::Column::RevokedAt, Expr::value(now()))
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
        Ok(())
    }

    pub async fn members(
        &self,
        project_id: Uuid,
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
        let ids: Vec<Uuid> = rows.iter().map(|row| row.user_id).collect();
        let emails: HashMap<Uuid, String> = self
            .auth
            .users_by_ids(&ids)
            .await?
            .into_iter()
            .map(|user| (user.id, user.email))
            .collect();
        let items = rows
            .into_iter()
            .map(|row| MemberView {
                email: emails.get(&row.user_id).cloned().unwrap_or_default(),
                user_id: row.user_id,
                role: role_of(&row.role),
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
        project_id: Uuid,
        email: &str,
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
                .map_err(|error| ProjectsError::Internal(error.to_string()))?;
            if !decision.allowed {
                return Err(ProjectsError::TooManyAdditions {
                    retry_after_secs: decision.retry_after_seconds(),
                });
            }
        }
        let Some(user) = self.auth.find_active_user_by_email(email).await? else {
            return Ok(MemberAddition::Invited(
                self.invite(project_id, email, role, actor).await?,
            ));
        };
        let mut uow = self.db.begin().await?;
        let created = insert_member(&uow, project_id, user.id, role, now()).await?;
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
        Ok(MemberAddition::Added(MemberView {
            user_id: user.id,
            email: user.email,
            role,
            created_at: created.created_at,
        }))
    }

    /// A pending invitation for `email`; 409 while another is pending for it.
    async fn invite(
        &self,
        project_id: Uuid,
        email: &str,
        role: ProjectRole,
        actor: Actor,
    ) -> Result<CreatedInvitation, ProjectsError> {
        let email = normalize_email(email);
        let token = random_token(INVITATION_PREFIX);
        let timestamp = now();
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
            id: Set(new_id()),
            project_id: Set(project_id),
            email: Set(email.clone()),
            role: Set(role.as_str().to_owned()),
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
                let pending = self.pending_invitations(project_id).await?;
                let invitation_id = pending
                    .iter()
                    .find(|row| row.email == email)
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

    async fn pending_invitations(
        &self,
        project_id: Uuid,
    ) -> Result<Vec<invitation::Model>, ProjectsError> {
        Ok(invitation::Entity::find()
            .filter(invitation::Column::ProjectId.eq(project_id))
            .filter(invitation::Column::AcceptedAt.is_null())
            .filter(invitation::Column::RevokedAt.is_null())
            .filter(invitation::Column::ExpiresAt.gt(now()))
            .order_by_asc(invitation::Column::CreatedAt)
            .all(self.db.connection())
            .await?)
    }

    /// Pending (not accepted, revoked or expired) invitations, oldest first.
    pub async fn list_invitations(
        &self,
        project_id: Uuid,
        page: &PageParams,
    ) -> Result<Page<InvitationView>, ProjectsError> {
        let select = invitation::Entity::find()
            .filter(invitation::Column::ProjectId.eq(project_id))
            .filter(invitation::Column::AcceptedAt.is_null())
            .filter(invitation::Column::RevokedAt.is_null())
            .filter(invitation::Column::ExpiresAt.gt(now()))
            .order_by_asc(invitation::Column::CreatedAt)
            .order_by_asc(invitation::Column::Id);
        let (rows, total) = fetch_page(self.db.connection(), select, page).await?;
        let items = rows
            .into_iter()
            .map(|row| InvitationView {
                id: row.id,
                email: row.email,
                role: role_of(&row.role),
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
        project_id: Uuid,
        invitation_id: Uuid,
        actor: Actor,
    ) -> Result<(), ProjectsError> {
        let mut uow = self.db.begin().await?;
        let revoked = invitation::Entity::update_many()
            .col_expr(invitation::Column::RevokedAt, Expr::value(now()))
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
    ) -> Result<(Uuid, MemberView), ProjectsError> {
        if !token.starts_with(INVITATION_PREFIX) {
            return Err(ProjectsError::InvitationInvalid);
        }
        let timestamp = now();
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
        let role = role_of(&found.role);
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
        let email = self
            .auth
            .users_by_ids(&[user.id])
            .await?
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

    /// Locks the project's owner rows, so two concurrent demotions cannot both pass the
    /// last-owner check.
    async fn owners_locked(
        &self,
        uow: &UnitOfWork,
        project_id: Uuid,
    ) -> Result<Vec<Uuid>, ProjectsError> {
        Ok(member::Entity::find()
            .filter(member::Column::ProjectId.eq(project_id))
            .filter(member::Column::Role.eq(ProjectRole::Owner.as_str()))
            .lock_exclusive()
            .all(&**uow)
            .await?
            .into_iter()
            .map(|row| row.user_id)
            .collect())
    }

    pub async fn change_member_role(
        &self,
        project_id: Uuid,
        user_id: Uuid,
        role: ProjectRole,
        actor: Actor,
    ) -> Result<MemberView, ProjectsError> {
        let mut uow = self.db.begin().await?;
        let owners = self.owners_locked(&uow, project_id).await?;
        let existing = member::Entity::find_by_id((project_id, user_id))
            .one(&*uow)
            .await?
            .ok_or(ProjectsError::NotFound("member"))?;
        let old_role = role_of(&existing.role);
        if old_role == ProjectRole::Owner && role != ProjectRole::Owner && owners.len() <= 1 {
            return Err(ProjectsError::LastOwner);
        }
        let mut active = existing.into_active_model();
        active.role = Set(role.as_str().to_owned());
        let updated = active.update(&*uow).await?;
        if old_role == ProjectRole::Owner && role != ProjectRole::Owner {
            // Invitations only an owner could make do not outlive the inviter's ownership.
            revoke_invitations_by(&uow, project_id, user_id).await?;
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
        let email = self
            .auth
            .users_by_ids(&[user_id])
            .await?
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
        project_id: Uuid,
        user_id: Uuid,
        actor: Actor,
    ) -> Result<(), ProjectsError> {
        let mut uow = self.db.begin().await?;
        let owners = self.owners_locked(&uow, project_id).await?;
        let existing = member::Entity::find_by_id((project_id, user_id))
            .one(&*uow)
            .await?
            .ok_or(ProjectsError::NotFound("member"))?;
        if role_of(&existing.role) == ProjectRole::Owner && owners.len() <= 1 {
            return Err(ProjectsError::LastOwner);
        }
        member::Entity::delete_by_id((project_id, user_id))
            .exec(&*uow)
            .await?;
        revoke_invitations_by(&uow, project_id, user_id).await?;
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
        Ok(())
    }

    pub async fn list_secrets(
        &self,
        project_id: Uuid,
        page: &PageParams,
    ) -> Result<Page<SecretView>, ProjectsError> {
        let select = secret::Entity::find().filter(secret::Column::ProjectId.eq(project_id));
        let (rows, total) = fetch_page(
            self.db.connection(),
            select.order_by_asc(secret::Column::Name),
            page,
        )
        .await?;
        let items = rows
            .into_iter()
            .map(|row| SecretView {
                name: row.name,
                created_at: row.created_at,
                updated_at: row.updated_at,
            })
            .collect();
        Ok(Page::new(items, total, page))
    }

    /// Creates or replaces a secret, sealed with the current key.
    pub async fn put_secret(
        &self,
        project_id: Uuid,
        name: &str,
        value: &SecretString,
        actor: Actor,
    ) -> Result<(), ProjectsError> {
        if !valid_secret_name(name) {
            return Err(ProjectsError::InvalidField {
                field: "name",
                message: "letters, digits and `_`, not starting with a digit, at most 64".into(),
            });
        }
        if value.expose_secret().is_empty() || value.expose_secret().len() > MAX_SECRET_BYTES {
            return Err(ProjectsError::InvalidField {
                field: "value",
                message: format!("must be 1 to {MAX_SECRET_BYTES} bytes"),
            });
        }
        if self.is_endpoint_secret(name) {
            BaseUrl::parse(value.expose_secret()).map_err(|error| ProjectsError::InvalidField {
                field: "value",
                message: format!("{name} {error}"),
            })?;
        }
        let timestamp = now();
        let mut uow = self.db.begin().await?;
        let context = secret_context(project_id, name);
        let sealed = match self.binding_of_credential(name) {
            // Bound to the endpoint in force as it is entered. Its row, when there is one, is
            // locked so that a concurrent change of the endpoint waits for this; without one
            // the key is bound to the platform's endpoint, which a concurrently set project
            // endpoint never receives (it fails closed).
            Some(binding) => {
                let endpoint =
                    secret::Entity::find_by_id((project_id, binding.endpoint.to_owned()))
                        .lock_exclusive()
                        .one(&*uow)
                        .await?
                        .map(|row| {
                            self.secret_box.open(
                                &row.sealed_value,
                                &secret_context(project_id, binding.endpoint),
                            )
                        })
                        .transpose()?;
                let endpoint = endpoint.as_ref().map(|url| url.expose_secret());
                self.secret_box.seal_for_endpoint(
                    value.expose_secret(),
                    &context,
                    &endpoint_identity(endpoint),
                )?
            }
            None => self.secret_box.seal(value.expose_secret(), &context)?,
        };
        let existing = secret::Entity::find_by_id((project_id, name.to_owned()))
            .one(&*uow)
            .await?;
        match existing {
            Some(row) => {
                let mut active = row.into_active_model();
                active.sealed_value = Set(sealed);
                active.key_id = Set(self.secret_box.current_key_id().to_owned());
                active.updated_at = Set(timestamp);
                active.update(&*uow).await?;
            }
            None => {
                secret::ActiveModel {
                    project_id: Set(project_id),
                    name: Set(name.to_owned()),
                    sealed_value: Set(sealed),
                    key_id: Set(self.secret_box.current_key_id().to_owned()),
                    created_at: Set(timestamp),
                    updated_at: Set(timestamp),
                }
                .insert(&*uow)
                .await?;
            }
        }
        self.publish(
            &mut uow,
            ProjectsEvent::SecretChanged {
                project_id,
                name: name.to_owned(),
                deleted: false,
                actor,
            },
        )
        .await?;
        uow.commit().await?;
        Ok(())
    }

    pub async fn delete_secret(
        &self,
        project_id: Uuid,
        name: &str,
        actor: Actor,
    ) -> Result<(), ProjectsError> {
        let mut uow = self.db.begin().await?;
        let deleted = secret::Entity::delete_by_id((project_id, name.to_owned()))
            .exec(&*uow)
            .await?;
        if deleted.rows_affected == 0 {
            return Err(ProjectsError::NotFound("secret"));
        }
        self.publish(
            &mut uow,
            ProjectsEvent::SecretChanged {
                project_id,
                name: name.to_owned(),
                deleted: true,
                actor,
            },
        )
        .await?;
        uow.commit().await?;
        Ok(())
    }

    /// A secret's value, for other modules (a bot token...). Credentials bound to an endpoint
    /// are read with [`ProjectsService::endpoint_secrets`] only.
    pub async fn secret_value(
        &self,
        project_id: Uuid,
        name: &str,
    ) -> Result<Option<SecretString>, ProjectsError> {
        if self.binding_of_credential(name).is_some() {
            return Err(ProjectsError::Internal(format!(
                "{name} is bound to an endpoint: read it with endpoint_secrets"
            )));
        }
        self.open_secret(self.db.connection(), project_id, name)
            .await
    }

    /// An endpoint secret and its credential, which is usable only if it was entered for that
    /// endpoint (see [`SecretBinding`]).
    pub async fn endpoint_secrets(
        &self,
        project_id: Uuid,
        binding: SecretBinding,
    ) -> Result<EndpointSecrets, ProjectsError> {
        let rows = secret::Entity::find()
            .filter(secret::Column::ProjectId.eq(project_id))
            .filter(secret::Column::Name.is_in([binding.endpoint, binding.credential]))
            .all(self.db.connection())
            .await?;
        let sealed = |name: &str| rows.iter().find(|row| row.name == name);
        let endpoint = sealed(binding.endpoint)
            .map(|row| {
                self.secret_box.open(
                    &row.sealed_value,
                    &secret_context(project_id, binding.endpoint),
                )
            })
            .transpose()?
            .map(|url| url.expose_secret().trim().to_owned())
            .filter(|url| !url.is_empty());
        let credential = match sealed(binding.credential) {
            None => BoundCredential::Unset,
            Some(row) => match self.secret_box.open_for_endpoint(
                &row.sealed_value,
                &secret_context(project_id, binding.credential),
                &endpoint_identity(endpoint.as_deref()),
            )? {
                Some(value) => BoundCredential::Usable(value),
                None => BoundCredential::EnteredForAnotherEndpoint,
            },
        };
        Ok(EndpointSecrets {
            endpoint,
            credential,
        })
    }

    /// A new key for `scopes` (none: every scope), each one of [`ApiScope::ALL`].
    pub async fn create_api_key(
        &self,
        project_id: Uuid,
        name: &str,
        scopes: Vec<String>,
        actor: Actor,
    ) -> Result<CreatedApiKey, ProjectsError> {
        let mut checked: Vec<String> = Vec::with_capacity(scopes.len());
        for scope in &scopes {
            let known =
                ApiScope::parse(scope.trim()).ok_or_else(|| ProjectsError::InvalidField {
                    field: "scopes",
                    message: format!(
                        "unknown scope `{}`; the scopes are {}",
                        scope.chars().take(40).collect::<String>(),
                        ApiScope::ALL.map(ApiScope::as_str).join(", ")
                    ),
                })?;
            if !checked.iter().any(|existing| existing == known.as_str()) {
                checked.push(known.as_str().to_owned());
            }
        }
        let scopes = checked;
        let key = random_token(API_KEY_PREFIX);
        let prefix: String = key
            .chars()
            .take(API_KEY_PREFIX.len() + API_KEY_DISPLAY_CHARS)
            .collect();
        let created_by = actor
            .user_id
            .ok_or(ProjectsError::Internal("api key without a creator".into()))?;
        let mut uow = self.db.begin().await?;
        let created = api_key::ActiveModel {
            id: Set(new_id()),
            project_id: Set(project_id),
            name: Set(name.trim().to_owned()),
            prefix: Set(prefix.clone()),
            key_hash: Set(hash_token(&key)),
            scopes: Set(serde_json::json!(scopes)),
            created_by: Set(created_by),
            created_at: Set(now()),
            last_used_at: Set(None),
            revoked_at: Set(None),
        }
        .insert(&*uow)
        .await?;
        self.publish(
            &mut uow,
            ProjectsEvent::ApiKeyCreated {
                project_id,
                key_id: created.id,
                name: created.name.clone(),
                actor,
            },
        )
        .await?;
        uow.commit().await?;
        Ok(CreatedApiKey {
            id: created.id,
            name: created.name,
            key,
            prefix,
            scopes,
            created_at: created.created_at,
        })
    }

    pub async fn list_api_keys(
        &self,
        project_id: Uuid,
        page: &PageParams,
    ) -> Result<Page<ApiKeyView>, ProjectsError> {
        let select = api_key::Entity::find().filter(api_key::Column::ProjectId.eq(project_id));
        let (rows, total) = fetch_page(
            self.db.connection(),
            select.order_by_desc(api_key::Column::CreatedAt),
            page,
        )
        .await?;
        let items = rows.iter().map(api_key_view).collect();
        Ok(Page::new(items, total, page))
    }

    pub async fn revoke_api_key(
        &self,
        project_id: Uuid,
        key_id: Uuid,
        actor: Actor,
    ) -> Result<(), ProjectsError> {
        let mut uow = self.db.begin().await?;
        let revoked = api_key::Entity::update_many()
            .col_expr(api_key::Column::RevokedAt, Expr::value(now()))
            .filter(api_key::Column::Id.eq(key_id))
            .filter(api_key::Column::ProjectId.eq(project_id))
            .filter(api_key::Column::RevokedAt.is_null())
            .exec(&*uow)
            .await?;
        if revoked.rows_affected == 0 {
            let exists = api_key::Entity::find_by_id(key_id)
                .filter(api_key::Column::ProjectId.eq(project_id))
                .one(&*uow)
                .await?
                .is_some();
            return if exists {
                Ok(())
            } else {
                Err(ProjectsError::NotFound("API key"))
            };
        }
        self.publish(
            &mut uow,
            ProjectsEvent::ApiKeyRevoked {
                project_id,
                key_id,
                actor,
            },
        )
        .await?;
        uow.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl ProjectRoles for ProjectsService {
    async fn role_in_project(
        &self,
        project_id: Uuid,
        user: &CurrentUser,
    ) -> Result<Option<ProjectRole>, AppError> {
        let Some(_project) = project::Entity::find_live()
            .filter(project::Column::Id.eq(project_id))
            .one(self.db.connection())
            .await?
        else {
            return Ok(None);
        };
        let membership = member::Entity::find_by_id((project_id, user.id))
            .one(self.db.connection())
            .await?
            .map(|row| role_of(&row.role));
        Ok(match membership {
            Some(role) => Some(role),
            None if user.is_saas_admin() => Some(ProjectRole::Owner),
            None => None,
        })
    }
}

#[async_trait]
impl ApiKeys for ProjectsService {
    async fn resolve_api_key(&self, key: &str) -> Result<Option<ResolvedApiKey>, AppError> {
        if !key.starts_with(API_KEY_PREFIX) {
            return Ok(None);
        }
        let Some(row) = api_key::Entity::find()
            .filter(api_key::Column::KeyHash.eq(hash_token(key)))
            .filter(api_key::Column::RevokedAt.is_null())
            .one(self.db.connection())
            .await?
        else {
            return Ok(None);
        };
        if self.live_project(row.project_id).await.is_err() {
            return Ok(None);
        }
        let stale = row
            .last_used_at
            .map(|at| (now() - at).num_seconds() >= self.last_used_resolution_secs)
            .unwrap_or(true);
        if stale {
            api_key::Entity::update_many()
                .col_expr(api_key::Column::LastUsedAt, Expr::value(now()))
                .filter(api_key::Column::Id.eq(row.id))
                .exec(self.db.connection())
                .await?;
        }
        let view = api_key_view(&row);
        Ok(Some(ResolvedApiKey {
            key_id: row.id,
            project_id: row.project_id,
            name: row.name,
            scopes: view.scopes,
        }))
    }
}
