//! Generic cell rate algorithm (GCRA): a token bucket kept as one atomic
//! "theoretical arrival time".
//!
//! With emission interval `T = period / count` and capacity `B` (the burst),
//! a call at time `now` is admitted when `max(tat, now) + T - now <= B·T`,
//! and then `tat` becomes `max(tat, now) + T`. Over any span `t` this admits
//! at most `B + t/T` calls, exactly as many as a bucket of `B` tokens refilled
//! at one token per `T`.

use crate::spec::Rate;
use crate::sync::{AtomicU64, Ordering};

/// Parameters of one GCRA window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GcraParams {
    /// Emission interval `T`, nanoseconds.
    pub(crate) interval_ns: u64,
    /// `B·T`: how far ahead of `now` the arrival time may run.
    pub(crate) horizon_ns: u64,
    /// The largest take admitted (from a full bucket): the window's count,
    /// or its burst when larger, times `T`.
    pub(crate) max_cost_ns: u64,
}

impl GcraParams {
    pub(crate) fn new(rate: &Rate, capacity: u32) -> Self {
        // Rounded up: `period / count` rounded down admits a little more
        // than `count` per `period` (3 per 10 ms with a burst of 3: 6 calls
        // in 9 999 999 ns, where B + t/T allows 5.9999997).
        let interval_ns = crate::clock::duration_ns(rate.period())
            .div_ceil(u64::from(rate.count()))
            .max(1);
        let capacity = u64::from(capacity.max(1));
        Self {
            interval_ns,
            horizon_ns: interval_ns.saturating_mul(capacity),
            max_cost_ns: interval_ns.saturating_mul(capacity.max(u64::from(rate.count()))),
        }
    }

    /// The arrival time `n` tokens take: `n·T`.
    #[inline(always)]
    fn cost_ns(&self, n: u64) -> u64 {
        self.interval_ns.saturating_mul(n)
    }

    /// What a take of `n` tokens needs in the bucket to be admitted, and
    /// the arrival time it takes. One token (a plain call) fits any bucket:
    /// that case is kept apart, so a call of cost 1 pays for no more than
    /// before costs existed.
    #[inline(always)]
    fn take_ns(&self, n: u64) -> (u64, u64) {
        if n == 1 {
            return (self.interval_ns, self.interval_ns);
        }
        let cost = self.cost_ns(n);
        (self.needed_ns(cost), cost)
    }

    /// The part of a take of `cost_ns` that must be in the bucket for it
    /// to be admitted: all of it, or the whole bucket when it costs more
    /// (up to the window's count; more is never admitted).
    #[inline(always)]
    fn needed_ns(&self, cost_ns: u64) -> u64 {
        if cost_ns > self.max_cost_ns {
            return u64::MAX;
        }
        cost_ns.min(self.horizon_ns)
    }
}

/// The state of one GCRA window: the theoretical arrival time.
#[derive(Debug, Default)]
pub(crate) struct GcraCell {
    tat: AtomicU64,
}

impl GcraCell {
    /// Takes `n` tokens at `now`: the arrival time it installed, for
    /// [`refund`](Self::refund), or the nanoseconds until they are free.
    ///
    /// A call costing more than the bucket holds (`n > B`) is admitted
    /// from a full bucket and leaves it in debt for the rest, which the
    /// next calls wait out (Guava's `RateLimiter` rule: the size of a
    /// request delays the next one, not itself).
    #[inline]
    pub(crate) fn try_acquire(&self, p: &GcraParams, now: u64, n: u64) -> Result<u64, u64> {
        let (needed, cost) = p.take_ns(n);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let from = tat.max(now);
            let ahead = from.saturating_add(needed) - now;
            if ahead > p.horizon_ns {
                return Err(ahead - p.horizon_ns);
            }
            let next = from.saturating_add(cost);
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Ok(next),
                Err(seen) => tat = seen,
            }
        }
    }

    /// [`try_acquire`](Self::try_acquire) of a cell that only its holder
    /// of a lock touches (a key's cell, under its shard's lock): a load
    /// and a store instead of a compare-and-swap, as nothing can write
    /// between them.
    #[inline]
    pub(crate) fn try_acquire_exclusive(
        &self,
        p: &GcraParams,
        now: u64,
        n: u64,
    ) -> Result<u64, u64> {
        let from = self.tat.load(Ordering::Relaxed).max(now);
        let (needed, cost) = p.take_ns(n);
        let ahead = from.saturating_add(needed) - now;
        if ahead > p.horizon_ns {
            return Err(ahead - p.horizon_ns);
        }
        let next = from.saturating_add(cost);
        self.tat.store(next, Ordering::Relaxed);
        Ok(next)
    }

    /// Nanoseconds until `n` tokens would be admitted (0: now), taking
    /// nothing.
    pub(crate) fn time_to_admit(&self, p: &GcraParams, now: u64, n: u64) -> u64 {
        let tat = self.tat.load(Ordering::Relaxed);
        let (needed, _) = p.take_ns(n);
        (tat.max(now).saturating_add(needed) - now).saturating_sub(p.horizon_ns)
    }

    /// Takes `n` tokens at `now` whatever is left: a charge for work
    /// whose size was known only after it ran. The arrival time may run
    /// past the horizon: the bucket is then in debt, and refuses until
    /// the debt is paid at the bucket's rate.
    pub(crate) fn charge(&self, p: &GcraParams, now: u64, n: u64) {
        let cost = p.cost_ns(n);
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |tat| {
                Some(tat.max(now).saturating_add(cost))
            });
    }

    /// Gives back the token whose take installed arrival time `installed`
    /// (the `Ok` of [`try_acquire`](Self::try_acquire)), when a later window
    /// refused the call: `tat` goes from `installed` back to `installed - T`,
    /// only if it still is `installed`; otherwise the refund is skipped,
    /// which only under-admits.
    ///
    /// Subtracting `T` from whatever `tat` holds could over-admit: a caller
    /// stalled for an interval or more between its take and its refund would
    /// take back a token that a later take at a later `now` (which restarted
    /// from `max(tat, now)`) installed, not its own.
    ///
    /// Why the conditional refund never over-admits. A take that saw `seen`
    /// installs `max(seen, now) + T >= seen + T`, and a refund lowers `tat`
    /// from its take's `installed` to `installed - T = max(seen, now) >= seen`.
    /// Hence `tat` never falls below the `installed` of a take not yet
    /// refunded: the first refund to do so would come from a later take
    /// (which saw at least that value, so lowers `tat` to no less) or from an
    /// earlier one still outstanding (whose `installed` is below every later
    /// take's, so `tat` could not equal it). So a refund that finds its
    /// `installed` finds every later take already refunded (refunds succeed
    /// in LIFO order), and leaves `tat = max(seen, now) >= seen`: no lower
    /// than had the take never happened. Admission is monotone in `tat`, so
    /// the calls admitted and not refunded are ones a sequential GCRA would
    /// admit.
    pub(crate) fn refund(&self, p: &GcraParams, installed: u64, n: u64) {
        let _ = self.tat.compare_exchange(
            installed,
            installed.saturating_sub(p.cost_ns(n)),
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }

    /// Whether the bucket is full again (the state carries no information).
    pub(crate) fn is_idle(&self, now: u64) -> bool {
        self.tat.load(Ordering::Relaxed) <= now
    }

    /// Nanoseconds until the bucket is full again.
    pub(crate) fn debt_ns(&self, now: u64) -> u64 {
        self.tat.load(Ordering::Relaxed).saturating_sub(now)
    }

    /// Tokens available at `now`.
    pub(crate) fn available(&self, p: &GcraParams, now: u64) -> u64 {
        let tat = self.tat.load(Ordering::Relaxed).max(now);
        (p.horizon_ns - (tat - now).min(p.horizon_ns)) / p.interval_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_exclusive_take_decides_as_the_shared_one() {
        let rate = Rate::new(10, Duration::from_secs(1)).unwrap();
        let p = GcraParams::new(&rate, 3);
        let (shared, exclusive) = (GcraCell::default(), GcraCell::default());
        let mut now = 1_000_000_000u64;
        let (mut admitted, mut refused) = (0, 0);
        for step in 0..200u64 {
            // Pauses of 0 to 60 ms: faster than 10/s on average.
            now += (step * 7919 % 13) * 5_000_000;
            let a = shared.try_acquire(&p, now, 1);
            assert_eq!(
                a,
                exclusive.try_acquire_exclusive(&p, now, 1),
                "step {step}"
            );
            refused += u32::from(a.is_err());
            admitted += u32::from(a.is_ok());
        }
        assert!(
            refused > 0 && admitted > 0,
            "{admitted} admitted, {refused} refused"
        );
    }

    #[test]
    fn admits_burst_then_one_per_interval() {
        let rate = Rate::new(10, Duration::from_secs(1)).unwrap();
        let p = GcraParams::new(&rate, 5);
        let cell = GcraCell::default();
        let t0 = 1_000_000_000;
        for _ in 0..5 {
            assert!(cell.try_acquire(&p, t0, 1).is_ok());
        }
        let wait = cell.try_acquire(&p, t0, 1).unwrap_err();
        assert_eq!(wait, 100_000_000);
        let installed = cell.try_acquire(&p, t0 + wait, 1).unwrap();
        assert!(cell.try_acquire(&p, t0 + wait, 1).is_err());
        cell.refund(&p, installed, 1);
        assert!(cell.try_acquire(&p, t0 + wait, 1).is_ok());
        assert!(!cell.is_idle(t0 + wait));
        assert!(cell.is_idle(t0 + 10_000_000_000));
        assert_eq!(cell.available(&p, t0 + 10_000_000_000), 5);
    }

    /// Review finding: A takes at `t0` and stalls for ten intervals; B takes
    /// at `t0 + 10·T` (restarting from `now`); a later window refuses A,
    /// which refunds. Subtracting `T` from whatever `tat` held gave B's token
    /// back, and a burst of one admitted two calls at `t0 + 10·T`.
    #[test]
    fn refund_after_a_stall_does_not_give_back_a_later_token() {
        let rate = Rate::new(10, Duration::from_secs(1)).unwrap();
        let p = GcraParams::new(&rate, 1);
        let cell = GcraCell::default();
        let t0 = 1_000_000_000;
        let a = cell.try_acquire(&p, t0, 1).unwrap();
        assert_eq!(a, t0 + p.interval_ns);
        let t1 = t0 + 10 * p.interval_ns;
        assert!(cell.try_acquire(&p, t1, 1).is_ok()); // B
        cell.refund(&p, a, 1);
        assert!(
            cell.try_acquire(&p, t1, 1).is_err(),
            "a burst of one admitted two"
        );
        assert_eq!(cell.available(&p, t1), 0);
    }

    /// Refunds that find their take still the last one succeed, in LIFO
    /// order; one that does not is skipped (it only under-admits).
    #[test]
    fn refunds_undo_exactly_their_own_take() {
        let rate = Rate::new(10, Duration::from_secs(1)).unwrap();
        let p = GcraParams::new(&rate, 3);
        let cell = GcraCell::default();
        let t0 = 1_000_000_000;
        let a = cell.try_acquire(&p, t0, 1).unwrap();
        let b = cell.try_acquire(&p, t0, 1).unwrap();
        cell.refund(&p, a, 1); // B took since: skipped
        assert_eq!(cell.available(&p, t0), 1);
        cell.refund(&p, b, 1);
        cell.refund(&p, a, 1);
        assert_eq!(cell.available(&p, t0), 3);
    }
}

/// Model checks (`RUSTFLAGS="--cfg limiter_loom" cargo test --release -p
/// limiter-runtime loom`): every interleaving of concurrent takers.
#[cfg(all(test, limiter_loom))]
mod loom_tests {
    use super::*;
    use loom::thread;
    use std::sync::Arc;
    use std::time::Duration;

    fn params(burst: u32) -> GcraParams {
        GcraParams::new(&Rate::new(10, Duration::from_secs(1)).unwrap(), burst)
    }

    /// Three callers at the same instant on a bucket of two: exactly two
    /// are admitted, and the refused one is told the time to the next token.
    #[test]
    fn loom_gcra_never_admits_past_the_burst() {
        loom::model(|| {
            let p = params(2);
            let cell = Arc::new(GcraCell::default());
            let now = 1_000_000_000;
            let takers: Vec<_> = (0..3)
                .map(|_| {
                    let cell = Arc::clone(&cell);
                    thread::spawn(move || cell.try_acquire(&p, now, 1))
                })
                .collect();
            let results: Vec<_> = takers.into_iter().map(|t| t.join().unwrap()).collect();
            let admitted = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(admitted, 2, "{results:?}");
            for r in &results {
                if let Err(wait) = r {
                    assert_eq!(*wait, p.interval_ns, "{results:?}");
                }
            }
            assert_eq!(cell.available(&p, now), 0);
        });
    }

    /// A refund racing a taker: the token given back is never lost nor
    /// counted twice.
    #[test]
    fn loom_gcra_refund_races_a_taker() {
        loom::model(|| {
            let p = params(1);
            let cell = Arc::new(GcraCell::default());
            let now = 1_000_000_000;
            let installed = cell.try_acquire(&p, now, 1).unwrap();
            let refunder = {
                let cell = Arc::clone(&cell);
                thread::spawn(move || cell.refund(&p, installed, 1))
            };
            let taker = {
                let cell = Arc::clone(&cell);
                thread::spawn(move || cell.try_acquire(&p, now, 1))
            };
            refunder.join().unwrap();
            let took = taker.join().unwrap().is_ok();
            // One token in all: the first caller's, refunded; the taker got
            // it (bucket empty now) or came first (bucket full again).
            assert_eq!(cell.available(&p, now), u64::from(!took));
        });
    }

    /// A refund from a caller stalled ten intervals racing a caller that
    /// takes twice after the stall: a bucket of one admits exactly one call
    /// then, never two (the refund must not return the newer token).
    #[test]
    fn loom_gcra_stale_refund_never_over_admits() {
        loom::model(|| {
            let p = params(1);
            let cell = Arc::new(GcraCell::default());
            let t0 = 1_000_000_000;
            let t1 = t0 + 10 * p.interval_ns;
            let stale = cell.try_acquire(&p, t0, 1).unwrap();
            let refunder = {
                let cell = Arc::clone(&cell);
                thread::spawn(move || cell.refund(&p, stale, 1))
            };
            let taker = {
                let cell = Arc::clone(&cell);
                thread::spawn(move || {
                    u64::from(cell.try_acquire(&p, t1, 1).is_ok())
                        + u64::from(cell.try_acquire(&p, t1, 1).is_ok())
                })
            };
            refunder.join().unwrap();
            let mut admitted = taker.join().unwrap();
            admitted += u64::from(cell.try_acquire(&p, t1, 1).is_ok());
            assert_eq!(admitted, 1);
        });
    }
}
