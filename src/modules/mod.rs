//! Domain modules. Each is a folder with its routes, service, entities, events and tasks;
//! they talk to each other only through events and public service methods.

pub mod auth;
pub mod avatars;
pub mod chat;
pub mod documents;
pub mod end_users;
pub mod events;
mod openapi;
pub mod platform_config;
pub mod projects;

pub use openapi::document as openapi_document;

use std::sync::Arc;

use actix_web::web;

use crate::app::AppContext;
use crate::core::auth::AuthProviders;
use crate::core::cache::RateLimiter;
use crate::core::config::Settings;
use crate::core::crypto::SecretBox;
use crate::core::jobs::JobContext;
use fang::AsyncRunnable;

/// Every module's service, built once at start-up.
#[derive(Clone)]
pub struct Services {
    pub auth: Arc<auth::AuthService>,
    pub avatars: Arc<avatars::AvatarsService>,
    pub documents: Arc<documents::DocumentsService>,
    pub end_users: Arc<end_users::EndUsersService>,
    pub chat: Arc<chat::ChatService>,
    pub projects: Arc<projects::ProjectsService>,
    pub platform_config: Arc<platform_config::PlatformConfigService>,
    /// Shared by the routes that limit request rates (the public chat API).
    pub limiter: Arc<RateLimiter>,
}

impl Services {
    /// Builds the services and registers their event subscribers on the bus.
    pub fn build(context: &AppContext) -> anyhow::Result<Services> {
        let settings = &context.settings;
        let secret_box = SecretBox::new(
            &settings.secrets.encryption_key,
            &settings.secrets.previous_encryption_keys,
        )?;
        let platform_config = Arc::new(platform_config::PlatformConfigService::new(
            context.db.clone(),
            context.bus.clone(),
            secret_box.clone(),
            std::time::Duration::from_secs(settings.auth.platform_config_cache_secs),
        ));
        context
            .bus
            .subscribe(Arc::new(platform_config::CacheInvalidation(
                platform_config.clone(),
            )));
        let auth = Arc::new(auth::AuthService::new(
            context.db.clone(),
            context.bus.clone(),
            settings.auth.clone(),
            &settings.secrets.jwt_secret,
            RateLimiter::new(context.cache.clone()),
            platform_config.clone(),
            secret_box.clone(),
        )?);
        let projects = Arc::new(projects::ProjectsService::new(
            context.db.clone(),
            context.bus.clone(),
            secret_box,
            auth.clone(),
            RateLimiter::new(context.cache.clone()),
            projects::service::ProjectsConfig {
                settings: settings.projects.clone(),
                api_key_last_used_resolution_secs: settings.auth.api_key_last_used_resolution_secs,
                bindings: vec![chat::models::LLM_SECRETS],
            },
        ));
        let avatars = Arc::new(avatars::AvatarsService::new(
            context.db.clone(),
            context.bus.clone(),
            settings.avatars.clone(),
        ));
        let embedders = documents::embedding::EmbedderSource::new(
            settings.embeddings.clone(),
            platform_config.clone(),
            context.outbound.clone(),
        )
        .map_err(|error| anyhow::anyhow!("embeddings: {error}"))?;
        let documents = Arc::new(documents::DocumentsService::new(
            context.db.clone(),
            context.bus.clone(),
            context.blobs.clone(),
            avatars.clone(),
            embedders,
            documents::service::DocumentsConfig {
                settings: settings.documents.clone(),
                retrieval: settings.retrieval.clone(),
                upload_dir: settings.data_dir.join("tmp").join("uploads"),
                sandbox: documents::Sandbox::new(&settings.documents)
                    .map_err(|error| anyhow::anyhow!("documents: {error}"))?,
            },
        ));
        context
            .bus
            .subscribe(Arc::new(documents::handlers::DeleteAvatarDocuments(
                documents.clone(),
            )));
        let end_users = Arc::new(end_users::EndUsersService::new(
            context.db.clone(),
            context.bus.clone(),
        ));
        let chat = Arc::new(chat::ChatService::new(
            context.db.clone(),
            context.bus.clone(),
            avatars.clone(),
            documents.clone(),
            end_users.clone(),
            chat::models::ModelSource::new(
                settings.chat.clone(),
                platform_config.clone(),
                projects.clone(),
                context.outbound.clone(),
            ),
            settings.chat.clone(),
        ));
        context
            .bus
            .subscribe(Arc::new(chat::handlers::EraseEndUserConversations(
                chat.clone(),
            )));
        context
            .bus
            .subscribe(Arc::new(chat::handlers::RemoveAvatarConversations(
                chat.clone(),
            )));
        Ok(Services {
            auth,
            avatars,
            documents,
            end_users,
            chat,
            projects,
            platform_config,
            limiter: Arc::new(RateLimiter::new(context.cache.clone())),
        })
    }

    /// What the job workers hand to tasks, besides the core pieces.
    pub fn job_context(&self, base: JobContext) -> JobContext {
        // An index build stops itself (statement_timeout) before its job would time out.
        let index_build = self.documents.retrieval_settings().index_build_timeout()
            + std::time::Duration::from_secs(60);
        base.with(self.documents.clone())
            .with_timeout(documents::tasks::BuildVectorIndex::NAME, index_build)
            .with_timeout(
                documents::tasks::ProcessDocument::NAME,
                self.documents.settings().job_timeout(),
            )
    }

    /// The modules' periodic tasks, scheduled at start-up.
    pub fn cron_tasks(&self, settings: &Settings) -> Vec<Box<dyn AsyncRunnable>> {
        vec![Box::new(documents::tasks::RecoverDocuments {
            cron: settings.documents.recovery_cron.clone(),
        })]
    }

    /// The lookups behind `core::auth`'s extractors.
    pub fn auth_providers(&self, trust_forwarded_for: bool) -> AuthProviders {
        AuthProviders {
            tokens: self.auth.clone(),
            projects: self.projects.clone(),
            api_keys: self.projects.clone(),
            trust_forwarded_for,
        }
    }

    /// Registers each module's service and `/api/v1` routes.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(web::Data::from(self.auth.clone()))
            .app_data(web::Data::from(self.avatars.clone()))
            .app_data(web::Data::from(self.documents.clone()))
            .app_data(web::Data::from(self.end_users.clone()))
            .app_data(web::Data::from(self.chat.clone()))
            .app_data(web::Data::from(self.limiter.clone()))
            .app_data(web::Data::from(self.projects.clone()))
            .app_data(web::Data::from(self.platform_config.clone()))
            .service(
                web::scope("/api/v1")
                    .configure(auth::api::v1::configure)
                    .configure(projects::api::v1::configure)
                    .configure(avatars::api::v1::configure)
                    .configure(documents::api::v1::configure)
                    .configure(end_users::api::v1::configure)
                    .configure(chat::api::v1::configure)
                    .configure(platform_config::api::v1::configure),
            );
    }
}
