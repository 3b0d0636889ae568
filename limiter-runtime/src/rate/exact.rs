//! Exact sliding window: never more than `limit` calls in any span of
//! `period`, whenever the span starts.
//!
//! A token bucket admits its burst on top of its rate (a client with a full
//! bucket gets `burst + rate × w` in its first `w`), a fixed window twice
//! its limit across a boundary, and the weighted sliding-window counter
//! assumes the previous window's calls were spread evenly, so each can
//! admit more than a quota promises in some span. This one counts calls in
//! `SLOTS` sub-windows and, to decide, sums every sub-window that overlaps
//! the last `period` (the oldest one whole): every call of any span of
//! `period` ending now is counted, so admitting only while the sum is below
//! `limit` keeps every such span at `limit` or under. The price is
//! conservatism at the trailing edge: a call is let go at most one
//! sub-window (`period / 16`) late.
//!
//! State: `SLOTS + 1` counters and the newest sub-window's number, under a
//! mutex (a check is a few adds; the counters are what a key keeps).

use std::sync::Mutex;

/// Sub-windows per window (the Redis script uses the same).
pub(crate) const SLOTS: u64 = 16;
/// Counters kept: every sub-window that can overlap the last `period`.
const RING: usize = SLOTS as usize + 1;

/// Parameters of one exact window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExactParams {
    limit: u64,
    /// Length of a sub-window, ns (`period / SLOTS` rounded up, so
    /// `SLOTS` of them cover the period).
    slot_ns: u64,
}

impl ExactParams {
    pub(crate) fn new(limit: u64, period_ns: u64) -> Self {
        Self {
            limit,
            slot_ns: period_ns.div_ceil(SLOTS).max(1),
        }
    }
}

/// The counters of one exact window.
#[derive(Debug, Default)]
pub(crate) struct ExactCell {
    ring: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    /// Number of the newest sub-window counted.
    newest: u64,
    counts: [u32; RING],
    /// What a charge took past the limit: counted into the newest
    /// sub-window as room frees up, so the window stays full until it is
    /// paid (at the limit per period) instead of forgetting it.
    debt: u64,
}

impl Ring {
    /// Moves the ring on to sub-window `slot`, forgetting the ones that
    /// left the window (a clock reading older than `newest` changes
    /// nothing: it counts in the newest sub-window), and pays a debt from
    /// the room they left.
    ///
    /// As if stepped one sub-window at a time: each step pays from the
    /// room the leaving sub-window left. While the window is full and the
    /// debt at least a period's limit, a whole period of steps pays the
    /// limit and leaves the counts as they were, so it is taken at once.
    fn advance(&mut self, p: &ExactParams, slot: u64) {
        while self.newest < slot {
            if self.debt == 0 {
                self.jump(slot);
                return;
            }
            let periods = ((slot - self.newest) / RING as u64).min(self.debt / p.limit.max(1));
            if periods > 0 && self.total() == p.limit {
                self.newest += periods * RING as u64;
                self.debt -= periods * p.limit;
                continue;
            }
            self.jump(self.newest + 1);
            let paid = self.debt.min(p.limit.saturating_sub(self.total()));
            self.debt -= paid;
            self.count(paid);
        }
    }

    /// Moves the ring on to sub-window `slot`, forgetting the ones that
    /// left the window.
    fn jump(&mut self, slot: u64) {
        let gone = (slot - self.newest).min(RING as u64);
        for s in self.newest + 1..=self.newest + gone {
            self.counts[(s % RING as u64) as usize] = 0;
        }
        self.newest = slot;
    }

    fn total(&self) -> u64 {
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }

    /// Whether `n` more calls fit.
    fn fits(&self, p: &ExactParams, n: u64) -> bool {
        self.debt == 0 && self.total().saturating_add(n) <= p.limit
    }

    /// Nanoseconds from `now` until `n` more calls fit: the oldest
    /// sub-windows leave one by one (never, `u64::MAX`, when `n` is more
    /// than the limit).
    fn wait(&self, p: &ExactParams, now: u64, n: u64) -> u64 {
        if n > p.limit {
            return u64::MAX;
        }
        if self.debt > 0 {
            return self.wait_in_debt(p, now, n);
        }
        let mut total = self.total();
        let oldest = self.newest.saturating_sub(SLOTS);
        for s in oldest..=self.newest {
            if total + n <= p.limit {
                break;
            }
            total -= u64::from(self.counts[(s % RING as u64) as usize]);
            // Sub-window `s` leaves the count when `s + RING` begins.
            let leaves = (s + RING as u64).saturating_mul(p.slot_ns);
            if total + n <= p.limit {
                return leaves.saturating_sub(now).max(1);
            }
        }
        0
    }

    /// [`wait`](Self::wait) of a ring in debt: the first sub-window where
    /// `n` fit (the debt and the counts only fall as time passes, so it
    /// is found by bisection; it lies within a period more than the debt
    /// takes to pay).
    fn wait_in_debt(&self, p: &ExactParams, now: u64, n: u64) -> u64 {
        let periods = self.debt / p.limit.max(1) + 2;
        let (mut lo, mut hi) = (self.newest, self.newest + periods * RING as u64);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.at(p, mid).fits(p, n) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo.saturating_mul(p.slot_ns).saturating_sub(now).max(1)
    }

    /// Counts `n` calls in the newest sub-window; returns its number.
    fn count(&mut self, n: u64) -> u64 {
        let slot = self.newest;
        let c = &mut self.counts[(slot % RING as u64) as usize];
        *c = c.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        slot
    }

    /// The ring as it would be at sub-window `slot`, without changing it.
    fn at(&self, p: &ExactParams, slot: u64) -> Ring {
        let mut r = Ring {
            newest: self.newest,
            counts: self.counts,
            debt: self.debt,
        };
        r.advance(p, slot);
        r
    }
}

impl ExactCell {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `n` calls at `now`: the sub-window they were counted in, for
    /// [`refund`](Self::refund), or the nanoseconds until they would be
    /// admitted.
    pub(crate) fn try_acquire(&self, p: &ExactParams, now: u64, n: u64) -> Result<u64, u64> {
        let mut ring = self.lock();
        ring.advance(p, now / p.slot_ns);
        if !ring.fits(p, n) {
            return Err(ring.wait(p, now, n));
        }
        Ok(ring.count(n))
    }

    /// Counts `n` calls at `now` whatever is left: a charge after the
    /// fact. What fits under the limit is counted now; the rest is a debt,
    /// counted in as sub-windows leave (see `Ring::advance`), so the
    /// window refuses until it is paid at the limit per period.
    pub(crate) fn charge(&self, p: &ExactParams, now: u64, n: u64) {
        let mut ring = self.lock();
        ring.advance(p, now / p.slot_ns);
        let now_counted = n.min(p.limit.saturating_sub(ring.total()));
        ring.count(now_counted);
        ring.debt = ring.debt.saturating_add(n - now_counted);
    }

    /// Gives back `n` calls counted in sub-window `slot`, if the window
    /// still counts them.
    pub(crate) fn refund(&self, slot: u64, n: u64) {
        let mut ring = self.lock();
        if slot + SLOTS >= ring.newest && slot <= ring.newest {
            let c = &mut ring.counts[(slot % RING as u64) as usize];
            *c = c.saturating_sub(u32::try_from(n).unwrap_or(u32::MAX));
        }
    }

    /// Nanoseconds until `n` calls would be admitted (0: now).
    pub(crate) fn time_to_admit(&self, p: &ExactParams, now: u64, n: u64) -> u64 {
        let ring = self.lock().at(p, now / p.slot_ns);
        if ring.fits(p, n) {
            0
        } else {
            ring.wait(p, now, n)
        }
    }

    /// Calls that would be admitted now.
    pub(crate) fn available(&self, p: &ExactParams, now: u64) -> u64 {
        let ring = self.lock().at(p, now / p.slot_ns);
        p.limit.saturating_sub(ring.total())
    }

    /// Whether the window counts no call at `now` (dropping it loses
    /// nothing).
    pub(crate) fn is_idle(&self, p: &ExactParams, now: u64) -> bool {
        let ring = self.lock().at(p, now / p.slot_ns);
        ring.total() == 0 && ring.debt == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    /// Every span of `period` holds at most `limit` admitted calls.
    fn max_in_any_span(admitted: &[u64], period: u64) -> usize {
        let mut best = 0;
        let mut start = 0;
        for end in 0..admitted.len() {
            while admitted[end] - admitted[start] >= period {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }

    #[test]
    fn never_more_than_the_limit_in_any_span() {
        // 300 a minute under 12 requests a second for 3 minutes, then
        // bursts at random instants.
        let p = ExactParams::new(300, 60 * SEC);
        let c = ExactCell::default();
        let mut admitted = Vec::new();
        let mut t = SEC;
        for i in 0..(3 * 60 * 12) {
            t += SEC / 12 + (i * 7919 % 13) * 1_000_000;
            if c.try_acquire(&p, t, 1).is_ok() {
                admitted.push(t);
            }
        }
        assert!(max_in_any_span(&admitted, 60 * SEC) <= 300);
        // Not much less either: the first minute gives its whole quota.
        let first_minute = admitted.iter().filter(|&&a| a < 61 * SEC).count();
        assert_eq!(first_minute, 300);
        assert!(
            admitted.len() >= 3 * 300 - 300 / 16 * 3,
            "{}",
            admitted.len()
        );
    }

    #[test]
    fn the_wait_is_when_the_oldest_calls_leave() {
        let p = ExactParams::new(2, 16 * SEC); // sub-windows of 1 s
        let c = ExactCell::default();
        assert_eq!(c.try_acquire(&p, 10 * SEC + 500_000_000, 1), Ok(10));
        assert_eq!(c.try_acquire(&p, 12 * SEC, 1), Ok(12));
        let wait = c.try_acquire(&p, 13 * SEC, 1).unwrap_err();
        // Sub-window 10 leaves when sub-window 27 begins.
        assert_eq!(wait, 14 * SEC);
        assert_eq!(c.time_to_admit(&p, 13 * SEC, 1), 14 * SEC);
        assert!(c.try_acquire(&p, 27 * SEC - 1, 1).is_err());
        assert_eq!(c.try_acquire(&p, 27 * SEC, 1), Ok(27));
        assert_eq!(c.available(&p, 27 * SEC), 0);
        assert!(!c.is_idle(&p, 40 * SEC));
        assert!(c.is_idle(&p, 44 * SEC));
    }

    #[test]
    fn a_refund_gives_back_its_own_call_only_while_counted() {
        let p = ExactParams::new(1, 16 * SEC);
        let c = ExactCell::default();
        let taken = c.try_acquire(&p, SEC, 1).unwrap();
        assert!(c.try_acquire(&p, SEC, 1).is_err());
        c.refund(taken, 1);
        assert!(c.try_acquire(&p, 2 * SEC, 1).is_ok());
        // A refund of a sub-window long gone changes nothing.
        c.refund(taken, 1);
        assert_eq!(c.available(&p, 2 * SEC), 0);
    }
}
