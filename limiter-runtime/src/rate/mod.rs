//! Rate limiting: GCRA token bucket, sliding-window counter, fixed window
//! and exact sliding window, with several windows at once, op-wide or per
//! key.

mod exact;
mod gcra;
mod keyed;
mod window;

#[cfg(feature = "redis")]
pub(crate) use exact::SLOTS as EXACT_SLOTS;
pub(crate) use keyed::{KeyedOutcome, KeyedRate};

use std::time::Duration;

use serde::Serialize;

use crate::error::Quota;
use crate::keys::{KeyState, Owed};
use crate::settings::{Algorithm, RateSpec};
use exact::{ExactCell, ExactParams};
use gcra::{GcraCell, GcraParams};
use window::{FixedCell, SlidingCell, WindowParams};

/// One window of a rate limit: its parameters and its state.
enum Cell {
    Gcra(GcraParams, GcraCell),
    Fixed(WindowParams, FixedCell),
    Sliding(WindowParams, SlidingCell),
    Exact(ExactParams, ExactCell),
}

impl Cell {
    /// Takes one call at `now`: what was taken (for [`Cell::refund`]), or
    /// the nanoseconds until a call would be admitted.
    #[inline]
    fn try_acquire(&self, now: u64) -> Result<u64, u64> {
        match self {
            Cell::Gcra(p, c) => c.try_acquire(p, now),
            Cell::Fixed(p, c) => c.try_acquire(p, now),
            Cell::Sliding(p, c) => c.try_acquire(p, now),
            Cell::Exact(p, c) => c.try_acquire(p, now),
        }
    }

    /// Nanoseconds until this window would admit a call (0: now).
    fn time_to_admit(&self, now: u64) -> u64 {
        match self {
            Cell::Gcra(p, c) => c.time_to_admit(p, now),
            Cell::Fixed(p, c) => c.time_to_admit(p, now),
            Cell::Sliding(p, c) => c.time_to_admit(p, now),
            Cell::Exact(p, c) => c.time_to_admit(p, now),
        }
    }

    /// Gives back the take `taken` (an `Ok` of [`Cell::try_acquire`]) if
    /// the window still holds it; skipped otherwise (never over-admits).
    fn refund(&self, taken: u64) {
        match self {
            Cell::Gcra(p, c) => c.refund(p, taken),
            Cell::Fixed(_, c) => c.refund(taken),
            Cell::Sliding(_, c) => c.refund(taken),
            Cell::Exact(_, c) => c.refund(taken),
        }
    }

    fn is_idle(&self, now: u64) -> bool {
        match self {
            Cell::Gcra(_, c) => c.is_idle(now),
            Cell::Fixed(p, c) => c.is_idle(p, now),
            Cell::Sliding(p, c) => c.is_idle(p, now),
            Cell::Exact(p, c) => c.is_idle(p, now),
        }
    }

    fn available(&self, now: u64) -> u64 {
        match self {
            Cell::Gcra(p, c) => c.available(p, now),
            Cell::Fixed(p, c) => c.available(p, now),
            Cell::Sliding(p, c) => c.available(p, now),
            Cell::Exact(p, c) => c.available(p, now),
        }
    }
}

/// Why a rate limit refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// Time until every window would admit it.
    pub(crate) wait: Duration,
    /// Index (in `RateSpec::windows`) of the window that refused.
    pub(crate) window: usize,
}

impl Refusal {
    /// The refusing window as a quota.
    pub(crate) fn quota(&self, spec: &RateSpec, per_key: bool) -> Quota {
        let w = spec.windows[self.window];
        Quota::rate(u64::from(w.count()), w.period(), per_key)
    }
}

/// The state of one rate limit (op-wide, or of one key): a cell per window.
pub(crate) struct RateState {
    cells: Box<[Cell]>,
}

impl RateState {
    pub(crate) fn new(spec: &RateSpec) -> Self {
        let cells = spec
            .windows
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let window = WindowParams {
                    limit: u64::from(w.count()),
                    period_ns: crate::clock::duration_ns(w.period()).max(1),
                };
                match spec.algorithm {
                    Algorithm::TokenBucket => {
                        // The shortest window takes the burst; longer windows
                        // are quotas whose capacity is their own count.
                        let capacity = match (i, spec.burst) {
                            (0, Some(b)) => b,
                            _ => w.count(),
                        };
                        Cell::Gcra(GcraParams::new(w, capacity), GcraCell::default())
                    }
                    Algorithm::FixedWindow => Cell::Fixed(window, FixedCell::default()),
                    Algorithm::SlidingWindow => Cell::Sliding(window, SlidingCell::default()),
                    Algorithm::SlidingExact => Cell::Exact(
                        ExactParams::new(window.limit, window.period_ns),
                        ExactCell::default(),
                    ),
                }
            })
            .collect();
        Self { cells }
    }

    /// Admits one call at `now` in every window, or returns how long until
    /// every window would admit it and which window refused. A window that
    /// admitted before a later one refused gets its token back: exactly the
    /// one it handed out, if it still holds it (see [`Cell::refund`]).
    #[inline]
    pub(crate) fn try_acquire(&self, now: u64) -> Result<(), Refusal> {
        if let [cell] = &*self.cells {
            // One window (the usual case): nothing to give back on refusal.
            return match cell.try_acquire(now) {
                Ok(_) => Ok(()),
                Err(wait) => Err(Refusal {
                    wait: Duration::from_nanos(wait),
                    window: 0,
                }),
            };
        }
        Self::acquire_from(&self.cells, 0, now).map_err(|(wait, window)| Refusal {
            wait: Duration::from_nanos(wait),
            window,
        })
    }

    /// Takes a call from `cells` (indices from `first`) in order; on a
    /// refusal gives back what the earlier ones took, unwinding. Recursion
    /// keeps each take on the stack: no allocation, nothing more on the
    /// admitting path than the calls themselves.
    fn acquire_from(cells: &[Cell], first: usize, now: u64) -> Result<(), (u64, usize)> {
        let Some((cell, rest)) = cells.split_first() else {
            return Ok(());
        };
        match cell.try_acquire(now) {
            Ok(taken) => Self::acquire_from(rest, first + 1, now).inspect_err(|_| {
                cell.refund(taken);
            }),
            Err(wait) => {
                // The later windows must admit it too: wait for the slowest.
                let wait = rest
                    .iter()
                    .map(|c| c.time_to_admit(now))
                    .fold(wait, u64::max);
                Err((wait, first))
            }
        }
    }

    /// Calls that would be admitted now (the tightest window).
    pub(crate) fn available(&self, now: u64) -> u64 {
        self.tightest(now).1
    }

    /// The tightest window now: its index and the calls it would admit.
    pub(crate) fn tightest(&self, now: u64) -> (usize, u64) {
        self.cells
            .iter()
            .map(|c| c.available(now))
            .enumerate()
            .min_by_key(|&(_, left)| left)
            .unwrap_or((0, 0))
    }
}

impl KeyState for RateState {
    type Ctx = ();

    /// Nothing when every window is as a fresh key's; everything when a
    /// window refuses now; else ranked by the calls left in the tightest
    /// window (the more left, the less owed).
    fn owed(&self, _: &(), now_ns: u64) -> Owed {
        if self.cells.iter().all(|c| c.is_idle(now_ns)) {
            return Owed::Nothing;
        }
        match self.tightest(now_ns) {
            (_, 0) => Owed::Everything,
            (_, left) => Owed::Some(u64::MAX - left),
        }
    }
}

/// A view of a rate limit for snapshots.
#[derive(Debug, Clone, Serialize)]
pub struct RateSnapshot {
    /// The limit in force.
    pub spec: RateSpec,
    /// Calls that would be admitted now (op-wide limits only).
    pub available: Option<u64>,
    /// Keys tracked (per-key limits only).
    pub keys: Option<usize>,
    /// Keys evicted so far (per-key limits only).
    pub keys_evicted: Option<u64>,
    /// Evictions so far that dropped what a key owed (per-key limits only):
    /// the key came back with a fresh budget. Only keys the limit would
    /// admit now are ever dropped so; a refused key never is.
    pub keys_forgotten: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse_rates;

    fn spec(text: &str, burst: Option<u32>, algorithm: Algorithm) -> RateSpec {
        RateSpec {
            windows: parse_rates(text).unwrap(),
            burst,
            algorithm,
        }
    }

    #[test]
    fn several_windows_all_must_admit() {
        // 10/s with burst 10, but at most 15 per minute.
        let s = RateState::new(&spec("10/s, 15/min", Some(10), Algorithm::TokenBucket));
        let mut admitted = 0;
        for step in 0..600u64 {
            let now = step * 100_000_000; // every 100 ms for a minute
            if s.try_acquire(now).is_ok() {
                admitted += 1;
            }
        }
        // 15 up front, then one per 4 s once the minute quota (T = 4 s) lets
        // its arrival time fall back within 60 s of now: at 4 s, 8 s, … 56 s.
        assert_eq!(admitted, 15 + 14);
    }

    #[test]
    fn refused_call_refunds_earlier_windows() {
        let s = RateState::new(&spec("2/s, 2/min", Some(2), Algorithm::TokenBucket));
        assert!(s.try_acquire(0).is_ok());
        assert!(s.try_acquire(0).is_ok());
        assert!(
            s.try_acquire(2_000_000_000).is_err(),
            "minute quota used up"
        );
        // The per-second window got its token back: both would admit at once
        // were the minute window not full.
        assert_eq!(s.cells[0].available(2_000_000_000), 2);
    }

    /// Review finding, "10/s, 100/min": caller A reads 0.999 s and takes
    /// from the 10/s window; caller B reads 1.0 s and is admitted, rolling
    /// that window to second 1; the minute window refuses A, which gives its
    /// token back. It must not come off second 1's count.
    #[test]
    fn refund_after_another_caller_rolled_the_window() {
        for algorithm in [Algorithm::FixedWindow, Algorithm::SlidingWindow] {
            let s = RateState::new(&spec("10/s, 100/min", None, algorithm));
            let sec = 1_000_000_000;
            let a = s.cells[0].try_acquire(sec - sec / 1000).unwrap();
            assert!(s.try_acquire(sec).is_ok()); // B
            s.cells[0].refund(a); // the minute window refused A
            let mut admitted = 1; // B
            for i in 0..20 {
                admitted += u32::from(s.try_acquire(sec + i * sec / 20).is_ok());
            }
            if matches!(algorithm, Algorithm::SlidingWindow) {
                // The sliding counter still weighs all of second 1 at 2.0 s.
                admitted += u32::from(s.try_acquire(2 * sec).is_ok());
            }
            assert_eq!(admitted, 10, "{algorithm:?}: 10/s admitted more");
        }
    }
}
