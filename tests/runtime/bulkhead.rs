use limiter::Load;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use limiter::{LimitError, OpConfig, OverloadPolicy, QueueScope};

use super::*;

fn bulk(max: u32, queue: u32, overload: OverloadPolicy) -> OpConfig {
    OpConfig {
        max_concurrent: Some(max),
        queue: Some(queue),
        overload: Some(overload),
        queue_timeout: Some(secs(3600)),
        ..OpConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn never_exceeds_limits_with_1000_callers() {
    let cfg = OpConfig {
        max_concurrent: Some(10),
        max_concurrent_per_key: Some(3),
        queue: Some(1000),
        queue_per_key: Some(1000),
        queue_timeout: Some(secs(3600)),
        ..OpConfig::default()
    };
    let (_reg, op) = op_with("bulk", cfg);
    let global = Arc::new(AtomicU32::new(0));
    let global_peak = Arc::new(AtomicU32::new(0));
    let per_key: Arc<Vec<AtomicU32>> = Arc::new((0..20).map(|_| AtomicU32::new(0)).collect());
    let key_peak = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for i in 0..1000u32 {
        let (op, global, global_peak, per_key, key_peak) = (
            op.clone(),
            global.clone(),
            global_peak.clone(),
            per_key.clone(),
            key_peak.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // Four keys of at most 3 each could run 12: the op-wide 10 binds too.
            let key = i % 4;
            op.run(Some(&key), || async {
                let g = global.fetch_add(1, Ordering::SeqCst) + 1;
                global_peak.fetch_max(g, Ordering::SeqCst);
                let k = per_key[key as usize].fetch_add(1, Ordering::SeqCst) + 1;
                key_peak.fetch_max(k, Ordering::SeqCst);
                tokio::time::sleep(ms(10 + u64::from(i % 7))).await;
                per_key[key as usize].fetch_sub(1, Ordering::SeqCst);
                global.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, LimitError>(())
            })
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(global_peak.load(Ordering::SeqCst), 10);
    assert_eq!(key_peak.load(Ordering::SeqCst), 3);
    assert_eq!(
        op.load(),
        Load {
            in_flight: 0,
            queued: 0,
            blocked: 0
        }
    );
    let snap = op.snapshot();
    assert_eq!(snap.bulkhead.peak_in_flight, 10);
    assert_eq!(snap.counters.succeeded, 1000);
}

#[tokio::test(start_paused = true)]
async fn drop_newest_refuses_the_newcomer() {
    let (_reg, op) = op_with("dn", bulk(1, 1, OverloadPolicy::DropNewest));
    let a = take(&op).await;
    let b = tokio::spawn({
        let op = op.clone();
        async move { op.acquire(None).await.map(drop) }
    });
    settle().await;
    assert_eq!(
        op.load(),
        Load {
            in_flight: 1,
            queued: 1,
            blocked: 0
        }
    );
    match op.acquire(None).await {
        Err(LimitError::QueueFull {
            scope, retry_after, ..
        }) => {
            assert_eq!(scope, QueueScope::Global);
            assert_eq!(retry_after, secs(5), "the seeds' default retry-after");
        }
        other => panic!("expected QueueFull, got {other:?}"),
    }
    drop(a);
    assert!(b.await.unwrap().is_ok(), "the queued call still runs");
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
async fn drop_oldest_refuses_the_oldest_waiter() {
    let (_reg, op) = op_with("do", bulk(1, 1, OverloadPolicy::DropOldest));
    let a = take(&op).await;
    let b = tokio::spawn({
        let op = op.clone();
        async move { op.acquire(None).await.map(drop) }
    });
    settle().await;
    let c = tokio::spawn({
        let op = op.clone();
        async move { op.acquire(None).await.map(drop) }
    });
    settle().await;
    assert!(matches!(
        b.await.unwrap(),
        Err(LimitError::QueueFull {
            scope: QueueScope::Global,
            ..
        })
    ));
    assert_eq!(
        op.load(),
        Load {
            in_flight: 1,
            queued: 1,
            blocked: 0
        }
    );
    drop(a);
    assert!(c.await.unwrap().is_ok());
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
async fn block_waits_for_a_queue_place() {
    let (_reg, op) = op_with("bl", bulk(1, 1, OverloadPolicy::Block));
    let order = Arc::new(Mutex::new(Vec::new()));
    let a = take(&op).await;
    let mut waiters = Vec::new();
    for name in ["b", "c"] {
        let (op, order) = (op.clone(), order.clone());
        waiters.push(tokio::spawn(async move {
            let p = op.acquire(None).await.unwrap();
            order.lock().unwrap().push(name);
            tokio::time::sleep(ms(10)).await;
            drop(p);
        }));
        settle().await;
    }
    assert_eq!(
        op.load(),
        Load {
            in_flight: 1,
            queued: 1,
            blocked: 1
        },
        "c waits for a queue place"
    );
    drop(a);
    settle().await;
    assert_eq!(
        op.load(),
        Load {
            in_flight: 1,
            queued: 1,
            blocked: 0
        },
        "b runs, c moved into the queue"
    );
    for w in waiters {
        w.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), ["b", "c"]);
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
async fn per_key_queue_full_is_a_key_scope_refusal() {
    let cfg = OpConfig {
        max_concurrent_per_key: Some(1),
        queue_per_key: Some(0),
        ..OpConfig::default()
    };
    let (_reg, op) = op_with("pk", cfg);
    let user = 1u32;
    let other = 2u32;
    let _a = op.acquire(Some(&user)).await.unwrap();
    assert!(matches!(
        op.acquire(Some(&user)).await,
        Err(LimitError::QueueFull {
            scope: QueueScope::Key,
            ..
        })
    ));
    assert!(
        op.acquire(Some(&other)).await.is_ok(),
        "other keys are unaffected"
    );
}

#[tokio::test(start_paused = true)]
async fn waiters_run_by_priority_then_arrival() {
    let (_reg, op) = op_with("prio", bulk(1, 10, OverloadPolicy::DropNewest));
    let order = Arc::new(Mutex::new(Vec::new()));
    let a = take(&op).await;
    let mut waiters = Vec::new();
    for (name, priority) in [
        ("low", 1),
        ("high", 5),
        ("mid", 3),
        ("high2", 5),
        ("none", 0),
    ] {
        let (op, order) = (op.clone(), order.clone());
        waiters.push(tokio::spawn(async move {
            let p = op.call().priority(priority).acquire().await.unwrap();
            order.lock().unwrap().push(name);
            drop(p);
        }));
        settle().await;
    }
    assert_eq!(
        op.load(),
        Load {
            in_flight: 1,
            queued: 5,
            blocked: 0
        }
    );
    drop(a);
    for w in waiters {
        w.await.unwrap();
    }
    assert_eq!(
        *order.lock().unwrap(),
        ["high", "high2", "mid", "low", "none"]
    );
}

#[tokio::test(start_paused = true)]
async fn queue_timeout_refuses_after_the_wait() {
    let cfg = OpConfig {
        queue_timeout: Some(ms(100)),
        ..bulk(1, 5, OverloadPolicy::DropNewest)
    };
    let (_reg, op) = op_with("qt", cfg);
    let _a = take(&op).await;
    let start = tokio::time::Instant::now();
    match op.acquire(None).await {
        Err(LimitError::QueueTimeout { .. }) => {}
        other => panic!("expected QueueTimeout, got {other:?}"),
    }
    assert_eq!(start.elapsed(), ms(100));
    assert_eq!(
        op.load(),
        Load {
            in_flight: 1,
            queued: 0,
            blocked: 0
        }
    );
    assert_eq!(op.snapshot().counters.rejected_queue_timeout, 1);
}

#[tokio::test(start_paused = true)]
async fn raising_the_limit_lets_waiters_in() {
    let (reg, op) = op_with("raise", bulk(1, 5, OverloadPolicy::DropNewest));
    let _a = take(&op).await;
    let b = tokio::spawn({
        let op = op.clone();
        async move { op.acquire(None).await.map(drop) }
    });
    settle().await;
    assert_eq!(
        op.load(),
        Load {
            in_flight: 1,
            queued: 1,
            blocked: 0
        }
    );
    reg.configure("raise", bulk(2, 5, OverloadPolicy::DropNewest))
        .unwrap();
    assert!(b.await.unwrap().is_ok());
}
