//! Which model answers: an OpenAI-compatible endpoint when one is configured for the project
//! (secret `LLM_BASE_URL`), the platform (`llm_base_url`) or the deployment (`chat.llm_base_url`);
//! else the retrieval-only answer. The key: the project's secret `LLM_API_KEY`, else the key
//! configured beside the endpoint in use — the platform's or deployment's key is never sent to
//! a project's own endpoint.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::core::config::ChatSettings;
use crate::core::llm::{ChatModel, OpenAiChat, OpenAiChatConfig};
use crate::modules::platform_config::PlatformConfigService;
use crate::modules::projects::ProjectsService;

use super::domain::errors::ChatError;

/// Project secrets that override the platform's endpoint and key.
pub const BASE_URL_SECRET: &str = "LLM_BASE_URL";
pub const API_KEY_SECRET: &str = "LLM_API_KEY";

/// First backoff delay between attempts before the first token.
const RETRY_BASE: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct ModelSource {
    settings: ChatSettings,
    platform: Arc<PlatformConfigService>,
    projects: Arc<ProjectsService>,
    /// One connection pool for every answer.
    client: reqwest::Client,
}

fn non_empty(secret: Option<SecretString>) -> Option<SecretString> {
    secret.filter(|value| !value.expose_secret().trim().is_empty())
}

impl ModelSource {
    pub fn new(
        settings: ChatSettings,
        platform: Arc<PlatformConfigService>,
        projects: Arc<ProjectsService>,
    ) -> Result<Self, ChatError> {
        let client = OpenAiChat::http_client(Duration::from_secs(settings.timeout_secs))
            .map_err(|error| ChatError::Internal(error.to_string()))?;
        Ok(ModelSource {
            settings,
            platform,
            projects,
            client,
        })
    }

    /// The LLM for an avatar of `project_id` using `model`, or `None`: answer retrieval-only.
    pub async fn for_project(
        &self,
        project_id: Uuid,
        model: &str,
    ) -> Result<Option<Arc<dyn ChatModel>>, ChatError> {
        let secret = |name: &'static str| async move {
            self.projects
                .secret_value(project_id, name)
                .await
                .map(non_empty)
                .map_err(|error| ChatError::Internal(error.to_string()))
        };
        let platform = self
            .platform
            .get()
            .await
            .map_err(|error| ChatError::Internal(error.to_string()))?;
        // A key goes only to the endpoint configured beside it: a project that points the
        // avatar at its own server gets its own key sent there, never the platform's.
        let project_key = secret(API_KEY_SECRET).await?;
        let (base_url, api_key) = match secret(BASE_URL_SECRET).await? {
            Some(url) => (url.expose_secret().trim().to_owned(), project_key),
            None => match platform
                .llm_base_url
                .clone()
                .filter(|url| !url.trim().is_empty())
            {
                Some(url) => (
                    url,
                    project_key.or_else(|| non_empty(platform.llm_api_key.clone())),
                ),
                None => (
                    self.settings.llm_base_url.trim().to_owned(),
                    project_key.or_else(|| non_empty(Some(self.settings.llm_api_key.clone()))),
                ),
            },
        };
        if base_url.is_empty() {
            return Ok(None);
        }
        let config = OpenAiChatConfig {
            base_url,
            api_key,
            timeout: Duration::from_secs(self.settings.timeout_secs),
            idle_timeout: Duration::from_secs(self.settings.idle_timeout_secs),
            max_retries: self.settings.max_retries,
            retry_base: RETRY_BASE,
        };
        let client = OpenAiChat::new(config, model, self.client.clone())
            .map_err(|error| ChatError::Upstream(error.to_string()))?;
        Ok(Some(Arc::new(client)))
    }
}
