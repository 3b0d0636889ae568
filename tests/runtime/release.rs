//! Places and queue places come back on every path: success, error, timeout,
//! panic, and the caller dropping the future mid-wait or mid-run.

use futures::FutureExt;
use limiter::Load;
use limiter::{LimitError, OpConfig, OverloadPolicy};

use super::*;

fn tight() -> OpConfig {
    OpConfig {
        max_concurrent: Some(2),
        max_concurrent_per_key: Some(1),
        queue: Some(4),
        queue_per_key: Some(4),
        overload: Some(OverloadPolicy::Block),
        timeout: Some(ms(100)),
        ..OpConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn success_error_and_timeout_release() {
    let (_reg, op) = op_with("paths", tight());
    let key = 1u8;
    op.run(Some(&key), || async { Ok::<_, LimitError>(()) })
        .await
        .unwrap();
    assert_eq!(
        op.load(),
        Load {
            in_flight: 0,
            queued: 0,
            blocked: 0
        }
    );
    let e: Result<(), LimitError> = op
        .run(Some(&key), || async {
            Err(LimitError::Timeout { op: "x".into() })
        })
        .await;
    assert!(e.is_err());
    assert_eq!(
        op.load(),
        Load {
            in_flight: 0,
            queued: 0,
            blocked: 0
        }
    );
    let t = op
        .run(Some(&key), || async {
            tokio::time::sleep(secs(10)).await;
            Ok::<_, LimitError>(())
        })
        .await;
    assert!(matches!(t, Err(LimitError::Timeout { .. })));
    assert_eq!(
        op.load(),
        Load {
            in_flight: 0,
            queued: 0,
            blocked: 0
        }
    );
}

#[tokio::test(start_paused = true)]
async fn panic_releases() {
    let (_reg, op) = op_with("panic", tight());
    let key = 1u8;
    let caught = std::panic::AssertUnwindSafe(op.run(Some(&key), || async {
        panic!("body boom");
        #[allow(unreachable_code)]
        Ok::<_, LimitError>(())
    }))
    .catch_unwind()
    .await;
    assert!(caught.is_err());
    assert_eq!(
        op.load(),
        Load {
            in_flight: 0,
            queued: 0,
            blocked: 0
        }
    );
    assert_eq!(op.snapshot().counters.panics, 1);
    // The key's place is free again too.
    assert!(op.acquire(Some(&key)).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn dropping_futures_mid_wait_and_mid_run_releases_everything() {
    let (_reg, op) = op_with("drops", tight());
    let keys: Vec<u32> = (0..6).collect();
    // Two run (one per key), the rest queue or block behind them.
    let mut running = Vec::new();
    for k in &keys {
        let op = op.clone();
        let k = *k;
        running.push(tokio::spawn(async move {
            op.run(Some(&(k % 3)), || async {
                tokio::time::sleep(ms(50)).await;
                Ok::<_, LimitError>(())
            })
            .await
        }));
    }
    settle().await;
    let Load {
        in_flight,
        queued,
        blocked,
    } = op.load();
    assert_eq!(in_flight, 2);
    assert_eq!(queued + blocked, 4);
    // Cancel everybody: the two mid-run and the four mid-wait.
    for t in &running {
        t.abort();
    }
    for t in running {
        assert!(t.await.unwrap_err().is_cancelled());
    }
    assert_eq!(
        op.load(),
        Load {
            in_flight: 0,
            queued: 0,
            blocked: 0
        }
    );
    let c = op.snapshot().counters;
    assert_eq!(c.cancelled, 2);
    assert_eq!(op.snapshot().bulkhead.keys, 3);
    assert_eq!(op.sweep_keys(), 3, "idle key slots can be dropped");
    // The op is fully usable afterwards.
    let k = 9u32;
    op.run(Some(&k), || async { Ok::<_, LimitError>(()) })
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_waiter_granted_and_dropped_in_the_same_instant_returns_the_place() {
    let cfg = OpConfig {
        max_concurrent: Some(1),
        queue: Some(1),
        ..OpConfig::default()
    };
    let (_reg, op) = op_with("handoff", cfg);
    let holder = take(&op).await;
    let mut waiter = Box::pin(op.acquire(None));
    assert!(futures::poll!(waiter.as_mut()).is_pending());
    assert_eq!(
        op.load(),
        Load {
            in_flight: 1,
            queued: 1,
            blocked: 0
        }
    );
    drop(holder); // hands the place to the waiter...
    assert_eq!(
        op.load(),
        Load {
            in_flight: 1,
            queued: 0,
            blocked: 0
        }
    );
    drop(waiter); // ...which is dropped before it ever sees it
    assert_eq!(
        op.load(),
        Load {
            in_flight: 0,
            queued: 0,
            blocked: 0
        }
    );
}

#[tokio::test(start_paused = true)]
async fn permit_guard_records_failure_and_releases() {
    let (_reg, op) = op_with("guard", tight());
    let mut p = take(&op).await;
    assert_eq!(p.op(), "guard");
    assert_eq!(p.timeout(), Some(ms(100)));
    p.mark_failed();
    drop(p);
    let c = op.snapshot().counters;
    assert_eq!((c.failed, c.succeeded), (1, 0));
    assert_eq!(
        op.load(),
        Load {
            in_flight: 0,
            queued: 0,
            blocked: 0
        }
    );
}
