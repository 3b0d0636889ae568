use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use limiter::{LimitError, QueueScope, ShutdownReport, TaskManager, TaskSpec, TaskState};

use super::*;

fn spec(name: &str, max: u32, queue: u32) -> TaskSpec {
    TaskSpec {
        max_concurrent: Some(max),
        queue: Some(queue),
        ..TaskSpec::new(name)
    }
}

#[tokio::test(start_paused = true)]
async fn states_from_pending_to_succeeded() {
    let tasks = TaskManager::new();
    let work = || async {
        tokio::time::sleep(secs(1)).await;
        Ok::<_, LimitError>(())
    };
    let a = tasks.spawn(spec("report", 1, 1), work).unwrap();
    let b = tasks.spawn(spec("report", 1, 1), work).unwrap();
    match tasks.spawn(spec("report", 1, 1), work) {
        Err(LimitError::QueueFull {
            scope: QueueScope::Global,
            ..
        }) => {}
        other => panic!("expected QueueFull, got {other:?}"),
    }
    settle().await;
    assert_eq!(
        (a.state(), b.state()),
        (TaskState::Running, TaskState::Pending)
    );
    let a_info = a.wait().await;
    assert_eq!(a_info.state, TaskState::Succeeded);
    assert!((a_info.run_ms.unwrap() - 1000.0).abs() < 1e-6);
    settle().await;
    assert_eq!(b.state(), TaskState::Running);
    let b_info = b.wait().await;
    assert_eq!(b_info.state, TaskState::Succeeded);
    assert!((b_info.queued_ms.unwrap() - 1000.0).abs() < 1e-6);
    assert_eq!(tasks.outstanding(), 0);
    let snap = tasks.snapshot();
    assert_eq!((snap.spawned, snap.rejected), (2, 1));
    assert_eq!(snap.by_state[&TaskState::Succeeded], 2);
}

#[tokio::test(start_paused = true)]
async fn failures_timeouts_retries_panics_and_cancels_are_recorded() {
    let tasks = TaskManager::new();
    let failed = tasks
        .spawn(TaskSpec::new("f"), || async { Err::<(), _>("disk full") })
        .unwrap();
    let timed_out = tasks
        .spawn(
            TaskSpec {
                timeout: Some(ms(100)),
                ..TaskSpec::new("t")
            },
            || tokio::time::sleep(secs(5)),
        )
        .unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let retried = tasks
        .spawn(
            TaskSpec {
                retries: 2,
                ..TaskSpec::new("r")
            },
            {
                let attempts = attempts.clone();
                move || {
                    let n = attempts.fetch_add(1, Ordering::SeqCst) + 1;
                    async move {
                        if n < 3 {
                            Err("flaky")
                        } else {
                            Ok(())
                        }
                    }
                }
            },
        )
        .unwrap();
    let panicked = tasks
        .spawn(TaskSpec::new("p"), || async {
            if true {
                panic!("task boom")
            }
        })
        .unwrap();
    let cancelled = tasks
        .spawn(TaskSpec::new("c"), || tokio::time::sleep(secs(3600)))
        .unwrap();
    settle().await;
    assert!(cancelled.cancel());
    let f = failed.wait().await;
    assert_eq!(
        (f.state, f.error.as_deref()),
        (TaskState::Failed, Some("\"disk full\""))
    );
    let t = timed_out.wait().await;
    assert_eq!(t.state, TaskState::TimedOut);
    let r = retried.wait().await;
    assert_eq!((r.state, r.attempts), (TaskState::Succeeded, 3));
    let p = panicked.wait().await;
    assert_eq!(
        (p.state, p.error.as_deref()),
        (TaskState::Failed, Some("panicked"))
    );
    assert_eq!(cancelled.wait().await.state, TaskState::Cancelled);
    assert!(!cancelled.cancel(), "already ended");
    assert_eq!(tasks.outstanding(), 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_within_grace_then_cancels() {
    let tasks = TaskManager::new();
    let quick = tasks
        .spawn(TaskSpec::new("q"), || tokio::time::sleep(secs(1)))
        .unwrap();
    let slow = tasks
        .spawn(TaskSpec::new("s"), || tokio::time::sleep(secs(60)))
        .unwrap();
    let pending = tasks
        .spawn(spec("s1", 1, 5), || tokio::time::sleep(secs(60)))
        .unwrap();
    let pending2 = tasks
        .spawn(spec("s1", 1, 5), || tokio::time::sleep(secs(60)))
        .unwrap();
    settle().await;
    assert_eq!(pending2.state(), TaskState::Pending);
    let report = tasks.shutdown(secs(5)).await;
    // `ShutdownReport` is non-exhaustive (an output that may grow).
    assert_eq!((report.drained, report.cancelled), (1, 3));
    assert_eq!(quick.info().unwrap().state, TaskState::Succeeded);
    for h in [&slow, &pending, &pending2] {
        let info = h.wait().await;
        assert_eq!(info.state, TaskState::Cancelled);
        assert!(info.error.unwrap().contains("shutdown"));
    }
    settle().await;
    assert_eq!(tasks.outstanding(), 0, "no task lost");
    assert!(matches!(
        tasks.spawn(TaskSpec::new("late"), || async {}),
        Err(LimitError::Overloaded { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn shutdown_with_nothing_outstanding_returns_at_once() {
    let tasks = TaskManager::new();
    tasks
        .spawn(TaskSpec::new("x"), || async {})
        .unwrap()
        .wait()
        .await;
    let start = tokio::time::Instant::now();
    assert_eq!(tasks.shutdown(secs(30)).await, ShutdownReport::default());
    assert_eq!(start.elapsed(), Duration::ZERO);
}

/// Counts the task bodies alive; each one decrements on drop, whether it
/// finished or was aborted.
struct Alive(Arc<std::sync::atomic::AtomicI64>);

impl Alive {
    fn new(count: &Arc<std::sync::atomic::AtomicI64>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(count))
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Shutdown while tasks of every kind are under way (quick, slow, timing
/// out between retries, failing with backoff, panicking, queued behind a
/// group limit) and a spawner keeps starting more: every task ends in a
/// terminal state, the report accounts for each one outstanding at the
/// start, no body is left running, and every later spawn is refused and
/// counted.
#[tokio::test(start_paused = true)]
async fn shutdown_accounts_for_every_task_while_spawns_race_it() {
    use std::sync::atomic::AtomicI64;
    use std::sync::Mutex;

    let tasks = TaskManager::with_limits(8, 100, 10_000);
    let alive = Arc::new(AtomicI64::new(0));
    let handles = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(AtomicU32::new(0));

    let start = {
        let (tasks, alive) = (tasks.clone(), Arc::clone(&alive));
        move |i: u32| -> Result<(u32, limiter::TaskHandle), LimitError> {
            let alive = Arc::clone(&alive);
            let kind = i % 6;
            let body = move || {
                let guard = Alive::new(&alive);
                async move {
                    let _guard = guard;
                    match kind {
                        0 => {
                            tokio::time::sleep(Duration::from_millis(300 * u64::from(i % 7))).await
                        }
                        1 => tokio::time::sleep(secs(60)).await,
                        2 => tokio::time::sleep(secs(10)).await, // times out at 1 s
                        3 => return Err("refused upstream"),
                        4 => {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            panic!("chaos");
                        }
                        _ => tokio::time::sleep(secs(1)).await, // queued behind 1
                    }
                    Ok(())
                }
            };
            let spec = match kind {
                2 => TaskSpec {
                    timeout: Some(secs(1)),
                    retries: 1,
                    ..TaskSpec::new("times-out")
                },
                3 => TaskSpec {
                    retries: 2,
                    ..TaskSpec::new("fails")
                },
                5 => spec("one-at-a-time", 1, 100),
                _ => TaskSpec::new(["quick", "slow", "", "", "panics"][kind as usize]),
            };
            tasks.spawn(spec, body).map(|h| (kind, h))
        }
    };

    for i in 0..24 {
        handles.lock().unwrap().push(start(i).unwrap());
    }
    let spawner = {
        let handles = Arc::clone(&handles);
        let refused = Arc::clone(&refused);
        let start = start.clone();
        tokio::spawn(async move {
            for i in 24.. {
                match start(i) {
                    Ok(h) => handles.lock().unwrap().push(h),
                    Err(LimitError::Overloaded { .. }) => {
                        refused.fetch_add(1, Ordering::SeqCst);
                        if refused.load(Ordering::SeqCst) == 5 {
                            return;
                        }
                    }
                    Err(e) => panic!("unexpected refusal {e:?}"),
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    tokio::time::sleep(secs(2)).await;
    let outstanding = handles
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, h)| !h.state().is_terminal())
        .count();
    assert_eq!(tasks.outstanding(), outstanding);
    let report = tasks.shutdown(secs(3)).await;
    spawner.await.unwrap();
    settle().await;

    assert_eq!(
        report.drained + report.cancelled,
        outstanding,
        "{report:?}: every task outstanding at the start is drained or cancelled"
    );
    assert!(report.cancelled > 0 && report.drained > 0, "{report:?}");
    let handles = handles.lock().unwrap();
    let mut cancelled_at_shutdown = 0;
    for (kind, h) in handles.iter() {
        let info = h.info().expect("retained");
        assert!(
            info.state.is_terminal(),
            "task {} of kind {kind}: {info:?}",
            h.id()
        );
        let at_shutdown = info
            .error
            .as_deref()
            .is_some_and(|e| e.contains("shutdown"));
        cancelled_at_shutdown += usize::from(at_shutdown);
        match (kind, info.state) {
            (_, TaskState::Cancelled) => assert!(at_shutdown, "{info:?}"),
            (0 | 5, s) => assert_eq!(s, TaskState::Succeeded, "{info:?}"),
            (1, s) => panic!("a 60 s task cannot end as {s:?} within 5 s"),
            (2, s) => assert_eq!(s, TaskState::TimedOut, "{info:?}"),
            (3, s) => assert_eq!((s, info.attempts), (TaskState::Failed, 3), "{info:?}"),
            (4, s) => assert_eq!(
                (s, info.error.as_deref()),
                (TaskState::Failed, Some("panicked"))
            ),
            (k, s) => panic!("kind {k} ended as {s:?}"),
        }
    }
    assert_eq!(cancelled_at_shutdown, report.cancelled);
    eprintln!(
        "shutdown: {} tasks spawned, {outstanding} outstanding at the start, {report:?}, {} spawns refused after",
        handles.len(),
        refused.load(Ordering::SeqCst)
    );
    assert_eq!(
        alive.load(Ordering::SeqCst),
        0,
        "a cancelled body still runs"
    );
    assert_eq!(tasks.outstanding(), 0);
    let snap = tasks.snapshot();
    assert_eq!((snap.pending, snap.running), (0, 0));
    assert_eq!(snap.spawned, handles.len() as u64);
    assert_eq!(snap.rejected, u64::from(refused.load(Ordering::SeqCst)));
    assert_eq!(refused.load(Ordering::SeqCst), 5);
}

/// Spawns from another thread racing `shutdown` with no grace: each spawn
/// is refused or its task is cancelled by that shutdown and counted in its
/// report. (The narrow interleaving that once let a task escape is
/// reproduced deterministically by the loom model
/// `loom_background_register_racing_shutdown_sweep`.)
#[test]
fn spawns_racing_a_graceless_shutdown_are_refused_or_cancelled_by_it() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for round in 0..300 {
        // Room for every spawn the spawner makes before shutdown closes.
        let tasks = TaskManager::with_limits(1 << 20, 1 << 20, 16);
        let spawner = {
            let tasks = tasks.clone();
            let handle = rt.handle().clone();
            std::thread::spawn(move || {
                let _rt = handle.enter();
                let mut accepted = Vec::new();
                loop {
                    match tasks.spawn_once(TaskSpec::new("forever"), std::future::pending::<()>()) {
                        Ok(h) => accepted.push(h),
                        Err(LimitError::Overloaded { .. }) => return accepted,
                        Err(e) => panic!("unexpected refusal {e:?}"),
                    }
                }
            })
        };
        // Let the spawner get going, sometimes not at all.
        for _ in 0..round % 7 {
            std::thread::yield_now();
        }
        let report = rt.block_on(tasks.shutdown(Duration::ZERO));
        let accepted = spawner.join().unwrap();
        assert_eq!(
            (report.drained, report.cancelled),
            (0, accepted.len()),
            "round {round}: a task admitted during shutdown escaped it"
        );
        for h in &accepted {
            assert_eq!(h.state(), TaskState::Cancelled, "round {round}");
        }
    }
}
