//! Redis through a deadpool connection pool, shared by every process.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis;

use super::{Cache, CacheError, ttl_millis};
use crate::core::config::redact_url;

/// Redis through a deadpool connection pool; every key is prefixed with `key_prefix`.
pub struct RedisCache {
    pool: deadpool_redis::Pool,
    key_prefix: String,
    /// The URL with any password masked, for messages.
    pub(super) display_url: String,
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
