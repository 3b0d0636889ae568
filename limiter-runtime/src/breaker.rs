//! Circuit breaker: closed → open → half-open → closed.
//!
//! * **Closed**: calls run; outcomes fill a count-based window of the last
//!   `window` calls. The thresholds are judged after every recorded
//!   outcome: once the window holds `min_calls`, a failure rate at or above
//!   `failure_rate` opens the breaker (a success that pushes an older
//!   success out of the window can be the call that opens it, as in
//!   resilience4j's count-based window); so do `consecutive_failures`
//!   failures in a row, when set.
//! * **Open**: calls are refused with `CircuitOpen` until `recovery` passes.
//! * **Half-open**: at most `half_open_calls` probes run at once; a failed
//!   probe opens the breaker again, `success_threshold` successful probes
//!   close it. A probe that ends without an outcome (cancelled, or refused by
//!   a later limit) gives its place back.
//!
//! The closed state is read with one atomic load. While the window holds no
//! failure, a success is recorded lock-free too: the window is then just a
//! count of calls (the `clean` word), bumped while it fills and left alone
//! once full. The first failure takes the mutex, turns the count into an
//! explicit window of that many successes and marks the word dirty; from
//! then on outcomes go through the mutex until the last failure has left
//! the window, when the word is clean again. Transitions are kept under the
//! mutex.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::settings::BreakerPolicy;
use crate::sync::{AtomicU64, Mutex, MutexGuard, Ordering};

/// State of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls pass; outcomes are counted.
    Closed,
    /// Calls are refused until the recovery time passes.
    Open,
    /// A limited number of probe calls decide whether to close.
    HalfOpen,
    /// Held open by hand until [`crate::Op::reset_breaker`].
    ForcedOpen,
    /// No breaker is configured.
    Disabled,
}

impl BreakerState {
    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(code: u8) -> Self {
        match code {
            0 => BreakerState::Closed,
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            3 => BreakerState::ForcedOpen,
            _ => BreakerState::Disabled,
        }
    }
}

/// What the breaker granted a call. Closed and probe tickets carry the
/// round (a counter bumped by every transition) they were granted in, so the
/// outcome of a call from an earlier round never counts in a later one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ticket {
    /// No breaker.
    Bypass,
    /// A call in the closed state.
    Closed(u64),
    /// A half-open probe.
    Probe(u64),
    /// A place granted by the op's breaker in Redis (settled by the op).
    Shared(crate::backend::SharedTicket),
}

struct Inner {
    policy: Option<BreakerPolicy>,
    state: BreakerState,
    /// Bumped by every transition.
    round: u64,
    /// Outcomes of the last calls, `true` for failure.
    window: VecDeque<bool>,
    failures: u32,
    consecutive: u32,
    open_until: u64,
    probes: u32,
    probe_successes: u32,
}

const DIRTY: u64 = 1 << 31;
const CALLS: u64 = DIRTY - 1;

/// The `clean` word of `round` with `calls` successes and no failure.
fn clean_word(round: u64, calls: u64) -> u64 {
    (round & 0xFFFF_FFFF) << 32 | calls.min(CALLS)
}

/// One breaker per operation.
pub(crate) struct Breaker {
    op: Arc<str>,
    /// `round << 8 | state`, for the lock-free read of the closed state.
    fast: AtomicU64,
    /// `round (32 bits) | DIRTY | calls`: the closed window while it holds
    /// no failure (see the module docs).
    clean: AtomicU64,
    /// The policy's window size, for the lock-free path.
    window_size: AtomicU64,
    inner: Mutex<Inner>,
    opened: AtomicU64,
    half_opened: AtomicU64,
    closed: AtomicU64,
}

/// A view of a breaker for snapshots.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct BreakerSnapshot {
    /// Current state.
    pub state: BreakerState,
    /// Calls in the window.
    pub window_calls: u32,
    /// Failures in the window.
    pub window_failures: u32,
    /// Failure rate of the window (0 when empty).
    pub failure_rate: f64,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Milliseconds until probes are let through, while open.
    pub retry_after_ms: Option<u64>,
    /// Times the breaker opened.
    pub opened: u64,
    /// Times it went half-open.
    pub half_opened: u64,
    /// Times it closed after being open.
    pub closed: u64,
}

impl Breaker {
    pub(crate) fn new(op: Arc<str>, policy: Option<BreakerPolicy>) -> Self {
        let state = if policy.is_some() {
            BreakerState::Closed
        } else {
            BreakerState::Disabled
        };
        Self {
            op,
            fast: AtomicU64::new(u64::from(state.code())),
            clean: AtomicU64::new(clean_word(0, 0)),
            window_size: AtomicU64::new(policy.as_ref().map_or(0, |p| u64::from(p.window))),
            inner: Mutex::new(Inner {
                policy,
                state,
                round: 0,
                window: VecDeque::new(),
                failures: 0,
                consecutive: 0,
                open_until: 0,
                probes: 0,
                probe_successes: 0,
            }),
            opened: AtomicU64::new(0),
            half_opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Current state.
    /// Lets a call through or says how long until it would be. The closed
    /// (or disabled) breaker answers with one load, here.
    #[inline]
    pub(crate) fn admit(&self, now: u64) -> Result<Ticket, Duration> {
        let fast = self.fast.load(Ordering::Acquire);
        match BreakerState::from_code(fast as u8) {
            BreakerState::Disabled => Ok(Ticket::Bypass),
            BreakerState::Closed => Ok(Ticket::Closed(fast >> 8)),
            _ => self.admit_locked(now),
        }
    }

    /// [`admit`](Self::admit) of an open, forced open or half-open breaker.
    #[cold]
    fn admit_locked(&self, now: u64) -> Result<Ticket, Duration> {
        let mut inner = self.lock();
        let recovery = inner.policy.as_ref().map_or(Duration::ZERO, |p| p.recovery);
        match inner.state {
            BreakerState::Disabled => Ok(Ticket::Bypass),
            BreakerState::Closed => Ok(Ticket::Closed(inner.round)),
            BreakerState::ForcedOpen => Err(recovery),
            BreakerState::Open if now < inner.open_until => {
                Err(Duration::from_nanos(inner.open_until - now))
            }
            BreakerState::Open | BreakerState::HalfOpen => {
                if inner.state == BreakerState::Open {
                    self.transition(&mut inner, BreakerState::HalfOpen, now);
                }
                let limit = inner.policy.as_ref().map_or(1, |p| p.half_open_calls);
                if inner.probes < limit {
                    inner.probes += 1;
                    Ok(Ticket::Probe(inner.round))
                } else {
                    Err(recovery.min(Duration::from_secs(1)))
                }
            }
        }
    }

    /// Records the outcome of a call admitted with `ticket`. A success in a
    /// window with no failure is counted lock-free, here.
    #[inline]
    pub(crate) fn record(&self, ticket: Ticket, failed: bool, now: u64) {
        match ticket {
            Ticket::Bypass | Ticket::Shared(_) => {}
            Ticket::Closed(round) if !failed && self.record_clean_success(round) => {}
            _ => self.record_locked(ticket, failed, now),
        }
    }

    /// [`record`](Self::record) of what needs the lock: a failure, a
    /// success in a window that holds one, a probe's outcome.
    fn record_locked(&self, ticket: Ticket, failed: bool, now: u64) {
        match ticket {
            Ticket::Bypass | Ticket::Shared(_) => {}
            Ticket::Closed(round) => {
                let mut inner = self.lock();
                if inner.state != BreakerState::Closed || inner.round != round {
                    return; // the outcome of a call from an earlier round
                }
                let Some(policy) = inner.policy.clone() else {
                    return;
                };
                self.make_explicit(&mut inner);
                inner.window.push_back(failed);
                if failed {
                    inner.failures += 1;
                    inner.consecutive += 1;
                } else {
                    inner.consecutive = 0;
                }
                while inner.window.len() > policy.window as usize {
                    if inner.window.pop_front() == Some(true) {
                        inner.failures -= 1;
                    }
                }
                let calls = inner.window.len() as u32;
                let rate_trips = calls >= policy.min_calls
                    && f64::from(inner.failures) / f64::from(calls) >= policy.failure_rate;
                let streak_trips = policy
                    .consecutive_failures
                    .is_some_and(|n| inner.consecutive >= n);
                // Judged after every recorded outcome, a success too (as
                // resilience4j's count-based window does): S F F S in a
                // window of 4 at 50 % opens on the last S.
                if rate_trips || streak_trips {
                    inner.open_until =
                        now.saturating_add(crate::clock::duration_ns(policy.recovery));
                    self.transition(&mut inner, BreakerState::Open, now);
                } else if inner.failures == 0 {
                    // The last failure left the window: back to counting.
                    self.clean.store(
                        clean_word(inner.round, inner.window.len() as u64),
                        Ordering::Release,
                    );
                    inner.window.clear();
                }
            }
            Ticket::Probe(round) => {
                let mut inner = self.lock();
                if inner.state != BreakerState::HalfOpen || inner.round != round {
                    return; // a probe of an earlier half-open round
                }
                inner.probes = inner.probes.saturating_sub(1);
                let Some(policy) = inner.policy.clone() else {
                    return;
                };
                if failed {
                    inner.open_until =
                        now.saturating_add(crate::clock::duration_ns(policy.recovery));
                    self.transition(&mut inner, BreakerState::Open, now);
                } else {
                    inner.probe_successes += 1;
                    if inner.probe_successes >= policy.success_threshold {
                        self.transition(&mut inner, BreakerState::Closed, now);
                    }
                }
            }
        }
    }

    /// Records a success of `round` without the lock while the window holds
    /// no failure. Returns false when the mutex must decide.
    #[inline]
    fn record_clean_success(&self, round: u64) -> bool {
        let size = self.window_size.load(Ordering::Relaxed);
        let mut word = self.clean.load(Ordering::Acquire);
        loop {
            if word >> 32 != round & 0xFFFF_FFFF || word & DIRTY != 0 {
                return false;
            }
            if word & CALLS >= size {
                return true; // a full window of successes stays one
            }
            match self.clean.compare_exchange_weak(
                word,
                word + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(seen) => word = seen,
            }
        }
    }

    /// Under the lock: turns a clean window (a count of successes) into an
    /// explicit one and marks the word dirty, so that lock-free successes
    /// stop until the window is clean again.
    fn make_explicit(&self, inner: &mut Inner) {
        let mut word = self.clean.load(Ordering::Acquire);
        loop {
            if word & DIRTY != 0 || word >> 32 != inner.round & 0xFFFF_FFFF {
                return;
            }
            match self.clean.compare_exchange_weak(
                word,
                word | DIRTY,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(seen) => word = seen,
            }
        }
        let calls = (word & CALLS) as usize;
        inner.window.clear();
        inner.window.extend(std::iter::repeat_n(false, calls));
        inner.failures = 0;
        inner.consecutive = 0;
    }

    /// Gives back a probe place for a call that ended without an outcome.
    pub(crate) fn release(&self, ticket: Ticket) {
        if let Ticket::Probe(round) = ticket {
            let mut inner = self.lock();
            if inner.state == BreakerState::HalfOpen && inner.round == round {
                inner.probes = inner.probes.saturating_sub(1);
            }
        }
    }

    fn transition(&self, inner: &mut Inner, to: BreakerState, now: u64) {
        let from = inner.state;
        inner.state = to;
        inner.round += 1;
        inner.window.clear();
        inner.failures = 0;
        inner.consecutive = 0;
        inner.probes = 0;
        inner.probe_successes = 0;
        self.clean
            .store(clean_word(inner.round, 0), Ordering::Release);
        self.fast
            .store(inner.round << 8 | u64::from(to.code()), Ordering::Release);
        let op = &*self.op;
        match to {
            BreakerState::Open | BreakerState::ForcedOpen => {
                self.opened.fetch_add(1, Ordering::Relaxed);
                let open_for_ms = inner.open_until.saturating_sub(now) / 1_000_000;
                tracing::warn!(op, ?from, open_for_ms, "circuit breaker opened");
            }
            BreakerState::HalfOpen => {
                self.half_opened.fetch_add(1, Ordering::Relaxed);
                tracing::info!(op, "circuit breaker half-open: probing");
            }
            BreakerState::Closed => {
                if from != BreakerState::Disabled {
                    self.closed.fetch_add(1, Ordering::Relaxed);
                }
                tracing::info!(op, ?from, "circuit breaker closed");
            }
            BreakerState::Disabled => {}
        }
    }

    /// Holds the breaker open until [`reset`](Self::reset).
    pub(crate) fn force_open(&self, now: u64) {
        let mut inner = self.lock();
        if inner.policy.is_some() && inner.state != BreakerState::ForcedOpen {
            self.transition(&mut inner, BreakerState::ForcedOpen, now);
        }
    }

    /// Closes the breaker and forgets its window.
    pub(crate) fn reset(&self, now: u64) {
        let mut inner = self.lock();
        if inner.policy.is_some() {
            self.transition(&mut inner, BreakerState::Closed, now);
        }
    }

    /// Swaps the policy, keeping the state (a disabled breaker closes).
    pub(crate) fn set_policy(&self, policy: Option<BreakerPolicy>, now: u64) {
        let mut inner = self.lock();
        let enabled = policy.is_some();
        self.window_size.store(
            policy.as_ref().map_or(0, |p| u64::from(p.window)),
            Ordering::Relaxed,
        );
        inner.policy = policy;
        match (enabled, inner.state) {
            (false, s) if s != BreakerState::Disabled => {
                self.transition(&mut inner, BreakerState::Disabled, now)
            }
            (true, BreakerState::Disabled) => {
                self.transition(&mut inner, BreakerState::Closed, now)
            }
            _ => {}
        }
    }

    pub(crate) fn snapshot(&self, now: u64) -> BreakerSnapshot {
        let mut inner = self.lock();
        if inner.state == BreakerState::Closed {
            self.make_explicit(&mut inner);
            if inner.failures == 0 {
                self.clean.store(
                    clean_word(inner.round, inner.window.len() as u64),
                    Ordering::Release,
                );
            }
        }
        let calls = inner.window.len() as u32;
        BreakerSnapshot {
            state: inner.state,
            window_calls: calls,
            window_failures: inner.failures,
            failure_rate: if calls == 0 {
                0.0
            } else {
                f64::from(inner.failures) / f64::from(calls)
            },
            consecutive_failures: inner.consecutive,
            retry_after_ms: (inner.state == BreakerState::Open)
                .then(|| inner.open_until.saturating_sub(now) / 1_000_000),
            opened: self.opened.load(Ordering::Relaxed),
            half_opened: self.half_opened.load(Ordering::Relaxed),
            closed: self.closed.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(window: u32, min_calls: u32) -> Breaker {
        Breaker::new(
            Arc::from("b"),
            Some(BreakerPolicy {
                failure_rate: 0.5,
                min_calls,
                window,
                slow_call: None,
                recovery: Duration::from_secs(1),
                half_open_calls: 1,
                success_threshold: 1,
                consecutive_failures: None,
            }),
        )
    }

    fn call(b: &Breaker, failed: bool) {
        let t = b.admit(0).expect("admitted");
        b.record(t, failed, 0);
    }

    #[test]
    fn lock_free_successes_count_in_the_window() {
        let b = breaker(10, 10);
        for _ in 0..5 {
            call(&b, false); // counted lock-free
        }
        for _ in 0..4 {
            call(&b, true);
        }
        let s = b.snapshot(0);
        assert_eq!(
            (s.state, s.window_calls, s.window_failures),
            (BreakerState::Closed, 9, 4)
        );
        call(&b, true); // 5 of 10
        assert_eq!(b.snapshot(0).state, BreakerState::Open);
    }

    #[test]
    fn the_window_is_clean_again_once_its_failures_left() {
        let b = breaker(4, 4);
        for _ in 0..4 {
            call(&b, false);
        }
        call(&b, true); // S S S F
        for _ in 0..4 {
            call(&b, false); // the failure leaves: S S S S
        }
        let s = b.snapshot(0);
        assert_eq!((s.window_calls, s.window_failures), (4, 0));
        assert_eq!(b.clean.load(Ordering::Relaxed) & DIRTY, 0, "counting again");
        call(&b, false);
        call(&b, true);
        assert_eq!(b.snapshot(0).state, BreakerState::Closed, "1 of 4");
        call(&b, true);
        assert_eq!(b.snapshot(0).state, BreakerState::Open, "2 of 4");
    }

    #[test]
    fn outcomes_of_an_earlier_round_are_ignored() {
        let b = breaker(4, 2);
        let old = b.admit(0).unwrap();
        b.reset(0);
        b.record(old, false, 0);
        b.record(old, true, 0);
        let s = b.snapshot(0);
        assert_eq!((s.window_calls, s.window_failures), (0, 0));
    }
}

/// Model checks (`RUSTFLAGS="--cfg limiter_loom" cargo test --release -p
/// limiter-runtime loom`): the lock-free success count against the mutex
/// that turns it into an explicit window, against transitions, and the
/// half-open probe limit.
#[cfg(all(test, limiter_loom))]
mod loom_tests {
    use super::*;
    use loom::thread;

    fn breaker(window: u32, min_calls: u32, half_open_calls: u32) -> Arc<Breaker> {
        Arc::new(Breaker::new(
            Arc::from("loom"),
            Some(BreakerPolicy {
                failure_rate: 0.5,
                min_calls,
                window,
                slow_call: None,
                recovery: Duration::from_nanos(10),
                half_open_calls,
                success_threshold: 1,
                consecutive_failures: None,
            }),
        ))
    }

    fn record_in(b: &Arc<Breaker>, failed: bool) -> thread::JoinHandle<()> {
        let b = Arc::clone(b);
        let ticket = b.admit(0).expect("closed");
        thread::spawn(move || b.record(ticket, failed, 0))
    }

    /// A success counted lock-free while a failure turns the count into an
    /// explicit window: the success is neither lost nor counted twice.
    #[test]
    fn loom_breaker_lock_free_success_racing_first_failure() {
        loom::model(|| {
            let b = breaker(4, 3, 1);
            let t = b.admit(0).unwrap();
            b.record(t, false, 0);
            let s = record_in(&b, false);
            let f = record_in(&b, true);
            s.join().unwrap();
            f.join().unwrap();
            let snap = b.snapshot(0);
            assert_eq!(
                (snap.state, snap.window_calls, snap.window_failures),
                (BreakerState::Closed, 3, 1)
            );
        });
    }

    /// Two successes racing to fill the window: it ends full, no more.
    #[test]
    fn loom_breaker_successes_fill_the_window_exactly() {
        loom::model(|| {
            let b = breaker(2, 2, 1);
            let t = b.admit(0).unwrap();
            b.record(t, false, 0);
            let one = record_in(&b, false);
            let two = record_in(&b, false);
            one.join().unwrap();
            two.join().unwrap();
            let snap = b.snapshot(0);
            assert_eq!((snap.window_calls, snap.window_failures), (2, 0));
            // Still counting lock-free, and a failure now sees 1 of 2.
            assert_eq!(b.clean.load(Ordering::Relaxed) & DIRTY, 0);
            b.record(b.admit(0).unwrap(), true, 0);
            assert_eq!(b.snapshot(0).state, BreakerState::Open, "1 failure of 2");
        });
    }

    /// A success of the old round racing a reset: it never counts in the
    /// new round's window.
    #[test]
    fn loom_breaker_stale_success_racing_reset() {
        loom::model(|| {
            let b = breaker(4, 4, 1);
            let s = record_in(&b, false);
            b.reset(0);
            s.join().unwrap();
            let snap = b.snapshot(0);
            assert_eq!((snap.state, snap.window_calls), (BreakerState::Closed, 0));
        });
    }

    /// Two callers arrive when the recovery time has passed: the breaker
    /// goes half-open once and lets exactly one probe through; the probe's
    /// success closes it.
    #[test]
    fn loom_breaker_half_open_admits_one_probe() {
        loom::model(|| {
            let b = breaker(4, 1, 1);
            b.record(b.admit(0).unwrap(), true, 0);
            assert_eq!(b.snapshot(0).state, BreakerState::Open);
            let callers: Vec<_> = (0..2)
                .map(|_| {
                    let b = Arc::clone(&b);
                    thread::spawn(move || b.admit(100))
                })
                .collect();
            let tickets: Vec<_> = callers.into_iter().map(|c| c.join().unwrap()).collect();
            let probes: Vec<_> = tickets.iter().filter_map(|t| t.ok()).collect();
            assert_eq!(probes.len(), 1, "{tickets:?}");
            assert!(matches!(probes[0], Ticket::Probe(_)));
            b.record(probes[0], false, 100);
            let snap = b.snapshot(100);
            assert_eq!(snap.state, BreakerState::Closed);
            assert_eq!((snap.opened, snap.half_opened, snap.closed), (1, 1, 1));
        });
    }
}
