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

/// The count of window `window` a stored word `cur` holds, with how
/// many windows the stored one is ahead of it: the stored count while it
/// is the same window (or a newer one another caller rolled to), else
/// what is left of it after `limit` per window passed (nothing, unless a
/// charge left the window in debt).
fn count_at(cur: u64, window: u64, limit: u64) -> (u64, u64, u64) {
    let (w, count) = (cur >> 32, cur & MASK);
    let ahead = ahead(w, window);
    if w == window || ahead > 0 {
        return (w, count, ahead);
    }
    let passed = window.wrapping_sub(w) & MASK;
    (
        window,
        count.saturating_sub(limit.saturating_mul(passed)),
        0,
    )
}

/// Nanoseconds from `now` until a window counting `count` (and `ahead`
/// windows on) has room for `n`: the end of the current window, and of
/// as many more as a debt needs (`limit` is paid back per window).
fn fixed_wait(p: &WindowParams, now: u64, count: u64, ahead: u64, n: u64) -> u64 {
    let over = count.saturating_add(n).saturating_sub(p.limit);
    let windows = over.div_ceil(p.limit.max(1)).max(1);
    (ahead + windows - 1)
        .saturating_mul(p.period_ns)
        .saturating_add(p.period_ns - now % p.period_ns)
}

impl FixedCell {
    /// Takes `n` calls at `now`: the number (modulo 2^32) of the window
    /// they were counted in, for [`refund`](Self::refund), or the
    /// nanoseconds until they would be admitted.
    pub(crate) fn try_acquire(&self, p: &WindowParams, now: u64, n: u64) -> Result<u64, u64> {
        // Window numbers are stored modulo 2^32.
        let window = (now / p.period_ns) & MASK;
        let mut cur = self.packed.load(Ordering::Relaxed);
        loop {
            // A caller that read the clock just before a boundary another
            // caller already crossed counts in the newer window: it must not
            // wipe that window's count.
            let (w, count, ahead) = count_at(cur, window, p.limit);
            if count.saturating_add(n) > p.limit {
                return Err(fixed_wait(p, now, count, ahead, n));
            }
            match self.packed.compare_exchange_weak(
                cur,
                pack(w, count + n),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(w),
                Err(seen) => cur = seen,
            }
        }
    }

    /// Counts `n` calls at `now` whatever is left: a charge after the
    /// fact. A count past the limit is a debt, carried into the next
    /// windows at `limit` per window.
    pub(crate) fn charge(&self, p: &WindowParams, now: u64, n: u64) {
        let window = (now / p.period_ns) & MASK;
        let _ = self
            .packed
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |cur| {
                let (w, count, _) = count_at(cur, window, p.limit);
                Some(pack(w, count.saturating_add(n).min(MASK)))
            });
    }

    /// Nanoseconds until `n` calls would be admitted (0: now), taking
    /// nothing.
    pub(crate) fn time_to_admit(&self, p: &WindowParams, now: u64, n: u64) -> u64 {
        let window = (now / p.period_ns) & MASK;
        let (_, count, ahead) = count_at(self.packed.load(Ordering::Relaxed), window, p.limit);
        if count.saturating_add(n) > p.limit {
            fixed_wait(p, now, count, ahead, n)
        } else {
            0
        }
    }

    /// Gives back the `n` calls [`try_acquire`](Self::try_acquire) counted
    /// in window `taken` (its `Ok`), when a later window refused them.
    ///
    /// Only while the cell still counts window `taken`: that count holds the
    /// take (counts grow by takes and shrink only by refunds of their own
    /// takes). Once another caller has rolled the cell to a newer window the
    /// take is no longer counted anywhere and the refund is skipped:
    /// decrementing the newer window would let it admit more calls than
    /// its limit (a refund skipped only under-admits). Window numbers are
    /// kept modulo 2^32, so this assumes the caller does not stall 2^32
    /// periods between the take and the refund, as `ahead` already does.
    pub(crate) fn refund(&self, taken: u64, n: u64) {
        let _ = self
            .packed
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |cur| {
                let (w, count) = (cur >> 32, cur & MASK);
                (w == taken && count >= n).then(|| pack(w, count - n))
            });
    }

    pub(crate) fn is_idle(&self, p: &WindowParams, now: u64) -> bool {
        let window = (now / p.period_ns) & MASK;
        count_at(self.packed.load(Ordering::Relaxed), window, p.limit).1 == 0
    }

    pub(crate) fn available(&self, p: &WindowParams, now: u64) -> u64 {
        let window = (now / p.period_ns) & MASK;
        let (_, used, _) = count_at(self.packed.load(Ordering::Relaxed), window, p.limit);
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
    ///
    /// Each window passed pays `limit` of a debt a charge left: the count
    /// past the limit moves on into the next window (with none, the
    /// previous window's count is the current one's, or nothing after a
    /// gap, as usual).
    fn advance(&mut self, p: &WindowParams, now: u64) -> u64 {
        let start = self.window * p.period_ns;
        if now < start {
            return start;
        }
        let window = now / p.period_ns;
        if window == self.window {
            return now;
        }
        let passed = window - self.window;
        let paid = p.limit.saturating_mul(passed - 1);
        self.previous = self.current.saturating_sub(paid).min(p.limit);
        self.current = self.current.saturating_sub(p.limit.saturating_mul(passed));
        self.window = window;
        now
    }

    /// Previous count weighted by its overlap, in units of 1/period_ns.
    fn weighted_previous(&self, p: &WindowParams, now: u64) -> u128 {
        let elapsed = now - self.window * p.period_ns;
        u128::from(self.previous) * u128::from(p.period_ns - elapsed)
    }

    /// Whether `n` more calls fit at `now`:
    /// `previous·(P - e)/P + current + n <= limit`, in integers.
    fn fits(&self, p: &WindowParams, now: u64, n: u64) -> bool {
        let period = u128::from(p.period_ns);
        let needed =
            self.weighted_previous(p, now) + u128::from(self.current.saturating_add(n)) * period;
        needed <= u128::from(p.limit) * period
    }

    /// Whether `n` more calls fit before this window ends (the previous
    /// window's share has gone to nothing by then).
    fn fits_by_end(&self, p: &WindowParams, n: u64) -> bool {
        self.current.saturating_add(n) <= p.limit
    }
}

impl SlidingCell {
    /// Takes `n` calls at `now`: the number of the window they were
    /// counted in, for [`refund`](Self::refund), or the nanoseconds until
    /// they would be admitted.
    pub(crate) fn try_acquire(&self, p: &WindowParams, now: u64, n: u64) -> Result<u64, u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = s.advance(p, now);
        if s.fits(p, now, n) {
            s.current += n;
            return Ok(s.window);
        }
        Err(Self::wait(&s, p, now, n))
    }

    /// Counts `n` calls at `now` whatever is left: a charge after the
    /// fact. A count past the limit is a debt, carried into the next
    /// windows at `limit` per window (see `advance`).
    pub(crate) fn charge(&self, p: &WindowParams, now: u64, n: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.advance(p, now);
        s.current = s.current.saturating_add(n);
    }

    /// Nanoseconds until `n` calls would be admitted (0: now), taking
    /// nothing.
    pub(crate) fn time_to_admit(&self, p: &WindowParams, now: u64, n: u64) -> u64 {
        let mut s = *self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = s.advance(p, now);
        if s.fits(p, now, n) {
            0
        } else {
            Self::wait(&s, p, now, n)
        }
    }

    /// Nanoseconds until `n` more calls fit: found by stepping the state
    /// on window by window (a debt takes several), then within the window
    /// where they fit.
    fn wait(s: &Sliding, p: &WindowParams, now: u64, n: u64) -> u64 {
        if n > p.limit {
            return u64::MAX; // never: more than the window holds
        }
        let mut s = *s;
        let mut at = now;
        // A window's worth of debt is paid per window: bounded by the debt.
        while !s.fits_by_end(p, n) {
            at = (s.window + 1) * p.period_ns;
            s.advance(p, at);
        }
        let wait = at - now + Self::wait_within(&s, p, at, n);
        wait.max(1)
    }

    /// Nanoseconds from `now` until `n` more calls fit within the current
    /// window, as the previous window's share shrinks (they fit by its
    /// end: see `fits_by_end`).
    fn wait_within(s: &Sliding, p: &WindowParams, now: u64, n: u64) -> u64 {
        if s.fits(p, now, n) || s.previous == 0 {
            return 0;
        }
        let period = u128::from(p.period_ns);
        let elapsed = u128::from(now - s.window * p.period_ns);
        // previous·(P - e - d)/P <= limit - n - current.
        let room = u128::from(p.limit - n - s.current);
        let keep = room * period / u128::from(s.previous); // largest P - e - d allowed
        u64::try_from((period - elapsed).saturating_sub(keep)).unwrap_or(u64::MAX)
    }

    /// Gives back the call [`try_acquire`](Self::try_acquire) counted in
    /// window `taken` (its `Ok`), when a later window refused it.
    ///
    /// The take is in `current` while the cell is still in window `taken`,
    /// in `previous` once it has rolled one window on (that count is window
    /// `taken`'s), and weighs nothing after that: the refund undoes it where
    /// it is and never touches a count it is not in (the newer window's, which
    /// would then admit one call more than its limit).
    pub(crate) fn refund(&self, taken: u64, n: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.window == taken {
            s.current = s.current.saturating_sub(n);
        } else if s.window == taken.wrapping_add(1) {
            s.previous = s.previous.saturating_sub(n);
        }
    }

    pub(crate) fn is_idle(&self, p: &WindowParams, now: u64) -> bool {
        let mut s = *self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.advance(p, now);
        s.previous == 0 && s.current == 0
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
            taken = c.try_acquire(&p, SEC + 10, 1).unwrap();
        }
        assert_eq!(taken, 1);
        assert_eq!(c.try_acquire(&p, SEC + 10, 1), Err(SEC - 10));
        assert_eq!(c.available(&p, SEC + 10), 0);
        c.refund(taken, 1);
        c.try_acquire(&p, SEC + 20, 1).unwrap();
        assert!(c.try_acquire(&p, 2 * SEC - 1, 1).is_err());
        c.try_acquire(&p, 2 * SEC, 1).unwrap();
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
            f += u32::from(fixed.try_acquire(&p, 2 * SEC, 1).is_ok());
            s += u32::from(sliding.try_acquire(&p, 2 * SEC, 1).is_ok());
        }
        assert!(fixed.try_acquire(&p, 2 * SEC - 1, 1).is_err());
        assert!(sliding.try_acquire(&p, 2 * SEC - 1, 1).is_err());
        for _ in 0..10 {
            f += u32::from(fixed.try_acquire(&p, 2 * SEC + 1, 1).is_ok());
            s += u32::from(sliding.try_acquire(&p, 2 * SEC + 1, 1).is_ok());
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
        let a = c.try_acquire(&p, SEC - SEC / 1000, 1).unwrap();
        assert_eq!(a, 0);
        assert_eq!(c.try_acquire(&p, SEC, 1), Ok(1)); // B
        c.refund(a, 1);
        let mut admitted = 1; // B
        for i in 0..20 {
            admitted += u32::from(c.try_acquire(&p, SEC + i * SEC / 20, 1).is_ok());
        }
        assert_eq!(admitted, 10, "window 1 admitted past its limit");
        // A refund in the window it was taken in still gives the call back.
        let taken = c.try_acquire(&p, 2 * SEC, 1).unwrap();
        assert_eq!(c.available(&p, 2 * SEC), 9);
        c.refund(taken, 1);
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
        let a = c.try_acquire(&p, SEC - SEC / 1000, 1).unwrap();
        assert_eq!(a, 0);
        assert_eq!(c.try_acquire(&p, SEC, 1), Ok(1)); // B
        c.refund(a, 1);
        let mut admitted = 1; // B
        for _ in 0..20 {
            admitted += u32::from(c.try_acquire(&p, SEC, 1).is_ok());
        }
        // [1 s, 2 s] holds all of window 1 by the counter's own estimate.
        for _ in 0..20 {
            admitted += u32::from(c.try_acquire(&p, 2 * SEC, 1).is_ok());
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
        let a = c.try_acquire(&p, SEC, 1).unwrap();
        c.try_acquire(&p, SEC, 1).unwrap();
        c.refund(a, 1);
        assert_eq!(c.available(&p, SEC), 9);
        let b = c.try_acquire(&p, SEC, 1).unwrap();
        c.try_acquire(&p, 3 * SEC, 1).unwrap(); // two windows on: previous = 0
        c.refund(b, 1);
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
        c.try_acquire(&p, now, 1).unwrap();
        assert_eq!(c.try_acquire(&p, now, 1), Err(p.period_ns - 10));
    }

    #[test]
    fn sliding_window_weights_previous() {
        let p = WindowParams {
            limit: 10,
            period_ns: SEC,
        };
        let c = SlidingCell::default();
        for _ in 0..10 {
            c.try_acquire(&p, SEC, 1).unwrap();
        }
        let wait = c.try_acquire(&p, SEC, 1).unwrap_err();
        // Next window: 10·(1 - x) + 1 <= 10 → x = 0.1 s, plus the rest of this one.
        assert_eq!(wait, SEC + SEC / 10);
        // At 2.5 s: previous weighted 10·0.5 = 5, so 5 more fit.
        let t = 2 * SEC + SEC / 2;
        for _ in 0..5 {
            c.try_acquire(&p, t, 1).unwrap();
        }
        assert!(c.try_acquire(&p, t, 1).is_err());
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
            let stale = cell.try_acquire(&p, SEC - 1, 1).unwrap();
            let refunder = {
                let cell = Arc::clone(&cell);
                thread::spawn(move || cell.refund(stale, 1))
            };
            let roller = {
                let cell = Arc::clone(&cell);
                thread::spawn(move || {
                    u64::from(cell.try_acquire(&p, SEC, 1).is_ok())
                        + u64::from(cell.try_acquire(&p, SEC, 1).is_ok())
                })
            };
            refunder.join().unwrap();
            let mut admitted = roller.join().unwrap();
            admitted += u64::from(cell.try_acquire(&p, SEC + 1, 1).is_ok());
            assert_eq!(admitted, 1);
            assert_eq!(cell.available(&p, SEC + 1), 0);
        });
    }
}
