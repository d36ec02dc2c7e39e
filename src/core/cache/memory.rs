//! The in-process cache: one process's memory.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Cache, CacheError, ttl_millis};

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
