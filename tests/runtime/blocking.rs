//! Limits for plain threads: `Op::acquire_blocking` / `Op::run_sync` from
//! `std` threads, outside any tokio runtime.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use limiter::{LimitError, OpConfig, Registry};

/// Eight threads, 25 calls each, through a bulkhead of 3 with a queue: never
/// more than 3 bodies at once, every call admitted in the end.
#[test]
fn run_sync_from_eight_threads_never_exceeds_its_bulkhead() {
    let reg = Registry::new();
    reg.configure(
        "render",
        OpConfig {
            max_concurrent: Some(3),
            queue: Some(8),
            queue_timeout: Some(Duration::from_secs(10)),
            ..OpConfig::default()
        },
    )
    .unwrap();
    let op = reg.op("render");
    let running = AtomicU32::new(0);
    let most = AtomicU32::new(0);
    std::thread::scope(|s| {
        for t in 0..8u32 {
            let (op, running, most) = (&op, &running, &most);
            s.spawn(move || {
                for _ in 0..25 {
                    op.run_sync(Some(&t), || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_micros(300));
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, LimitError>(())
                    })
                    .unwrap();
                }
            });
        }
    });
    assert!(most.load(Ordering::SeqCst) <= 3, "{most:?} at once");
    assert_eq!(
        most.load(Ordering::SeqCst),
        3,
        "the bulkhead was used in full"
    );
    let snap = op.snapshot();
    assert_eq!(snap.counters.succeeded, 200);
    assert_eq!(snap.bulkhead.in_flight, 0, "every place back");
}

/// A thread that has to wait for a place waits at most the queue timeout;
/// a full queue refuses at once.
#[test]
fn acquire_blocking_honours_the_queue_timeout() {
    let reg = Registry::new();
    reg.configure(
        "one",
        OpConfig {
            max_concurrent: Some(1),
            queue: Some(1),
            queue_timeout: Some(Duration::from_millis(100)),
            ..OpConfig::default()
        },
    )
    .unwrap();
    let op = reg.op("one");
    let held = op.acquire_blocking(None).unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let start = Instant::now();
            let r = op.acquire_blocking(None);
            (r.map(drop), start.elapsed())
        });
        std::thread::sleep(Duration::from_millis(30));
        assert!(
            matches!(op.acquire_blocking(None), Err(LimitError::QueueFull { .. })),
            "the one queue place is taken"
        );
        let (r, waited) = waiter.join().unwrap();
        assert!(matches!(r, Err(LimitError::QueueTimeout { .. })), "{r:?}");
        assert!(
            waited >= Duration::from_millis(95) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
    });
    drop(held);
    // The place is handed over to the next waiter once released.
    let again = op.acquire_blocking(None).unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| op.acquire_blocking(None).map(drop));
        std::thread::sleep(Duration::from_millis(20));
        drop(again);
        assert!(waiter.join().unwrap().is_ok());
    });
}

/// The rate limit and the timeout apply to synchronous bodies: a body past
/// its deadline gives `Timeout` (its late result discarded) and counts.
#[test]
fn run_sync_takes_rates_and_reports_overrun_as_timeout() {
    let reg = Registry::new();
    reg.configure(
        "paced",
        OpConfig {
            timeout: Some(Duration::from_millis(30)),
            burst: Some(2),
            ..OpConfig::default()
        }
        .with_rate_per_key("2/min")
        .unwrap(),
    )
    .unwrap();
    let op = reg.op("paced");
    let user = "u1";
    assert_eq!(
        op.run_sync(Some(&user), || Ok::<_, LimitError>(1)).unwrap(),
        1
    );
    let late = op.run_sync(Some(&user), || {
        std::thread::sleep(Duration::from_millis(60));
        Ok::<_, LimitError>(2)
    });
    assert!(matches!(late, Err(LimitError::Timeout { .. })), "{late:?}");
    assert!(matches!(
        op.run_sync(Some(&user), || Ok::<_, LimitError>(3)),
        Err(LimitError::RateLimited { .. })
    ));
    let c = op.snapshot().counters;
    assert_eq!(
        (c.succeeded, c.timeouts, c.rejected_rate_limited),
        (1, 1, 1)
    );
}
