//! Which embedder documents and questions go through: the built-in local (lexical) one, or an
//! OpenAI-compatible endpoint whose URL, key and model come from the platform config when the
//! saas_admin set them, else from `[embeddings]` in Settings.

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;

use crate::core::config::{EmbeddingProvider, EmbeddingSettings};
use crate::core::embeddings::{Embedder, LocalEmbedder, OpenAiEmbedder, OpenAiEmbedderConfig};
use crate::modules::platform_config::PlatformConfigService;

#[derive(Clone)]
pub struct EmbedderSource {
    settings: EmbeddingSettings,
    platform: Arc<PlatformConfigService>,
    local: Arc<dyn Embedder>,
}

impl EmbedderSource {
    pub fn new(
        settings: EmbeddingSettings,
        platform: Arc<PlatformConfigService>,
    ) -> Result<Self, String> {
        let local = LocalEmbedder::new(settings.dimension).map_err(|error| error.to_string())?;
        Ok(EmbedderSource {
            settings,
            platform,
            local: Arc::new(local),
        })
    }

    pub fn dimension(&self) -> usize {
        self.settings.dimension
    }

    /// The embedder in force now (platform config changes apply without a restart).
    pub async fn current(&self) -> Result<Arc<dyn Embedder>, String> {
        match self.settings.provider {
            EmbeddingProvider::Local => Ok(self.local.clone()),
            EmbeddingProvider::Openai => {
                let platform = self
                    .platform
                    .get()
                    .await
                    .map_err(|error| error.to_string())?;
                let base_url = platform
                    .embedding_base_url
                    .clone()
                    .filter(|url| !url.is_empty())
                    .unwrap_or_else(|| self.settings.base_url.clone());
                if base_url.is_empty() {
                    return Err("no embedding endpoint configured (platform config embedding_base_url or embeddings.base_url)".into());
                }
                let model = platform
                    .embedding_model
                    .clone()
                    .unwrap_or_else(|| self.settings.model.clone());
                let mut config =
                    OpenAiEmbedderConfig::new(base_url, model, self.settings.dimension);
                config.api_key = platform.embedding_api_key.clone().or_else(|| {
                    let key = self.settings.api_key.expose_secret();
                    (!key.is_empty()).then(|| self.settings.api_key.clone())
                });
                config.batch_size = self.settings.batch_size;
                config.max_retries = self.settings.max_retries;
                config.timeout = Duration::from_secs(self.settings.timeout_secs);
                Ok(Arc::new(
                    OpenAiEmbedder::new(config).map_err(|error| error.to_string())?,
                ))
            }
        }
    }
}
