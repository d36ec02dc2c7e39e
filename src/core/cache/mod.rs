//! Cache and rate limiting: the `Cache` trait with its Redis (shared by every process) and
//! in-process backends, and a fixed-window `RateLimiter` built on the trait so both backends
//! limit the same way.
//!
//! A configured Redis is used through [`FallbackCache`]: when Redis does not answer, the
//! platform keeps serving on the in-process cache (limits become per process), says so once in
//! the log and in readiness (`degraded`), and goes back to Redis by itself once it answers.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::core::config::redact_url;

mod exact;
mod fallback;
mod memory;
mod rate_limit;
mod redis_cache;

pub use exact::{CHANNEL as INVALIDATION_CHANNEL, ExactCache, ExactCaches, FillTicket};
pub use fallback::FallbackCache;
pub use memory::MemoryCache;
pub use rate_limit::{FixedWindow, RateDecision, RateLimiter};
pub use redis_cache::RedisCache;

/// `[cache]` in the settings.
#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct CacheSettings {
    /// `redis://[:password@]host:port[/db]`; unset or empty selects the in-process cache.
    pub redis_url: Option<String>,
    /// Prepended to every Redis key, so several deployments can share one Redis.
    pub key_prefix: String,
    /// Most Redis connections held at once.
    pub pool_size: usize,
    /// Longest wait for Redis (a connection or an answer) before the in-process cache is
    /// used instead, in milliseconds.
    pub timeout_ms: u64,
    /// After Redis failed, how long requests use the in-process cache before Redis is tried
    /// again, in seconds.
    pub retry_secs: u64,
    /// The exact in-process caches' lease ([`ExactCaches`]), in milliseconds: how long a change
    /// to a session, a role or a membership waits after its commit before it answers, and how
    /// far behind a process's invalidation listener may be before it stops using its caches.
    /// 0 turns those caches off.
    pub exact_lease_ms: u64,
}

impl CacheSettings {
    /// The Redis URL, if one is configured (an empty string counts as none).
    pub fn redis_url(&self) -> Option<&str> {
        self.redis_url
            .as_deref()
            .map(str::trim)
            .filter(|url| !url.is_empty())
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            redis_url: None,
            key_prefix: "ap:".to_owned(),
            pool_size: 16,
            timeout_ms: 1000,
            retry_secs: 5,
            exact_lease_ms: 100,
        }
    }
}

impl fmt::Debug for CacheSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheSettings")
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("key_prefix", &self.key_prefix)
            .field("pool_size", &self.pool_size)
            .field("timeout_ms", &self.timeout_ms)
            .field("retry_secs", &self.retry_secs)
            .field("exact_lease_ms", &self.exact_lease_ms)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The backend cannot be reached (connection refused, dropped, timed out); never carries
    /// a password.
    #[error("cache backend unavailable: {0}")]
    Unavailable(String),
    /// The backend answered with an error (a wrong type, a script error); never carries a
    /// password.
    #[error("cache backend error: {0}")]
    Backend(String),
    #[error("cache value (de)serialization failed: {0}")]
    Serde(String),
}

/// A key-value cache with expiry and atomic counters.
///
/// TTLs have millisecond precision (Redis `PX`); shorter ones are rounded up to 1 ms.
#[async_trait]
pub trait Cache: Send + Sync + fmt::Debug {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;

    /// Stores `value`, replacing any previous one; `None` keeps it until deleted.
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), CacheError>;

    /// Removes the key; a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), CacheError>;

    /// Adds `by` to the integer at `key` (a missing key counts as 0) and returns the new value,
    /// atomically across every user of the backend. `ttl_on_create` applies only when this call
    /// creates the key; later increments keep the original expiry.
    async fn incr(&self, key: &str, by: i64, ttl_on_create: Duration) -> Result<i64, CacheError>;

    /// Readiness probe: Redis answers PING; the in-process cache is always ready.
    async fn check(&self) -> Result<(), CacheError>;

    fn backend_name(&self) -> &'static str;
}

impl dyn Cache {
    /// `get` and decode JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, CacheError> {
        match self.get(key).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|error| CacheError::Serde(format!("{key}: {error}"))),
            None => Ok(None),
        }
    }

    /// Encode as JSON and `set`.
    pub async fn set_json<T: Serialize + Sync + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|error| CacheError::Serde(format!("{key}: {error}")))?;
        self.set(key, &bytes, ttl).await
    }
}

/// Chooses the backend: Redis (with the in-process fallback) when a URL is configured,
/// otherwise the in-process cache. A URL that does not parse stops start-up; a Redis that does
/// not answer yet is reported and the platform starts degraded.
pub async fn build_cache(settings: &CacheSettings) -> Result<Arc<dyn Cache>, CacheError> {
    match settings.redis_url() {
        Some(url) => {
            let timeout = Duration::from_millis(settings.timeout_ms.max(1));
            let redis =
                RedisCache::with_timeout(url, &settings.key_prefix, settings.pool_size, timeout)?;
            let cache =
                FallbackCache::new(redis, timeout, Duration::from_secs(settings.retry_secs));
            if let Err(error) = cache.check().await {
                tracing::warn!("starting without Redis for now: {error}");
            }
            Ok(Arc::new(cache))
        }
        None => Ok(Arc::new(MemoryCache::new())),
    }
}

/// Whole milliseconds, rounded up, at least 1: what Redis `PX`/`PEXPIRE` accept.
fn ttl_millis(ttl: Duration) -> u64 {
    let millis = ttl.as_nanos().div_ceil(1_000_000).max(1);
    u64::try_from(millis).unwrap_or(u64::MAX)
}
