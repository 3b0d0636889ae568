use limiter::Load;
use limiter::{Algorithm, BreakerConfig, BreakerState, LimitError, OpConfig};

use super::*;

// Regressions for defects found in review; each test failed before its fix.

/// A breaker that opens at the first failure, waits 10 s, and closes after
/// two successful probes out of two allowed at once.
fn two_probe_breaker() -> OpConfig {
    OpConfig {
        breaker: BreakerConfig {
            enabled: Some(true),
            min_calls: Some(1),
            window: Some(1),
            failure_rate: Some(1.0),
            recovery: Some(secs(10)),
            half_open_calls: Some(2),
            success_threshold: Some(2),
            ..BreakerConfig::default()
        },
        ..OpConfig::default()
    }
}

/// A probe admitted in one half-open round is counted in the next one.
#[tokio::test(start_paused = true)]
async fn stale_probe_does_not_count_in_the_next_round() {
    let cfg = two_probe_breaker();
    let (_reg, op) = op_with("br", cfg);
    let mut p = take(&op).await;
    p.mark_failed();
    drop(p);
    assert_eq!(op.snapshot().breaker.state, BreakerState::Open);
    tokio::time::advance(secs(10)).await;
    let p1 = take(&op).await; // round-1 probe, slow
    let mut p2 = take(&op).await;
    p2.mark_failed();
    drop(p2); // reopens
    assert_eq!(op.snapshot().breaker.state, BreakerState::Open);
    tokio::time::advance(secs(10)).await;
    let p3 = take(&op).await; // round-2 probes
    let p4 = take(&op).await;
    assert!(matches!(
        op.acquire(None).await,
        Err(LimitError::CircuitOpen { .. })
    ));
    drop(p1); // stale round-1 probe ends: frees a round-2 place and counts a success
    let p5 = op.acquire(None).await;
    assert!(
        p5.is_err(),
        "3 probes at once with half_open_calls = 2 (p3, p4, p5 running)"
    );
    drop((p3, p4, p5));
}

/// Stale probe success closes the breaker after one real probe.
#[tokio::test(start_paused = true)]
async fn stale_probe_success_does_not_close_the_breaker() {
    let cfg = two_probe_breaker();
    let (_reg, op) = op_with("br2", cfg);
    let mut p = take(&op).await;
    p.mark_failed();
    drop(p);
    tokio::time::advance(secs(10)).await;
    let p1 = take(&op).await;
    let mut p2 = take(&op).await;
    p2.mark_failed();
    drop(p2);
    tokio::time::advance(secs(10)).await;
    let p3 = take(&op).await;
    drop(p1); // stale
    drop(p3); // one real success
    assert_ne!(
        op.snapshot().breaker.state,
        BreakerState::Closed,
        "closed with success_threshold = 2 after 1 probe of this round"
    );
}

/// Fixed window with a short period: retry_after underflows after 2^32 windows.
#[tokio::test(start_paused = true)]
async fn fixed_window_retry_after_after_2_pow_32_windows() {
    let cfg = OpConfig {
        algorithm: Some(Algorithm::FixedWindow),
        ..OpConfig::default()
    }
    .with_rate("1/ms")
    .unwrap();
    let (_reg, op) = op_with("fw", cfg);
    tokio::time::advance(ms((1u64 << 32) + 5)).await;
    let _a = op.acquire(None).await.unwrap();
    match op.acquire(None).await {
        Err(LimitError::RateLimited { retry_after, .. }) => {
            assert!(retry_after <= ms(1), "retry_after = {retry_after:?}")
        }
        other => panic!("{other:?}"),
    }
}

/// A "wait forever" queue timeout panics when a call has to queue.
#[tokio::test(start_paused = true)]
async fn a_wait_forever_queue_timeout_does_not_panic() {
    let cfg = OpConfig {
        max_concurrent: Some(1),
        queue: Some(1),
        queue_timeout: Some(Duration::MAX),
        ..OpConfig::default()
    };
    let (_reg, op) = op_with("qt", cfg);
    let _a = take(&op).await;
    let r = tokio::time::timeout(ms(10), op.acquire(None)).await;
    assert!(r.is_err());
}

/// A huge call timeout panics.
#[tokio::test(start_paused = true)]
async fn a_wait_forever_timeout_does_not_panic() {
    let cfg = OpConfig {
        timeout: Some(Duration::MAX),
        ..OpConfig::default()
    };
    let (_reg, op) = op_with("to", cfg);
    let r = op.run(None, || async { Ok::<_, LimitError>(1) }).await;
    assert_eq!(r.unwrap(), 1);
}

/// A background call adopted after shutdown returned is never drained.
#[tokio::test(start_paused = true)]
async fn no_background_adoption_after_shutdown() {
    let cfg = OpConfig {
        timeout: Some(ms(100)),
        ..OpConfig::default()
    };
    let (reg, op) = op_with("bgs", cfg);
    let report = reg.tasks().shutdown(secs(1)).await;
    assert_eq!(report.cancelled + report.drained, 0);
    let r = op
        .call()
        .background()
        .run(|| async {
            tokio::time::sleep(secs(3600)).await;
            Ok::<_, LimitError>(7)
        })
        .await;
    assert!(
        !matches!(r, Err(LimitError::MovedToBackground { .. })),
        "adopted after shutdown; outstanding = {}",
        reg.tasks().outstanding()
    );
}

/// Randomised churn on one bulkhead: every path must leave it empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulkhead_churn_always_ends_empty() {
    use limiter::OverloadPolicy;
    for round in 0..30u64 {
        let policy = [
            OverloadPolicy::DropNewest,
            OverloadPolicy::DropOldest,
            OverloadPolicy::Block,
        ][(round % 3) as usize];
        let cfg = OpConfig {
            max_concurrent: Some(3),
            max_concurrent_per_key: Some(2),
            queue: Some(4),
            queue_per_key: Some(2),
            queue_timeout: Some(ms(3)),
            overload: Some(policy),
            timeout: Some(ms(2)),
            max_keys: Some(16),
            ..OpConfig::default()
        };
        let (reg, op) = op_with("churn", cfg.clone());
        let mut hs = Vec::new();
        for i in 0..300u64 {
            let op = op.clone();
            hs.push(tokio::spawn(async move {
                let key = rng_u64(0..5);
                let work = rng_u64(0..4000);
                let fut = op
                    .call()
                    .key(&key)
                    .priority(rng_i64(-2..3))
                    .run(move || async move {
                        tokio::time::sleep(Duration::from_micros(work)).await;
                        if work.is_multiple_of(7) {
                            Err(LimitError::Timeout { op: "x".into() })
                        } else {
                            Ok(())
                        }
                    });
                if i % 3 == 0 {
                    let _ =
                        tokio::time::timeout(Duration::from_micros(rng_u64(0..3000)), fut).await;
                } else {
                    let _ = fut.await;
                }
            }));
            if i % 50 == 0 {
                let mut c = cfg.clone();
                c.max_concurrent = Some(1 + rng_u32(0..4));
                c.max_concurrent_per_key = Some(1 + rng_u32(0..2));
                c.queue = Some(rng_u32(0..5));
                c.queue_per_key = Some(rng_u32(0..3));
                reg.configure("churn", c).unwrap();
            }
            if i % 10 == 0 {
                tokio::task::yield_now().await;
            }
        }
        for h in hs {
            h.await.unwrap();
        }
        assert_eq!(
            op.load(),
            Load {
                in_flight: 0,
                queued: 0,
                blocked: 0
            },
            "round {round}"
        );
        assert!(op.sweep_keys() <= 16);
        assert_eq!(op.snapshot().bulkhead.keys, 0, "round {round}");
    }
}

fn rng_next() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static S: AtomicU64 = AtomicU64::new(0x9E3779B97F4A7C15);
    let mut x = S.load(Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    S.store(x, Ordering::Relaxed);
    x
}
fn rng_u64(r: std::ops::Range<u64>) -> u64 {
    r.start + rng_next() % (r.end - r.start)
}
fn rng_u32(r: std::ops::Range<u32>) -> u32 {
    rng_u64(r.start as u64..r.end as u64) as u32
}
fn rng_i64(r: std::ops::Range<i64>) -> i64 {
    r.start + (rng_next() % ((r.end - r.start) as u64)) as i64
}

/// reset_key racing with a caller of the same key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_key_racing_a_caller_keeps_the_per_key_bound() {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;
    let cfg = OpConfig {
        max_concurrent: Some(100),
        max_concurrent_per_key: Some(1),
        queue: Some(100),
        queue_per_key: Some(100),
        queue_timeout: Some(secs(10)),
        ..OpConfig::default()
    };
    let (_reg, op) = op_with("rk", cfg);
    let running = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let resetter = {
        let op = op.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if op.reset_key(&7u64) {
                    n += 1;
                }
            }
            n
        })
    };
    let mut hs = Vec::new();
    for _ in 0..2 {
        let op = op.clone();
        let running = running.clone();
        let peak = peak.clone();
        hs.push(tokio::spawn(async move {
            for _ in 0..50_000 {
                let _p = op.acquire(Some(&7u64)).await.unwrap();
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                for _ in 0..200 {
                    std::hint::spin_loop();
                }
                running.fetch_sub(1, Ordering::SeqCst);
                drop(_p);
                for _ in 0..(rng_next() % 400) {
                    std::hint::spin_loop();
                }
            }
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let resets = resetter.join().unwrap();
    assert_eq!(
        peak.load(Ordering::SeqCst),
        1,
        "two calls of one key at once with max_concurrent_per_key = 1 (resets: {resets})"
    );
}

/// After the queue shrank below its occupancy, `drop_oldest` must not evict
/// a waiter when that would still leave no room for the newcomer.
#[tokio::test(start_paused = true)]
async fn drop_oldest_evicts_only_when_that_makes_room() {
    use limiter::OverloadPolicy;
    let cfg = OpConfig {
        max_concurrent: Some(1),
        queue: Some(2),
        overload: Some(OverloadPolicy::DropOldest),
        ..OpConfig::default()
    };
    let (reg, op) = op_with("shrink", cfg.clone());
    let _holder = take(&op).await;
    let mut waiters = Vec::new();
    for _ in 0..2 {
        let op = op.clone();
        waiters.push(tokio::spawn(
            async move { op.acquire(None).await.map(drop) },
        ));
        settle().await;
    }
    assert_eq!(
        op.load(),
        Load {
            in_flight: 1,
            queued: 2,
            blocked: 0
        }
    );
    reg.configure(
        "shrink",
        OpConfig {
            queue: Some(1),
            ..cfg
        },
    )
    .unwrap();
    assert!(matches!(
        op.acquire(None).await,
        Err(LimitError::QueueFull { .. })
    ));
    assert_eq!(
        op.load(),
        Load {
            in_flight: 1,
            queued: 2,
            blocked: 0
        },
        "no waiter was evicted for nothing"
    );
    for w in &waiters {
        assert!(!w.is_finished());
    }
}
