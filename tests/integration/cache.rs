//! The Cache and RateLimiter contract, run unchanged against the in-process cache and a real
//! Redis (`REDIS_URL`, which `make test` provides).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use avatar_platform::core::cache::{
    Cache, CacheError, CacheSettings, MemoryCache, RateLimiter, RedisCache, build_cache,
};
use avatar_platform::core::clock::{ManualClock, SystemClock};
use deadpool_redis::redis;
use serde::{Deserialize, Serialize};

// ------------------------------------------------------------------------------------------------
// The contract
// ------------------------------------------------------------------------------------------------

/// Everything a `Cache` (and the rate limiter on top of it) promises.
pub async fn cache_contract(cache: Arc<dyn Cache>) {
    cache.check().await.expect("check() on a healthy backend");
    set_get_delete(cache.as_ref()).await;
    json_helpers_round_trip(&cache).await;
    entries_expire_after_their_ttl(cache.as_ref()).await;
    incr_counts_and_reads_back_as_text(cache.as_ref()).await;
    incr_is_atomic_under_concurrency(&cache).await;
    incr_sets_the_ttl_only_when_it_creates_the_key(cache.as_ref()).await;
    rate_limiter_allows_the_limit_then_denies(&cache).await;
    rate_limiter_allows_again_in_the_next_window(&cache).await;
    rate_limiter_keys_are_independent(&cache).await;
    rate_limiter_holds_under_concurrency(&cache).await;
}

async fn set_get_delete(cache: &dyn Cache) {
    assert_eq!(cache.get("kv/missing").await.expect("get"), None);
    cache.set("kv/a", b"one", None).await.expect("set");
    assert_eq!(cache.get("kv/a").await.expect("get"), Some(b"one".to_vec()));
    cache.set("kv/a", b"two", None).await.expect("overwrite");
    assert_eq!(cache.get("kv/a").await.expect("get"), Some(b"two".to_vec()));
    cache
        .set("kv/binary", &[0, 255, 10, 13], None)
        .await
        .expect("set binary");
    assert_eq!(
        cache.get("kv/binary").await.expect("get"),
        Some(vec![0, 255, 10, 13])
    );
    cache.delete("kv/a").await.expect("delete");
    assert_eq!(cache.get("kv/a").await.expect("get"), None);
    cache
        .delete("kv/a")
        .await
        .expect("deleting a missing key is fine");
    cache.delete("kv/binary").await.expect("delete");
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Session {
    user_id: String,
    roles: Vec<String>,
}

async fn json_helpers_round_trip(cache: &Arc<dyn Cache>) {
    let session = Session {
        user_id: "0190".into(),
        roles: vec!["owner".into()],
    };
    cache
        .set_json("json/session", &session, Some(Duration::from_secs(60)))
        .await
        .expect("set_json");
    assert_eq!(
        cache
            .get_json::<Session>("json/session")
            .await
            .expect("get_json"),
        Some(session)
    );
    assert_eq!(
        cache
            .get_json::<Session>("json/missing")
            .await
            .expect("get_json"),
        None
    );
    cache
        .set("json/garbage", b"not json", None)
        .await
        .expect("set");
    assert!(matches!(
        cache.get_json::<Session>("json/garbage").await,
        Err(CacheError::Serde(_))
    ));
    cache.delete("json/session").await.expect("delete");
    cache.delete("json/garbage").await.expect("delete");
}

async fn entries_expire_after_their_ttl(cache: &dyn Cache) {
    cache
        .set("ttl/short", b"soon gone", Some(Duration::from_millis(500)))
        .await
        .expect("set with ttl");
    cache.set("ttl/forever", b"stays", None).await.expect("set");
    assert_eq!(
        cache.get("ttl/short").await.expect("get"),
        Some(b"soon gone".to_vec())
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(cache.get("ttl/short").await.expect("get"), None, "expired");
    assert_eq!(
        cache.get("ttl/forever").await.expect("get"),
        Some(b"stays".to_vec())
    );
    // Setting again without a TTL removes the old expiry.
    cache
        .set("ttl/replaced", b"v1", Some(Duration::from_millis(200)))
        .await
        .expect("set");
    cache.set("ttl/replaced", b"v2", None).await.expect("set");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        cache.get("ttl/replaced").await.expect("get"),
        Some(b"v2".to_vec())
    );
    cache.delete("ttl/forever").await.expect("delete");
    cache.delete("ttl/replaced").await.expect("delete");
}

async fn incr_counts_and_reads_back_as_text(cache: &dyn Cache) {
    let minute = Duration::from_secs(60);
    assert_eq!(cache.incr("counter/n", 5, minute).await.expect("incr"), 5);
    assert_eq!(cache.incr("counter/n", -2, minute).await.expect("incr"), 3);
    assert_eq!(
        cache.get("counter/n").await.expect("get"),
        Some(b"3".to_vec())
    );
    cache
        .set("counter/text", b"not a number", None)
        .await
        .expect("set");
    assert!(matches!(
        cache.incr("counter/text", 1, minute).await,
        Err(CacheError::Backend(_))
    ));
    cache.delete("counter/n").await.expect("delete");
    cache.delete("counter/text").await.expect("delete");
}

async fn incr_is_atomic_under_concurrency(cache: &Arc<dyn Cache>) {
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let cache = Arc::clone(cache);
            tokio::spawn(async move {
                cache
                    .incr("counter/concurrent", 1, Duration::from_secs(60))
                    .await
                    .expect("incr")
            })
        })
        .collect();
    let mut seen = BTreeSet::new();
    for task in tasks {
        seen.insert(task.await.expect("task"));
    }
    assert_eq!(
        seen,
        (1..=200).collect::<BTreeSet<i64>>(),
        "every increment counted once"
    );
    assert_eq!(
        cache.get("counter/concurrent").await.expect("get"),
        Some(b"200".to_vec())
    );
    cache.delete("counter/concurrent").await.expect("delete");
}

async fn incr_sets_the_ttl_only_when_it_creates_the_key(cache: &dyn Cache) {
    let key = "counter/ttl";
    assert_eq!(
        cache
            .incr(key, 1, Duration::from_millis(800))
            .await
            .expect("incr"),
        1
    );
    // Generous margins: a loaded CI machine may oversleep.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A long TTL here must not extend the key's life.
    assert_eq!(
        cache
            .incr(key, 1, Duration::from_secs(60))
            .await
            .expect("incr"),
        2
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        cache.get(key).await.expect("get"),
        None,
        "expired on the first TTL"
    );
    assert_eq!(
        cache
            .incr(key, 1, Duration::from_secs(60))
            .await
            .expect("incr"),
        1,
        "a new key starts from zero"
    );
    cache.delete(key).await.expect("delete");
}

/// An instant at the very start of a window, so a test's calls cannot straddle two windows.
fn start_of_a_window(window: Duration) -> SystemTime {
    let window_ms = window.as_millis() as u64;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64;
    UNIX_EPOCH + Duration::from_millis(now_ms / window_ms * window_ms)
}

async fn rate_limiter_allows_the_limit_then_denies(cache: &Arc<dyn Cache>) {
    let limiter = RateLimiter::new(Arc::clone(cache), Arc::new(SystemClock));
    let window = Duration::from_secs(10);
    let now = start_of_a_window(window);
    let key = format!("login:{}", uuid::Uuid::new_v4());
    for expected_remaining in [2, 1, 0] {
        let decision = limiter.check_at(&key, 3, window, now).await.expect("check");
        assert!(decision.allowed);
        assert_eq!(decision.remaining, expected_remaining);
        assert_eq!(decision.retry_after, Duration::ZERO);
        assert_eq!(decision.limit, 3);
    }
    let denied = limiter.check_at(&key, 3, window, now).await.expect("check");
    assert!(!denied.allowed);
    assert_eq!(denied.remaining, 0);
    assert_eq!(
        denied.retry_after, window,
        "at the window's start, a whole window remains"
    );

    let later = now + Duration::from_millis(7_250);
    let denied = limiter
        .check_at(&key, 3, window, later)
        .await
        .expect("check");
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after, Duration::from_millis(2_750));
    assert_eq!(denied.retry_after_seconds(), 3);

    let nothing_allowed = limiter
        .check_at(&format!("{key}:zero"), 0, window, now)
        .await
        .expect("check");
    assert!(!nothing_allowed.allowed);
}

async fn rate_limiter_allows_again_in_the_next_window(cache: &Arc<dyn Cache>) {
    let limiter = RateLimiter::new(Arc::clone(cache), Arc::new(SystemClock));
    let key = format!("api-key:{}", uuid::Uuid::new_v4());

    // With an explicit clock: the next window is a new count.
    let window = Duration::from_secs(60);
    let now = start_of_a_window(window);
    for _ in 0..2 {
        assert!(
            limiter
                .check_at(&key, 2, window, now)
                .await
                .expect("check")
                .allowed
        );
    }
    assert!(
        !limiter
            .check_at(&key, 2, window, now)
            .await
            .expect("check")
            .allowed
    );
    let next = limiter
        .check_at(&key, 2, window, now + window)
        .await
        .expect("check");
    assert!(next.allowed);
    assert_eq!(next.remaining, 1);

    // On the limiter's clock: `retry_after` later is enough.
    let clock = ManualClock::starting_now();
    let limiter = RateLimiter::new(Arc::clone(cache), clock.clone());
    let key = format!("{key}:clock");
    let window = Duration::from_millis(700);
    let mut denied = None;
    for _ in 0..6 {
        let decision = limiter.check(&key, 2, window).await.expect("check");
        if !decision.allowed {
            denied = Some(decision);
            break;
        }
    }
    let denied = denied.expect("denied within a few calls");
    assert!(denied.retry_after > Duration::ZERO && denied.retry_after <= window);
    clock.advance(
        chrono::Duration::from_std(denied.retry_after + Duration::from_millis(1)).unwrap(),
    );
    assert!(
        limiter.check(&key, 2, window).await.expect("check").allowed,
        "a new window allows again"
    );
}

async fn rate_limiter_keys_are_independent(cache: &Arc<dyn Cache>) {
    let limiter = RateLimiter::new(Arc::clone(cache), Arc::new(SystemClock));
    let window = Duration::from_secs(30);
    let now = start_of_a_window(window);
    let run = uuid::Uuid::new_v4();
    let first = format!("ip:{run}:10.0.0.1");
    let second = format!("ip:{run}:10.0.0.2");
    assert!(
        limiter
            .check_at(&first, 1, window, now)
            .await
            .expect("check")
            .allowed
    );
    assert!(
        !limiter
            .check_at(&first, 1, window, now)
            .await
            .expect("check")
            .allowed
    );
    let other = limiter
        .check_at(&second, 1, window, now)
        .await
        .expect("check");
    assert!(other.allowed, "another key has its own count");
    assert_eq!(other.remaining, 0);
}

async fn rate_limiter_holds_under_concurrency(cache: &Arc<dyn Cache>) {
    let limiter = Arc::new(RateLimiter::new(Arc::clone(cache), Arc::new(SystemClock)));
    let window = Duration::from_secs(30);
    let now = start_of_a_window(window);
    let key = format!("burst:{}", uuid::Uuid::new_v4());
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            let key = key.clone();
            tokio::spawn(async move {
                limiter
                    .check_at(&key, 10, window, now)
                    .await
                    .expect("check")
            })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        if task.await.expect("task").allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 10, "exactly the limit is allowed");
}

// ------------------------------------------------------------------------------------------------
// Redis helpers
// ------------------------------------------------------------------------------------------------

fn redis_url() -> String {
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "REDIS_URL is not set: the Redis cache tests need a real Redis. Run them with \
             `make test` (which starts one), or export REDIS_URL=redis://127.0.0.1:6379"
        ),
    }
}

/// A key prefix no other test uses.
fn unique_prefix() -> String {
    format!("test:{}:", uuid::Uuid::new_v4().simple())
}

/// Deletes every key under `prefix` (rate-limit counters included).
async fn remove_keys(url: &str, prefix: &str) {
    let client = redis::Client::open(url).expect("Redis URL");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis connection");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .expect("KEYS");
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut connection)
            .await
            .expect("DEL");
    }
}

async fn count_keys(url: &str, prefix: &str) -> usize {
    let client = redis::Client::open(url).expect("Redis URL");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis connection");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .expect("KEYS");
    keys.len()
}

// ------------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_backend_passes_contract() {
    cache_contract(Arc::new(MemoryCache::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_backend_passes_contract() {
    let url = redis_url();
    let prefix = unique_prefix();
    let settings = CacheSettings {
        redis_url: Some(url.clone()),
        key_prefix: prefix.clone(),
        pool_size: 8,
        ..CacheSettings::default()
    };
    let cache = build_cache(&settings).await.expect("Redis cache");
    assert_eq!(cache.backend_name(), "redis");
    cache_contract(Arc::clone(&cache)).await;

    // Every key lived under the prefix: rate-limit counters are what is left.
    let left = count_keys(&url, &prefix).await;
    assert!(
        left > 0,
        "the suite's keys are written under the configured prefix"
    );
    remove_keys(&url, &prefix).await;
    assert_eq!(count_keys(&url, &prefix).await, 0);
}

#[tokio::test]
async fn build_cache_without_a_url_is_in_process() {
    for redis_url in [None, Some(String::new()), Some("  ".to_owned())] {
        let settings = CacheSettings {
            redis_url,
            ..CacheSettings::default()
        };
        let cache = build_cache(&settings).await.expect("memory cache");
        assert_eq!(cache.backend_name(), "memory");
        cache.check().await.expect("always ready");
    }
}

#[tokio::test]
async fn without_an_answering_redis_the_cache_runs_in_process_and_hides_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}");
    let settings = CacheSettings {
        redis_url: Some(url.clone()),
        timeout_ms: 200,
        ..CacheSettings::default()
    };
    // Start-up does not fail: the platform serves degraded until Redis answers.
    let cache = build_cache(&settings)
        .await
        .expect("starts on the in-process fallback");
    assert_eq!(cache.backend_name(), "redis");
    let error = cache.check().await.expect_err("nothing listens there");
    let message = error.to_string();
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    // ... and every operation still works, in this process.
    cache.set("k", b"v", None).await.expect("set falls back");
    assert_eq!(cache.get("k").await.expect("get"), Some(b"v".to_vec()));
    assert_eq!(
        cache.incr("n", 2, Duration::from_secs(60)).await.unwrap(),
        2
    );
    let limiter = RateLimiter::new(cache.clone(), Arc::new(SystemClock));
    assert!(
        limiter
            .check("ip", 1, Duration::from_secs(60))
            .await
            .unwrap()
            .allowed
    );
    assert!(
        !limiter
            .check("ip", 1, Duration::from_secs(60))
            .await
            .unwrap()
            .allowed
    );
    assert!(!format!("{cache:?}").contains("hunter2"));

    // The bare Redis backend reports the failure, again without the password.
    let redis = RedisCache::new(&url, "ap:", 2).expect("pool");
    let error = redis.check().await.expect_err("nothing listens there");
    assert!(!error.to_string().contains("hunter2"));
    assert!(!format!("{redis:?}").contains("hunter2"));
}
