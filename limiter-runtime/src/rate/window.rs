//! Window counters: fixed window and sliding-window counter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

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
    pub(crate) fn try_acquire(&self, p: &WindowParams, now: u64) -> Result<(), u64> {
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
                Ok(_) => return Ok(()),
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

    pub(crate) fn refund(&self, p: &WindowParams, now: u64) {
        let window = (now / p.period_ns) & MASK;
        let _ = self
            .packed
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |cur| {
                let (w, count) = (cur >> 32, cur & MASK);
                ((w == window || ahead(w, window) > 0) && count > 0).then(|| pack(w, count - 1))
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
    pub(crate) fn try_acquire(&self, p: &WindowParams, now: u64) -> Result<(), u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = s.advance(p, now);
        let period = u128::from(p.period_ns);
        // previous·(P - e)/P + current + 1 <= limit, in integers.
        let needed = s.weighted_previous(p, now) + u128::from(s.current + 1) * period;
        if needed <= u128::from(p.limit) * period {
            s.current += 1;
            return Ok(());
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

    pub(crate) fn refund(&self, p: &WindowParams, now: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.advance(p, now);
        s.current = s.current.saturating_sub(1);
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
        for _ in 0..3 {
            c.try_acquire(&p, SEC + 10).unwrap();
        }
        assert_eq!(c.try_acquire(&p, SEC + 10), Err(SEC - 10));
        assert_eq!(c.available(&p, SEC + 10), 0);
        c.refund(&p, SEC + 10);
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
