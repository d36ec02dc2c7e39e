//! Domain modules. Each is a folder with its routes, service, entities, events and tasks;
//! they talk to each other only through events and public service methods.

pub mod auth;
pub mod avatars;
pub mod events;
pub mod platform_config;
pub mod projects;

use std::sync::Arc;

use actix_web::web;

use crate::app::AppContext;
use crate::core::auth::AuthProviders;
use crate::core::cache::RateLimiter;
use crate::core::crypto::SecretBox;

/// Every module's service, built once at start-up.
#[derive(Clone)]
pub struct Services {
    pub auth: Arc<auth::AuthService>,
    pub avatars: Arc<avatars::AvatarsService>,
    pub projects: Arc<projects::ProjectsService>,
    pub platform_config: Arc<platform_config::PlatformConfigService>,
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
        )?);
        let projects = Arc::new(projects::ProjectsService::new(
            context.db.clone(),
            context.bus.clone(),
            secret_box,
            auth.clone(),
        ));
        let avatars = Arc::new(avatars::AvatarsService::new(
            context.db.clone(),
            context.bus.clone(),
            settings.avatars.clone(),
        ));
        Ok(Services {
            auth,
            avatars,
            projects,
            platform_config,
        })
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
            .app_data(web::Data::from(self.projects.clone()))
            .app_data(web::Data::from(self.platform_config.clone()))
            .service(
                web::scope("/api/v1")
                    .configure(auth::api::v1::configure)
                    .configure(projects::api::v1::configure)
                    .configure(avatars::api::v1::configure)
                    .configure(platform_config::api::v1::configure),
            );
    }
}
