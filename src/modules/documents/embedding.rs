//! Which embedder documents and questions go through: the local model (all-MiniLM-L6-v2,
//! in-process), the lexical one (keywords), or an OpenAI-compatible endpoint whose URL, key and
//! model come from the platform config when the saas_admin set them, else from `[embeddings]`
//! in Settings.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::ExposeSecret;

use crate::core::config::{EmbeddingProvider, EmbeddingSettings};
use crate::core::embeddings::{
    Embedder, LexicalEmbedder, OpenAiEmbedder, OpenAiEmbedderConfig, SemanticEmbedder,
};
use crate::core::outbound::{AllowList, BaseUrl, OutboundClients, Trust};
use crate::modules::platform_config::PlatformConfigService;

#[derive(Clone)]
pub struct EmbedderSource {
    settings: EmbeddingSettings,
    platform: Arc<PlatformConfigService>,
    outbound: Arc<OutboundClients>,
    /// The local or lexical embedder, built at start (a local model that cannot load stops it).
    local: Option<Arc<dyn Embedder>>,
    /// The OpenAI-compatible client last built, with what it was built from: reused while the
    /// configuration stays the same (a new client loads the TLS roots again, per question).
    remote: Arc<Mutex<Option<BuiltRemote>>>,
}

/// An OpenAI-compatible embedder and what it was built from.
type BuiltRemote = (RemoteKey, Arc<dyn Embedder>);

/// What an OpenAI-compatible embedder is built from.
#[derive(PartialEq, Eq)]
struct RemoteKey {
    base_url: String,
    model: String,
    api_key: Option<String>,
}

impl EmbedderSource {
    pub fn new(
        settings: EmbeddingSettings,
        platform: Arc<PlatformConfigService>,
        outbound: Arc<OutboundClients>,
    ) -> Result<Self, String> {
        let local: Option<Arc<dyn Embedder>> = match settings.provider {
            EmbeddingProvider::Local => Some(Arc::new(
                SemanticEmbedder::load(&settings.local_model_dir, settings.local_threads())
                    .map_err(|error| error.message().to_owned())?,
            )),
            EmbeddingProvider::Lexical => Some(Arc::new(
                LexicalEmbedder::new(settings.dimension).map_err(|error| error.to_string())?,
            )),
            EmbeddingProvider::Openai => None,
        };
        Ok(EmbedderSource {
            settings,
            platform,
            outbound,
            local,
            remote: Arc::new(Mutex::new(None)),
        })
    }

    pub fn dimension(&self) -> usize {
        self.settings.dimension
    }

    /// The model of the built-in embedder in force (local or lexical); `None` for an endpoint.
    pub fn built_in_model(&self) -> Option<String> {
        self.local.as_ref().map(|local| local.model_id())
    }

    /// The embedder in force now (platform config changes apply without a restart).
    pub async fn current(&self) -> Result<Arc<dyn Embedder>, String> {
        if let Some(local) = &self.local {
            return Ok(local.clone());
        }
        let platform = self
            .platform
            .get()
            .await
            .map_err(|error| error.to_string())?;
        // A key goes only with the endpoint it was configured beside: the platform's
        // key to the platform's URL, the deployment's to the deployment's.
        let (base_url, api_key) = match platform
            .embedding_base_url
            .clone()
            .filter(|url| !url.trim().is_empty())
        {
            Some(url) => (url, platform.embedding_api_key.clone()),
            None => {
                let key = self.settings.api_key.expose_secret();
                (
                    self.settings.base_url.clone(),
                    (!key.is_empty()).then(|| self.settings.api_key.clone()),
                )
            }
        };
        if base_url.trim().is_empty() {
            return Err("no embedding endpoint configured (platform config embedding_base_url or embeddings.base_url)".into());
        }
        let model = platform
            .embedding_model
            .clone()
            .unwrap_or_else(|| self.settings.model.clone());
        let key = RemoteKey {
            base_url: base_url.clone(),
            model: model.clone(),
            api_key: api_key.as_ref().map(|key| key.expose_secret().to_owned()),
        };
        let mut remote = self
            .remote
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some((built_from, embedder)) = remote.as_ref()
            && *built_from == key
        {
            return Ok(embedder.clone());
        }
        let mut config = OpenAiEmbedderConfig::new(base_url, model, self.settings.dimension);
        config.api_key = api_key;
        config.batch_size = self.settings.batch_size;
        config.max_retries = self.settings.max_retries;
        config.timeout = Duration::from_secs(self.settings.timeout_secs);
        // Only the deployment and the saas_admin choose this endpoint: operator trust.
        let root = BaseUrl::parse(&config.base_url)
            .map_err(|error| format!("the embedding base URL {error}"))?;
        let client = self
            .outbound
            .client_for(&root, Trust::Operator, &AllowList::default())
            .map_err(|error| error.to_string())?;
        let embedder: Arc<dyn Embedder> = Arc::new(
            OpenAiEmbedder::with_client(config, client).map_err(|error| error.to_string())?,
        );
        *remote = Some((key, embedder.clone()));
        Ok(embedder)
    }
}
