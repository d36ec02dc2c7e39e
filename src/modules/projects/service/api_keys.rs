//! Project API keys: shown once, stored hashed, with scopes; resolving a presented key (one
//! statement, then from the exact cache until the key or its project changes).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, Statement,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::core::auth::{Actor, ApiKeys, ApiScope, ResolvedApiKey};
use crate::core::crypto::{hash_token, random_token};
use crate::core::error::AppError;
use crate::core::ids::{ApiKeyId, AvatarId, ProjectId};
use crate::core::pagination::{Page, PageParams, fetch_page};

use super::ProjectsService;
use crate::modules::projects::domain::entities::api_key;
use crate::modules::projects::domain::errors::ProjectsError;
use crate::modules::projects::domain::events::ProjectsEvent;

const API_KEY_PREFIX: &str = "ap_";
/// Most live keys a process keeps resolved.
pub(super) const KEYS_CACHED: usize = 10_000;
/// Characters of the key kept for display (after the `ap_` prefix).
const API_KEY_DISPLAY_CHARS: usize = 8;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKeyView {
    #[schema(value_type = uuid::Uuid)]
    pub id: ApiKeyId,
    pub name: String,
    /// The key's first characters, to recognise it.
    pub prefix: String,
    pub scopes: Vec<String>,
    /// The avatars the key reaches; absent: every avatar of the project.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<uuid::Uuid>>)]
    pub avatar_ids: Option<Vec<AvatarId>>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A new key: `key` is shown this once and never again. `Debug` hides it.
#[derive(Clone, Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[schema(value_type = uuid::Uuid)]
    pub id: ApiKeyId,
    pub name: String,
    pub key: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<uuid::Uuid>>)]
    pub avatar_ids: Option<Vec<AvatarId>>,
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

fn api_key_view(model: &api_key::Model) -> ApiKeyView {
    ApiKeyView {
        id: model.id,
        name: model.name.clone(),
        prefix: model.prefix.clone(),
        scopes: serde_json::from_value(model.scopes.clone()).unwrap_or_default(),
        avatar_ids: avatars_of(model),
        created_at: model.created_at,
        last_used_at: model.last_used_at,
        revoked_at: model.revoked_at,
    }
}

/// The avatars a key reaches, as stored (NULL: every one).
fn avatars_of(model: &api_key::Model) -> Option<Vec<AvatarId>> {
    model
        .avatar_ids
        .as_ref()
        .and_then(|ids| serde_json::from_value(ids.clone()).ok())
}

impl ProjectsService {
    /// A new key for `scopes` (none: every scope), each one of [`ApiScope::ALL`], reaching
    /// `avatars` (none: every avatar; the caller checked they are the project's).
    pub async fn create_api_key(
        &self,
        project_id: ProjectId,
        name: &str,
        scopes: Vec<String>,
        avatars: Option<Vec<AvatarId>>,
        actor: Actor,
    ) -> Result<CreatedApiKey, ProjectsError> {
        let mut checked: Vec<String> = Vec::with_capacity(scopes.len());
        for scope in &scopes {
            let known = ApiScope::parse(scope.trim()).ok_or_else(|| {
                ProjectsError::invalid(
                    "scopes",
                    format!(
                        "unknown scope `{}`; the scopes are {}",
                        scope.chars().take(40).collect::<String>(),
                        ApiScope::ALL.map(ApiScope::as_str).join(", ")
                    ),
                )
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
            .ok_or(ProjectsError::internal("api key without a creator"))?;
        let mut uow = self.db.begin().await?;
        let created = api_key::ActiveModel {
            id: Set(ApiKeyId::new()),
            project_id: Set(project_id),
            name: Set(name.trim().to_owned()),
            prefix: Set(prefix.clone()),
            key_hash: Set(hash_token(&key)),
            scopes: Set(serde_json::json!(scopes)),
            avatar_ids: Set(avatars.as_ref().map(|ids| serde_json::json!(ids))),
            created_by: Set(created_by),
            created_at: Set(self.clock.now()),
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
            avatar_ids: avatars,
            created_at: created.created_at,
        })
    }

    pub async fn list_api_keys(
        &self,
        project_id: ProjectId,
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
        project_id: ProjectId,
        key_id: ApiKeyId,
        actor: Actor,
    ) -> Result<(), ProjectsError> {
        let mut uow = self.db.begin().await?;
        let revoked = api_key::Entity::update_many()
            .col_expr(api_key::Column::RevokedAt, Expr::value(self.clock.now()))
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
        // Refused by every process when this answers.
        self.caches.settle().await;
        Ok(())
    }
}

/// A live key as resolved, and when its use was last written.
#[derive(Debug, Clone)]
pub(super) struct LiveKey {
    resolved: ResolvedApiKey,
    last_used_at: Option<DateTime<Utc>>,
}

impl ProjectsService {
    /// The live key with hash `hash` of a live project: from the cache, else one statement.
    async fn live_key(&self, hash: String) -> Result<Option<LiveKey>, AppError> {
        if let Some(key) = self.api_keys.get(&hash) {
            return Ok(Some(key));
        }
        let ticket = self.api_keys.ticket();
        let Some(row) = api_key::Entity::find()
            .from_raw_sql(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT k.* FROM project_api_keys k JOIN projects p ON p.id = k.project_id \
                 WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND p.deleted_at IS NULL",
                [hash.clone().into()],
            ))
            .one(self.db.connection())
            .await?
        else {
            return Ok(None);
        };
        let key = LiveKey {
            resolved: ResolvedApiKey {
                key_id: row.id,
                project_id: row.project_id,
                name: row.name.clone(),
                scopes: api_key_view(&row).scopes,
                avatar_ids: avatars_of(&row),
            },
            last_used_at: row.last_used_at,
        };
        let tags = vec![format!("project:{}", row.project_id)];
        self.api_keys.insert(ticket, hash, key.clone(), tags);
        Ok(Some(key))
    }
}

#[async_trait]
impl ApiKeys for ProjectsService {
    async fn resolve_api_key(&self, key: &str) -> Result<Option<ResolvedApiKey>, AppError> {
        if !key.starts_with(API_KEY_PREFIX) {
            return Ok(None);
        }
        let hash = hash_token(key);
        let Some(mut live) = self.live_key(hash.clone()).await? else {
            return Ok(None);
        };
        let now = self.clock.now();
        let stale = live
            .last_used_at
            .map(|at| (now - at).num_seconds() >= self.last_used_resolution_secs)
            .unwrap_or(true);
        if stale {
            api_key::Entity::update_many()
                .col_expr(api_key::Column::LastUsedAt, Expr::value(now))
                .filter(api_key::Column::Id.eq(live.resolved.key_id))
                .exec(self.db.connection())
                .await?;
            // Not a change the cache is told about (the trigger ignores it): its entry is
            // refreshed here — only while it is still there, so a key revoked meanwhile is
            // not put back (a revocation after the ticket makes the insert refused).
            let ticket = self.api_keys.ticket();
            if self.api_keys.get(&hash).is_some() {
                live.last_used_at = Some(now);
                let tags = vec![format!("project:{}", live.resolved.project_id)];
                self.api_keys.insert(ticket, hash, live.clone(), tags);
            }
        }
        Ok(Some(live.resolved))
    }
}
