use limiter::Load;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use limiter::{LimitError, OpConfig};

use super::*;

/// A call that counts its runs, takes 100 ms and fails when asked.
fn load(
    op: &Op,
    runs: &Arc<AtomicU32>,
    key: u32,
    fail: bool,
) -> impl std::future::Future<Output = Result<String, LimitError>> {
    let (op, runs) = (op.clone(), runs.clone());
    async move {
        op.run(Some(&key), move || {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(ms(100)).await;
                if fail {
                    Err(LimitError::Timeout {
                        op: "backend".into(),
                    })
                } else {
                    Ok(format!("value-{key}"))
                }
            }
        })
        .await
    }
}

/// A task making one coalesced call of `key`.
fn spawn_coalesced(
    op: &Op,
    runs: &Arc<AtomicU32>,
    key: u32,
    fail: bool,
) -> tokio::task::JoinHandle<Result<String, LimitError>> {
    let (op, runs) = (op.clone(), runs.clone());
    tokio::spawn(async move {
        op.coalesced(Some(&key), None, || load(&op, &runs, key, fail))
            .await
    })
}

#[tokio::test(start_paused = true)]
async fn identical_concurrent_calls_run_once() {
    let (_reg, op) = op_with("co", OpConfig::default());
    let runs = Arc::new(AtomicU32::new(0));
    let mut calls = Vec::new();
    for _ in 0..10 {
        calls.push(spawn_coalesced(&op, &runs, 1, false));
    }
    let other = spawn_coalesced(&op, &runs, 2, false);
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), "value-1");
    }
    assert_eq!(other.await.unwrap().unwrap(), "value-2");
    assert_eq!(runs.load(Ordering::SeqCst), 2, "once per key");
    let snap = op.snapshot();
    assert_eq!(snap.counters.coalesced, 9);
    assert_eq!(snap.coalescing, 0, "no flight left behind");
}

#[tokio::test(start_paused = true)]
async fn a_failed_leader_shares_nothing() {
    let (_reg, op) = op_with("co_fail", OpConfig::default());
    let runs = Arc::new(AtomicU32::new(0));
    let leader = spawn_coalesced(&op, &runs, 1, true);
    settle().await;
    let follower = spawn_coalesced(&op, &runs, 1, false);
    assert!(leader.await.unwrap().is_err());
    assert_eq!(
        follower.await.unwrap().unwrap(),
        "value-1",
        "ran its own call"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_leader_strands_nobody() {
    let (_reg, op) = op_with("co_cancel", OpConfig::default());
    let runs = Arc::new(AtomicU32::new(0));
    let leader = spawn_coalesced(&op, &runs, 1, false);
    settle().await;
    let follower = spawn_coalesced(&op, &runs, 1, false);
    settle().await;
    leader.abort();
    assert_eq!(follower.await.unwrap().unwrap(), "value-1");
    assert_eq!(
        op.load(),
        Load {
            in_flight: 0,
            queued: 0,
            blocked: 0
        }
    );
    assert_eq!(op.snapshot().coalescing, 0);
}

#[tokio::test(start_paused = true)]
async fn fresh_responses_come_from_the_cache_until_the_ttl() {
    let (_reg, op) = op_with("co_ttl", OpConfig::default());
    let runs = Arc::new(AtomicU32::new(0));
    let ttl = Some(secs(5));
    for _ in 0..3 {
        let v = op
            .coalesced(Some(&1u32), ttl, || load(&op, &runs, 1, false))
            .await;
        assert_eq!(v.unwrap(), "value-1");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(op.snapshot().counters.cache_hits, 2);
    // Stored when the call ended, at 100 ms: still fresh at 5 s, stale after 5.1 s.
    tokio::time::advance(ms(4900)).await;
    op.coalesced(Some(&1u32), ttl, || load(&op, &runs, 1, false))
        .await
        .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    tokio::time::advance(ms(101)).await;
    op.coalesced(Some(&1u32), ttl, || load(&op, &runs, 1, false))
        .await
        .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2, "stale after the ttl");
}
