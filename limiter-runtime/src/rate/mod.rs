//! Rate limiting: GCRA token bucket, sliding-window counter, fixed window
//! and exact sliding window, with several windows at once, op-wide or per
//! key.

mod exact;
mod gcra;
mod keyed;
pub(crate) mod lease;
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
    /// Takes `n` calls at `now`: what was taken (for [`Cell::refund`]),
    /// or the nanoseconds until they would be admitted.
    #[inline]
    fn try_acquire(&self, now: u64, n: u64) -> Result<u64, u64> {
        match self {
            Cell::Gcra(p, c) => c.try_acquire(p, now, n),
            Cell::Fixed(p, c) => c.try_acquire(p, now, n),
            Cell::Sliding(p, c) => c.try_acquire(p, now, n),
            Cell::Exact(p, c) => c.try_acquire(p, now, n),
        }
    }

    /// Takes `n` calls at `now` whatever is left (a charge after the
    /// fact): the window may go into debt.
    fn charge(&self, now: u64, n: u64) {
        match self {
            Cell::Gcra(p, c) => c.charge(p, now, n),
            Cell::Fixed(p, c) => c.charge(p, now, n),
            Cell::Sliding(p, c) => c.charge(p, now, n),
            Cell::Exact(p, c) => c.charge(p, now, n),
        }
    }

    /// Nanoseconds until this window would admit `n` calls (0: now).
    fn time_to_admit(&self, now: u64, n: u64) -> u64 {
        match self {
            Cell::Gcra(p, c) => c.time_to_admit(p, now, n),
            Cell::Fixed(p, c) => c.time_to_admit(p, now, n),
            Cell::Sliding(p, c) => c.time_to_admit(p, now, n),
            Cell::Exact(p, c) => c.time_to_admit(p, now, n),
        }
    }

    /// Gives back the take `taken` of `n` (an `Ok` of
    /// [`Cell::try_acquire`]) if the window still holds it; skipped
    /// otherwise (never over-admits).
    fn refund(&self, taken: u64, n: u64) {
        match self {
            Cell::Gcra(p, c) => c.refund(p, taken, n),
            Cell::Fixed(_, c) => c.refund(taken, n),
            Cell::Sliding(_, c) => c.refund(taken, n),
            Cell::Exact(_, c) => c.refund(taken, n),
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

/// The first window of `spec` that never admits a call of cost `n`.
pub(crate) fn too_costly(spec: &RateSpec, n: u32) -> Option<usize> {
    (0..spec.windows.len()).find(|&w| u64::from(n) > capacity(spec, w))
}

/// The largest call window `window` of `spec` ever admits: its count (or
/// a token bucket's burst, when larger). A call costing more is never
/// admitted. (A token bucket admits a call costing more than its burst,
/// up to its count, from a full bucket, leaving it in debt.)
pub(crate) fn capacity(spec: &RateSpec, window: usize) -> u64 {
    let count = spec.windows.get(window).map_or(0, |w| w.count());
    match (spec.algorithm, window, spec.burst) {
        (Algorithm::TokenBucket, 0, Some(burst)) => u64::from(burst.max(count)),
        _ => u64::from(count),
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

    /// Admits `n` calls (a call of cost `n`) at `now` in every window, or
    /// returns how long until every window would admit them and which
    /// window refused. A window that admitted before a later one refused
    /// gets its tokens back: exactly the ones it handed out, if it still
    /// holds them (see [`Cell::refund`]).
    ///
    /// The `Ok` is the take of a single-window limit, for
    /// [`refund`](Self::refund) should a later limit refuse the call
    /// (`None` with several windows: not given back, which only
    /// under-admits).
    #[inline]
    pub(crate) fn try_acquire(&self, now: u64, n: u64) -> Result<Option<u64>, Refusal> {
        if let [cell] = &*self.cells {
            // One window (the usual case): nothing to give back on refusal.
            return match cell.try_acquire(now, n) {
                Ok(taken) => Ok(Some(taken)),
                Err(wait) => Err(Refusal {
                    wait: Duration::from_nanos(wait),
                    window: 0,
                }),
            };
        }
        Self::acquire_from(&self.cells, 0, now, n)
            .map(|()| None)
            .map_err(|(wait, window)| Refusal {
                wait: Duration::from_nanos(wait),
                window,
            })
    }

    /// Gives back the take `taken` of `n` (an `Ok` of
    /// [`try_acquire`](Self::try_acquire)) if the window still holds it.
    pub(crate) fn refund(&self, taken: Option<u64>, n: u64) {
        if let ([cell], Some(taken)) = (&*self.cells, taken) {
            cell.refund(taken, n);
        }
    }

    /// Takes `n` calls at `now` from every window whatever is left: a
    /// charge for work whose size was known only after it ran. A window
    /// left in debt refuses until it is paid back (see each algorithm's
    /// `charge`).
    pub(crate) fn charge(&self, now: u64, n: u64) {
        for cell in &*self.cells {
            cell.charge(now, n);
        }
    }

    /// Takes a call from `cells` (indices from `first`) in order; on a
    /// refusal gives back what the earlier ones took, unwinding. Recursion
    /// keeps each take on the stack: no allocation, nothing more on the
    /// admitting path than the calls themselves.
    fn acquire_from(cells: &[Cell], first: usize, now: u64, n: u64) -> Result<(), (u64, usize)> {
        let Some((cell, rest)) = cells.split_first() else {
            return Ok(());
        };
        match cell.try_acquire(now, n) {
            Ok(taken) => Self::acquire_from(rest, first + 1, now, n).inspect_err(|_| {
                cell.refund(taken, n);
            }),
            Err(wait) => {
                // The later windows must admit it too: wait for the slowest.
                let wait = rest
                    .iter()
                    .map(|c| c.time_to_admit(now, n))
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
#[non_exhaustive]
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
            if s.try_acquire(now, 1).is_ok() {
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
        assert!(s.try_acquire(0, 1).is_ok());
        assert!(s.try_acquire(0, 1).is_ok());
        assert!(
            s.try_acquire(2_000_000_000, 1).is_err(),
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
            let a = s.cells[0].try_acquire(sec - sec / 1000, 1).unwrap();
            assert!(s.try_acquire(sec, 1).is_ok()); // B
            s.cells[0].refund(a, 1); // the minute window refused A
            let mut admitted = 1; // B
            for i in 0..20 {
                admitted += u32::from(s.try_acquire(sec + i * sec / 20, 1).is_ok());
            }
            if matches!(algorithm, Algorithm::SlidingWindow) {
                // The sliding counter still weighs all of second 1 at 2.0 s.
                admitted += u32::from(s.try_acquire(2 * sec, 1).is_ok());
            }
            assert_eq!(admitted, 10, "{algorithm:?}: 10/s admitted more");
        }
    }

    const SEC: u64 = 1_000_000_000;

    fn every_algorithm(text: &str) -> Vec<(Algorithm, RateState)> {
        [
            Algorithm::TokenBucket,
            Algorithm::FixedWindow,
            Algorithm::SlidingWindow,
            Algorithm::SlidingExact,
        ]
        .into_iter()
        .map(|a| (a, RateState::new(&spec(text, None, a))))
        .collect()
    }

    /// Seed 002: a batch of 20 takes 20 from the budget, not 1.
    #[test]
    fn a_cost_takes_that_many_in_every_algorithm() {
        for (algorithm, s) in every_algorithm("100/min") {
            assert!(s.try_acquire(SEC, 20).is_ok(), "{algorithm:?}");
            assert_eq!(s.available(SEC), 80, "{algorithm:?}");
            assert!(s.try_acquire(SEC, 81).is_err(), "{algorithm:?}: 81 of 80");
            assert_eq!(
                s.available(SEC),
                80,
                "{algorithm:?}: a refusal takes nothing"
            );
            assert!(s.try_acquire(SEC, 80).is_ok(), "{algorithm:?}");
            assert!(s.try_acquire(SEC, 1).is_err(), "{algorithm:?}");
        }
    }

    /// A refused cost gives back what earlier windows took: all of it.
    #[test]
    fn a_refused_cost_is_refunded_whole() {
        let s = RateState::new(&spec("50/s, 60/min", None, Algorithm::TokenBucket));
        assert!(s.try_acquire(0, 40).is_ok());
        assert!(
            s.try_acquire(0, 30).is_err(),
            "the minute window has 20 left"
        );
        assert_eq!(
            s.cells[0].available(0),
            10,
            "the second window got its 30 back"
        );
    }

    /// After a charge, the refusal's wait is exact: refused just before it,
    /// admitted at it, whatever the algorithm and the size of the debt.
    #[test]
    fn the_wait_after_a_charge_is_when_the_debt_is_paid() {
        for charge in [30, 99, 100, 250, 1000] {
            for (algorithm, s) in every_algorithm("100/min") {
                let t0 = 7 * SEC;
                s.try_acquire(t0, 1).unwrap();
                s.charge(t0, charge);
                let wait = match s.try_acquire(t0, 1) {
                    Err(r) => r.wait.as_nanos() as u64,
                    Ok(_) => {
                        assert!(charge < 99, "{algorithm:?}: {charge} left room");
                        continue;
                    }
                };
                let at = t0 + wait;
                assert!(
                    s.try_acquire(at - 1, 1).is_err(),
                    "{algorithm:?} {charge}: early"
                );
                assert!(
                    s.try_acquire(at, 1).is_ok(),
                    "{algorithm:?} {charge}: at {wait}"
                );
            }
        }
    }

    /// A token bucket carries the whole debt: 500 charged under 100/min
    /// after one call is paid back 0.6 s per token.
    #[test]
    fn a_token_bucket_carries_the_whole_debt() {
        let s = RateState::new(&spec("100/min", None, Algorithm::TokenBucket));
        s.try_acquire(0, 1).unwrap();
        s.charge(0, 500);
        let refusal = s.try_acquire(0, 1).unwrap_err();
        // 501 taken from a bucket of 100: 402 intervals of 0.6 s until one
        // more fits.
        assert_eq!(refusal.wait, Duration::from_millis(402 * 600));
    }

    /// Window counters carry a debt past one window's limit into the
    /// next windows at the limit per window; the exact window holds a
    /// charge for one period.
    #[test]
    fn window_debts_are_paid_a_limit_per_window() {
        let fixed = RateState::new(&spec("100/min", None, Algorithm::FixedWindow));
        fixed.charge(0, 250);
        assert!(fixed.try_acquire(60 * SEC, 1).is_err(), "150 still owed");
        assert_eq!(fixed.available(120 * SEC), 50);
        let exact = RateState::new(&spec("100/min", None, Algorithm::SlidingExact));
        exact.charge(0, 250);
        assert!(exact.try_acquire(119 * SEC, 1).is_err(), "150 still owed");
        assert_eq!(exact.available(130 * SEC), 50);
    }

    /// A cost of 0 takes nothing but is refused while in debt.
    #[test]
    fn a_free_call_is_refused_in_debt() {
        for (algorithm, s) in every_algorithm("10/s") {
            assert!(s.try_acquire(0, 0).is_ok(), "{algorithm:?}");
            assert_eq!(s.available(0), 10, "{algorithm:?}");
            s.charge(0, 15);
            assert!(s.try_acquire(0, 0).is_err(), "{algorithm:?}: in debt");
        }
    }
}
