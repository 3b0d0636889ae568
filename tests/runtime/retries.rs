use std::sync::{Arc, Mutex};

use limiter::{Backoff, LimitError, OpConfig, RetryConfig};

use super::*;

fn retrying(retries: u32, backoff: Backoff) -> OpConfig {
    OpConfig {
        retry: RetryConfig {
            retries: Some(retries),
            backoff: Some(backoff),
            base: Some(ms(100)),
            max: Some(secs(2)),
        },
        ..OpConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_between_attempts() {
    let (_reg, op) = op_with("retry", retrying(3, Backoff::Exponential));
    let times = Arc::new(Mutex::new(Vec::new()));
    let start = tokio::time::Instant::now();
    let r = op
        .run(None, || {
            let times = times.clone();
            async move {
                let mut t = times.lock().unwrap();
                t.push(start.elapsed());
                if t.len() < 4 {
                    Err(LimitError::Timeout { op: "flaky".into() })
                } else {
                    Ok(t.len())
                }
            }
        })
        .await;
    assert_eq!(r.unwrap(), 4);
    let t = times.lock().unwrap().clone();
    for (i, pair) in t.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let nominal = ms(100) * 2u32.pow(i as u32);
        assert!(
            gap >= nominal / 2 && gap <= nominal,
            "gap {i}: {gap:?} vs nominal {nominal:?}"
        );
    }
    assert_eq!(op.snapshot().counters.retries, 3);
    assert_eq!(op.snapshot().counters.failed, 3);
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_the_last_retry() {
    let (_reg, op) = op_with("retry", retrying(2, Backoff::Constant));
    let attempts = Arc::new(Mutex::new(0));
    let r: Result<(), LimitError> = op
        .run(None, || {
            let attempts = attempts.clone();
            async move {
                *attempts.lock().unwrap() += 1;
                Err(LimitError::Timeout { op: "down".into() })
            }
        })
        .await;
    assert!(matches!(r, Err(LimitError::Timeout { op }) if &*op == "down"));
    assert_eq!(*attempts.lock().unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn waits_out_a_known_retry_after() {
    let cfg = OpConfig {
        burst: Some(1),
        ..retrying(2, Backoff::Constant)
    }
    .with_rate("1/s")
    .unwrap();
    let (_reg, op) = op_with("rated", cfg);
    let ok = || async { Ok::<_, LimitError>(()) };
    op.run(None, ok).await.unwrap();
    let start = tokio::time::Instant::now();
    op.run(None, ok).await.unwrap();
    assert_eq!(start.elapsed(), secs(1), "slept exactly the retry-after");
    let c = op.snapshot().counters;
    assert_eq!((c.retries, c.rejected_rate_limited), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn retries_after_a_timeout() {
    let cfg = OpConfig {
        timeout: Some(ms(50)),
        ..retrying(1, Backoff::Constant)
    };
    let (_reg, op) = op_with("slow_then_fast", cfg);
    let attempt = Arc::new(Mutex::new(0));
    let r = op
        .run(None, || {
            let attempt = attempt.clone();
            async move {
                let n = {
                    let mut a = attempt.lock().unwrap();
                    *a += 1;
                    *a
                };
                if n == 1 {
                    tokio::time::sleep(secs(1)).await;
                }
                Ok::<_, LimitError>(n)
            }
        })
        .await;
    assert_eq!(r.unwrap(), 2);
    assert_eq!(op.snapshot().counters.timeouts, 1);
}

/// An error the call's classifier excuses (a client's mistake) is answered
/// at once: retrying it would only add load.
#[tokio::test(start_paused = true)]
async fn excused_errors_are_not_retried() {
    let (_reg, op) = op_with("retry.excused", retrying(3, Backoff::Exponential));
    let attempts = Arc::new(Mutex::new(0u32));
    fn never(_: &LimitError) -> bool {
        false
    }
    let r: Result<(), LimitError> = op
        .call()
        .failure(never)
        .run(|| {
            let attempts = attempts.clone();
            async move {
                *attempts.lock().unwrap() += 1;
                Err(LimitError::Timeout {
                    op: "not found".into(),
                })
            }
        })
        .await;
    assert!(r.is_err());
    assert_eq!(*attempts.lock().unwrap(), 1);
    assert_eq!(op.snapshot().counters.retries, 0);
}
