//! Cache pieces that need no server: fixed-window math, rate decisions, settings, and the
//! in-process cache's own behaviour (expiry sweeps).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use avatar_platform::core::cache::{
    Cache, CacheSettings, FixedWindow, MemoryCache, RateDecision, RateLimiter,
};
use avatar_platform::core::clock::SystemClock;

fn at_millis(millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis)
}

#[test]
fn a_window_starts_on_a_multiple_of_its_length() {
    let window = Duration::from_secs(60);
    assert_eq!(
        FixedWindow::at(at_millis(120_000), window),
        FixedWindow {
            index: 2,
            resets_in: window
        }
    );
    assert_eq!(
        FixedWindow::at(at_millis(179_999), window),
        FixedWindow {
            index: 2,
            resets_in: Duration::from_millis(1)
        }
    );
    assert_eq!(FixedWindow::at(at_millis(180_000), window).index, 3);
}

#[test]
fn resets_in_keeps_sub_millisecond_precision() {
    let now = UNIX_EPOCH + Duration::from_micros(1_500);
    let slot = FixedWindow::at(now, Duration::from_secs(1));
    assert_eq!(slot.index, 0);
    assert_eq!(slot.resets_in, Duration::from_micros(998_500));
}

#[test]
fn windows_shorter_than_a_millisecond_count_as_one() {
    let slot = FixedWindow::at(at_millis(5), Duration::from_nanos(10));
    assert_eq!(slot.index, 5);
    assert_eq!(slot.resets_in, Duration::from_millis(1));
}

#[test]
fn a_clock_before_the_epoch_counts_as_the_epoch() {
    let before = UNIX_EPOCH - Duration::from_secs(5);
    assert_eq!(FixedWindow::at(before, Duration::from_secs(1)).index, 0);
}

#[test]
fn decisions_allow_up_to_the_limit() {
    let resets_in = Duration::from_secs(7);
    assert_eq!(
        RateDecision::from_count(1, 3, resets_in),
        RateDecision {
            allowed: true,
            remaining: 2,
            retry_after: Duration::ZERO,
            limit: 3
        }
    );
    assert_eq!(RateDecision::from_count(3, 3, resets_in).remaining, 0);
    assert!(RateDecision::from_count(3, 3, resets_in).allowed);
    assert_eq!(
        RateDecision::from_count(4, 3, resets_in),
        RateDecision {
            allowed: false,
            remaining: 0,
            retry_after: resets_in,
            limit: 3
        }
    );
    assert!(!RateDecision::from_count(1, 0, resets_in).allowed);
}

#[test]
fn retry_after_seconds_round_up_for_the_header() {
    let decision = |retry_after| RateDecision {
        allowed: false,
        remaining: 0,
        retry_after,
        limit: 1,
    };
    assert_eq!(decision(Duration::from_millis(1)).retry_after_seconds(), 1);
    assert_eq!(
        decision(Duration::from_millis(2_000)).retry_after_seconds(),
        2
    );
    assert_eq!(
        decision(Duration::from_millis(2_001)).retry_after_seconds(),
        3
    );
    assert_eq!(decision(Duration::ZERO).retry_after_seconds(), 0);
}

#[test]
fn settings_default_to_the_in_process_cache() {
    let settings: CacheSettings = serde_json::from_value(serde_json::json!({})).expect("defaults");
    assert_eq!(settings.redis_url(), None);
    assert_eq!(settings.key_prefix, "ap:");
    assert_eq!(settings.pool_size, 16);
    let empty: CacheSettings =
        serde_json::from_value(serde_json::json!({ "redis_url": "" })).expect("empty url");
    assert_eq!(empty.redis_url(), None);
}

#[test]
fn settings_debug_masks_the_redis_password() {
    let settings = CacheSettings {
        redis_url: Some("redis://:hunter2@cache.internal:6379/0".into()),
        ..CacheSettings::default()
    };
    let printed = format!("{settings:?}");
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(printed.contains("cache.internal:6379"), "{printed}");
}

#[tokio::test]
async fn memory_cache_sweeps_expired_entries_as_it_grows() {
    let cache = MemoryCache::new();
    for batch in 0..20 {
        for index in 0..500 {
            cache
                .set(
                    &format!("{batch}/{index}"),
                    b"x",
                    Some(Duration::from_millis(1)),
                )
                .await
                .expect("set");
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    // 10 000 entries were written; only the live ones (at most the last batch) and those
    // written since the last sweep may remain.
    assert!(
        cache.stored_entries() <= 2_048,
        "{} entries held",
        cache.stored_entries()
    );
}

#[tokio::test]
async fn memory_cache_keeps_entries_without_ttl_through_sweeps() {
    let cache = MemoryCache::new();
    cache.set("keep", b"me", None).await.expect("set");
    for index in 0..3_000 {
        cache
            .set(
                &format!("short/{index}"),
                b"x",
                Some(Duration::from_millis(1)),
            )
            .await
            .expect("set");
    }
    assert_eq!(cache.get("keep").await.expect("get"), Some(b"me".to_vec()));
}

#[tokio::test]
async fn memory_cache_reads_drop_expired_entries() {
    let cache = MemoryCache::new();
    cache
        .set("gone", b"x", Some(Duration::from_millis(5)))
        .await
        .expect("set");
    assert_eq!(cache.stored_entries(), 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(cache.get("gone").await.expect("get"), None);
    assert_eq!(cache.stored_entries(), 0);
}

#[tokio::test]
async fn memory_cache_incr_overflow_is_an_error() {
    let cache = MemoryCache::new();
    let ttl = Duration::from_secs(60);
    cache.incr("big", i64::MAX, ttl).await.expect("incr");
    assert!(cache.incr("big", 1, ttl).await.is_err());
    assert_eq!(
        cache.get("big").await.expect("get"),
        Some(i64::MAX.to_string().into_bytes()),
        "a failed increment changes nothing"
    );
}

#[tokio::test]
async fn rate_limiter_on_the_memory_cache_moves_to_the_next_window() {
    let limiter = RateLimiter::new(Arc::new(MemoryCache::new()), Arc::new(SystemClock));
    let window = Duration::from_secs(1);
    let start = at_millis(1_700_000_000_000);
    assert!(
        limiter
            .check_at("k", 1, window, start)
            .await
            .expect("check")
            .allowed
    );
    let denied = limiter
        .check_at("k", 1, window, start + Duration::from_millis(400))
        .await
        .expect("check");
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after, Duration::from_millis(600));
    let next = limiter
        .check_at("k", 1, window, start + window)
        .await
        .expect("check");
    assert!(next.allowed);
}

#[tokio::test]
async fn failures_recorded_are_seen_by_peek() {
    use avatar_platform::core::cache::{MemoryCache, RateLimiter};
    let limiter = RateLimiter::new(
        std::sync::Arc::new(MemoryCache::new()),
        Arc::new(SystemClock),
    );
    let window = std::time::Duration::from_secs(600);
    for _ in 0..3 {
        assert!(limiter.peek("k", 3, window).await.unwrap().allowed);
        limiter.record("k", window).await.unwrap();
    }
    let decision = limiter.peek("k", 3, window).await.unwrap();
    assert!(!decision.allowed, "{decision:?}");
    assert!(decision.retry_after_seconds() >= 1);
    assert!(limiter.peek("other", 3, window).await.unwrap().allowed);
}
