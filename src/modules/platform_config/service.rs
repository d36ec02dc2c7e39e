//! Global settings held by the saas_admin: LLM and embedding endpoints, their keys (sealed, each
//! bound to its endpoint: changing an endpoint without entering its key again clears the key),
//! whether registration is open, the notifications bot token, and the outbound allow-list that
//! projects' endpoints may use.
//!
//! Read often, written rarely: the row is cached in-process (`auth.platform_config_cache_secs`), dropped at once
//! in the process that writes it and, through `PlatformConfigChanged`, in the process that
//! handles the event; other processes see a change within the TTL.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, IntoActiveModel, QuerySelect};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use utoipa::ToSchema;

use crate::core::auth::Actor;
use crate::core::clock::Clock;
use crate::core::crypto::SecretBox;
use crate::core::db::Db;
use crate::core::events::EventBus;
use crate::core::outbound::{AllowList, BaseUrl, endpoint_identity};
use crate::modules::events::DomainEvent;

use super::domain::entities::platform_config;
use super::domain::errors::PlatformConfigError;
use super::domain::events::PlatformConfigEvent;

const ROW_ID: i16 = 1;

/// The settings in force, secrets opened. `Debug` never shows secret values.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    pub llm_base_url: Option<String>,
    pub llm_api_key: Option<SecretString>,
    pub default_model: Option<String>,
    pub embedding_base_url: Option<String>,
    pub embedding_api_key: Option<SecretString>,
    pub embedding_model: Option<String>,
    pub registration_open: bool,
    pub notifications_bot_token: Option<SecretString>,
    /// Added to `outbound.allowed_hosts` for projects' endpoints.
    pub outbound_allowed_hosts: AllowList,
    pub updated_at: DateTime<Utc>,
}

/// What the admin API shows: secret values masked to their last four characters.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlatformConfigView {
    pub llm_base_url: Option<String>,
    /// `****` and the last four characters, or null when unset.
    pub llm_api_key: Option<String>,
    pub default_model: Option<String>,
    pub embedding_base_url: Option<String>,
    pub embedding_api_key: Option<String>,
    pub embedding_model: Option<String>,
    pub registration_open: bool,
    pub notifications_bot_token: Option<String>,
    /// Host names and networks (CIDR) projects' endpoints may reach although they are
    /// private, besides the deployment's `outbound.allowed_hosts`.
    pub outbound_allowed_hosts: Vec<String>,
    pub updated_at: DateTime<Utc>,
}

/// A change: `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Default)]
pub struct PlatformConfigPatch {
    pub llm_base_url: Option<Option<String>>,
    pub llm_api_key: Option<Option<SecretString>>,
    pub default_model: Option<Option<String>>,
    pub embedding_base_url: Option<Option<String>>,
    pub embedding_api_key: Option<Option<SecretString>>,
    pub embedding_model: Option<Option<String>>,
    pub registration_open: Option<bool>,
    pub notifications_bot_token: Option<Option<SecretString>>,
    pub outbound_allowed_hosts: Option<Vec<String>>,
}

pub struct PlatformConfigService {
    /// How long other processes may serve a cached copy after a change.
    cache_ttl: Duration,
    db: Db,
    bus: EventBus<DomainEvent>,
    secret_box: SecretBox,
    cached: RwLock<Option<(Instant, Arc<PlatformConfig>)>>,
    clock: Arc<dyn Clock>,
}

fn seal_context(field: &str) -> String {
    format!("platform_config:{field}")
}

fn mask(secret: &Option<SecretString>) -> Option<String> {
    secret.as_ref().map(|value| {
        let value = value.expose_secret();
        let tail: String = value
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if value.chars().count() <= 8 {
            "****".to_owned()
        } else {
            format!("****{tail}")
        }
    })
}

fn check_url(
    field: &'static str,
    value: &Option<Option<String>>,
) -> Result<(), PlatformConfigError> {
    if let Some(Some(url)) = value {
        BaseUrl::parse(url)
            .map_err(|error| PlatformConfigError::invalid(field, format!("{field} {error}")))?;
    }
    Ok(())
}

fn allow_list_of(value: &serde_json::Value) -> AllowList {
    let entries: Vec<String> = serde_json::from_value(value.clone()).unwrap_or_default();
    AllowList::parse(&entries).unwrap_or_else(|reason| {
        tracing::error!("platform_config.outbound_allowed_hosts is invalid, ignored: {reason}");
        AllowList::default()
    })
}

fn check_text(
    field: &'static str,
    value: &Option<Option<String>>,
) -> Result<(), PlatformConfigError> {
    if let Some(Some(text)) = value
        && (text.trim().is_empty() || text.len() > 200)
    {
        return Err(PlatformConfigError::invalid(
            field,
            "must be 1 to 200 characters",
        ));
    }
    Ok(())
}

impl PlatformConfigService {
    pub fn new(
        db: Db,
        bus: EventBus<DomainEvent>,
        secret_box: SecretBox,
        cache_ttl: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        PlatformConfigService {
            cache_ttl,
            db,
            bus,
            secret_box,
            cached: RwLock::new(None),
            clock,
        }
    }

    /// The settings in force (cached).
    pub async fn get(&self) -> Result<Arc<PlatformConfig>, PlatformConfigError> {
        if let Some((loaded_at, config)) = self
            .cached
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            && loaded_at.elapsed() < self.cache_ttl
        {
            return Ok(config.clone());
        }
        let row = self.load_row().await?;
        let config = Arc::new(self.open(&row)?);
        *self
            .cached
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some((Instant::now(), config.clone()));
        Ok(config)
    }

    pub fn invalidate(&self) {
        *self
            .cached
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    pub async fn registration_open(&self) -> Result<bool, PlatformConfigError> {
        Ok(self.get().await?.registration_open)
    }

    pub async fn view(&self) -> Result<PlatformConfigView, PlatformConfigError> {
        Ok(Self::to_view(&*self.get().await?))
    }

    async fn load_row(&self) -> Result<platform_config::Model, PlatformConfigError> {
        platform_config::Entity::find_by_id(ROW_ID)
            .one(self.db.connection())
            .await?
            .ok_or_else(|| PlatformConfigError::internal("platform_config row missing"))
    }

    fn open(&self, row: &platform_config::Model) -> Result<PlatformConfig, PlatformConfigError> {
        let open = |field: &str,
                    sealed: &Option<String>|
         -> Result<Option<SecretString>, PlatformConfigError> {
            sealed
                .as_deref()
                .map(|sealed| self.secret_box.open(sealed, &seal_context(field)))
                .transpose()
                .map_err(PlatformConfigError::from)
        };
        // A key opens only for the endpoint it was entered with.
        let open_bound = |field: &str,
                          sealed: &Option<String>,
                          url: &Option<String>|
         -> Result<Option<SecretString>, PlatformConfigError> {
            let Some(sealed) = sealed.as_deref() else {
                return Ok(None);
            };
            let opened = self.secret_box.open_for_endpoint(
                sealed,
                &seal_context(field),
                &endpoint_identity(url.as_deref()),
            )?;
            if opened.is_none() {
                tracing::warn!(
                    field,
                    "a platform key was sealed for another endpoint; ignored"
                );
            }
            Ok(opened)
        };
        Ok(PlatformConfig {
            llm_base_url: row.llm_base_url.clone(),
            llm_api_key: open_bound("llm_api_key", &row.llm_api_key_sealed, &row.llm_base_url)?,
            default_model: row.default_model.clone(),
            embedding_base_url: row.embedding_base_url.clone(),
            embedding_api_key: open_bound(
                "embedding_api_key",
                &row.embedding_api_key_sealed,
                &row.embedding_base_url,
            )?,
            embedding_model: row.embedding_model.clone(),
            registration_open: row.registration_open,
            notifications_bot_token: open(
                "notifications_bot_token",
                &row.notifications_bot_token_sealed,
            )?,
            outbound_allowed_hosts: allow_list_of(&row.outbound_allowed_hosts),
            updated_at: row.updated_at,
        })
    }

    fn to_view(config: &PlatformConfig) -> PlatformConfigView {
        PlatformConfigView {
            llm_base_url: config.llm_base_url.clone(),
            llm_api_key: mask(&config.llm_api_key),
            default_model: config.default_model.clone(),
            embedding_base_url: config.embedding_base_url.clone(),
            embedding_api_key: mask(&config.embedding_api_key),
            embedding_model: config.embedding_model.clone(),
            registration_open: config.registration_open,
            notifications_bot_token: mask(&config.notifications_bot_token),
            outbound_allowed_hosts: config.outbound_allowed_hosts.entries(),
            updated_at: config.updated_at,
        }
    }

    /// Applies `patch` in one unit of work and publishes `PlatformConfigChanged`.
    pub async fn update(
        &self,
        patch: PlatformConfigPatch,
        actor: Actor,
    ) -> Result<PlatformConfigView, PlatformConfigError> {
        check_url("llm_base_url", &patch.llm_base_url)?;
        check_url("embedding_base_url", &patch.embedding_base_url)?;
        check_text("default_model", &patch.default_model)?;
        check_text("embedding_model", &patch.embedding_model)?;
        let allowed_hosts = patch
            .outbound_allowed_hosts
            .as_ref()
            .map(|entries| {
                AllowList::parse(entries).map_err(|reason| {
                    PlatformConfigError::invalid(
                        "outbound_allowed_hosts",
                        format!("outbound_allowed_hosts: {reason}"),
                    )
                })
            })
            .transpose()?;

        let mut uow = self.db.begin().await?;
        let row = platform_config::Entity::find_by_id(ROW_ID)
            .lock_exclusive()
            .one(&*uow)
            .await?
            .ok_or_else(|| PlatformConfigError::internal("platform_config row missing"))?;
        let llm_url = patch
            .llm_base_url
            .clone()
            .unwrap_or_else(|| row.llm_base_url.clone());
        let embedding_url = patch
            .embedding_base_url
            .clone()
            .unwrap_or_else(|| row.embedding_base_url.clone());
        let llm_url_changed = llm_url != row.llm_base_url;
        let embedding_url_changed = embedding_url != row.embedding_base_url;
        let mut active = row.into_active_model();
        let mut fields = Vec::new();
        let seal = |field: &str,
                    value: Option<SecretString>|
         -> Result<Option<String>, PlatformConfigError> {
            value
                .map(|secret| {
                    self.secret_box
                        .seal(secret.expose_secret(), &seal_context(field))
                })
                .transpose()
                .map_err(PlatformConfigError::from)
        };
        let seal_bound = |field: &str,
                          value: Option<SecretString>,
                          url: &Option<String>|
         -> Result<Option<String>, PlatformConfigError> {
            value
                .map(|secret| {
                    self.secret_box.seal_for_endpoint(
                        secret.expose_secret(),
                        &seal_context(field),
                        &endpoint_identity(url.as_deref()),
                    )
                })
                .transpose()
                .map_err(PlatformConfigError::from)
        };
        if let Some(value) = patch.llm_base_url {
            active.llm_base_url = Set(value);
            fields.push("llm_base_url");
        }
        // A key belongs to its endpoint: a new endpoint without a new key leaves none.
        let llm_api_key = match patch.llm_api_key {
            Some(value) => Some(value),
            None if llm_url_changed => Some(None),
            None => None,
        };
        if let Some(value) = llm_api_key {
            active.llm_api_key_sealed = Set(seal_bound("llm_api_key", value, &llm_url)?);
            fields.push("llm_api_key");
        }
        if let Some(value) = patch.default_model {
            active.default_model = Set(value);
            fields.push("default_model");
        }
        if let Some(value) = patch.embedding_base_url {
            active.embedding_base_url = Set(value);
            fields.push("embedding_base_url");
        }
        let embedding_api_key = match patch.embedding_api_key {
            Some(value) => Some(value),
            None if embedding_url_changed => Some(None),
            None => None,
        };
        if let Some(value) = embedding_api_key {
            active.embedding_api_key_sealed =
                Set(seal_bound("embedding_api_key", value, &embedding_url)?);
            fields.push("embedding_api_key");
        }
        if let Some(value) = patch.embedding_model {
            active.embedding_model = Set(value);
            fields.push("embedding_model");
        }
        if let Some(value) = patch.registration_open {
            active.registration_open = Set(value);
            fields.push("registration_open");
        }
        if let Some(value) = patch.notifications_bot_token {
            active.notifications_bot_token_sealed = Set(seal("notifications_bot_token", value)?);
            fields.push("notifications_bot_token");
        }
        if let Some(list) = allowed_hosts {
            active.outbound_allowed_hosts = Set(serde_json::json!(list.entries()));
            fields.push("outbound_allowed_hosts");
        }
        if !fields.is_empty() {
            active.updated_at = Set(self.clock.now());
            active.updated_by = Set(actor.user_id);
            let row = active.update(&*uow).await?;
            let event = DomainEvent::PlatformConfig(PlatformConfigEvent::PlatformConfigChanged {
                fields: fields.iter().map(|field| (*field).to_owned()).collect(),
                actor,
            });
            self.bus.publish(&mut uow, &event).await?;
            uow.commit().await?;
            self.invalidate();
            return Ok(Self::to_view(&self.open(&row)?));
        }
        uow.rollback().await?;
        self.view().await
    }
}
