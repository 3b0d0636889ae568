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

use crate::config::AdaptivePolicy;

const DECREASE: f64 = 0.9;

/// The current limit, as a float so that additive steps accumulate.
#[derive(Debug)]
pub(crate) struct Aimd {
    limit: Mutex<f64>,
}

impl Aimd {
    pub(crate) fn new(start: u32) -> Self {
        Self {
            limit: Mutex::new(f64::from(start)),
        }
    }

    /// Starts again from `start` (after a reconfiguration).
    pub(crate) fn reset(&self, start: u32) {
        *self.limit.lock().unwrap_or_else(|e| e.into_inner()) = f64::from(start);
    }

    /// The limit in force.
    pub(crate) fn current(&self) -> u32 {
        self.limit.lock().unwrap_or_else(|e| e.into_inner()).floor() as u32
    }

    /// Feeds one call's outcome; returns the new whole limit when it changed.
    pub(crate) fn observe(
        &self,
        policy: &AdaptivePolicy,
        max: u32,
        failed: bool,
        latency: Duration,
    ) -> Option<u32> {
        let mut limit = self.limit.lock().unwrap_or_else(|e| e.into_inner());
        let before = limit.floor() as u32;
        let (min, max) = (f64::from(policy.min), f64::from(max.max(policy.min)));
        *limit = if failed || latency > policy.target {
            (*limit * DECREASE).max(min)
        } else {
            (*limit + 1.0 / limit.max(1.0)).min(max)
        };
        let after = limit.floor() as u32;
        (after != before).then_some(after)
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
        let a = Aimd::new(20);
        let p = policy();
        assert_eq!(
            a.observe(&p, 20, false, Duration::from_millis(500)),
            Some(18)
        );
        assert_eq!(a.observe(&p, 20, true, Duration::from_millis(1)), Some(16));
        for _ in 0..30 {
            a.observe(&p, 20, true, Duration::ZERO);
        }
        assert_eq!(a.current(), 2, "never below the minimum");
        // About +1 per round of `limit` good calls: 2 → 2.5 → 2.9 → 3.24.
        for _ in 0..2 {
            a.observe(&p, 20, false, Duration::from_millis(10));
        }
        assert_eq!(a.current(), 2);
        assert_eq!(a.observe(&p, 20, false, Duration::from_millis(10)), Some(3));
        for _ in 0..1000 {
            a.observe(&p, 20, false, Duration::from_millis(10));
        }
        assert_eq!(a.current(), 20, "never above max_concurrent");
    }
}
