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
    assert_eq!(
        report,
        ShutdownReport {
            drained: 1,
            cancelled: 3
        }
    );
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
