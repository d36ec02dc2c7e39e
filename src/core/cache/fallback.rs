//! Redis while it answers, the in-process cache while it does not.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Cache, CacheError, MemoryCache, RedisCache};

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
        redis: impl Future<Output = Result<T, CacheError>>,
        memory: impl Future<Output = Result<T, CacheError>>,
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
