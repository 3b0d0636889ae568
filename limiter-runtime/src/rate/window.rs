//! Window counters: fixed window and sliding-window counter.

use std::sync::Mutex;

use crate::sync::{AtomicU64, Ordering};

/// Parameters of one counting window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WindowParams {
    pub(crate) limit: u64,
    pub(crate) period_ns: u64,
}

/// Fixed window: at most `limit` calls between two multiples of `period`.
/// Kept lock-free as one word: window number (high 32 bits) and count.
#[derive(Debug, Default)]
pub(crate) struct FixedCell {
    packed: AtomicU64,
}

fn pack(window: u64, count: u64) -> u64 {
    (window << 32) | (count & 0xFFFF_FFFF)
}

const MASK: u64 = 0xFFFF_FFFF;

/// How many windows the stored window `stored` is ahead of `window` (both
/// modulo 2^32); 0 when it is the same or older.
fn ahead(stored: u64, window: u64) -> u64 {
    let d = stored.wrapping_sub(window) & MASK;
    if d < 1 << 31 {
        d
    } else {
        0
    }
}

impl FixedCell {
    /// Takes one call at `now`: the number (modulo 2^32) of the window it
    /// was counted in, for [`refund`](Self::refund), or the nanoseconds until
    /// one would be admitted.
    pub(crate) fn try_acquire(&self, p: &WindowParams, now: u64) -> Result<u64, u64> {
        // Window numbers are stored modulo 2^32.
        let window = (now / p.period_ns) & MASK;
        let mut cur = self.packed.load(Ordering::Relaxed);
        loop {
            let (w, count) = (cur >> 32, cur & MASK);
            // A caller that read the clock just before a boundary another
            // caller already crossed counts in the newer window: it must not
            // wipe that window's count.
            let ahead = ahead(w, window);
            let (w, count) = match (w == window, ahead) {
                (true, _) => (w, count),
                (false, 0) => (window, 0),
                (false, _) => (w, count),
            };
            if count >= p.limit {
                return Err(ahead * p.period_ns + (p.period_ns - now % p.period_ns));
            }
            match self.packed.compare_exchange_weak(
                cur,
                pack(w, count + 1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(w),
                Err(seen) => cur = seen,
            }
        }
    }

    /// Nanoseconds until a call would be admitted (0: now), taking nothing.
    pub(crate) fn time_to_admit(&self, p: &WindowParams, now: u64) -> u64 {
        let window = (now / p.period_ns) & MASK;
        let cur = self.packed.load(Ordering::Relaxed);
        let ahead = ahead(cur >> 32, window);
        let count = if cur >> 32 == window || ahead > 0 {
            cur & MASK
        } else {
            0
        };
        if count >= p.limit {
            ahead * p.period_ns + (p.period_ns - now % p.period_ns)
        } else {
            0
        }
    }

    /// Gives back the call [`try_acquire`](Self::try_acquire) counted in
    /// window `taken` (its `Ok`), when a later window refused it.
    ///
    /// Only while the cell still counts window `taken`: that count holds the
    /// take (counts grow by takes and shrink only by refunds of their own
    /// takes). Once another caller has rolled the cell to a newer window the
    /// take is no longer counted anywhere and the refund is skipped:
    /// decrementing the newer window would let it admit one call more than
    /// its limit (a refund skipped only under-admits). Window numbers are
    /// kept modulo 2^32, so this assumes the caller does not stall 2^32
    /// periods between the take and the refund, as `ahead` already does.
    pub(crate) fn refund(&self, taken: u64) {
        let _ = self
            .packed
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |cur| {
                let (w, count) = (cur >> 32, cur & MASK);
                (w == taken && count > 0).then(|| pack(w, count - 1))
            });
    }

    pub(crate) fn is_idle(&self, p: &WindowParams, now: u64) -> bool {
        let window = (now / p.period_ns) & MASK;
        let cur = self.packed.load(Ordering::Relaxed);
        (cur >> 32 != window && ahead(cur >> 32, window) == 0) || cur & MASK == 0
    }

    pub(crate) fn available(&self, p: &WindowParams, now: u64) -> u64 {
        let window = (now / p.period_ns) & MASK;
        let cur = self.packed.load(Ordering::Relaxed);
        let current = cur >> 32 == window || ahead(cur >> 32, window) > 0;
        let used = if current { cur & MASK } else { 0 };
        p.limit.saturating_sub(used)
    }
}

/// Sliding-window counter: the estimate at `now` is the previous window's
/// count weighted by how much of it still overlaps `[now - period, now]`,
/// plus the current window's count. A call is admitted while the estimate
/// stays under `limit`.
#[derive(Debug, Default)]
pub(crate) struct SlidingCell {
    state: Mutex<Sliding>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Sliding {
    window: u64,
    previous: u64,
    current: u64,
}

impl Sliding {
    /// Rolls the counters forward to the window that holds `now` and
    /// returns the time to judge by: a `now` read before the stored window
    /// began (another caller already crossed the boundary) counts as the
    /// start of the stored window rather than wiping it.
    fn advance(&mut self, p: &WindowParams, now: u64) -> u64 {
        let start = self.window * p.period_ns;
        if now < start {
            return start;
        }
        let window = now / p.period_ns;
        if window == self.window {
            return now;
        }
        self.previous = if window == self.window + 1 {
            self.current
        } else {
            0
        };
        self.current = 0;
        self.window = window;
        now
    }

    /// Previous count weighted by its overlap, in units of 1/period_ns.
    fn weighted_previous(&self, p: &WindowParams, now: u64) -> u128 {
        let elapsed = now - self.window * p.period_ns;
        u128::from(self.previous) * u128::from(p.period_ns - elapsed)
    }
}

impl SlidingCell {
    /// Takes one call at `now`: the number of the window it was counted in,
    /// for [`refund`](Self::refund), or the nanoseconds until one would be
    /// admitted.
    pub(crate) fn try_acquire(&self, p: &WindowParams, now: u64) -> Result<u64, u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = s.advance(p, now);
        let period = u128::from(p.period_ns);
        // previous·(P - e)/P + current + 1 <= limit, in integers.
        let needed = s.weighted_previous(p, now) + u128::from(s.current + 1) * period;
        if needed <= u128::from(p.limit) * period {
            s.current += 1;
            return Ok(s.window);
        }
        Err(Self::wait(&s, p, now))
    }

    /// Nanoseconds until a call would be admitted (0: now), taking nothing.
    pub(crate) fn time_to_admit(&self, p: &WindowParams, now: u64) -> u64 {
        let mut s = *self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = s.advance(p, now);
        let period = u128::from(p.period_ns);
        let needed = s.weighted_previous(p, now) + u128::from(s.current + 1) * period;
        if needed <= u128::from(p.limit) * period {
            0
        } else {
            Self::wait(&s, p, now)
        }
    }

    /// Nanoseconds until one more call fits.
    fn wait(s: &Sliding, p: &WindowParams, now: u64) -> u64 {
        let period = u128::from(p.period_ns);
        let elapsed = u128::from(now - s.window * p.period_ns);
        let limit = u128::from(p.limit);
        let current = u128::from(s.current);
        let previous = u128::from(s.previous);
        let wait = if current < limit && previous > 0 {
            // Within this window: previous·(P - e - d)/P <= limit - 1 - current.
            let room = limit - 1 - current;
            let keep = room * period / previous; // largest P - e - d allowed
            (period - elapsed).saturating_sub(keep)
        } else {
            // The next window: current·(P - x)/P + 1 <= limit.
            let x = ((limit - 1) * period)
                .checked_div(current)
                .map_or(0, |keep| period - keep.min(period));
            (period - elapsed) + x
        };
        u64::try_from(wait.max(1)).unwrap_or(u64::MAX)
    }

    /// Gives back the call [`try_acquire`](Self::try_acquire) counted in
    /// window `taken` (its `Ok`), when a later window refused it.
    ///
    /// The take is in `current` while the cell is still in window `taken`,
    /// in `previous` once it has rolled one window on (that count is window
    /// `taken`'s), and weighs nothing after that: the refund undoes it where
    /// it is and never touches a count it is not in (the newer window's, which
    /// would then admit one call more than its limit).
    pub(crate) fn refund(&self, taken: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.window == taken {
            s.current = s.current.saturating_sub(1);
        } else if s.window == taken.wrapping_add(1) {
            s.previous = s.previous.saturating_sub(1);
        }
    }

    pub(crate) fn is_idle(&self, p: &WindowParams, now: u64) -> bool {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        now / p.period_ns > s.window + 1 || (s.previous == 0 && s.current == 0)
    }

    pub(crate) fn available(&self, p: &WindowParams, now: u64) -> u64 {
        let mut s = *self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = s.advance(p, now);
        let used = s
            .weighted_previous(p, now)
            .div_ceil(u128::from(p.period_ns))
            + u128::from(s.current);
        p.limit
            .saturating_sub(u64::try_from(used).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn fixed_window_resets_at_boundary() {
        let p = WindowParams {
            limit: 3,
            period_ns: SEC,
        };
        let c = FixedCell::default();
        let mut taken = 0;
        for _ in 0..3 {
            taken = c.try_acquire(&p, SEC + 10).unwrap();
        }
        assert_eq!(taken, 1);
        assert_eq!(c.try_acquire(&p, SEC + 10), Err(SEC - 10));
        assert_eq!(c.available(&p, SEC + 10), 0);
        c.refund(taken);
        c.try_acquire(&p, SEC + 20).unwrap();
        assert!(c.try_acquire(&p, 2 * SEC - 1).is_err());
        c.try_acquire(&p, 2 * SEC).unwrap();
        assert!(!c.is_idle(&p, 2 * SEC));
        assert!(c.is_idle(&p, 3 * SEC));
    }

    /// A caller whose `now` was read just before a boundary another caller
    /// already crossed must not wipe the newer window (review finding).
    #[test]
    fn stale_now_does_not_reset_the_window() {
        let p = WindowParams {
            limit: 10,
            period_ns: SEC,
        };
        let fixed = FixedCell::default();
        let sliding = SlidingCell::default();
        let (mut f, mut s) = (0, 0);
        for _ in 0..10 {
            f += u32::from(fixed.try_acquire(&p, 2 * SEC).is_ok());
            s += u32::from(sliding.try_acquire(&p, 2 * SEC).is_ok());
        }
        assert!(fixed.try_acquire(&p, 2 * SEC - 1).is_err());
        assert!(sliding.try_acquire(&p, 2 * SEC - 1).is_err());
        for _ in 0..10 {
            f += u32::from(fixed.try_acquire(&p, 2 * SEC + 1).is_ok());
            s += u32::from(sliding.try_acquire(&p, 2 * SEC + 1).is_ok());
        }
        assert_eq!((f, s), (10, 10));
    }

    /// Review finding: A reads 0.999 s and takes in window 0; B reads 1.0 s
    /// and rolls the cell to window 1; a later window refuses A, which
    /// refunds. The refund must not come off window 1's count, which would
    /// then admit 11 calls.
    #[test]
    fn fixed_refund_after_another_caller_rolled_the_window() {
        let p = WindowParams {
            limit: 10,
            period_ns: SEC,
        };
        let c = FixedCell::default();
        let a = c.try_acquire(&p, SEC - SEC / 1000).unwrap();
        assert_eq!(a, 0);
        assert_eq!(c.try_acquire(&p, SEC), Ok(1)); // B
        c.refund(a);
        let mut admitted = 1; // B
        for i in 0..20 {
            admitted += u32::from(c.try_acquire(&p, SEC + i * SEC / 20).is_ok());
        }
        assert_eq!(admitted, 10, "window 1 admitted past its limit");
        // A refund in the window it was taken in still gives the call back.
        let taken = c.try_acquire(&p, 2 * SEC).unwrap();
        assert_eq!(c.available(&p, 2 * SEC), 9);
        c.refund(taken);
        assert_eq!(c.available(&p, 2 * SEC), 10);
    }

    /// The same race on the sliding counter: A's stale refund used to come
    /// off the newer window's `current`, leaving A's take in `previous`, so
    /// window 2 began with one call of room too many. The take is window 1's
    /// `previous` now and comes off that.
    #[test]
    fn sliding_refund_after_another_caller_rolled_the_window() {
        let p = WindowParams {
            limit: 10,
            period_ns: SEC,
        };
        let c = SlidingCell::default();
        let a = c.try_acquire(&p, SEC - SEC / 1000).unwrap();
        assert_eq!(a, 0);
        assert_eq!(c.try_acquire(&p, SEC), Ok(1)); // B
        c.refund(a);
        let mut admitted = 1; // B
        for _ in 0..20 {
            admitted += u32::from(c.try_acquire(&p, SEC).is_ok());
        }
        // [1 s, 2 s] holds all of window 1 by the counter's own estimate.
        for _ in 0..20 {
            admitted += u32::from(c.try_acquire(&p, 2 * SEC).is_ok());
        }
        assert_eq!(admitted, 10, "admitted past the limit in one period");
        let s = *c.state.lock().unwrap();
        assert_eq!((s.window, s.previous, s.current), (2, 10, 0));
    }

    /// A sliding refund undoes its take wherever it is: in `current`, in
    /// `previous` one window on, and nowhere (it weighs nothing) after that.
    #[test]
    fn sliding_refund_only_touches_its_own_window() {
        let p = WindowParams {
            limit: 10,
            period_ns: SEC,
        };
        let c = SlidingCell::default();
        let a = c.try_acquire(&p, SEC).unwrap();
        c.try_acquire(&p, SEC).unwrap();
        c.refund(a);
        assert_eq!(c.available(&p, SEC), 9);
        let b = c.try_acquire(&p, SEC).unwrap();
        c.try_acquire(&p, 3 * SEC).unwrap(); // two windows on: previous = 0
        c.refund(b);
        let s = *c.state.lock().unwrap();
        assert_eq!((s.window, s.previous, s.current), (3, 0, 1));
    }

    /// The window number wraps at 2^32; the wait must stay within a period.
    #[test]
    fn fixed_window_retry_after_survives_wrap_around() {
        let p = WindowParams {
            limit: 1,
            period_ns: 1_000_000,
        };
        let c = FixedCell::default();
        let now = ((1u64 << 32) + 5) * p.period_ns + 10;
        c.try_acquire(&p, now).unwrap();
        assert_eq!(c.try_acquire(&p, now), Err(p.period_ns - 10));
    }

    #[test]
    fn sliding_window_weights_previous() {
        let p = WindowParams {
            limit: 10,
            period_ns: SEC,
        };
        let c = SlidingCell::default();
        for _ in 0..10 {
            c.try_acquire(&p, SEC).unwrap();
        }
        let wait = c.try_acquire(&p, SEC).unwrap_err();
        // Next window: 10·(1 - x) + 1 <= 10 → x = 0.1 s, plus the rest of this one.
        assert_eq!(wait, SEC + SEC / 10);
        // At 2.5 s: previous weighted 10·0.5 = 5, so 5 more fit.
        let t = 2 * SEC + SEC / 2;
        for _ in 0..5 {
            c.try_acquire(&p, t).unwrap();
        }
        assert!(c.try_acquire(&p, t).is_err());
        assert!(c.is_idle(&p, 10 * SEC));
    }
}

/// Model checks (`RUSTFLAGS="--cfg limiter_loom" cargo test --release -p
/// limiter-runtime loom`).
#[cfg(all(test, limiter_loom))]
mod loom_tests {
    use super::*;
    use loom::thread;
    use std::sync::Arc;

    const SEC: u64 = 1_000_000_000;

    /// A refund of a take in window 0 racing a caller that rolls the cell to
    /// window 1 and takes twice: whichever comes first, window 1 admits
    /// exactly its limit (one), never two.
    #[test]
    fn loom_fixed_refund_after_roll_never_over_admits() {
        loom::model(|| {
            let p = WindowParams {
                limit: 1,
                period_ns: SEC,
            };
            let cell = Arc::new(FixedCell::default());
            let stale = cell.try_acquire(&p, SEC - 1).unwrap();
            let refunder = {
                let cell = Arc::clone(&cell);
                thread::spawn(move || cell.refund(stale))
            };
            let roller = {
                let cell = Arc::clone(&cell);
                thread::spawn(move || {
                    u64::from(cell.try_acquire(&p, SEC).is_ok())
                        + u64::from(cell.try_acquire(&p, SEC).is_ok())
                })
            };
            refunder.join().unwrap();
            let mut admitted = roller.join().unwrap();
            admitted += u64::from(cell.try_acquire(&p, SEC + 1).is_ok());
            assert_eq!(admitted, 1);
            assert_eq!(cell.available(&p, SEC + 1), 0);
        });
    }
}
