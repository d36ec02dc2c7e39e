//! Typed settings: `config/default.toml`, then `config/<APP_ENV>.toml`, then the environment.
//!
//! Environment variables: `APP__SECTION__KEY` for any key of `default.toml`, plus the common
//! `DATABASE_URL`, `REDIS_URL`, `APP_ENV` (development | test | production) and `DATA_DIR`.
//! A setting that is missing or invalid stops start-up with one line naming the key.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::core::cache::CacheSettings;
use crate::core::outbound::OutboundSettings;
use crate::core::storage::StorageSettings;

mod sections;

pub use sections::*;

/// The environment the process runs in; chooses `config/<env>.toml` and secret handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Test,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Test => "test",
            Environment::Production => "production",
        }
    }
}

impl std::str::FromStr for Environment {
    type Err = ConfigError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Environment::Development),
            "test" => Ok(Environment::Test),
            "production" | "prod" => Ok(Environment::Production),
            other => Err(ConfigError::Invalid {
                key: "APP_ENV".into(),
                reason: format!("`{other}` is not one of development, test, production"),
            }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("setting `{key}` is required: {reason}")]
    Missing { key: String, reason: String },
    #[error("setting `{key}` is invalid: {reason}")]
    Invalid { key: String, reason: String },
    #[error("configuration error: {0}")]
    Load(String),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    #[serde(skip_deserializing, default = "default_environment")]
    pub environment: Environment,
    #[serde(skip_deserializing)]
    pub data_dir: PathBuf,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub jobs: JobSettings,
    pub events: EventSettings,
    pub cache: CacheSettings,
    pub storage: StorageSettings,
    pub outbound: OutboundSettings,
    pub telemetry: TelemetrySettings,
    pub auth: AuthSettings,
    pub projects: ProjectSettings,
    pub avatars: AvatarDefaults,
    pub documents: DocumentSettings,
    pub embeddings: EmbeddingSettings,
    pub retrieval: RetrievalSettings,
    pub chat: ChatSettings,
    pub billing: BillingSettings,
    pub analytics: AnalyticsSettings,
    pub telegram: TelegramSettings,
    pub notifications: NotificationSettings,
    pub secrets: SecretSettings,
}

fn default_environment() -> Environment {
    Environment::Development
}

/// Settings given as comma-separated lists in the environment.
const LIST_KEYS: &[&str] = &[
    "server.cors_allowed_origins",
    "secrets.previous_encryption_keys",
    "outbound.allowed_hosts",
];

/// Minimum length of the JWT signing secret.
const MIN_JWT_SECRET_LEN: usize = 32;
/// The secrets-encryption key is 32 bytes, hex-encoded.
const ENCRYPTION_KEY_HEX_LEN: usize = 64;

impl Settings {
    /// Loads settings from `config_dir` and the process environment.
    pub fn load(config_dir: &Path) -> Result<Settings, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(config_dir, &vars)
    }

    /// Loads settings from `config_dir` and the given environment (tests pass their own).
    pub fn load_from(config_dir: &Path, env: &[(String, String)]) -> Result<Settings, ConfigError> {
        let lookup = |name: &str| {
            env.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let environment: Environment = match lookup("APP_ENV") {
            Some(value) if !value.is_empty() => value.parse()?,
            _ => Environment::Development,
        };
        let data_dir = PathBuf::from(lookup("DATA_DIR").unwrap_or_else(|| ".data".into()));

        let default_file = config_dir.join("default.toml");
        let known_keys = known_keys(&default_file)?;
        let app_vars: Vec<(String, String)> = env
            .iter()
            .filter(|(key, _)| key.starts_with("APP__"))
            .cloned()
            .collect();
        for (name, _) in &app_vars {
            let key = env_var_to_key(name);
            if !known_keys.contains(&key) {
                return Err(ConfigError::Invalid {
                    key: name.clone(),
                    reason: format!("no setting `{key}` exists (see config/default.toml)"),
                });
            }
        }

        let mut builder = config::Config::builder()
            .add_source(config::File::from(default_file).required(true))
            .add_source(
                config::File::from(config_dir.join(format!("{}.toml", environment.as_str())))
                    .required(false),
            );
        for (name, value) in &app_vars {
            let key = env_var_to_key(name);
            builder = if LIST_KEYS.contains(&key.as_str()) {
                let origins: Vec<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|origin| !origin.is_empty())
                    .map(str::to_owned)
                    .collect();
                builder.set_override(key, origins)
            } else {
                builder.set_override(key, value.as_str())
            }
            .map_err(|error| ConfigError::Load(error.to_string()))?;
        }
        if let Some(url) = lookup("DATABASE_URL").filter(|url| !url.is_empty())
            && lookup("APP__DATABASE__URL").is_none()
        {
            builder = builder
                .set_override("database.url", url)
                .map_err(|error| ConfigError::Load(error.to_string()))?;
        }
        if let Some(url) = lookup("REDIS_URL")
            && lookup("APP__CACHE__REDIS_URL").is_none()
        {
            builder = builder
                .set_override("cache.redis_url", url)
                .map_err(|error| ConfigError::Load(error.to_string()))?;
        }
        let merged = builder
            .build()
            .map_err(|error| ConfigError::Load(error.to_string()))?;
        let mut settings: Settings = merged.try_deserialize().map_err(describe_error)?;
        settings.environment = environment;
        settings.data_dir = data_dir;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        if self.database.url.expose_secret().is_empty() {
            return Err(ConfigError::Missing {
                key: "database.url".into(),
                reason:
                    "set DATABASE_URL (or APP__DATABASE__URL); `make run` starts a local server"
                        .into(),
            });
        }
        self.bind_addr()?;
        if self.jobs.task_timeout_secs == 0 {
            return Err(ConfigError::Invalid {
                key: "jobs.task_timeout_secs".into(),
                reason: "must be at least 1".into(),
            });
        }
        // A running task's row is touched every third of this (its heartbeat), so it never
        // looks stale however long the task runs; only a dead worker's rows do.
        if self.jobs.stale_after_secs < 3 {
            return Err(ConfigError::Invalid {
                key: "jobs.stale_after_secs".into(),
                reason: "must be at least 3 (running tasks beat every third of it)".into(),
            });
        }
        if self.events.max_attempts < 1 {
            return Err(ConfigError::Invalid {
                key: "events.max_attempts".into(),
                reason: "must be at least 1".into(),
            });
        }
        for (key, pattern) in [
            ("jobs.sweeper_cron", &self.jobs.sweeper_cron),
            ("documents.recovery_cron", &self.documents.recovery_cron),
        ] {
            cron_is_valid(pattern).map_err(|reason| ConfigError::Invalid {
                key: key.into(),
                reason,
            })?;
        }
        crate::core::outbound::AllowList::parse(&self.outbound.allowed_hosts).map_err(
            |reason| ConfigError::Invalid {
                key: "outbound.allowed_hosts".into(),
                reason,
            },
        )?;
        if self.embeddings.dimension == 0 || self.embeddings.dimension > 16000 {
            return Err(ConfigError::Invalid {
                key: "embeddings.dimension".into(),
                reason: "must be 1 to 16000".into(),
            });
        }
        if self.embeddings.provider == EmbeddingProvider::Local
            && self.embeddings.dimension != crate::core::embeddings::SEMANTIC_DIMENSION
        {
            return Err(ConfigError::Invalid {
                key: "embeddings.dimension".into(),
                reason: format!(
                    "the local model (provider \"local\") gives {} dimensions",
                    crate::core::embeddings::SEMANTIC_DIMENSION
                ),
            });
        }
        self.documents.validate(self.jobs.workers)?;
        if self.documents.embed_batch_size == 0 || self.documents.insert_batch_size == 0 {
            return Err(ConfigError::Invalid {
                key: "documents.embed_batch_size".into(),
                reason: "batch sizes must be at least 1".into(),
            });
        }
        self.ensure_secrets()
    }

    pub fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server
            .bind
            .parse()
            .map_err(|error| ConfigError::Invalid {
                key: "server.bind".into(),
                reason: format!("`{}` is not HOST:PORT ({error})", self.server.bind),
            })
    }

    /// Secrets must be provided outside development. In development a missing one is generated
    /// once and kept under `DATA_DIR/secrets/`, so sessions survive restarts.
    fn ensure_secrets(&mut self) -> Result<(), ConfigError> {
        let environment = self.environment;
        let secrets_dir = self.data_dir.join("secrets");
        for (key, slot, generate) in [
            (
                "secrets.jwt_secret",
                &mut self.secrets.jwt_secret,
                generate_jwt_secret as fn() -> String,
            ),
            (
                "secrets.encryption_key",
                &mut self.secrets.encryption_key,
                generate_encryption_key,
            ),
        ] {
            if slot.expose_secret().is_empty() {
                if environment != Environment::Development {
                    return Err(ConfigError::Missing {
                        key: key.into(),
                        reason: format!(
                            "secrets are generated only in development; set APP__{}",
                            key.replace('.', "__").to_ascii_uppercase()
                        ),
                    });
                }
                let file_name = key.trim_start_matches("secrets.");
                *slot = load_or_create_secret(&secrets_dir.join(file_name), generate)?.into();
            }
        }
        if self.secrets.jwt_secret.expose_secret().len() < MIN_JWT_SECRET_LEN {
            return Err(ConfigError::Invalid {
                key: "secrets.jwt_secret".into(),
                reason: format!("must be at least {MIN_JWT_SECRET_LEN} characters"),
            });
        }
        let keys = std::iter::once(("secrets.encryption_key", &self.secrets.encryption_key)).chain(
            self.secrets
                .previous_encryption_keys
                .iter()
                .map(|key| ("secrets.previous_encryption_keys", key)),
        );
        for (name, key) in keys {
            let key = key.expose_secret();
            if key.len() != ENCRYPTION_KEY_HEX_LEN || hex::decode(key).is_err() {
                return Err(ConfigError::Invalid {
                    key: name.into(),
                    reason: "must be 32 bytes, hex-encoded (64 hex digits)".into(),
                });
            }
        }
        if self.auth.password_min_length < 8
            || self.auth.password_max_length < self.auth.password_min_length
        {
            return Err(ConfigError::Invalid {
                key: "auth.password_min_length".into(),
                reason: "must be at least 8 and not above auth.password_max_length".into(),
            });
        }
        self.retrieval.validate()
    }

    /// The database URL with any password replaced, for logs and messages.
    pub fn database_url_redacted(&self) -> String {
        redact_url(self.database.url.expose_secret())
    }
}

fn generate_jwt_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn generate_encryption_key() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn load_or_create_secret(path: &Path, generate: fn() -> String) -> Result<String, ConfigError> {
    let io_error =
        |error: std::io::Error| ConfigError::Load(format!("{}: {error}", path.display()));
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim().to_owned();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error)?;
    }
    let secret = generate();
    write_private_file(path, &secret).map_err(io_error)?;
    eprintln!(
        "development: generated a local secret at {} (set it explicitly outside development)",
        path.display()
    );
    Ok(secret)
}

/// Writes a file only its owner can read (created with mode 0600, never readable in between).
#[cfg(unix)]
pub fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
pub fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

/// `APP__STORAGE__S3__BUCKET` -> `storage.s3.bucket`.
fn env_var_to_key(name: &str) -> String {
    name.trim_start_matches("APP__")
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .join(".")
}

/// Every dotted key that `default.toml` defines: the complete list of settings.
fn known_keys(default_file: &Path) -> Result<BTreeSet<String>, ConfigError> {
    let text = std::fs::read_to_string(default_file).map_err(|error| {
        ConfigError::Load(format!("cannot read {}: {error}", default_file.display()))
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|error| ConfigError::Load(format!("{}: {error}", default_file.display())))?;
    let mut keys = BTreeSet::new();
    collect_keys("", &table, &mut keys);
    Ok(keys)
}

fn collect_keys(prefix: &str, table: &toml::Table, keys: &mut BTreeSet<String>) {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        if let toml::Value::Table(inner) = value {
            collect_keys(&key, inner, keys);
        } else {
            keys.insert(key);
        }
    }
}

/// Turns the config crate's error into one line that names the key.
fn describe_error(error: config::ConfigError) -> ConfigError {
    match error {
        config::ConfigError::NotFound(key) => ConfigError::Missing {
            key,
            reason: "not set".into(),
        },
        config::ConfigError::Type {
            key: Some(key),
            unexpected,
            expected,
            ..
        } => ConfigError::Invalid {
            key,
            reason: format!("found {unexpected}, expected {expected}"),
        },
        other => ConfigError::Load(other.to_string()),
    }
}

fn cron_is_valid(pattern: &str) -> Result<(), String> {
    let fields = pattern.split_whitespace().count();
    if (6..=7).contains(&fields) {
        Ok(())
    } else {
        Err(format!(
            "`{pattern}` must have 6 or 7 fields (sec min hour dom mon dow [year])"
        ))
    }
}

/// Replaces the password of a URL such as `postgres://user:pw@host/db` with `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}
