//! Retry delays: exponential or constant backoff with jitter, and which
//! outcomes are worth another attempt.

use std::time::Duration;

use crate::error::LimitError;
use crate::settings::{Backoff, RetryPolicy};

/// The delay before retry number `attempt + 1` (`attempt` counts from 0).
///
/// "Equal jitter": half the nominal delay is kept, the other half is random,
/// so concurrent callers spread out while each still waits at least half the
/// nominal delay.
pub(crate) fn backoff_delay(policy: &RetryPolicy, attempt: u32) -> Duration {
    let nominal = nominal_delay(policy, attempt);
    let half = nominal / 2;
    half + half.mul_f64(fastrand::f64())
}

/// The delay before retry `attempt` without jitter, capped at `max`.
fn nominal_delay(policy: &RetryPolicy, attempt: u32) -> Duration {
    match policy.backoff {
        Backoff::Constant => policy.base,
        Backoff::Exponential => policy
            .base
            .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(policy.max),
    }
    .min(policy.max)
}

/// How long to wait before retrying after `err`, or `None` when retrying
/// would not help: the call went to the background; the op is saturated
/// (`QueueFull`, `QueueTimeout`, `Overloaded`: another attempt only adds to
/// the pile); the rate limit says to come back later than the longest
/// backoff; or the breaker is open for longer than this attempt's backoff (an
/// open breaker is there to fail fast: callers do not sit out its recovery).
pub(crate) fn delay_after_limit(
    policy: &RetryPolicy,
    attempt: u32,
    err: &LimitError,
) -> Option<Duration> {
    match err {
        LimitError::MovedToBackground { .. }
        | LimitError::CostExceedsLimit { .. }
        | LimitError::Overloaded { .. }
        | LimitError::QueueFull { .. }
        | LimitError::QueueTimeout { .. } => None,
        LimitError::Timeout { .. } => Some(backoff_delay(policy, attempt)),
        LimitError::RateLimited { retry_after, .. } => {
            (*retry_after <= policy.max).then(|| (*retry_after).max(backoff_delay(policy, attempt)))
        }
        LimitError::CircuitOpen { retry_after, .. } => (*retry_after
            <= nominal_delay(policy, attempt))
        .then(|| (*retry_after).max(backoff_delay(policy, attempt))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff: Backoff) -> RetryPolicy {
        RetryPolicy {
            retries: 5,
            backoff,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        }
    }

    #[test]
    fn exponential_doubles_within_jitter_and_caps() {
        let p = policy(Backoff::Exponential);
        for attempt in 0..8 {
            let nominal =
                (Duration::from_millis(100) * 2u32.pow(attempt)).min(Duration::from_secs(1));
            for _ in 0..50 {
                let d = backoff_delay(&p, attempt);
                assert!(d >= nominal / 2 && d <= nominal, "{attempt}: {d:?}");
            }
        }
        assert!(backoff_delay(&p, 200) <= Duration::from_secs(1));
    }

    #[test]
    fn constant_stays_at_base() {
        let p = policy(Backoff::Constant);
        for attempt in 0..5 {
            let d = backoff_delay(&p, attempt);
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(100));
        }
    }

    #[test]
    fn retry_after_is_honoured_or_given_up() {
        let p = policy(Backoff::Constant);
        let op: std::sync::Arc<str> = "op".into();
        let soon = LimitError::RateLimited {
            op: op.clone(),
            retry_after: Duration::from_millis(700),
            quota: crate::Quota::rate(1, Duration::from_secs(1), false),
        };
        assert!(delay_after_limit(&p, 0, &soon).unwrap() >= Duration::from_millis(700));
        let late = LimitError::CircuitOpen {
            op: op.clone(),
            retry_after: Duration::from_secs(60),
        };
        assert_eq!(delay_after_limit(&p, 0, &late), None);
        // Open for longer than the backoff: fail fast rather than wait.
        let open = LimitError::CircuitOpen {
            op: op.clone(),
            retry_after: Duration::from_millis(700),
        };
        assert_eq!(delay_after_limit(&p, 0, &open), None);
        let closing = LimitError::CircuitOpen {
            op: op.clone(),
            retry_after: Duration::from_millis(80),
        };
        assert!(delay_after_limit(&p, 0, &closing).unwrap() >= Duration::from_millis(80));
        let full = LimitError::QueueFull {
            op: op.clone(),
            scope: crate::QueueScope::Global,
            retry_after: Duration::from_millis(1),
            quota: crate::Quota::concurrency(1, false),
        };
        assert_eq!(
            delay_after_limit(&p, 0, &full),
            None,
            "a saturated op is not retried"
        );
        let bg = LimitError::MovedToBackground { op, task_id: 1 };
        assert_eq!(delay_after_limit(&p, 0, &bg), None);
    }
}
