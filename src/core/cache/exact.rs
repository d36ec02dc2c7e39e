//! In-process caches whose entries every process drops at once when what they were read from
//! changes: no TTL that leaves a revoked session alive.
//!
//! - **What drops entries.** Triggers on the tables a cache reads (each module's migration adds
//!   its own) `pg_notify('cache_invalidation', '<tag>')` in the transaction that changes them,
//!   so a change and its invalidation commit together — whatever code path (or psql session)
//!   made it. Every process LISTENs on that channel and drops the entries carrying the tag.
//! - **Why "at once" holds across processes.** A notification reaches another process a little
//!   after the commit. To close that gap each process sends itself a marker on a channel of its
//!   own every `lease / 4`; PostgreSQL delivers notifications in commit order, so when a marker
//!   sent at time `s` comes back, every invalidation committed before `s` has been applied. A
//!   process serves from its caches only while its last returned marker was sent less than a
//!   lease ago. The writer waits one lease after its commit ([`ExactCaches::settle`]) before it
//!   answers: from then on, any process that still serves from cache has applied the change.
//!   A listener that is slow, lost or reconnecting simply stops its process's caches (every
//!   request reads the database) until markers come back, and a reconnect clears them.
//! - **Fills that race a change.** A value read from the database before a change commits but
//!   stored after its invalidation was applied would outlive it; every invalidation therefore
//!   bumps a generation, and a fill stores only when the generation is the one it started with.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool};
use sea_orm::sqlx::{Connection, query};

/// The channel the tables' triggers notify on; the payload is one tag.
pub const CHANNEL: &str = "cache_invalidation";

/// What an [`ExactCache`] needs from its caches' owner: drop entries by tag, or all.
trait Evict: Send + Sync {
    fn evict(&self, tag: &str);
    fn clear(&self);
}

struct Shared {
    lease: Duration,
    /// The process's own time base for the markers.
    epoch: Instant,
    /// When (µs since `epoch`) the last marker that came back was sent.
    synced_at: AtomicU64,
    /// Bumped by every invalidation and reconnect.
    generation: AtomicU64,
    caches: Mutex<Vec<Weak<dyn Evict>>>,
    /// Dropped with the last handle: the listener's signal to stop.
    _stop: tokio::sync::watch::Sender<()>,
}

impl Shared {
    fn micros(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Whether every invalidation committed more than a lease ago has been applied here.
    fn fresh(&self) -> bool {
        let synced = self.synced_at.load(Ordering::Acquire);
        synced > 0 && self.micros().saturating_sub(synced) < self.lease.as_micros() as u64
    }

    fn caches(&self) -> Vec<Arc<dyn Evict>> {
        self.caches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    fn apply(&self, tag: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for cache in self.caches() {
            cache.evict(tag);
        }
    }

    fn clear_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for cache in self.caches() {
            cache.clear();
        }
    }
}

/// The process's invalidation listener and the caches it keeps exact. Cheap to clone.
#[derive(Clone)]
pub struct ExactCaches {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ExactCaches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExactCaches")
            .field("lease", &self.shared.lease)
            .field("fresh", &self.shared.fresh())
            .finish()
    }
}

impl ExactCaches {
    /// Starts listening (on a connection of its own from `pool`) and sending the markers; both
    /// end when the last handle is dropped. Until the first marker returns, caches are not used.
    pub fn start(pool: PgPool, lease: Duration) -> Self {
        let (stop, stopped) = tokio::sync::watch::channel(());
        let caches = Self::with(lease, stop);
        tokio::spawn(listen(pool, Arc::downgrade(&caches.shared), stopped));
        caches
    }

    /// Caches that are never used (tools that need no caching).
    pub fn disabled() -> Self {
        Self::with(Duration::ZERO, tokio::sync::watch::channel(()).0)
    }

    fn with(lease: Duration, stop: tokio::sync::watch::Sender<()>) -> Self {
        ExactCaches {
            shared: Arc::new(Shared {
                lease,
                epoch: Instant::now(),
                synced_at: AtomicU64::new(0),
                generation: AtomicU64::new(0),
                caches: Mutex::new(Vec::new()),
                _stop: stop,
            }),
        }
    }

    /// A new cache of at most `capacity` entries, kept exact by this listener.
    pub fn cache<K, V>(&self, capacity: usize) -> ExactCache<K, V>
    where
        K: Eq + Hash + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        self.weighted_cache(capacity)
    }

    /// A new cache whose entries' weights (given to [`ExactCache::insert_weighted`]; bytes,
    /// say) add up to at most `capacity`, kept exact by this listener.
    pub fn weighted_cache<K, V>(&self, capacity: usize) -> ExactCache<K, V>
    where
        K: Eq + Hash + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        let entries: Arc<Entries<K, V>> = Arc::new(Entries {
            store: RwLock::new(Store {
                map: HashMap::new(),
                weight: 0,
            }),
            capacity: capacity.max(1),
        });
        let evict: Arc<dyn Evict> = entries.clone();
        let mut caches = self
            .shared
            .caches
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Caches dropped meanwhile leave their place.
        caches.retain(|cache| cache.strong_count() > 0);
        caches.push(Arc::downgrade(&evict));
        drop(caches);
        // The registry holds a weak reference; the cache keeps its entries alive.
        ExactCache {
            shared: self.shared.clone(),
            entries,
            _evict: evict,
        }
    }

    /// Waits until every process that still serves from its caches has applied what the
    /// caller's committed transaction invalidated: call it after the commit, before answering.
    pub async fn settle(&self) {
        tokio::time::sleep(self.shared.lease).await;
    }

    /// Whether this process's caches are in use now (its listener is keeping up).
    pub fn in_use(&self) -> bool {
        self.shared.fresh()
    }
}

struct Entry<V> {
    value: V,
    tags: Box<[String]>,
    weight: usize,
}

struct Store<K, V> {
    map: HashMap<K, Entry<V>>,
    /// The entries' weights added up.
    weight: usize,
}

impl<K: Eq + Hash, V> Store<K, V> {
    fn remove_where(&mut self, mut drop: impl FnMut(&Entry<V>) -> bool) {
        let mut removed = 0;
        self.map.retain(|_, entry| {
            let gone = drop(entry);
            if gone {
                removed += entry.weight;
            }
            !gone
        });
        self.weight -= removed;
    }
}

struct Entries<K, V> {
    store: RwLock<Store<K, V>>,
    capacity: usize,
}

impl<K: Eq + Hash + Send + Sync, V: Send + Sync> Evict for Entries<K, V> {
    fn evict(&self, tag: &str) {
        self.store
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove_where(|entry| entry.tags.iter().any(|own| own == tag));
    }

    fn clear(&self) {
        let mut store = self.store.write().unwrap_or_else(PoisonError::into_inner);
        store.map.clear();
        store.weight = 0;
    }
}

/// Where a fill started: see [`ExactCache::insert`].
#[derive(Debug, Clone, Copy)]
pub struct FillTicket(u64);

/// Values read from the database, kept in this process and dropped by the tags they were
/// stored with (see the module's documentation).
pub struct ExactCache<K, V> {
    shared: Arc<Shared>,
    entries: Arc<Entries<K, V>>,
    _evict: Arc<dyn Evict>,
}

impl<K, V> ExactCache<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The value stored for `key`, if the caches are in use and it is there.
    pub fn get(&self, key: &K) -> Option<V> {
        if !self.shared.fresh() {
            return None;
        }
        self.entries
            .store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .get(key)
            .map(|entry| entry.value.clone())
    }

    /// Take before reading the database for a value to store.
    pub fn ticket(&self) -> FillTicket {
        FillTicket(self.shared.generation.load(Ordering::Acquire))
    }

    /// Stores `value` (read after `ticket` was taken) under `key`, to be dropped by any of
    /// `tags` — unless an invalidation came in meanwhile, which it might predate.
    pub fn insert(&self, ticket: FillTicket, key: K, value: V, tags: Vec<String>) {
        self.insert_weighted(ticket, key, value, tags, 1);
    }

    /// [`ExactCache::insert`] of a value that weighs `weight`. Other entries (any) make room;
    /// a value heavier than the whole cache is not kept.
    pub fn insert_weighted(
        &self,
        ticket: FillTicket,
        key: K,
        value: V,
        tags: Vec<String>,
        weight: usize,
    ) {
        if !self.shared.fresh() || weight > self.entries.capacity {
            return;
        }
        let mut store = self
            .entries
            .store
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock that eviction takes: an invalidation applied before this
        // point has bumped the generation; one applied after finds the entry and drops it.
        if self.shared.generation.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        if let Some(old) = store.map.remove(&key) {
            store.weight -= old.weight;
        }
        // Room by dropping entries in the map's (arbitrary) order: no bookkeeping on reads.
        while store.weight + weight > self.entries.capacity {
            let Some(victim) = store.map.keys().next().cloned() else {
                break;
            };
            if let Some(old) = store.map.remove(&victim) {
                store.weight -= old.weight;
            }
        }
        store.weight += weight;
        store.map.insert(
            key,
            Entry {
                value,
                tags: tags.into_boxed_slice(),
                weight,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.entries
            .store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every `lease / 4`, sends this process's marker on its own channel, over a connection of
/// its own: not from the pool, whose connections may all be busy exactly when the caches
/// matter most (a marker that waits for one would turn the caches off under load). Ends when
/// the caches are dropped.
async fn send_markers(options: Arc<PgConnectOptions>, shared: Weak<Shared>, channel: String) {
    let Some(lease) = shared.upgrade().map(|shared| shared.lease) else {
        return;
    };
    let mut connection: Option<PgConnection> = None;
    let mut tick = tokio::time::interval((lease / 4).max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(sent) = shared.upgrade().map(|shared| shared.micros().max(1)) else {
            return;
        };
        let conn = match connection.as_mut() {
            Some(conn) => conn,
            None => match PgConnection::connect_with(&options).await {
                Ok(conn) => connection.insert(conn),
                Err(error) => {
                    tracing::debug!(%error, "cache invalidation: no connection for markers");
                    continue;
                }
            },
        };
        let marker = query("SELECT pg_notify($1, $2)")
            .bind(&channel)
            .bind(sent.to_string())
            .execute(&mut *conn)
            .await;
        if let Err(error) = marker {
            tracing::debug!(%error, "cache invalidation: marker not sent");
            connection = None;
        }
    }
}

/// The listener: applies invalidations and records when the last marker that came back was
/// sent. After a lost connection it reconnects and clears every cache (what was notified
/// meanwhile is lost). Ends when the caches are dropped.
async fn listen(pool: PgPool, shared: Weak<Shared>, mut stopped: tokio::sync::watch::Receiver<()>) {
    let marker_channel = format!("cache_sync_{}", uuid::Uuid::new_v4().simple());
    tokio::spawn(send_markers(
        pool.connect_options(),
        shared.clone(),
        marker_channel.clone(),
    ));
    let mut backoff = Duration::from_millis(100);
    loop {
        if shared.strong_count() == 0 {
            return;
        }
        let connected = tokio::select! {
            connected = PgListener::connect_with(&pool) => connected,
            _ = stopped.changed() => return,
        };
        let mut listener = match connected {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cache invalidation: cannot listen; caches unused");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(error) = listener.listen_all([CHANNEL, &marker_channel]).await {
            tracing::warn!(%error, "cache invalidation: LISTEN failed; caches unused");
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(100);
        loop {
            let received = tokio::select! {
                received = listener.try_recv() => received,
                _ = stopped.changed() => return,
            };
            let Some(shared) = shared.upgrade() else {
                return;
            };
            match received {
                Ok(Some(notification)) if notification.channel() == CHANNEL => {
                    shared.apply(notification.payload());
                }
                Ok(Some(notification)) => {
                    let Ok(sent) = notification.payload().parse::<u64>() else {
                        continue;
                    };
                    // Caches unused until now (start, reconnect, a lag) may miss what was
                    // notified meanwhile, and a fill begun then may predate it: start over.
                    if !shared.fresh() {
                        shared.clear_all();
                    }
                    shared.synced_at.fetch_max(sent, Ordering::AcqRel);
                }
                // The connection was lost; the next call reconnects.
                Ok(None) => {
                    tracing::warn!(
                        "cache invalidation: connection lost; caches unused until it is back"
                    );
                    shared.synced_at.store(0, Ordering::Release);
                    shared.clear_all();
                }
                Err(error) => {
                    tracing::warn!(%error, "cache invalidation: listener failed; caches unused until it is back");
                    shared.synced_at.store(0, Ordering::Release);
                    shared.clear_all();
                    break;
                }
            }
        }
    }
}
