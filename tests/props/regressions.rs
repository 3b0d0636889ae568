//! Shrunk cases of property failures, kept as plain tests.

use std::time::Duration;

use limiter::{Algorithm, LimitError, OpConfig, Registry};

use super::rate::{check_bounds, run_case, RateCase, Step};
use super::*;

/// The token bucket's emission interval `period / count` was rounded down
/// to whole nanoseconds, so 3 per 10 ms let a 4th call in after
/// 3 333 333 ns, where B + t/T = 3.9999999 allows 3. Rounded up now.
#[test]
fn gcra_interval_rounds_up_3_per_10ms() {
    let case = RateCase {
        algorithm: Algorithm::TokenBucket,
        windows: vec![(3, 10_000)],
        burst: None,
        steps: vec![Step::Knock(4), Step::FollowRetry],
    };
    let run = run_case(&case);
    assert_eq!(run.violations, Vec::<String>::new());
    assert_eq!(run.admitted, [0, 0, 0, 3_333_334]);
    assert_eq!(check_bounds(&case, &run), Vec::<String>::new());
}

/// A refusal's `retry_after` was the wait of the first window that refused
/// only: with `1/ms, 1/2ms` (sliding) the call was told 2 ms, and refused
/// again at 2 ms by the second window. It is now the time until every
/// window admits: 4 ms.
#[test]
fn retry_after_waits_for_every_window_sliding() {
    let case = RateCase {
        algorithm: Algorithm::SlidingWindow,
        windows: vec![(1, 1_000), (1, 2_000)],
        burst: None,
        steps: vec![Step::Knock(2), Step::FollowRetry],
    };
    let run = run_case(&case);
    assert_eq!(run.violations, Vec::<String>::new());
    assert_eq!(run.admitted, [0, 4_000_000]);
    assert_eq!(check_bounds(&case, &run), Vec::<String>::new());
}

/// The same with the token bucket: `1/s, 2/min`, calls at 0 s and 1 s; a
/// third call at 1 s must wait for the minute quota (29 s), not just for
/// the per-second token (1 s).
#[test]
fn retry_after_waits_for_every_window_token_bucket() {
    paused_runtime().block_on(async {
        let reg = Registry::new();
        let cfg = OpConfig::default().with_rate("1/s, 2/min").unwrap();
        let op = configured(&reg, "two-windows", cfg);
        assert!(op.acquire(None).await.is_ok());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(op.acquire(None).await.is_ok());
        let retry_after = match op.acquire(None).await {
            Err(LimitError::RateLimited { retry_after, .. }) => retry_after,
            other => panic!("expected RateLimited, got {other:?}"),
        };
        assert_eq!(retry_after, Duration::from_secs(29));
        tokio::time::advance(retry_after - Duration::from_nanos(1)).await;
        assert_eq!(op.snapshot().rate.unwrap().available, Some(0));
        tokio::time::advance(Duration::from_nanos(1)).await;
        assert!(op.acquire(None).await.is_ok());
    });
}
