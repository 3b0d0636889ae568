//! Adaptive concurrency: an AIMD controller that moves an op's in-flight
//! bound between `adaptive_min` and `max_concurrent`.
//!
//! After every call: a success within the latency target adds `1/limit`
//! (so the limit grows by one per "round" of `limit` good calls); a
//! failure, a timeout or a success slower than the target multiplies it by
//! 0.9. It starts at `max_concurrent`.
//!
//! AIMD rather than a gradient controller (Netflix's `Gradient2`, which
//! compares short- and long-term RTTs): a gradient needs a steady stream of
//! samples to estimate its baseline RTT and misreads it at low traffic or
//! when latency shifts for reasons the limit cannot fix; AIMD needs only the
//! configured target, reacts at the first slow call, converges the way TCP
//! does, and is easy to reason about from the metrics.

use std::sync::Mutex;
use std::time::Duration;

use crate::settings::AdaptivePolicy;

const DECREASE: f64 = 0.9;

/// The current limit, as a float so that additive steps accumulate, with
/// the policy it moves under.
#[derive(Debug)]
pub(crate) struct Aimd {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    limit: f64,
    /// The policy in force and `max_concurrent`, set by [`Aimd::reset`]:
    /// `None` when the op is not adaptive, so that a call admitted under an
    /// older adaptive policy changes nothing.
    policy: Option<(AdaptivePolicy, u32)>,
}

impl Aimd {
    pub(crate) fn new(start: u32, policy: Option<AdaptivePolicy>) -> Self {
        Self {
            state: Mutex::new(State {
                limit: f64::from(start),
                policy: policy.map(|p| (p, start)),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts again from `start` under `policy` (after a reconfiguration),
    /// running `apply` (which puts the new limits in force) under the same
    /// lock, so that no [`observe`](Self::observe) falls between the two.
    pub(crate) fn reset(&self, start: u32, policy: Option<AdaptivePolicy>, apply: impl FnOnce()) {
        let mut st = self.lock();
        apply();
        st.limit = f64::from(start);
        st.policy = policy.map(|p| (p, start));
    }

    /// The limit in force.
    pub(crate) fn current(&self) -> u32 {
        self.lock().limit.floor() as u32
    }

    /// Feeds one call's outcome under the policy in force (nothing when the
    /// op is no longer adaptive). When the whole limit changes, `apply` is
    /// called with it while the lock is held, so that a reconfiguration
    /// cannot come between the new limit and its enforcement. Returns the
    /// new limit when it changed.
    pub(crate) fn observe(
        &self,
        failed: bool,
        latency: Duration,
        apply: impl FnOnce(u32),
    ) -> Option<u32> {
        let mut st = self.lock();
        let Some((policy, max)) = &st.policy else {
            return None;
        };
        let (min, max) = (f64::from(policy.min), f64::from((*max).max(policy.min)));
        let worse = failed || latency > policy.target;
        let before = st.limit.floor() as u32;
        st.limit = if worse {
            (st.limit * DECREASE).max(min)
        } else {
            (st.limit + 1.0 / st.limit.max(1.0)).min(max)
        };
        let after = st.limit.floor() as u32;
        if after == before {
            return None;
        }
        apply(after);
        Some(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AdaptivePolicy {
        AdaptivePolicy {
            min: 2,
            target: Duration::from_millis(100),
        }
    }

    #[test]
    fn decreases_multiplicatively_and_grows_additively() {
        let a = Aimd::new(20, Some(policy()));
        let obs = |failed, ms| a.observe(failed, Duration::from_millis(ms), |_| {});
        assert_eq!(obs(false, 500), Some(18));
        assert_eq!(obs(true, 1), Some(16));
        for _ in 0..30 {
            obs(true, 0);
        }
        assert_eq!(a.current(), 2, "never below the minimum");
        // About +1 per round of `limit` good calls: 2 → 2.5 → 2.9 → 3.24.
        for _ in 0..2 {
            obs(false, 10);
        }
        assert_eq!(a.current(), 2);
        assert_eq!(obs(false, 10), Some(3));
        for _ in 0..1000 {
            obs(false, 10);
        }
        assert_eq!(a.current(), 20, "never above max_concurrent");
    }

    #[test]
    fn observe_does_nothing_once_not_adaptive() {
        let a = Aimd::new(20, Some(policy()));
        a.reset(50, None, || {});
        let mut applied = None;
        assert_eq!(a.observe(true, Duration::ZERO, |l| applied = Some(l)), None);
        assert_eq!(applied, None);
        assert_eq!(a.current(), 50);
    }
}
