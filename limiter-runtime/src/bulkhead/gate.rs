//! The bulkhead's in-flight count and its lock-free fast path.
//!
//! One word holds the calls running (low 32 bits) and the callers waiting
//! in the bulkhead's queues (high 32 bits). While nobody waits, a place is
//! taken with one compare-and-swap and given back with one `fetch_sub`, no
//! lock. A caller that finds no room registers as waiting in the same word,
//! under the bulkhead's mutex, before it queues; from then on every arrival
//! goes through the mutex (so nobody overtakes the queue) and every release
//! that sees waiters takes the mutex to hand its place over. A release
//! racing a caller that is about to queue either lands before the caller's
//! compare-and-swap (which then sees the room and takes it) or after it
//! (and sees the waiter): no wake-up is lost.

use crate::sync::{AtomicU32, AtomicU64, Ordering};

const ONE_WAITER: u64 = 1 << 32;

/// Running calls and waiting callers of one bulkhead.
#[derive(Debug)]
pub(crate) struct Gate {
    word: AtomicU64,
    max: AtomicU32,
    peak: AtomicU32,
}

impl Gate {
    pub(crate) fn new(max: u32) -> Self {
        Self {
            word: AtomicU64::new(0),
            max: AtomicU32::new(max),
            peak: AtomicU32::new(0),
        }
    }

    pub(crate) fn set_max(&self, max: u32) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// Calls running now.
    pub(crate) fn in_flight(&self) -> u32 {
        self.word.load(Ordering::Relaxed) as u32
    }

    /// Highest number of calls running at once so far.
    pub(crate) fn peak(&self) -> u32 {
        self.peak.load(Ordering::Relaxed)
    }

    #[inline]
    fn note_peak(&self, running: u32) {
        if running > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(running, Ordering::Relaxed);
        }
    }

    /// The fast path: takes a place if nobody waits and one is free.
    #[inline]
    pub(crate) fn try_take(&self) -> bool {
        let max = self.max.load(Ordering::Relaxed);
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            if word >= ONE_WAITER || word as u32 >= max {
                return false;
            }
            match self.word.compare_exchange_weak(
                word,
                word + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.note_peak(word as u32 + 1);
                    return true;
                }
                Err(seen) => word = seen,
            }
        }
    }

    /// Under the bulkhead's mutex: takes a place if one is free and
    /// `may_run` (the caller's key has room too), or else registers the
    /// caller as waiting. Returns whether a place was taken.
    pub(crate) fn take_or_wait(&self, may_run: bool) -> bool {
        let max = self.max.load(Ordering::Relaxed);
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            let take = may_run && (word as u32) < max;
            let next = if take { word + 1 } else { word + ONE_WAITER };
            match self
                .word
                .compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    if take {
                        self.note_peak(word as u32 + 1);
                    }
                    return take;
                }
                Err(seen) => word = seen,
            }
        }
    }

    /// Under the mutex: whether a place is free for a waiter.
    pub(crate) fn has_room(&self) -> bool {
        (self.word.load(Ordering::Acquire) as u32) < self.max.load(Ordering::Relaxed)
    }

    /// Under the mutex: a waiter stops waiting and runs.
    pub(crate) fn grant(&self) {
        let before = self
            .word
            .fetch_add(1u64.wrapping_sub(ONE_WAITER), Ordering::AcqRel);
        self.note_peak(before as u32 + 1);
    }

    /// Under the mutex: a waiter stops waiting without a place.
    pub(crate) fn unwait(&self) {
        self.word.fetch_sub(ONE_WAITER, Ordering::AcqRel);
    }

    /// Gives a place back; returns whether callers wait (the place must then
    /// be handed over under the mutex).
    #[inline]
    pub(crate) fn give(&self) -> bool {
        self.word.fetch_sub(1, Ordering::AcqRel) >= ONE_WAITER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_close_the_fast_path() {
        let g = Gate::new(2);
        assert!(g.try_take());
        assert!(g.try_take());
        assert!(!g.try_take(), "full");
        assert!(!g.take_or_wait(true), "registers as waiting");
        assert!(g.give(), "a release sees the waiter");
        assert!(!g.try_take(), "the freed place is the waiter's");
        assert!(g.has_room());
        g.grant();
        assert_eq!((g.in_flight(), g.peak()), (2, 2));
        assert!(!g.give());
        assert!(g.try_take());
        assert!(!g.take_or_wait(false), "its key is full: waits");
        g.unwait();
        assert!(!g.give());
        assert!(!g.give());
        assert_eq!(g.in_flight(), 0);
    }
}

/// Model checks of the lock-free word (`RUSTFLAGS="--cfg limiter_loom" cargo test
/// --release -p limiter-runtime loom`); the hand-over under the mutex is
/// checked in the bulkhead's own models.
#[cfg(all(test, limiter_loom))]
mod loom_tests {
    use super::*;
    use loom::thread;
    use std::sync::Arc;

    /// Three callers (two threads and the test's own) race for two places:
    /// at most two run at once, none is refused a free place, the count is
    /// exact, and every place comes back.
    #[test]
    fn loom_gate_no_double_admission_no_lost_place() {
        let mut model = loom::model::Builder::new();
        // Three threads with CAS loops: bound the preemptions, as loom's own
        // docs advise, so the model finishes in seconds.
        model.preemption_bound = Some(3);
        model.check(|| {
            let g = Arc::new(Gate::new(2));
            let call = |g: &Gate| {
                let took = g.try_take();
                if took {
                    assert!(g.in_flight() <= 2, "more running than places");
                    assert!(!g.give(), "nobody waits");
                }
                took
            };
            let others: Vec<_> = (0..2)
                .map(|_| {
                    let g = Arc::clone(&g);
                    thread::spawn(move || call(&g))
                })
                .collect();
            let mine = call(&g);
            let took = others
                .into_iter()
                .map(|c| c.join().unwrap())
                .chain([mine])
                .filter(|t| *t)
                .count();
            assert!(took >= 2, "a free place was refused");
            assert_eq!(g.in_flight(), 0);
            assert!(g.peak() <= 2);
        });
    }

    /// A release racing a caller about to wait: either the caller sees the
    /// freed place, or the release sees the waiter. Never neither.
    #[test]
    fn loom_gate_release_sees_waiter_or_waiter_sees_room() {
        loom::model(|| {
            let g = Arc::new(Gate::new(1));
            assert!(g.try_take());
            let releaser = {
                let g = Arc::clone(&g);
                thread::spawn(move || g.give())
            };
            let took = g.take_or_wait(true);
            let saw_waiter = releaser.join().unwrap();
            assert!(took || saw_waiter, "wake-up lost");
            assert!(!(took && saw_waiter), "place counted twice");
            if saw_waiter {
                g.grant();
            }
            assert_eq!(g.in_flight(), 1);
            assert!(!g.give());
            assert_eq!(g.in_flight(), 0);
        });
    }
}
