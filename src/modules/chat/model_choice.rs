//! Which model answers: an OpenAI-compatible endpoint when one is configured for the project
//! (secret `LLM_BASE_URL`), the platform (`llm_base_url`) or the deployment (`chat.llm_base_url`);
//! else the retrieval-only answer.
//!
//! Where requests go and which key goes with them follow two shared rules (`core::outbound`):
//! - a project's endpoint is a tenant URL: it may reach only public addresses, unless the
//!   operator allow-listed the host (`outbound.allowed_hosts`, the platform config's
//!   `outbound_allowed_hosts`); the platform's and the deployment's are trusted;
//! - a key goes only to the endpoint it was entered for: the project's `LLM_API_KEY` is bound to
//!   the project's `LLM_BASE_URL` as it was when the key was entered (or to the platform's
//!   endpoint when none was set), the platform's key to the platform's URL, the deployment's to
//!   the deployment's. Repointing the endpoint does not take the key along.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::core::config::ChatSettings;
use crate::core::error::Failure;
use crate::core::ids::ProjectId;
use crate::core::llm::LLM_SECRETS;
use crate::core::llm::{ChatModel, OpenAiChat, OpenAiChatConfig};
use crate::core::outbound::{BaseUrl, OutboundClients, OutboundError, Trust};
use crate::modules::platform_config::PlatformConfigService;
use crate::modules::projects::BoundCredential;
use crate::modules::projects::ProjectsService;

use super::domain::errors::ChatError;

/// First backoff delay between attempts before the first token.
const RETRY_BASE: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct ModelSource {
    settings: ChatSettings,
    platform: Arc<PlatformConfigService>,
    projects: Arc<ProjectsService>,
    outbound: Arc<OutboundClients>,
}

fn non_empty(secret: Option<SecretString>) -> Option<SecretString> {
    secret.filter(|value| !value.expose_secret().trim().is_empty())
}

/// The LLM chosen for an answer, and who pays for it.
pub struct ChosenModel {
    pub model: Arc<dyn ChatModel>,
    /// Through the project's own key or endpoint (its secrets), not the platform's.
    pub own_key: bool,
}

/// The endpoint an answer goes to, who chose it, and the key to send there.
struct Route {
    base_url: BaseUrl,
    trust: Trust,
    api_key: Option<SecretString>,
}

impl ModelSource {
    pub fn new(
        settings: ChatSettings,
        platform: Arc<PlatformConfigService>,
        projects: Arc<ProjectsService>,
        outbound: Arc<OutboundClients>,
    ) -> Self {
        ModelSource {
            settings,
            platform,
            projects,
            outbound,
        }
    }

    /// The LLM for an avatar of `project_id` using `model`, or `None`: answer retrieval-only.
    pub async fn for_project(
        &self,
        project_id: ProjectId,
        model: &str,
    ) -> Result<Option<ChosenModel>, ChatError> {
        let platform = self.platform.get().await.map_err(Failure::from)?;
        let secrets = self
            .projects
            .endpoint_secrets(project_id, LLM_SECRETS)
            .await
            .map_err(Failure::from)?;
        let project_key = match secrets.credential {
            BoundCredential::Usable(key) => non_empty(Some(key)),
            BoundCredential::Unset => None,
            BoundCredential::EnteredForAnotherEndpoint => {
                tracing::warn!(
                    %project_id,
                    "the project's LLM_API_KEY was entered for another endpoint; not sent"
                );
                None
            }
        };
        let own_key = project_key.is_some() || secrets.endpoint.is_some();
        let route = match secrets.endpoint {
            Some(url) => Route {
                base_url: BaseUrl::parse(&url).map_err(|error| {
                    ChatError::Upstream(format!("the project's LLM_BASE_URL {error}"))
                })?,
                trust: Trust::Tenant,
                api_key: project_key,
            },
            None => match platform
                .llm_base_url
                .as_deref()
                .map(str::trim)
                .filter(|url| !url.is_empty())
            {
                Some(url) => Route {
                    base_url: BaseUrl::parse(url).map_err(|error| {
                        ChatError::internal(format!("platform llm_base_url {error}"))
                    })?,
                    trust: Trust::Operator,
                    api_key: project_key.or_else(|| non_empty(platform.llm_api_key.clone())),
                },
                None => {
                    let url = self.settings.llm_base_url.trim();
                    if url.is_empty() {
                        return Ok(None);
                    }
                    Route {
                        base_url: BaseUrl::parse(url).map_err(|error| {
                            ChatError::internal(format!("chat.llm_base_url {error}"))
                        })?,
                        trust: Trust::Operator,
                        api_key: project_key
                            .or_else(|| non_empty(Some(self.settings.llm_api_key.clone()))),
                    }
                }
            },
        };
        let client = self
            .outbound
            .client_for(
                &route.base_url,
                route.trust,
                &platform.outbound_allowed_hosts,
            )
            .map_err(|error| match error {
                OutboundError::Refused(refused) => {
                    ChatError::Upstream(format!("the LLM endpoint {refused}"))
                }
                other => ChatError::internal(other),
            })?;
        let config = OpenAiChatConfig {
            base_url: route.base_url,
            api_key: route.api_key,
            timeout: Duration::from_secs(self.settings.timeout_secs),
            idle_timeout: Duration::from_secs(self.settings.idle_timeout_secs),
            max_retries: self.settings.max_retries,
            retry_base: RETRY_BASE,
        };
        Ok(Some(ChosenModel {
            model: Arc::new(OpenAiChat::new(config, model, client)),
            own_key,
        }))
    }
}
