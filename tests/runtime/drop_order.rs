//! The bound on an op's running calls counts bodies, destructors included:
//! a place goes back only once its body is gone, under every timeout
//! strategy, and blocking work abandoned at its timeout keeps its place
//! until it really ends. Real time on a multi-thread runtime: the races
//! these tests look for only happen there.

use limiter::Load;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use limiter::{LimitError, Op, OpConfig, OpKind, RetryConfig};

use super::{ms, op_with};

/// Bodies of one op alive now, and the most ever alive at once.
#[derive(Default)]
struct Census {
    alive: AtomicUsize,
    most: AtomicUsize,
}

/// One live body: counted from its start until its destructor has ended.
struct Body {
    census: Arc<Census>,
    drop_takes: Duration,
}

impl Body {
    fn new(census: &Arc<Census>, drop_takes: Duration) -> Self {
        let now = census.alive.fetch_add(1, Ordering::SeqCst) + 1;
        census.most.fetch_max(now, Ordering::SeqCst);
        Self {
            census: Arc::clone(census),
            drop_takes,
        }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        // A destructor that takes time, as one returning a pooled
        // connection can.
        std::thread::sleep(self.drop_takes);
        self.census.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

const N: u32 = 7;
const CALLS: usize = 1_000;

fn bounded(timeout: Duration) -> OpConfig {
    OpConfig {
        max_concurrent: Some(N),
        queue: Some(CALLS as u32),
        queue_timeout: Some(Duration::from_secs(120)),
        timeout: Some(timeout),
        retry: RetryConfig {
            retries: Some(0),
            ..RetryConfig::default()
        },
        ..OpConfig::default()
    }
}

/// A body that lives 0–9 ms (so about half run past the 5 ms timeout)
/// and whose destructor takes 50 ms.
async fn body(census: Arc<Census>, i: usize) -> Result<u32, LimitError> {
    let _body = Body::new(&census, ms(50));
    tokio::time::sleep(ms((i % 10) as u64)).await;
    Ok(1)
}

/// Waits (real time) until `done` holds, failing after 60 s.
async fn until(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(60), "never: {what}");
        tokio::time::sleep(ms(5)).await;
    }
}

/// Callers, each a thread with a runtime of its own: a place given back
/// wakes a waiter on another thread at once, as in a service whose calls
/// come from many runtimes or threads (within one tokio worker, a woken
/// task would wait in that worker's LIFO slot until the current task,
/// busy dropping its body, yields).
const CALLERS: usize = 16;

/// Runs `CALLS` calls of one strategy from `CALLERS` threads at once;
/// returns how many were answered with an error, once every body is gone.
fn flood(op: &Op, census: &Arc<Census>, strategy: &'static str) -> usize {
    let callers: Vec<_> = (0..CALLERS)
        .map(|t| {
            let (op, census) = (op.clone(), Arc::clone(census));
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let mut cut = 0;
                    for i in (t..CALLS).step_by(CALLERS) {
                        let c = op.call();
                        let b = body(Arc::clone(&census), i);
                        let out = match strategy {
                            "cancel" => c.run_once(b).await,
                            "cache_fallback" => c.cache_fallback().run_once(b).await,
                            _ => c.background().run_once(b).await,
                        };
                        cut += usize::from(out.is_err());
                    }
                    // Background bodies run on this runtime: keep it until
                    // every body is gone.
                    until("every body gone", || {
                        census.alive.load(Ordering::SeqCst) == 0
                            && op.load()
                                == Load {
                                    in_flight: 0,
                                    queued: 0,
                                    blocked: 0,
                                }
                    })
                    .await;
                    cut
                })
            })
        })
        .collect();
    callers
        .into_iter()
        .map(|c| c.join().expect("no caller panics"))
        .sum()
}

#[test]
fn never_more_bodies_alive_than_places_under_any_strategy() {
    let strategies = ["cancel", "cache_fallback", "background"];
    let runs: Vec<_> = strategies
        .iter()
        .map(|&s| {
            let (reg, op) = op_with(s, bounded(ms(5)));
            let census = Arc::new(Census::default());
            let run = {
                let (op, census) = (op.clone(), Arc::clone(&census));
                std::thread::spawn(move || flood(&op, &census, s))
            };
            (s, reg, op, census, run)
        })
        .collect();
    for (s, _reg, op, census, run) in runs {
        let cut = run.join().unwrap();
        let most = census.most.load(Ordering::SeqCst);
        let c = op.snapshot().counters;
        println!(
            "{s}: most bodies alive {most} (max_concurrent {N}), {cut} of {CALLS} answered with an error, {} timeouts",
            c.timeouts
        );
        assert!(c.timeouts > 0, "{s}: some calls time out");
        assert!(
            most <= N as usize,
            "{s}: {most} bodies alive at once under max_concurrent = {N}"
        );
    }
}

#[test]
fn blocking_bodies_cut_by_their_timeout_never_overlap() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cfg = OpConfig {
            kind: Some(OpKind::FileIo),
            max_concurrent: Some(1),
            ..bounded(ms(10))
        };
        let (_reg, op) = op_with("blocking", cfg);
        let census = Arc::new(Census::default());
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let (op, census) = (op.clone(), Arc::clone(&census));
                tokio::spawn(async move {
                    op.call()
                        .run_blocking_once(move || {
                            let _body = Body::new(&census, Duration::ZERO);
                            std::thread::sleep(ms(30));
                            Ok::<_, LimitError>(())
                        })
                        .await
                })
            })
            .collect();
        let mut timeouts = 0;
        for c in calls {
            let out = c.await.unwrap();
            timeouts += usize::from(matches!(out, Err(LimitError::Timeout { .. })));
        }
        assert_eq!(timeouts, 20, "every call is cut at 10 ms");
        until("every orphan ended", || {
            op.snapshot().counters.orphans_running == 0
                && op.load()
                    == Load {
                        in_flight: 0,
                        queued: 0,
                        blocked: 0,
                    }
        })
        .await;
        let most = census.most.load(Ordering::SeqCst);
        assert_eq!(
            most, 1,
            "{most} blocking bodies ran at once under max_concurrent = 1"
        );
        assert_eq!(op.snapshot().counters.orphans, 20);
    });
}

/// A caller that goes away while its blocking work runs leaves the place
/// with the work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_blocking_call_keeps_its_place_until_the_work_ends() {
    let cfg = OpConfig {
        kind: Some(OpKind::FileIo),
        max_concurrent: Some(1),
        ..bounded(Duration::from_secs(60))
    };
    let (_reg, op) = op_with("dropped", cfg);
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let wait = std::sync::Mutex::new(wait);
    let call = op.call().run_blocking_once(move || {
        let _ = wait.lock().unwrap().recv();
        Ok::<_, LimitError>(())
    });
    let cut = tokio::time::timeout(ms(20), call).await;
    assert!(cut.is_err(), "the caller gave up");
    assert_eq!(
        op.load(),
        Load {
            in_flight: 1,
            queued: 0,
            blocked: 0
        },
        "the work still holds its place"
    );
    assert_eq!(op.snapshot().counters.cancelled, 1);
    go.send(()).unwrap();
    until("the orphan ended", || {
        op.load()
            == Load {
                in_flight: 0,
                queued: 0,
                blocked: 0,
            }
    })
    .await;
}

/// A body maker that panics after admission (a half-open probe) gives the
/// probe's place back and counts a failure: the breaker is not left waiting
/// for an outcome that never comes.
#[tokio::test(start_paused = true)]
async fn a_panicking_body_maker_gives_its_probe_back() {
    use futures::FutureExt;
    type Failure = Box<dyn std::error::Error + Send + Sync>;
    let cfg = OpConfig {
        breaker: limiter::BreakerConfig {
            enabled: Some(true),
            failure_rate: Some(0.5),
            min_calls: Some(1),
            window: Some(1),
            recovery: Some(Duration::from_secs(10)),
            half_open_calls: Some(1),
            ..limiter::BreakerConfig::default()
        },
        ..OpConfig::default()
    };
    let (_reg, op) = op_with("maker", cfg);
    let failed = op
        .run(None, || async { Err::<(), Failure>("down".into()) })
        .await;
    assert!(failed.is_err());
    assert_eq!(op.snapshot().breaker.state, limiter::BreakerState::Open);
    tokio::time::advance(Duration::from_secs(10)).await;
    // The probe: admitted, then making its body panics.
    let maker = std::panic::AssertUnwindSafe(
        op.run(None, || -> std::future::Ready<Result<(), Failure>> {
            panic!("maker boom")
        }),
    )
    .catch_unwind()
    .await;
    assert!(maker.is_err(), "the maker's panic reaches the caller");
    assert_eq!(op.snapshot().counters.panics, 1);
    assert_eq!(
        op.load(),
        Load {
            in_flight: 0,
            queued: 0,
            blocked: 0
        }
    );
    // The failed probe opened the breaker again; after the recovery time
    // a new probe is let through (a lost probe place would refuse it).
    tokio::time::advance(Duration::from_secs(10)).await;
    let next = op.run(None, || async { Ok::<_, Failure>(7) }).await;
    assert_eq!(next.unwrap(), 7);
}

/// A blocking call dropped by a panic elsewhere (a sibling in `join!`) is
/// cancelled, not a panic of its own, and its work keeps its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_call_dropped_by_a_sibling_panic_keeps_its_place() {
    use futures::FutureExt;
    let cfg = OpConfig {
        kind: Some(OpKind::FileIo),
        max_concurrent: Some(1),
        ..bounded(Duration::from_secs(60))
    };
    let (_reg, op) = op_with("sibling", cfg);
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let wait = std::sync::Mutex::new(wait);
    let call = op.call().run_blocking_once(move || {
        let _ = wait.lock().unwrap().recv();
        Ok::<_, LimitError>(())
    });
    let sibling = async {
        tokio::time::sleep(ms(20)).await;
        panic!("sibling boom");
    };
    let joined = std::panic::AssertUnwindSafe(async { tokio::join!(call, sibling) })
        .catch_unwind()
        .await;
    assert!(joined.is_err());
    let c = op.snapshot().counters;
    assert_eq!((c.cancelled, c.panics), (1, 0), "{c:?}");
    assert_eq!(
        op.load(),
        Load {
            in_flight: 1,
            queued: 0,
            blocked: 0
        },
        "the work still holds its place"
    );
    go.send(()).unwrap();
    until("the orphan ended", || {
        op.load()
            == Load {
                in_flight: 0,
                queued: 0,
                blocked: 0,
            }
    })
    .await;
}

/// Blocking work moved to the background keeps its place when shutdown
/// cancels its task: the work cannot be stopped and still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_blocking_work_cancelled_at_shutdown_keeps_its_place() {
    let cfg = OpConfig {
        kind: Some(OpKind::FileIo),
        max_concurrent: Some(1),
        ..bounded(ms(20))
    };
    let (reg, op) = op_with("bg_blocking", cfg);
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let wait = std::sync::Mutex::new(wait);
    let moved = op
        .call()
        .background()
        .run_blocking_once(move || {
            let _ = wait.lock().unwrap().recv();
            Ok::<_, LimitError>(())
        })
        .await;
    assert!(
        matches!(moved, Err(LimitError::MovedToBackground { .. })),
        "{moved:?}"
    );
    reg.shutdown(Duration::ZERO).await;
    assert_eq!(
        op.load(),
        Load {
            in_flight: 1,
            queued: 0,
            blocked: 0
        },
        "the work still holds its place"
    );
    go.send(()).unwrap();
    until("the work ended", || {
        op.load()
            == Load {
                in_flight: 0,
                queued: 0,
                blocked: 0,
            }
    })
    .await;
}
