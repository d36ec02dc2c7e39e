//! The sections of [`Settings`](super::Settings), one struct each, with the derived values
//! (timeouts as `Duration`s) their users need.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{ConfigError, redact_url};

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub bind: String,
    pub http_workers: usize,
    pub json_body_limit_bytes: usize,
    pub max_body_bytes: usize,
    pub shutdown_timeout_secs: u64,
    pub cors_allowed_origins: Vec<String>,
    pub metrics_enabled: bool,
    pub trust_forwarded_for: bool,
    pub readiness_timeout_ms: u64,
    /// Empty when the platform has no public address.
    pub public_base_url: String,
}

#[derive(Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub max_connections: u32,
    pub min_connections: u32,
    pub connect_timeout_secs: u64,
    pub acquire_timeout_secs: u64,
    pub log_statements: bool,
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url(self.url.expose_secret()))
            .field("max_connections", &self.max_connections)
            .field("min_connections", &self.min_connections)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct JobSettings {
    pub workers: usize,
    pub queue_pool_size: u32,
    pub poll_interval_ms: u64,
    pub task_timeout_secs: u64,
    pub stale_after_secs: u64,
    pub sweeper_cron: String,
    pub failed_retention_days: u32,
}

impl DocumentSettings {
    /// How long a `documents.process` job may run: the processing limit, plus time to record
    /// the outcome. Derived, so the job framework never drops a run that is still deciding.
    pub fn job_timeout(&self) -> Duration {
        Duration::from_secs(self.processing_timeout_secs + DOCUMENT_JOB_MARGIN_SECS)
    }

    /// The limits must nest: parsing within processing, CPU within wall clock, a heartbeat
    /// well within the time after which a silent run counts as dead.
    pub(super) fn validate(&self, workers: usize) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| {
            Err(ConfigError::Invalid {
                key: format!("documents.{key}"),
                reason,
            })
        };
        if self.processing_timeout_secs == 0 {
            return invalid("processing_timeout_secs", "must be at least 1".into());
        }
        if self.parse_timeout_secs == 0 || self.parse_timeout_secs > self.processing_timeout_secs {
            return invalid(
                "parse_timeout_secs",
                "must be 1 to documents.processing_timeout_secs".into(),
            );
        }
        if self.parse_cpu_secs == 0 || self.parse_cpu_secs > self.parse_timeout_secs {
            return invalid(
                "parse_cpu_secs",
                "must be 1 to documents.parse_timeout_secs".into(),
            );
        }
        if self.parse_memory_mb < 64 {
            return invalid("parse_memory_mb", "must be at least 64".into());
        }
        if self.max_chunks_per_document == 0 {
            return invalid("max_chunks_per_document", "must be at least 1".into());
        }
        // The child holds a DOCX's decompressed XML while it reads it: past half its memory it
        // would run out before this limit could say why.
        let memory_bytes = self.parse_memory_mb.saturating_mul(1024 * 1024);
        if self.docx_max_uncompressed_bytes < 1024 * 1024
            || self.docx_max_uncompressed_bytes > memory_bytes / 2
        {
            return invalid(
                "docx_max_uncompressed_bytes",
                "must be 1048576 (1 MB) to half of documents.parse_memory_mb".into(),
            );
        }
        if self.pdf_max_pages == 0 {
            return invalid("pdf_max_pages", "must be at least 1".into());
        }
        if self.heartbeat_secs == 0 || self.stale_after_secs < 2 * self.heartbeat_secs {
            return invalid(
                "stale_after_secs",
                "must be at least twice documents.heartbeat_secs (and that at least 1)".into(),
            );
        }
        if self.max_processing_per_project < 1 {
            return invalid("max_processing_per_project", "must be at least 1".into());
        }
        // One project must not hold every worker: another tenant's document waits otherwise.
        if workers >= 2 && self.max_processing_per_project >= workers as i64 {
            return invalid(
                "max_processing_per_project",
                format!(
                    "must be less than jobs.workers ({workers}), so another project's document \
                     always finds a worker"
                ),
            );
        }
        Ok(())
    }
}

/// See [`DocumentSettings::job_timeout`].
const DOCUMENT_JOB_MARGIN_SECS: u64 = 60;

impl JobSettings {
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }
    pub fn task_timeout(&self) -> Duration {
        Duration::from_secs(self.task_timeout_secs)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventSettings {
    pub batch_size: u32,
    pub poll_interval_ms: u64,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub max_attempts: i32,
    pub lease_secs: u64,
    pub retention_days: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    pub log_level: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_days: u32,
    pub password_min_length: usize,
    pub password_max_length: usize,
    pub login_attempts_per_email: u32,
    pub login_attempts_per_email_and_ip: u32,
    pub login_attempts_per_ip: u32,
    pub login_window_secs: u64,
    pub registrations_per_ip: u32,
    pub registration_window_secs: u64,
    pub refresh_reuse_grace_secs: u64,
    pub bootstrap_admin_email: String,
    pub jwt_leeway_secs: u64,
    pub api_key_last_used_resolution_secs: i64,
    pub platform_config_cache_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProjectSettings {
    pub invitation_ttl_days: u32,
    pub member_additions_per_hour: u32,
}

/// What an avatar gets for the LLM and retrieval settings it was created without.
#[derive(Debug, Clone, Deserialize)]
pub struct AvatarDefaults {
    pub default_model: String,
    pub default_temperature: f32,
    pub default_max_tokens: i32,
    pub default_top_k: i32,
    pub default_similarity_threshold: f32,
    pub default_chunk_size: i32,
    pub default_chunk_overlap: i32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DocumentSettings {
    pub max_upload_bytes: u64,
    pub max_processing_per_project: i64,
    pub processing_timeout_secs: u64,
    pub parser_program: String,
    pub parse_timeout_secs: u64,
    pub parse_cpu_secs: u64,
    pub parse_memory_mb: u64,
    pub max_chunks_per_document: usize,
    /// What a DOCX's parts may decompress to, together (zip bombs).
    pub docx_max_uncompressed_bytes: u64,
    /// Pages a PDF may have.
    pub pdf_max_pages: usize,
    pub heartbeat_secs: u64,
    pub stale_after_secs: u64,
    pub stuck_after_secs: u64,
    pub max_attempts: i32,
    pub defer_secs: u64,
    pub embed_batch_size: usize,
    pub insert_batch_size: usize,
    pub recovery_cron: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingProvider {
    /// all-MiniLM-L6-v2 in-process (`core::embeddings::SemanticEmbedder`): the default.
    Local,
    /// Hashed words and trigrams: keyword matching only, nothing to install.
    Lexical,
    /// Any OpenAI-compatible `/v1/embeddings` endpoint.
    Openai,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddingSettings {
    pub provider: EmbeddingProvider,
    /// Where `scripts/embedder.sh` installed the local model (relative to the working
    /// directory unless absolute).
    pub local_model_dir: PathBuf,
    /// Threads the local model embeds documents with; 0: one less than the cores (at least 1).
    pub threads: usize,
    pub dimension: usize,
    pub model: String,
    pub base_url: String,
    pub api_key: SecretString,
    pub batch_size: usize,
    pub max_retries: u32,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RetrievalSettings {
    pub exact_scan_max_chunks: i64,
    pub candidates_per_result: i64,
    pub hnsw_ef_search: i64,
    pub hnsw_max_scan_tuples: i64,
    pub hnsw_m: i64,
    pub hnsw_ef_construction: i64,
    pub index_build_memory: String,
    pub index_build_timeout_secs: u64,
    pub rrf_k: f64,
    /// The full-text list's weight in the fusion (the vector list's is 1).
    pub rrf_text_weight: f64,
    /// Most matching chunks the full-text list ranks per question (those holding two or more
    /// of its words first).
    pub text_rank_max_rows: i64,
    /// Most memory the exactly searched avatars' vectors take in each process, in MB (0: not
    /// kept; each question scans the avatar's rows in PostgreSQL).
    pub vector_cache_mb: usize,
}

impl EmbeddingSettings {
    /// [`Self::threads`], with 0 resolved.
    pub fn local_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism()
                .map_or(1, |cores| cores.get().saturating_sub(1))
                .max(1),
            threads => threads,
        }
    }
}

impl RetrievalSettings {
    pub fn index_build_timeout(&self) -> Duration {
        Duration::from_secs(self.index_build_timeout_secs)
    }

    /// pgvector's own bounds, checked at start rather than at the first index build.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| {
            Err(ConfigError::Invalid {
                key: format!("retrieval.{key}"),
                reason: reason.into(),
            })
        };
        if !(1..=1000).contains(&self.hnsw_ef_search) {
            return invalid("hnsw_ef_search", "must be between 1 and 1000");
        }
        if !(2..=100).contains(&self.hnsw_m) {
            return invalid("hnsw_m", "must be between 2 and 100");
        }
        if !(2 * self.hnsw_m..=1000).contains(&self.hnsw_ef_construction) {
            return invalid(
                "hnsw_ef_construction",
                "must be at least twice retrieval.hnsw_m and at most 1000",
            );
        }
        if self.text_rank_max_rows < 1 {
            return invalid("text_rank_max_rows", "must be at least 1");
        }
        // Given to PostgreSQL as a literal: digits and a unit, nothing else.
        let memory = self.index_build_memory.trim();
        let digits = memory.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let unit = &memory[digits.len()..];
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || !["", "kB", "MB", "GB", "TB"].contains(&unit)
        {
            return invalid(
                "index_build_memory",
                "must be a size such as 512MB or 1GB (units kB, MB, GB, TB)",
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChatSettings {
    pub llm_base_url: String,
    pub llm_api_key: SecretString,
    pub timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub max_retries: u32,
    pub history_token_budget: u32,
    pub max_message_chars: usize,
    pub public_requests_per_minute: u32,
    pub stream_buffer_events: usize,
}

/// Process-wide secrets. `Debug` never shows them (`SecretString` prints `[REDACTED]`).
#[derive(Debug, Clone, Deserialize)]
pub struct SecretSettings {
    pub jwt_secret: SecretString,
    pub encryption_key: SecretString,
    pub previous_encryption_keys: Vec<SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BillingSettings {
    pub reservation_ttl_secs: u64,
    pub reservation_margin_tokens: u32,
    pub count_embedding_tokens: bool,
    pub count_own_key_usage: bool,
    pub maintenance_cron: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AnalyticsSettings {
    /// 0 keeps audit entries forever.
    pub audit_retention_days: u32,
    pub audit_ip_retention_days: u32,
    pub applied_facts_retention_days: u32,
    pub max_range_days: u32,
    pub maintenance_cron: String,
    pub backfill_batch: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TelegramSettings {
    pub api_base_url: String,
    pub edit_interval_ms: u64,
    pub bot_messages_per_sec: u32,
    pub chat_messages_per_sec: u32,
    pub chat_burst: u32,
    pub webhook_max_body_bytes: usize,
    pub update_retention_secs: u64,
    pub poll_timeout_secs: u64,
    pub poll_lease_secs: u64,
    pub poll_supervise_ms: u64,
    pub polling_enabled: bool,
    pub maintenance_cron: String,
}

/// `[notifications]`: platform notifications sent through the notifications bot.
#[derive(Debug, Clone, Deserialize)]
pub struct NotificationSettings {
    pub link_code_ttl_secs: u64,
    pub delivery_attempts: u32,
    pub delivery_retention_days: u32,
    pub maintenance_cron: String,
}
