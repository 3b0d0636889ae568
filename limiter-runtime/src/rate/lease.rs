//! Quota leases: slices of a shared token bucket's timeline, taken from
//! the store in one round trip and served in this process.
//!
//! A token bucket kept in Redis is a theoretical arrival time `tat` per
//! window (GCRA). A lease of `g` tokens moves every window's `tat` on by
//! `g` emission intervals, exactly as `g` calls would, and hands this
//! instance the slice it skipped: token `j` (1-based) of the slice is
//! usable from `start + j·T − horizon` in each window, the moment an exact
//! check would have admitted it. Served in that order, a slice admits no
//! call an exact check would refuse, so the leased limit differs from the
//! exact one only by the tokens instances hold and have not served yet
//! (and serve later than an exact check would have; see
//! `limiter::redis::over_admission_bound`).
//!
//! This file is the clock-driven state of one lease (no I/O, tested with
//! plain numbers); `op/lease.rs` fetches and returns slices.

use std::collections::VecDeque;

/// How far ahead a lease reaches: an instance asks for about this much of
/// its own traffic, and the store hands out no slice that starts later.
pub(crate) const LEASE_HORIZON_NS: u64 = 100_000_000;

/// How long a slice's unused tokens stay usable after its last token
/// became usable; then they go back to the store (or are dropped).
pub(crate) const SLICE_TTL_NS: u64 = 500_000_000;

/// The window of demand measurement (tokens asked per window).
const DEMAND_WINDOW_NS: u64 = 100_000_000;

/// The largest slice one of `instances` instances asks for: its share of
/// [`LEASE_HORIZON_NS`] of the rate, at least one token.
pub(crate) fn lease_cap(per_second: f64, instances: u32) -> u64 {
    let horizon_s = LEASE_HORIZON_NS as f64 / 1e9;
    ((per_second * horizon_s / f64::from(instances.max(1))).ceil() as u64).max(1)
}

/// The emission interval of `rate` in whole microseconds, rounded up so the
/// bucket never admits more than the rate (3 per 10 ms: 3 334 µs, not
/// 3 333 µs, which would let a fourth call in within 10 ms): the unit of
/// the store's scripts, and so of leases.
pub(crate) fn interval_micros(rate: &crate::spec::Rate) -> u64 {
    let us = rate
        .period()
        .as_nanos()
        .div_ceil(u128::from(rate.count()) * 1000);
    u64::try_from(us).unwrap_or(u64::MAX).max(1)
}

/// One window of the leased bucket: emission interval and horizon, in ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeaseWindow {
    pub(crate) interval_ns: u64,
    pub(crate) horizon_ns: u64,
}

/// A slice granted by the store, in this process's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slice {
    /// Per window: where the slice starts (the window's `tat` when leased),
    /// in local ns; may be in the past.
    pub(crate) starts: Vec<i128>,
    /// Per window: the store's `tat` after the grant, in the store's µs,
    /// to give unused tokens back only if nobody leased after.
    pub(crate) ends_us: Vec<u64>,
    /// Tokens in the slice.
    pub(crate) tokens: u64,
    /// Tokens served so far.
    pub(crate) used: u64,
    /// When unused tokens stop being served.
    pub(crate) expires: u64,
}

impl Slice {
    fn left(&self) -> u64 {
        self.tokens - self.used
    }

    /// When `n` more tokens of this slice are usable.
    fn usable_at(&self, windows: &[LeaseWindow], n: u64) -> i128 {
        let k = i128::from(self.used + n);
        windows
            .iter()
            .zip(&self.starts)
            .map(|(w, start)| start + k * i128::from(w.interval_ns) - i128::from(w.horizon_ns))
            .max()
            .unwrap_or(i128::MIN)
    }
}

/// What serving a take from the lease decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
    /// Served from a slice.
    Admitted,
    /// Refused here: the tokens (or the store's next ones) are usable only
    /// after this many ns.
    Wait(u64),
    /// No slice holds the take: fetch one.
    Empty,
}

/// Tokens asked per [`DEMAND_WINDOW_NS`], smoothed.
#[derive(Debug, Default)]
struct Demand {
    window_start: u64,
    asked: u64,
    /// Tokens per window, halved toward each new window's count.
    smoothed: f64,
}

impl Demand {
    fn add(&mut self, now: u64, n: u64) {
        if now >= self.window_start + DEMAND_WINDOW_NS {
            let windows = (now - self.window_start) / DEMAND_WINDOW_NS;
            // Idle windows in between count as zero.
            let mut s = self.smoothed;
            s = (s + self.asked as f64) / 2.0;
            for _ in 1..windows.min(64) {
                s /= 2.0;
            }
            self.smoothed = s;
            self.asked = 0;
            self.window_start = now - (now - self.window_start) % DEMAND_WINDOW_NS;
        }
        self.asked += n;
    }

    /// Tokens asked per second lately.
    fn per_second(&self) -> f64 {
        let window_s = DEMAND_WINDOW_NS as f64 / 1e9;
        self.smoothed.max(self.asked as f64) / window_s
    }
}

/// The lease of one shared bucket (op-wide, or one key's) in this
/// instance.
#[derive(Debug)]
pub(crate) struct Lease {
    windows: Vec<LeaseWindow>,
    slices: VecDeque<Slice>,
    demand: Demand,
    /// A fetch is on its way.
    pub(crate) fetching: bool,
    /// The store had no slice to give before this local time.
    retry_at: u64,
    /// The largest slice this instance asks for ([`lease_cap`]), set at
    /// each fetch from the instances sharing the bucket.
    pub(crate) cap: u64,
}

impl Lease {
    /// An empty lease of a bucket with `windows`.
    pub(crate) fn new(windows: Vec<LeaseWindow>) -> Self {
        Self {
            windows,
            slices: VecDeque::new(),
            demand: Demand::default(),
            fetching: false,
            retry_at: 0,
            cap: 1,
        }
    }

    /// The bucket's windows.
    pub(crate) fn windows(&self) -> &[LeaseWindow] {
        &self.windows
    }

    /// Serves `n` tokens at `now` if a slice holds them; slices that
    /// expired are removed and returned, for their unused tokens to go
    /// back.
    pub(crate) fn take(&mut self, now: u64, n: u64, expired: &mut Vec<Slice>) -> Served {
        self.demand.add(now, n);
        loop {
            // Every slice that comes to the front is checked: one behind a
            // live slice may have expired.
            self.expire(now, expired);
            let Some(front) = self.slices.front_mut() else {
                break;
            };
            if front.left() >= n {
                let at = front.usable_at(&self.windows, n);
                if at > i128::from(now) {
                    return Served::Wait(u64::try_from(at - i128::from(now)).unwrap_or(u64::MAX));
                }
                front.used += n;
                if front.left() == 0 {
                    self.slices.pop_front();
                }
                return Served::Admitted;
            }
            if self.slices.len() == 1 {
                break;
            }
            // Too few left for this take, and a later slice is there: the
            // remainder goes back rather than blocking the queue.
            if let Some(done) = self.slices.pop_front() {
                expired.push(done);
            }
        }
        if now < self.retry_at {
            return Served::Wait(self.retry_at - now);
        }
        Served::Empty
    }

    fn expire(&mut self, now: u64, expired: &mut Vec<Slice>) {
        while self.slices.front().is_some_and(|s| s.expires <= now) {
            if let Some(s) = self.slices.pop_front() {
                expired.push(s);
            }
        }
    }

    /// Tokens held and not served yet.
    pub(crate) fn held(&self) -> u64 {
        self.slices.iter().map(Slice::left).sum()
    }

    /// How many tokens to fetch now, if a fetch should start: when nothing
    /// is on its way and what is held covers less than half the next
    /// slice. The slice follows demand ([`LEASE_HORIZON_NS`] of it), at
    /// least `n` (the take waiting for it), at most [`Lease::cap`].
    pub(crate) fn wants(&self, n: u64) -> Option<u64> {
        if self.fetching {
            return None;
        }
        let cap = self.cap;
        let horizon_s = LEASE_HORIZON_NS as f64 / 1e9;
        let size = ((self.demand.per_second() * horizon_s).ceil() as u64)
            .clamp(1, cap.max(1))
            .max(n);
        (self.held() < size.div_ceil(2).max(n)).then_some(size)
    }

    /// Adds a slice the store granted.
    pub(crate) fn add(&mut self, slice: Slice) {
        self.retry_at = 0;
        if slice.tokens > 0 {
            self.slices.push_back(slice);
        }
    }

    /// The store had nothing to grant for `wait` ns: takes are refused
    /// here until then.
    pub(crate) fn refused(&mut self, now: u64, wait: u64) {
        self.retry_at = now.saturating_add(wait.max(1));
    }

    /// Every slice, for the tokens to go back (the lease is dropped).
    pub(crate) fn drain(&mut self) -> Vec<Slice> {
        self.slices.drain(..).collect()
    }
}

/// When the slice granted with `starts` (local ns) of `tokens` tokens
/// stops being served: [`SLICE_TTL_NS`] after its last token is usable.
pub(crate) fn slice_expiry(windows: &[LeaseWindow], starts: &[i128], tokens: u64, now: u64) -> u64 {
    let last = windows
        .iter()
        .zip(starts)
        .map(|(w, s)| s + i128::from(tokens) * i128::from(w.interval_ns) - i128::from(w.horizon_ns))
        .max()
        .unwrap_or(0)
        .max(i128::from(now));
    u64::try_from(last)
        .unwrap_or(u64::MAX)
        .saturating_add(SLICE_TTL_NS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// 1 000/s with a burst of 10: T = 1 ms, horizon 10 ms.
    fn windows() -> Vec<LeaseWindow> {
        vec![LeaseWindow {
            interval_ns: MS,
            horizon_ns: 10 * MS,
        }]
    }

    fn slice(start: i128, tokens: u64, now: u64) -> Slice {
        Slice {
            starts: vec![start],
            ends_us: vec![0],
            tokens,
            used: 0,
            expires: slice_expiry(&windows(), &[start], tokens, now),
        }
    }

    #[test]
    fn a_slice_serves_tokens_when_an_exact_check_would() {
        let mut lease = Lease::new(windows());
        let mut gone = Vec::new();
        let now = 1_000 * MS;
        // The bucket was 5 ms in debt when leased: tat = now + 5 ms.
        lease.add(slice(i128::from(now + 5 * MS), 20, now));
        // Tokens 1..=5 are usable at once (tat + j·T − 10 ms ≤ now).
        for _ in 0..5 {
            assert_eq!(lease.take(now, 1, &mut gone), Served::Admitted);
        }
        // The 6th is usable 1 ms later, as an exact check would say.
        assert_eq!(lease.take(now, 1, &mut gone), Served::Wait(MS));
        assert_eq!(lease.take(now + MS, 1, &mut gone), Served::Admitted);
        // A take of 3 at +4 ms: tokens 7..=9, the 9th usable at +4 ms.
        assert_eq!(lease.take(now + 3 * MS, 3, &mut gone), Served::Wait(MS));
        assert_eq!(lease.take(now + 4 * MS, 3, &mut gone), Served::Admitted);
        assert_eq!(lease.held(), 11);
        assert!(gone.is_empty());
    }

    #[test]
    fn an_empty_lease_asks_for_a_slice_and_a_refusal_is_kept_until_its_wait() {
        let mut lease = Lease::new(windows());
        let mut gone = Vec::new();
        assert_eq!(lease.take(0, 1, &mut gone), Served::Empty);
        lease.cap = 50;
        assert_eq!(
            lease.wants(1),
            Some(1),
            "no demand known yet: the take itself"
        );
        lease.refused(0, 3 * MS);
        assert_eq!(lease.take(MS, 1, &mut gone), Served::Wait(2 * MS));
        assert_eq!(lease.take(3 * MS, 1, &mut gone), Served::Empty);
    }

    #[test]
    fn slices_follow_demand_up_to_the_cap() {
        let mut lease = Lease::new(windows());
        let mut gone = Vec::new();
        // 300 tokens asked over 100 ms, then the next window starts.
        for i in 0..300 {
            let _ = lease.take(i * MS / 3, 1, &mut gone);
        }
        let _ = lease.take(100 * MS, 1, &mut gone);
        // ~3 000/s asked: 100 ms of it is ~300, capped at 50.
        lease.cap = 50;
        assert_eq!(lease.wants(1), Some(50));
        lease.cap = 1_000;
        assert_eq!(lease.wants(1).map(|n| n > 100), Some(true));
        lease.fetching = true;
        assert_eq!(lease.wants(1), None, "one fetch at a time");
    }

    #[test]
    fn a_fetch_starts_when_half_a_slice_is_left() {
        let mut lease = Lease::new(windows());
        let mut gone = Vec::new();
        let now = 10_000 * MS;
        lease.add(slice(i128::from(now) - 100 * i128::from(MS), 10, now));
        lease.cap = 10;
        assert_eq!(lease.wants(1), None, "10 held, slices of 1 (no demand yet)");
        for _ in 0..10 {
            assert_eq!(lease.take(now, 1, &mut gone), Served::Admitted);
        }
        assert_eq!(lease.held(), 0);
        assert!(lease.wants(1).is_some());
    }

    #[test]
    fn expired_slices_are_handed_back_with_their_unused_tokens() {
        let mut lease = Lease::new(windows());
        let mut gone = Vec::new();
        let now = 1_000 * MS;
        lease.add(slice(i128::from(now), 20, now));
        assert_eq!(lease.take(now, 1, &mut gone), Served::Admitted);
        // Last token usable at now + 20 ms − 10 ms; expires TTL later.
        let expiry = now + 10 * MS + SLICE_TTL_NS;
        assert_eq!(lease.take(expiry, 1, &mut gone), Served::Empty);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].left(), 19);
    }

    #[test]
    fn a_take_larger_than_the_front_slice_moves_on_to_the_next() {
        let mut lease = Lease::new(windows());
        let mut gone = Vec::new();
        let now = 1_000 * MS;
        lease.add(slice(i128::from(now) - 50 * i128::from(MS), 2, now));
        lease.add(slice(i128::from(now) - 50 * i128::from(MS), 5, now));
        assert_eq!(lease.take(now, 4, &mut gone), Served::Admitted);
        assert_eq!(gone.len(), 1, "the 2 left of the first go back");
        assert_eq!(lease.held(), 1);
    }

    #[test]
    fn slices_are_a_share_of_the_horizon() {
        // 1 000/s over 4 instances: slices of at most 25.
        assert_eq!(lease_cap(1_000.0, 4), 25);
        assert_eq!(lease_cap(5.0, 4), 1, "at least one token");
    }

    /// The renewal protocol as a state machine driven in any order: takes
    /// at any time, fetched slices arriving late or early, time passing
    /// past expiries, the lease dropped. No token is lost or served twice
    /// (every granted token is served, held, or handed back) and none is
    /// served before an exact check would admit it. (Not in the loom
    /// build, which has no proptest.)
    #[cfg(not(limiter_loom))]
    mod renewal {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Step {
            Take(u64),
            Advance(u64),
            Grant { lead_ms: i64, tokens: u64 },
            Drain,
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                4 => (1u64..4).prop_map(Step::Take),
                3 => (0u64..800).prop_map(|ms| Step::Advance(ms * MS)),
                2 => (-50i64..150, 1u64..40).prop_map(|(lead_ms, tokens)| Step::Grant { lead_ms, tokens }),
                1 => Just(Step::Drain),
            ]
        }

        proptest! {
            #[test]
            fn no_token_is_lost_or_early(steps in proptest::collection::vec(step(), 1..200)) {
                let windows = windows();
                let mut lease = Lease::new(windows.clone());
                let mut now = 10_000 * MS;
                let (mut granted, mut served, mut back) = (0u64, 0u64, 0u64);
                for s in steps {
                    let mut gone = Vec::new();
                    match s {
                        Step::Take(n) => {
                            let before: Vec<Slice> = lease.slices.iter().cloned().collect();
                            if lease.take(now, n, &mut gone) == Served::Admitted {
                                served += n;
                                // Served by the first live slice holding n.
                                let slice = before
                                    .iter()
                                    .filter(|s| s.expires > now)
                                    .find(|s| s.left() >= n);
                                prop_assert!(slice.is_some(), "served from no slice");
                                let at = slice.map_or(i128::MAX, |s| s.usable_at(&windows, n));
                                prop_assert!(at <= i128::from(now), "served {n} at {now}, usable at {at}");
                            }
                        }
                        Step::Advance(d) => now += d,
                        Step::Grant { lead_ms, tokens } => {
                            let start = i128::from(now) + i128::from(lead_ms) * i128::from(MS);
                            granted += tokens;
                            lease.fetching = false;
                            lease.add(Slice {
                                starts: vec![start],
                                ends_us: vec![0],
                                tokens,
                                used: 0,
                                expires: slice_expiry(&windows, &[start], tokens, now),
                            });
                        }
                        Step::Drain => gone = lease.drain(),
                    }
                    back += gone.iter().map(Slice::left).sum::<u64>();
                    prop_assert_eq!(granted, served + back + lease.held());
                }
            }
        }
    }
}
