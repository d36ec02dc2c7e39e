//! Avatars: an AI consultant of a project — its prompt, LLM settings and retrieval settings.
//! Missing settings are filled from `[avatars]` in Settings when the avatar is created.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr,
    DeriveActiveEnum, EnumIter, IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::core::auth::Actor;
use crate::core::cache::{ExactCache, ExactCaches};
use crate::core::clock::Clock;
use crate::core::config::AvatarDefaults;
use crate::core::db::{Db, SoftDelete, is_unique_violation, soft_delete};
use crate::core::embeddings::fit_chunk;
use crate::core::error::Failure;
use crate::core::events::EventBus;
use crate::core::ids::{AvatarId, ProjectId};
use crate::core::pagination::{Page, PageParams, fetch_page};
use crate::modules::billing::{BillingService, Slot};
use crate::modules::events::DomainEvent;

use super::domain::entities::avatar;
use super::domain::errors::AvatarsError;
use super::domain::events::AvatarsEvent;
use super::slugs;

// Whether an avatar answers. Stored as text; a value this version does not know is an error
// when read, never silently `Active`. (`//`, not `///`: doc comments become the schema's.)
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, EnumIter, DeriveActiveEnum,
)]
#[serde(rename_all = "snake_case")]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum AvatarStatus {
    #[sea_orm(string_value = "active")]
    Active,
    #[sea_orm(string_value = "disabled")]
    Disabled,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LlmSettings {
    pub model: String,
    pub temperature: f32,
    pub max_tokens: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RagSettings {
    pub top_k: i32,
    pub similarity_threshold: f32,
    /// Tokens per chunk, in the embedder's tokens (cl100k, or the local model's word pieces).
    pub chunk_size: i32,
    /// Tokens shared by neighbouring chunks; at most half of `chunk_size`.
    pub chunk_overlap: i32,
    /// The chunk size documents are cut to with this deployment's embedder: `chunk_size`,
    /// capped to what the embedder reads at once (254 word pieces for the local model).
    pub chunk_size_in_use: i32,
    /// `chunk_overlap`, shrunk in proportion when the size is capped.
    pub chunk_overlap_in_use: i32,
    /// The full-text search configuration of the avatar's documents and questions: one of
    /// PostgreSQL's (`english` by default; `simple` for mixed languages: no stemming).
    pub language: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AvatarView {
    #[schema(value_type = uuid::Uuid)]
    pub id: AvatarId,
    #[schema(value_type = uuid::Uuid)]
    pub project_id: ProjectId,
    pub name: String,
    /// The avatar's short name, unique in its project: what OpenAI clients give as `model`
    /// (its id works too). Taken from the name unless chosen.
    pub slug: String,
    pub description: Option<String>,
    pub system_prompt: String,
    pub greeting: Option<String>,
    pub llm: LlmSettings,
    pub rag: RagSettings,
    pub status: AvatarStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Partial LLM settings (create fills the rest from defaults; update leaves them).
#[derive(Debug, Clone, Default)]
pub struct LlmInput {
    pub model: Option<String>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<i32>,
}

#[derive(Debug, Clone, Default)]
pub struct RagInput {
    pub top_k: Option<i32>,
    pub similarity_threshold: Option<f32>,
    pub chunk_size: Option<i32>,
    pub chunk_overlap: Option<i32>,
    pub language: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewAvatar {
    pub name: String,
    /// None: taken from the name (with `-2`, `-3`, ... when another avatar has it).
    pub slug: Option<String>,
    pub description: Option<String>,
    pub system_prompt: String,
    pub greeting: Option<String>,
    pub llm: LlmInput,
    pub rag: RagInput,
}

#[derive(Debug, Clone, Default)]
pub struct AvatarPatch {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub description: Option<Option<String>>,
    pub system_prompt: Option<String>,
    pub greeting: Option<Option<String>>,
    pub llm: LlmInput,
    pub rag: RagInput,
    pub status: Option<AvatarStatus>,
}

pub struct AvatarsService {
    db: Db,
    bus: EventBus<DomainEvent>,
    defaults: AvatarDefaults,
    /// The most tokens a chunk holds with the deployment's embedder.
    max_chunk: Option<usize>,
    clock: Arc<dyn Clock>,
    /// Each avatar takes a slot of the project's plan.
    billing: Arc<BillingService>,
    /// Live avatars as read, by (project, avatar), under the tag `avatar:<id>` (migration
    /// `m20261204_140000_avatars_cache_invalidation`): every authenticated read of an avatar,
    /// and the chat and documents modules' lookups, come from here until the row changes.
    cache: ExactCache<(ProjectId, AvatarId), AvatarView>,
    caches: ExactCaches,
}

/// Most avatars a process keeps read.
const AVATARS_CACHED: usize = 20_000;

/// `model` as shown, its chunking as used with an embedder reading at most `max_chunk` tokens.
fn view(model: &avatar::Model, max_chunk: Option<usize>) -> AvatarView {
    let (size, overlap) = fit_chunk(
        usize::try_from(model.rag_chunk_size).unwrap_or(0),
        usize::try_from(model.rag_chunk_overlap).unwrap_or(0),
        max_chunk,
    );
    AvatarView {
        id: model.id,
        project_id: model.project_id,
        name: model.name.clone(),
        slug: model.slug.clone(),
        description: model.description.clone(),
        system_prompt: model.system_prompt.clone(),
        greeting: model.greeting.clone(),
        llm: LlmSettings {
            model: model.llm_model.clone(),
            temperature: model.llm_temperature,
            max_tokens: model.llm_max_tokens,
        },
        rag: RagSettings {
            top_k: model.rag_top_k,
            similarity_threshold: model.rag_similarity_threshold,
            chunk_size: model.rag_chunk_size,
            chunk_overlap: model.rag_chunk_overlap,
            chunk_size_in_use: i32::try_from(size).unwrap_or(i32::MAX),
            chunk_overlap_in_use: i32::try_from(overlap).unwrap_or(i32::MAX),
            language: model.rag_language.clone(),
        },
        status: model.status,
        created_at: model.created_at,
        updated_at: model.updated_at,
    }
}

/// The rule no field-level check can state: chunks overlap by at most half their size (more
/// would store most of the text several times over and multiply the chunks of a document).
fn check_overlap(chunk_size: i32, chunk_overlap: i32) -> Result<(), AvatarsError> {
    if chunk_overlap.saturating_mul(2) > chunk_size {
        return Err(AvatarsError::invalid(
            "rag.chunk_overlap",
            format!(
                "must be at most half of rag.chunk_size ({}), here {}",
                chunk_size,
                chunk_size / 2
            ),
        ));
    }
    Ok(())
}

/// The full-text configuration of a new avatar.
const DEFAULT_LANGUAGE: &str = "english";

/// `language` must name one of the database's text search configurations.
async fn check_language<C: ConnectionTrait>(conn: &C, language: &str) -> Result<(), AvatarsError> {
    let rows = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT cfgname::text AS name FROM pg_catalog.pg_ts_config ORDER BY cfgname",
        ))
        .await?;
    let names = rows
        .iter()
        .map(|row| row.try_get::<String>("", "name"))
        .collect::<Result<Vec<_>, _>>()?;
    if names.iter().any(|name| name == language) {
        return Ok(());
    }
    Err(AvatarsError::invalid(
        "rag.language",
        format!(
            "`{language}` is not a text search configuration of this database; one of: {}",
            names.join(", ")
        ),
    ))
}

impl AvatarsService {
    pub fn new(
        db: Db,
        bus: EventBus<DomainEvent>,
        defaults: AvatarDefaults,
        max_chunk: Option<usize>,
        clock: Arc<dyn Clock>,
        billing: Arc<BillingService>,
        caches: &ExactCaches,
    ) -> Self {
        AvatarsService {
            db,
            bus,
            defaults,
            max_chunk,
            clock,
            billing,
            cache: caches.cache(AVATARS_CACHED),
            caches: caches.clone(),
        }
    }

    pub async fn create(
        &self,
        project_id: ProjectId,
        input: NewAvatar,
        actor: Actor,
    ) -> Result<AvatarView, AvatarsError> {
        let chunk_size = input
            .rag
            .chunk_size
            .unwrap_or(self.defaults.default_chunk_size);
        let chunk_overlap = input
            .rag
            .chunk_overlap
            .unwrap_or_else(|| self.defaults.default_chunk_overlap.min(chunk_size / 4));
        check_overlap(chunk_size, chunk_overlap)?;
        if let Some(language) = &input.rag.language {
            check_language(self.db.connection(), language).await?;
        }
        if let Some(slug) = &input.slug {
            slugs::check(slug)?;
        }
        let timestamp = self.clock.now();
        let mut uow = self.db.begin().await?;
        // Holds the project's avatar creations in line until the commit: the slug chosen
        // below stays free.
        self.billing
            .take_slot_in(&uow, project_id, Slot::Avatar)
            .await
            .map_err(Failure::from)?;
        let slug = match input.slug {
            Some(slug) if slugs::taken(&*uow, project_id, &slug, None).await? => {
                return Err(AvatarsError::SlugTaken(slug));
            }
            Some(slug) => slug,
            None => slugs::first_free(&*uow, project_id, &slugs::from_name(&input.name)).await?,
        };
        let created = avatar::ActiveModel {
            id: Set(AvatarId::new()),
            project_id: Set(project_id),
            name: Set(input.name.trim().to_owned()),
            slug: Set(slug.clone()),
            description: Set(input.description),
            system_prompt: Set(input.system_prompt),
            greeting: Set(input.greeting),
            llm_model: Set(input
                .llm
                .model
                .unwrap_or_else(|| self.defaults.default_model.clone())),
            llm_temperature: Set(input
                .llm
                .temperature
                .unwrap_or(self.defaults.default_temperature)),
            llm_max_tokens: Set(input
                .llm
                .max_tokens
                .unwrap_or(self.defaults.default_max_tokens)),
            rag_top_k: Set(input.rag.top_k.unwrap_or(self.defaults.default_top_k)),
            rag_similarity_threshold: Set(input
                .rag
                .similarity_threshold
                .unwrap_or(self.defaults.default_similarity_threshold)),
            rag_chunk_size: Set(chunk_size),
            rag_chunk_overlap: Set(chunk_overlap),
            rag_language: Set(input
                .rag
                .language
                .unwrap_or_else(|| DEFAULT_LANGUAGE.to_owned())),
            status: Set(AvatarStatus::Active),
            created_at: Set(timestamp),
            updated_at: Set(timestamp),
            deleted_at: Set(None),
        }
        .insert(&*uow)
        .await
        .map_err(|error| slug_conflict(error, &slug))?;
        self.bus
            .publish(
                &mut uow,
                &DomainEvent::Avatars(AvatarsEvent::AvatarCreated {
                    project_id,
                    avatar_id: created.id,
                    name: created.name.clone(),
                    actor,
                }),
            )
            .await?;
        uow.commit().await?;
        Ok(view(&created, self.max_chunk))
    }

    pub async fn list(
        &self,
        project_id: ProjectId,
        page: &PageParams,
    ) -> Result<Page<AvatarView>, AvatarsError> {
        let select = avatar::Entity::find_live().filter(avatar::Column::ProjectId.eq(project_id));
        let (rows, total) = fetch_page(
            self.db.connection(),
            select.order_by_asc(avatar::Column::CreatedAt),
            page,
        )
        .await?;
        Ok(Page::new(
            rows.iter().map(|row| view(row, self.max_chunk)).collect(),
            total,
            page,
        ))
    }

    async fn find(
        &self,
        project_id: ProjectId,
        avatar_id: AvatarId,
    ) -> Result<avatar::Model, AvatarsError> {
        avatar::Entity::find_live()
            .filter(avatar::Column::Id.eq(avatar_id))
            .filter(avatar::Column::ProjectId.eq(project_id))
            .one(self.db.connection())
            .await?
            .ok_or(AvatarsError::NotFound)
    }

    /// A live avatar of `project_id` (other modules: documents, chat): from the exact cache,
    /// or one statement.
    pub async fn get(
        &self,
        project_id: ProjectId,
        avatar_id: AvatarId,
    ) -> Result<AvatarView, AvatarsError> {
        let key = (project_id, avatar_id);
        if let Some(cached) = self.cache.get(&key) {
            return Ok(cached);
        }
        let ticket = self.cache.ticket();
        let found = view(&self.find(project_id, avatar_id).await?, self.max_chunk);
        self.cache
            .insert(ticket, key, found.clone(), vec![avatar_tag(avatar_id)]);
        Ok(found)
    }

    /// A live avatar of the project named by its id or by its slug (what OpenAI clients give
    /// as `model`); an id of another project's avatar is not found.
    pub async fn find_by_reference(
        &self,
        project_id: ProjectId,
        reference: &str,
    ) -> Result<AvatarView, AvatarsError> {
        if let Ok(id) = uuid::Uuid::parse_str(reference) {
            return self.get(project_id, AvatarId::from_uuid(id)).await;
        }
        let found = avatar::Entity::find_live()
            .filter(avatar::Column::ProjectId.eq(project_id))
            .filter(avatar::Column::Slug.eq(reference))
            .one(self.db.connection())
            .await?
            .ok_or(AvatarsError::NotFound)?;
        Ok(view(&found, self.max_chunk))
    }

    /// The project's live avatars that answer (status `active`), oldest first.
    pub async fn active(&self, project_id: ProjectId) -> Result<Vec<AvatarView>, AvatarsError> {
        Ok(avatar::Entity::find_live()
            .filter(avatar::Column::ProjectId.eq(project_id))
            .filter(avatar::Column::Status.eq(AvatarStatus::Active))
            .order_by_asc(avatar::Column::CreatedAt)
            .all(self.db.connection())
            .await?
            .iter()
            .map(|row| view(row, self.max_chunk))
            .collect())
    }

    pub async fn update(
        &self,
        project_id: ProjectId,
        avatar_id: AvatarId,
        patch: AvatarPatch,
        actor: Actor,
    ) -> Result<AvatarView, AvatarsError> {
        let mut uow = self.db.begin().await?;
        let existing = avatar::Entity::find_live()
            .filter(avatar::Column::Id.eq(avatar_id))
            .filter(avatar::Column::ProjectId.eq(project_id))
            .lock_exclusive()
            .one(&*uow)
            .await?
            .ok_or(AvatarsError::NotFound)?;
        let chunk_size = patch.rag.chunk_size.unwrap_or(existing.rag_chunk_size);
        let chunk_overlap = patch
            .rag
            .chunk_overlap
            .unwrap_or(existing.rag_chunk_overlap);
        check_overlap(chunk_size, chunk_overlap)?;
        if let Some(language) = &patch.rag.language {
            check_language(&*uow, language).await?;
        }
        if let Some(slug) = &patch.slug {
            slugs::check(slug)?;
            if slugs::taken(&*uow, project_id, slug, Some(avatar_id)).await? {
                return Err(AvatarsError::SlugTaken(slug.clone()));
            }
        }
        let chosen_slug = patch.slug.clone().unwrap_or_default();

        let mut fields = Vec::new();
        let existing_language = existing.rag_language.clone();
        let mut active = existing.into_active_model();
        macro_rules! apply {
            ($value:expr, $column:ident, $name:literal) => {
                if let Some(value) = $value {
                    active.$column = Set(value);
                    fields.push($name.to_owned());
                }
            };
        }
        apply!(patch.name.map(|name| name.trim().to_owned()), name, "name");
        apply!(patch.slug, slug, "slug");
        apply!(patch.description, description, "description");
        apply!(patch.system_prompt, system_prompt, "system_prompt");
        apply!(patch.greeting, greeting, "greeting");
        apply!(patch.llm.model, llm_model, "llm.model");
        apply!(patch.llm.temperature, llm_temperature, "llm.temperature");
        apply!(patch.llm.max_tokens, llm_max_tokens, "llm.max_tokens");
        apply!(patch.rag.top_k, rag_top_k, "rag.top_k");
        apply!(
            patch.rag.similarity_threshold,
            rag_similarity_threshold,
            "rag.similarity_threshold"
        );
        apply!(patch.rag.chunk_size, rag_chunk_size, "rag.chunk_size");
        apply!(
            patch.rag.chunk_overlap,
            rag_chunk_overlap,
            "rag.chunk_overlap"
        );
        apply!(
            patch
                .rag
                .language
                .filter(|language| *language != existing_language),
            rag_language,
            "rag.language"
        );
        apply!(patch.status, status, "status");
        active.updated_at = Set(self.clock.now());
        let updated = active
            .update(&*uow)
            .await
            .map_err(|error| slug_conflict(error, &chosen_slug))?;
        if !fields.is_empty() {
            self.bus
                .publish(
                    &mut uow,
                    &DomainEvent::Avatars(AvatarsEvent::AvatarUpdated {
                        project_id,
                        avatar_id,
                        fields,
                        actor,
                    }),
                )
                .await?;
        }
        uow.commit().await?;
        self.caches.settle().await;
        Ok(view(&updated, self.max_chunk))
    }

    /// Soft delete; `AvatarDeleted` tells the documents module to remove its documents.
    pub async fn delete(
        &self,
        project_id: ProjectId,
        avatar_id: AvatarId,
        actor: Actor,
    ) -> Result<(), AvatarsError> {
        let mut uow = self.db.begin().await?;
        let deleted = soft_delete::<avatar::Entity, _>(
            &*uow,
            self.clock.now(),
            Condition::all()
                .add(avatar::Column::Id.eq(avatar_id))
                .add(avatar::Column::ProjectId.eq(project_id)),
        )
        .await?;
        if deleted == 0 {
            return Err(AvatarsError::NotFound);
        }
        self.billing
            .free_slot_in(&uow, project_id, Slot::Avatar)
            .await
            .map_err(Failure::from)?;
        self.bus
            .publish(
                &mut uow,
                &DomainEvent::Avatars(AvatarsEvent::AvatarDeleted {
                    project_id,
                    avatar_id,
                    actor,
                }),
            )
            .await?;
        uow.commit().await?;
        self.caches.settle().await;
        Ok(())
    }
}

/// A slug another avatar took meanwhile (the unique index) is a 409 like one taken before.
fn slug_conflict(error: DbErr, slug: &str) -> AvatarsError {
    if is_unique_violation(&error) {
        AvatarsError::SlugTaken(slug.to_owned())
    } else {
        AvatarsError::from(error)
    }
}

/// The tag an avatar's cached reads carry; its table's trigger notifies it.
fn avatar_tag(avatar_id: AvatarId) -> String {
    format!("avatar:{avatar_id}")
}

/// Figures for analytics.
impl AvatarsService {
    /// Live avatars on the platform.
    pub async fn count_live(&self) -> Result<u64, AvatarsError> {
        Ok(avatar::Entity::find_live()
            .count(self.db.connection())
            .await?)
    }

    /// The names of `project_id`'s live avatars, oldest first.
    pub async fn names(
        &self,
        project_id: ProjectId,
    ) -> Result<Vec<(AvatarId, String)>, AvatarsError> {
        Ok(avatar::Entity::find_live()
            .filter(avatar::Column::ProjectId.eq(project_id))
            .order_by_asc(avatar::Column::CreatedAt)
            .all(self.db.connection())
            .await?
            .into_iter()
            .map(|row| (row.id, row.name))
            .collect())
    }
}
