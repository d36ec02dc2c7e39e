//! Cache and rate limiting: the `Cache` trait with its Redis (shared by every process) and
//! in-process backends, and a fixed-window `RateLimiter` built on the trait so both backends
//! limit the same way.
//!
//! A configured Redis is used through [`FallbackCache`]: when Redis does not answer, the
//! platform keeps serving on the in-process cache (limits become per process), says so once in
//! the log and in readiness (`degraded`), and goes back to Redis by itself once it answers.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use deadpool_redis::redis;
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::core::config::redact_url;

// ------------------------------------------------------------------------------------------------
// Settings
// ------------------------------------------------------------------------------------------------

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
            .finish()
    }
}

// ------------------------------------------------------------------------------------------------
// Contract
// ------------------------------------------------------------------------------------------------

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

// ------------------------------------------------------------------------------------------------
// Redis
// ------------------------------------------------------------------------------------------------

/// Redis through a deadpool connection pool; every key is prefixed with `key_prefix`.
pub struct RedisCache {
    pool: deadpool_redis::Pool,
    key_prefix: String,
    /// The URL with any password masked, for messages.
    display_url: String,
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache")
            .field("url", &self.display_url)
            .field("key_prefix", &self.key_prefix)
            .finish_non_exhaustive()
    }
}

/// INCRBY, then PEXPIRE only if INCRBY created the key, as one atomic step. A script rather
/// than `PEXPIRE ... NX` (Redis >= 7): NX would also expire a key that existed without a TTL.
const INCR_SCRIPT: &str = "\
local created = redis.call('EXISTS', KEYS[1]) == 0
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if created then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return value";

impl RedisCache {
    /// Builds the pool; connects lazily (call [`Cache::check`] to test the connection).
    pub fn new(url: &str, key_prefix: &str, pool_size: usize) -> Result<Self, CacheError> {
        Self::with_timeout(url, key_prefix, pool_size, Duration::from_secs(5))
    }

    /// As [`RedisCache::new`]; getting a connection (waiting for one, or opening one) gives
    /// up after `timeout`.
    pub fn with_timeout(
        url: &str,
        key_prefix: &str,
        pool_size: usize,
        timeout: Duration,
    ) -> Result<Self, CacheError> {
        let display_url = redact_url(url);
        let mut config = deadpool_redis::Config::from_url(url);
        let mut pool = deadpool_redis::PoolConfig::new(pool_size.max(1));
        pool.timeouts = deadpool_redis::Timeouts {
            wait: Some(timeout),
            create: Some(timeout),
            recycle: Some(timeout),
        };
        config.pool = Some(pool);
        let pool = config
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .map_err(|error| {
                CacheError::Backend(format!("invalid Redis settings for {display_url}: {error}"))
            })?;
        Ok(Self {
            pool,
            key_prefix: key_prefix.to_owned(),
            display_url,
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.key_prefix)
    }

    async fn connection(&self) -> Result<deadpool_redis::Connection, CacheError> {
        self.pool.get().await.map_err(|error| {
            CacheError::Unavailable(format!("Redis at {}: {error}", self.display_url))
        })
    }

    async fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, CacheError> {
        let mut connection = self.connection().await?;
        command.query_async(&mut connection).await.map_err(|error| {
            let message = format!("Redis at {}: {error}", self.display_url);
            // A Redis loading its data, read-only after a failover or without its master
            // cannot serve now either.
            let not_serving = matches!(
                error.kind(),
                redis::ErrorKind::Server(
                    redis::ServerErrorKind::BusyLoading
                        | redis::ServerErrorKind::ReadOnly
                        | redis::ServerErrorKind::MasterDown
                        | redis::ServerErrorKind::TryAgain
                        | redis::ServerErrorKind::ClusterDown
                )
            );
            if error.is_io_error()
                || error.is_connection_dropped()
                || error.is_connection_refusal()
                || error.is_timeout()
                || not_serving
            {
                CacheError::Unavailable(message)
            } else {
                CacheError::Backend(message)
            }
        })
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.query(redis::cmd("GET").arg(self.key(key))).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), CacheError> {
        let mut command = redis::cmd("SET");
        command.arg(self.key(key)).arg(value);
        if let Some(ttl) = ttl {
            command.arg("PX").arg(ttl_millis(ttl));
        }
        self.query::<()>(&command).await
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.query::<i64>(redis::cmd("DEL").arg(self.key(key)))
            .await?;
        Ok(())
    }

    async fn incr(&self, key: &str, by: i64, ttl_on_create: Duration) -> Result<i64, CacheError> {
        self.query(
            redis::cmd("EVAL")
                .arg(INCR_SCRIPT)
                .arg(1)
                .arg(self.key(key))
                .arg(by)
                .arg(ttl_millis(ttl_on_create)),
        )
        .await
    }

    async fn check(&self) -> Result<(), CacheError> {
        self.query::<String>(&redis::cmd("PING")).await?;
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "redis"
    }
}

// ------------------------------------------------------------------------------------------------
// Redis with an in-process fallback
// ------------------------------------------------------------------------------------------------

/// Redis while it answers, the in-process cache while it does not.
///
/// An operation that Redis fails (or does not answer within the timeout) runs on the
/// in-process cache instead, and so do all operations for the next `retry` period; then Redis
/// is tried again. The outage is logged once when it starts and once when it ends, and
/// [`Cache::check`] reports it (readiness shows `degraded`). Values written during an outage
/// stay in this process; counters restart in each backend, so a limit may briefly allow up
/// to twice its count across a switch.
pub struct FallbackCache {
    redis: RedisCache,
    memory: MemoryCache,
    timeout: Duration,
    retry: Duration,
    /// When Redis may be tried again, during an outage.
    outage: Mutex<Option<Instant>>,
}

impl fmt::Debug for FallbackCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackCache")
            .field("redis", &self.redis)
            .field("degraded", &self.is_degraded())
            .finish_non_exhaustive()
    }
}

impl FallbackCache {
    pub fn new(redis: RedisCache, timeout: Duration, retry: Duration) -> Self {
        Self {
            redis,
            memory: MemoryCache::new(),
            timeout,
            retry,
            outage: Mutex::new(None),
        }
    }

    /// True while operations run on the in-process cache.
    pub fn is_degraded(&self) -> bool {
        self.outage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    fn redis_due(&self) -> bool {
        match *self.outage.lock().unwrap_or_else(PoisonError::into_inner) {
            None => true,
            Some(retry_at) => Instant::now() >= retry_at,
        }
    }

    fn failed(&self, reason: &str) {
        let mut outage = self.outage.lock().unwrap_or_else(PoisonError::into_inner);
        if outage.is_none() {
            tracing::warn!(
                "Redis at {} is unavailable ({reason}); using the in-process cache until it \
                 answers again (rate limits now count per process)",
                self.redis.display_url
            );
            metrics::counter!("cache_fallbacks_total").increment(1);
        }
        *outage = Some(Instant::now() + self.retry);
    }

    fn answered(&self) {
        let mut outage = self.outage.lock().unwrap_or_else(PoisonError::into_inner);
        if outage.take().is_some() {
            tracing::info!("Redis at {} answers again", self.redis.display_url);
        }
    }

    /// `redis`, unless Redis is down (or goes down now): then `memory`.
    async fn either<T>(
        &self,
        redis: impl std::future::Future<Output = Result<T, CacheError>>,
        memory: impl std::future::Future<Output = Result<T, CacheError>>,
    ) -> Result<T, CacheError> {
        if self.redis_due() {
            match tokio::time::timeout(self.timeout, redis).await {
                Ok(Ok(value)) => {
                    self.answered();
                    return Ok(value);
                }
                Ok(Err(CacheError::Unavailable(reason))) => self.failed(&reason),
                Ok(Err(other)) => return Err(other),
                Err(_) => self.failed(&format!("no answer within {:?}", self.timeout)),
            }
        }
        memory.await
    }
}

#[async_trait]
impl Cache for FallbackCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.either(self.redis.get(key), self.memory.get(key)).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), CacheError> {
        self.either(
            self.redis.set(key, value, ttl),
            self.memory.set(key, value, ttl),
        )
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        // Both: a value written during an outage must not outlive its deletion.
        let memory = self.memory.delete(key).await;
        self.either(self.redis.delete(key), async { memory }).await
    }

    async fn incr(&self, key: &str, by: i64, ttl_on_create: Duration) -> Result<i64, CacheError> {
        self.either(
            self.redis.incr(key, by, ttl_on_create),
            self.memory.incr(key, by, ttl_on_create),
        )
        .await
    }

    /// Pings Redis now (outage or not): an error means the platform runs degraded.
    async fn check(&self) -> Result<(), CacheError> {
        match tokio::time::timeout(self.timeout, self.redis.check()).await {
            Ok(Ok(())) => {
                self.answered();
                Ok(())
            }
            Ok(Err(error)) => {
                let reason = error.to_string();
                self.failed(&reason);
                Err(CacheError::Unavailable(reason))
            }
            Err(_) => {
                let reason = format!("Redis at {} did not answer PING", self.redis.display_url);
                self.failed(&reason);
                Err(CacheError::Unavailable(reason))
            }
        }
    }

    fn backend_name(&self) -> &'static str {
        "redis"
    }
}

// ------------------------------------------------------------------------------------------------
// In-process
// ------------------------------------------------------------------------------------------------

/// A map in this process's memory: nothing is shared with other processes, so counters and
/// rate limits are per process. Use Redis when more than one process serves requests.
///
/// Expired entries are dropped when read, and swept whenever the map has doubled since the
/// last sweep, so expired entries never outnumber live ones by much. Entries set without a
/// TTL stay until deleted.
#[derive(Default)]
pub struct MemoryCache {
    state: Mutex<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    entries: HashMap<String, MemoryEntry>,
    /// Sweep expired entries once the map reaches this size.
    sweep_at: usize,
}

struct MemoryEntry {
    value: Vec<u8>,
    expires_at: Option<Instant>,
}

impl MemoryEntry {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|expires_at| expires_at > now)
    }
}

/// The map is never swept below this size: sweeping tiny maps would cost more than it saves.
const MEMORY_SWEEP_MIN_ENTRIES: usize = 1024;

impl fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCache")
            .field("stored_entries", &self.stored_entries())
            .finish()
    }
}

impl MemoryCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries held, including expired ones not yet swept.
    pub fn stored_entries(&self) -> usize {
        self.lock().entries.len()
    }

    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        // The map stays consistent even if a holder panicked: every update is a single insert
        // or remove.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl MemoryState {
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut MemoryEntry> {
        if self
            .entries
            .get(key)
            .is_some_and(|entry| !entry.is_live(now))
        {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
    }

    fn insert(&mut self, key: &str, entry: MemoryEntry, now: Instant) {
        self.entries.insert(key.to_owned(), entry);
        if self.entries.len() >= self.sweep_at.max(MEMORY_SWEEP_MIN_ENTRIES) {
            self.entries.retain(|_, entry| entry.is_live(now));
            self.sweep_at = self.entries.len().saturating_mul(2);
        }
    }
}

fn expiry(now: Instant, ttl: Duration) -> Option<Instant> {
    // A TTL too large to represent is as good as none.
    now.checked_add(Duration::from_millis(ttl_millis(ttl)))
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let now = Instant::now();
        Ok(self.lock().live(key, now).map(|entry| entry.value.clone()))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), CacheError> {
        let now = Instant::now();
        let entry = MemoryEntry {
            value: value.to_vec(),
            expires_at: ttl.and_then(|ttl| expiry(now, ttl)),
        };
        self.lock().insert(key, entry, now);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.lock().entries.remove(key);
        Ok(())
    }

    async fn incr(&self, key: &str, by: i64, ttl_on_create: Duration) -> Result<i64, CacheError> {
        let now = Instant::now();
        let mut state = self.lock();
        if let Some(entry) = state.live(key, now) {
            // Stored as decimal text, like Redis, so `get` reads the same on both backends.
            let current: i64 = std::str::from_utf8(&entry.value)
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| CacheError::Backend(format!("value at {key} is not an integer")))?;
            let next = current
                .checked_add(by)
                .ok_or_else(|| CacheError::Backend(format!("increment of {key} overflows")))?;
            entry.value = next.to_string().into_bytes();
            return Ok(next);
        }
        let entry = MemoryEntry {
            value: by.to_string().into_bytes(),
            expires_at: expiry(now, ttl_on_create),
        };
        state.insert(key, entry, now);
        Ok(by)
    }

    async fn check(&self) -> Result<(), CacheError> {
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }
}

// ------------------------------------------------------------------------------------------------
// Rate limiting
// ------------------------------------------------------------------------------------------------

/// The fixed window an instant falls in: windows are aligned to the Unix epoch, so every
/// process (with a synchronised clock) agrees on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedWindow {
    /// Windows elapsed since the epoch.
    pub index: u64,
    /// Time left until this window ends and the next begins.
    pub resets_in: Duration,
}

impl FixedWindow {
    /// Windows shorter than 1 ms count as 1 ms (the precision of cache TTLs).
    pub fn at(now: SystemTime, window: Duration) -> Self {
        let now = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let window = window.as_nanos().max(1_000_000);
        let index = now / window;
        let resets_in = (index + 1) * window - now;
        Self {
            index: u64::try_from(index).unwrap_or(u64::MAX),
            resets_in: Duration::from_nanos(u64::try_from(resets_in).unwrap_or(u64::MAX)),
        }
    }
}

/// The answer to "may this happen now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    /// Further requests allowed in the current window.
    pub remaining: u32,
    /// Zero when allowed; otherwise the time until the window resets.
    pub retry_after: Duration,
    pub limit: u32,
}

impl RateDecision {
    /// The decision for the `count`-th request of a window that ends in `resets_in`.
    pub fn from_count(count: i64, limit: u32, resets_in: Duration) -> Self {
        let allowed = count <= i64::from(limit);
        let remaining = (i64::from(limit) - count).clamp(0, i64::from(limit));
        Self {
            allowed,
            remaining: u32::try_from(remaining).unwrap_or(0),
            retry_after: if allowed { Duration::ZERO } else { resets_in },
            limit,
        }
    }

    /// `retry_after` in whole seconds, rounded up: the value for a `Retry-After` header.
    pub fn retry_after_seconds(&self) -> u64 {
        let seconds = self.retry_after.as_secs();
        if self.retry_after.subsec_nanos() > 0 {
            seconds + 1
        } else {
            seconds
        }
    }
}

/// Fixed-window rate limiting: at most `limit` events per key in each `window`-long slot of
/// the clock. Simple and exact per window; a burst straddling a window boundary can reach
/// twice the limit, which is fine for login throttling and per-key quotas.
///
/// One counter per key and window (`rl:{key}:{window_index}`) is incremented atomically in the
/// cache, so with Redis the limit holds across every process.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    cache: Arc<dyn Cache>,
}

impl RateLimiter {
    pub fn new(cache: Arc<dyn Cache>) -> Self {
        Self { cache }
    }

    /// Counts one event for `key` now and decides whether it is within the limit.
    pub async fn check(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<RateDecision, CacheError> {
        self.check_at(key, limit, window, SystemTime::now()).await
    }

    /// As [`RateLimiter::check`], at the given wall-clock time.
    pub async fn check_at(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: SystemTime,
    ) -> Result<RateDecision, CacheError> {
        let slot = FixedWindow::at(now, window);
        // The counter outlives its window by at most one window; a later window uses a new key.
        let count = self
            .cache
            .incr(&Self::counter_key(key, &slot), 1, window)
            .await?;
        Ok(RateDecision::from_count(count, limit, slot.resets_in))
    }

    fn counter_key(key: &str, slot: &FixedWindow) -> String {
        format!("rl:{key}:{}", slot.index)
    }

    /// The decision `check` would give if the next event counted, without counting it: for
    /// limits on failures, which are counted only when they happen ([`RateLimiter::record`]).
    pub async fn peek(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<RateDecision, CacheError> {
        let slot = FixedWindow::at(SystemTime::now(), window);
        let stored = self.cache.get(&Self::counter_key(key, &slot)).await?;
        let count = stored
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.trim().parse::<i64>().ok())
            .unwrap_or(0);
        Ok(RateDecision::from_count(count + 1, limit, slot.resets_in))
    }

    /// Counts one event against `key` (e.g. a failed login).
    pub async fn record(&self, key: &str, window: Duration) -> Result<(), CacheError> {
        let slot = FixedWindow::at(SystemTime::now(), window);
        self.cache
            .incr(&Self::counter_key(key, &slot), 1, window)
            .await?;
        Ok(())
    }
}
