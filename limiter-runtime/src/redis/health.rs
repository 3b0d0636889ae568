//! A small breaker around Redis itself: after consecutive failures Redis is
//! left alone for a pause that doubles (100 ms up to 250 ms); when the pause
//! ends, one call probes it, and the first success closes the breaker.
//!
//! The pause stays short so that a Redis that answers again is used again
//! within a second (one probe per 250 ms costs a down Redis nothing: a
//! refused connection or one timeout), while a failing Redis is not asked
//! by every call.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use std::sync::LazyLock as Lazy;

/// Failures in a row that pause Redis.
const FAILURES_TO_PAUSE: u32 = 3;
const FIRST_PAUSE_MS: u64 = 100;
const LONGEST_PAUSE_MS: u64 = 250;

static BASE: Lazy<Instant> = Lazy::new(Instant::now);

fn now_ms() -> u64 {
    BASE.elapsed().as_millis() as u64
}

/// Frees the probe place if the probing call is dropped before it ends
/// (otherwise Redis would never be probed again).
pub(super) struct ProbeGuard<'a> {
    health: &'a Health,
    probe: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.probe {
            self.health.probing.store(false, Ordering::Release);
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Health {
    failures: AtomicU32,
    /// Milliseconds (since `BASE`) until which Redis is not asked.
    paused_until: AtomicU64,
    /// A probe is in flight after a pause.
    probing: AtomicBool,
}

impl Health {
    /// Whether a call may go to Redis now: `None` no, `Some(probe)` yes,
    /// and whether it is the one probe after a pause (which must end with
    /// [`Health::success`], [`Health::failure`] or, if its caller goes
    /// away, the [`ProbeGuard`] dropping).
    pub(super) fn allow(&self) -> Option<ProbeGuard<'_>> {
        if self.failures.load(Ordering::Acquire) < FAILURES_TO_PAUSE {
            return Some(ProbeGuard {
                health: self,
                probe: false,
            });
        }
        if now_ms() < self.paused_until.load(Ordering::Acquire) {
            return None;
        }
        // The pause is over: one caller probes, the others wait for it.
        (!self.probing.swap(true, Ordering::AcqRel)).then_some(ProbeGuard {
            health: self,
            probe: true,
        })
    }

    pub(super) fn is_paused(&self) -> bool {
        self.failures.load(Ordering::Acquire) >= FAILURES_TO_PAUSE
    }

    /// Records an answer; returns whether it ended a failing spell.
    pub(super) fn success(&self) -> bool {
        self.probing.store(false, Ordering::Release);
        self.failures.swap(0, Ordering::AcqRel) > 0
    }

    /// Records a failure; pauses Redis once failures pile up.
    pub(super) fn failure(&self) {
        let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= FAILURES_TO_PAUSE {
            let doublings = (n - FAILURES_TO_PAUSE).min(16);
            let pause = (FIRST_PAUSE_MS << doublings).min(LONGEST_PAUSE_MS);
            self.paused_until.store(now_ms() + pause, Ordering::Release);
        }
        self.probing.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_after_failures_and_probes_once() {
        let h = Health::default();
        for _ in 0..FAILURES_TO_PAUSE {
            assert!(h.allow().is_some());
            h.failure();
        }
        assert!(h.allow().is_none(), "paused");
        assert!(h.is_paused());
        h.paused_until.store(0, Ordering::Release);
        let probe = h.allow().expect("the pause ended: one probe");
        assert!(h.allow().is_none(), "only one probe at a time");
        // The probing caller goes away without an answer: the place frees.
        drop(probe);
        let probe = h.allow().expect("a new probe after the first was dropped");
        assert!(h.success(), "the probe's success ends the spell");
        drop(probe);
        assert!(h.allow().is_some() && h.allow().is_some());
        assert!(!h.success());
    }
}
