//! Fixed-window rate limiting on any [`Cache`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::core::clock::Clock;

use super::{Cache, CacheError};

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
    /// Whose time the windows are slots of.
    clock: Arc<dyn Clock>,
}

impl RateLimiter {
    pub fn new(cache: Arc<dyn Cache>, clock: Arc<dyn Clock>) -> Self {
        Self { cache, clock }
    }

    fn now(&self) -> SystemTime {
        self.clock.now().into()
    }

    /// Counts one event for `key` now and decides whether it is within the limit.
    pub async fn check(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<RateDecision, CacheError> {
        self.check_at(key, limit, window, self.now()).await
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
        let slot = FixedWindow::at(self.now(), window);
        let stored = self.cache.get(&Self::counter_key(key, &slot)).await?;
        let count = stored
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.trim().parse::<i64>().ok())
            .unwrap_or(0);
        Ok(RateDecision::from_count(count + 1, limit, slot.resets_in))
    }

    /// Counts one event against `key` (e.g. a failed login).
    pub async fn record(&self, key: &str, window: Duration) -> Result<(), CacheError> {
        let slot = FixedWindow::at(self.now(), window);
        self.cache
            .incr(&Self::counter_key(key, &slot), 1, window)
            .await?;
        Ok(())
    }
}
