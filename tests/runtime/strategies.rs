use limiter::Load;
use std::sync::mpsc;
use std::time::Instant as StdInstant;

use limiter::{LimitError, OpConfig, OpKind, TaskState};

use super::*;

fn timed(t: Duration) -> OpConfig {
    OpConfig {
        timeout: Some(t),
        ..OpConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn cancel_drops_the_future() {
    let (_reg, op) = op_with("cancel", timed(ms(100)));
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    struct OnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let start = tokio::time::Instant::now();
    let r = op
        .run(None, || {
            let guard = OnDrop(dropped.clone());
            async move {
                let _guard = guard;
                tokio::time::sleep(secs(1)).await;
                Ok::<_, LimitError>(1)
            }
        })
        .await;
    assert!(matches!(r, Err(LimitError::Timeout { .. })));
    assert_eq!(start.elapsed(), ms(100));
    assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(
        op.load(),
        Load {
            in_flight: 0,
            queued: 0,
            blocked: 0
        }
    );
    assert_eq!(op.snapshot().counters.timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn background_keeps_running_as_a_tracked_task() {
    let cfg = OpConfig {
        max_concurrent: Some(1),
        queue: Some(0),
        ..timed(ms(100))
    };
    let (reg, op) = op_with("bg", cfg);
    let r = op
        .call()
        .background()
        .run(|| async {
            tokio::time::sleep(secs(1)).await;
            Ok::<_, LimitError>(7)
        })
        .await;
    let task_id = match r {
        Err(LimitError::MovedToBackground { task_id, .. }) => task_id,
        other => panic!("expected MovedToBackground, got {other:?}"),
    };
    let info = reg.tasks().get(task_id).unwrap();
    assert_eq!(info.state, TaskState::Running);
    assert_eq!(info.op.as_deref(), Some("bg"));
    assert_eq!(
        op.load(),
        Load {
            in_flight: 1,
            queued: 0,
            blocked: 0
        },
        "the background work keeps its place"
    );
    assert!(matches!(
        op.acquire(None).await,
        Err(LimitError::QueueFull { .. })
    ));
    tokio::time::sleep(secs(1)).await;
    settle().await;
    assert_eq!(
        reg.tasks().get(task_id).unwrap().state,
        TaskState::Succeeded
    );
    assert_eq!(
        op.load(),
        Load {
            in_flight: 0,
            queued: 0,
            blocked: 0
        }
    );
    let c = op.snapshot().counters;
    assert_eq!((c.timeouts, c.moved_to_background), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn background_records_a_late_failure_on_the_task() {
    let (reg, op) = op_with("bgfail", timed(ms(10)));
    let r = op
        .call()
        .background()
        .run(|| async {
            tokio::time::sleep(ms(50)).await;
            Err::<(), _>(LimitError::Overloaded {
                op: "downstream".into(),
                retry_after: secs(1),
            })
        })
        .await;
    let Err(LimitError::MovedToBackground { task_id, .. }) = r else {
        panic!("expected MovedToBackground, got {r:?}");
    };
    tokio::time::sleep(ms(50)).await;
    settle().await;
    let info = reg.tasks().get(task_id).unwrap();
    assert_eq!(info.state, TaskState::Failed);
    assert!(info.error.unwrap().contains("downstream"));
}

#[tokio::test(start_paused = true)]
async fn cache_fallback_answers_with_the_last_good_value_per_key() {
    let (_reg, op) = op_with("cache", timed(ms(100)));
    let (a, b) = ("a".to_string(), "b".to_string());
    let fast = op
        .call()
        .key(&a)
        .cache_fallback()
        .run(|| async { Ok::<_, LimitError>(41) })
        .await;
    assert_eq!(fast.unwrap(), 41);
    let slow = || async {
        tokio::time::sleep(secs(1)).await;
        Ok::<_, LimitError>(99)
    };
    assert_eq!(
        op.call().key(&a).cache_fallback().run(slow).await.unwrap(),
        41
    );
    assert!(matches!(
        op.call().key(&b).cache_fallback().run(slow).await,
        Err(LimitError::Timeout { .. })
    ));
    let c = op.snapshot().counters;
    assert_eq!((c.timeouts, c.cache_fallbacks), (2, 1));
    assert_eq!(op.snapshot().cache_entries, 1);
}

// Real time: tokio's paused clock does not move while blocking work runs.
#[tokio::test]
async fn blocking_work_is_offloaded_and_orphaned_on_timeout() {
    // The file_io preset retries twice; one attempt keeps the count simple.
    let cfg = OpConfig {
        kind: Some(OpKind::FileIo),
        retry: limiter::RetryConfig {
            retries: Some(0),
            ..Default::default()
        },
        ..timed(ms(50))
    };
    let (_reg, op) = op_with("file", cfg);
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = std::sync::Mutex::new(go_rx);
    let r = op
        .call()
        .run_blocking(move || {
            // Blocks this pool thread until the test lets it go.
            let _ = go_rx.lock().unwrap().recv();
            Ok::<_, LimitError>(())
        })
        .await;
    assert!(matches!(r, Err(LimitError::Timeout { .. })));
    let c = op.snapshot().counters;
    assert_eq!((c.orphans, c.orphans_running), (1, 1));
    assert_eq!(
        op.load(),
        Load {
            in_flight: 1,
            queued: 0,
            blocked: 0
        },
        "the orphan keeps its place until it really ends"
    );
    go_tx.send(()).unwrap();
    let waited = StdInstant::now();
    while op.snapshot().counters.orphans_running != 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "orphan never finished"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(op.snapshot().counters.orphans, 1);
    assert_eq!(
        op.load(),
        Load {
            in_flight: 0,
            queued: 0,
            blocked: 0
        },
        "its end released the place"
    );
}

/// The name of the thread an op of `kind` runs blocking work on.
async fn offload_thread(kind: OpKind) -> String {
    let cfg = OpConfig {
        kind: Some(kind),
        ..OpConfig::default()
    };
    let (_reg, op) = op_with("where", cfg);
    op.call()
        .run_blocking(|| {
            Ok::<_, LimitError>(std::thread::current().name().unwrap_or("").to_owned())
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn cpu_work_runs_on_the_cpu_pool() {
    let cpu = offload_thread(OpKind::CpuIntensive).await;
    assert!(cpu.starts_with("limiter-cpu-"), "ran on {cpu}");
    let io = offload_thread(OpKind::FileIo).await;
    assert!(
        !io.starts_with("limiter-cpu-"),
        "I/O work stays on tokio's blocking pool, ran on {io}"
    );
}

#[tokio::test]
async fn blocking_work_can_move_to_the_background() {
    let (reg, op) = op_with("export", timed(ms(10)));
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = std::sync::Mutex::new(go_rx);
    let r = op
        .call()
        .background()
        .run_blocking(move || {
            let _ = go_rx.lock().unwrap().recv();
            Ok::<_, LimitError>(5)
        })
        .await;
    let Err(LimitError::MovedToBackground { task_id, .. }) = r else {
        panic!("expected MovedToBackground, got {r:?}");
    };
    go_tx.send(()).unwrap();
    let handle_state = {
        let waited = StdInstant::now();
        loop {
            settle().await;
            let s = reg.tasks().get(task_id).unwrap().state;
            if s.is_terminal() || waited.elapsed() > Duration::from_secs(10) {
                break s;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    assert_eq!(handle_state, TaskState::Succeeded);
    assert_eq!(op.snapshot().counters.orphans, 0, "tracked, not orphaned");
}

#[tokio::test]
async fn blocking_panic_is_resumed_in_the_caller() {
    let (_reg, op) = op_with("boom", OpConfig::default());
    let op2 = op.clone();
    let joined = tokio::spawn(async move {
        op2.call()
            .run_blocking(|| -> Result<(), LimitError> { panic!("blocking boom") })
            .await
    })
    .await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!(
        op.snapshot().counters.panics,
        1,
        "{:?}",
        op.snapshot().counters
    );
    assert_eq!(
        op.load(),
        Load {
            in_flight: 0,
            queued: 0,
            blocked: 0
        }
    );
}

/// `drain`: the caller gets `Timeout` at the deadline, the body finishes
/// on the runtime holding its place (the next caller waits for it), its
/// late result discarded and counted; a body still running at
/// `drain_timeout` is dropped, counted, and its place given back then.
#[tokio::test(start_paused = true)]
async fn drain_answers_timeout_and_finishes_the_body_holding_its_place() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use tokio::time::Instant;
    let (_reg, op) = one_place_op();
    let finished = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let body_done = Arc::clone(&finished);
    let r = op
        .call()
        .drain()
        .run(move || {
            let done = Arc::clone(&body_done);
            async move {
                tokio::time::sleep(ms(200)).await;
                done.store(true, Ordering::SeqCst);
                Ok::<_, LimitError>(1)
            }
        })
        .await;
    assert!(matches!(r, Err(LimitError::Timeout { .. })), "{r:?}");
    assert_eq!(start.elapsed(), ms(50), "answered at the deadline");
    assert_eq!(op.snapshot().counters.draining, 1);
    // The drained body holds the one place: the next caller waits for it.
    let next = op.acquire(None).await.unwrap();
    assert!(
        finished.load(Ordering::SeqCst),
        "admitted only after the body ended"
    );
    assert_eq!(start.elapsed(), ms(200));
    drop(next);
    let c = op.snapshot().counters;
    assert_eq!(
        (c.drained, c.drain_dropped, c.draining, c.timeouts),
        (1, 0, 0, 1)
    );

    // A body that outlives drain_timeout is dropped then, place given back.
    let start = Instant::now();
    let r = op
        .call()
        .drain()
        .run(|| async {
            tokio::time::sleep(secs(60)).await;
            Ok::<_, LimitError>(2)
        })
        .await;
    assert!(matches!(r, Err(LimitError::Timeout { .. })), "{r:?}");
    let next = op.acquire(None).await.unwrap();
    assert_eq!(
        start.elapsed(),
        ms(1050),
        "the place came back at drain_timeout"
    );
    drop(next);
    let c = op.snapshot().counters;
    assert_eq!((c.drained, c.drain_dropped, c.draining), (1, 1, 0));
}

/// An op of one place, a 50 ms timeout and a 1 s `drain_timeout`: the
/// next caller is admitted only once a timed-out call's place comes back.
fn one_place_op() -> (limiter::Registry, Op) {
    let cfg = OpConfig {
        timeout: Some(ms(50)),
        max_concurrent: Some(1),
        queue: Some(1),
        queue_timeout: Some(secs(5)),
        drain_timeout: Some(secs(1)),
        ..OpConfig::default()
    };
    op_with("pg", cfg)
}

/// `on_timeout`: at the deadline the hook gets what the body registered
/// and runs while the place is held; under `cancel` the body is dropped
/// at once, so the place comes back when the hook ends.
#[tokio::test(start_paused = true)]
async fn on_timeout_runs_the_hook_holding_the_place() {
    use std::sync::{Arc, Mutex};
    use tokio::time::Instant;
    let (_reg, op) = one_place_op();
    let log = Arc::new(Mutex::new(Vec::new()));
    let hook_log = Arc::clone(&log);
    let start = Instant::now();
    let r = op
        .call()
        .on_timeout(move |query: u32| {
            let log = Arc::clone(&hook_log);
            async move {
                tokio::time::sleep(ms(100)).await; // a server-side cancel's round trip
                log.lock().unwrap().push(query);
            }
        })
        .run(|| async {
            assert!(limiter::on_timeout::register(7u32));
            tokio::time::sleep(secs(10)).await;
            Ok::<_, LimitError>(())
        })
        .await;
    assert!(matches!(r, Err(LimitError::Timeout { .. })), "{r:?}");
    assert_eq!(
        start.elapsed(),
        ms(50),
        "the caller is answered at the deadline"
    );
    let next = op.acquire(None).await.unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [7],
        "the hook ran with the registered value"
    );
    assert_eq!(
        start.elapsed(),
        ms(150),
        "the place came back after the hook"
    );
    drop(next);
    // Outside a hooked call's body, nothing is registered.
    assert!(!limiter::on_timeout::register(1u32));
}

/// Under `drain` the place comes back when the later of the body and the
/// hook ends; a call that ends in time, or registered nothing, runs no
/// hook.
#[tokio::test(start_paused = true)]
async fn on_timeout_with_drain_waits_for_body_and_hook() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use tokio::time::Instant;
    let (_reg, op) = one_place_op();
    let runs = Arc::new(AtomicU32::new(0));
    let hook = |runs: &Arc<AtomicU32>| {
        let runs = Arc::clone(runs);
        move |(): ()| {
            let runs = Arc::clone(&runs);
            async move {
                tokio::time::sleep(ms(30)).await;
                runs.fetch_add(1, Ordering::SeqCst);
            }
        }
    };
    let start = Instant::now();
    let r = op
        .call()
        .drain()
        .on_timeout(hook(&runs))
        .run(|| async {
            limiter::on_timeout::register(());
            tokio::time::sleep(ms(200)).await; // the cancelled query ends late
            Ok::<_, LimitError>(())
        })
        .await;
    assert!(matches!(r, Err(LimitError::Timeout { .. })), "{r:?}");
    drop(op.acquire(None).await.unwrap());
    assert_eq!(start.elapsed(), ms(200), "the drained body ended last");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // In time: no hook, and nothing left over for the next call.
    op.call()
        .on_timeout(hook(&runs))
        .run(|| async {
            limiter::on_timeout::register(());
            Ok::<_, LimitError>(())
        })
        .await
        .unwrap();
    // Timed out with nothing registered: no hook.
    let r = op
        .call()
        .on_timeout(hook(&runs))
        .run(|| async {
            tokio::time::sleep(secs(1)).await;
            Ok::<_, LimitError>(())
        })
        .await;
    assert!(r.is_err());
    tokio::time::sleep(secs(1)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// What runs on after a timeout is counted as such: an async body dropped
/// at its deadline (`dropped_at_timeout`), a drained one (`draining`, then
/// `drained`), in the snapshot and in Prometheus.
#[tokio::test(start_paused = true)]
async fn bodies_after_their_timeout_are_counted_for_what_they_are() {
    let (reg, op) = one_place_op();
    let slow = || async {
        tokio::time::sleep(ms(200)).await;
        Ok::<_, LimitError>(())
    };
    assert!(op.call().run(slow).await.is_err());
    assert!(op.call().drain().run(slow).await.is_err());
    let c = op.snapshot().counters;
    assert_eq!((c.timeouts, c.dropped_at_timeout, c.draining), (2, 1, 1));
    let text = reg.prometheus();
    assert!(
        text.contains("limiter_op_dropped_at_timeout_total{op=\"pg\"} 1"),
        "{text}"
    );
    assert!(text.contains("limiter_op_draining{op=\"pg\"} 1"), "{text}");
    tokio::time::sleep(secs(1)).await;
    let c = op.snapshot().counters;
    assert_eq!((c.drained, c.draining), (1, 0));
}
