//! The timeout of one call and the timing of its polls.
//!
//! [`Timer`] keeps a body's deadline (or a retry's pause). Each poll is timed: a
//! single poll longer than a threshold means the executor thread was
//! blocked that long (a *slow poll*). The same poll timing
//! ([`PollWatch`]) serves limited calls and HTTP routes.
//!
//! Poll times come from a [`Clock`]. Under a paused tokio clock, whose time
//! does not pass while code runs, they are taken from `std::time::Instant`
//! instead, so slow polls are still seen in paused-time tests.
//!
//! The deadline's timer is made only when the body first returns
//! `Pending`: a body that is ready at once never touches tokio's timer
//! wheel, and the timer lives inside the call's future (no allocation).
//!
//! What a call does when its deadline passes is its [`strategy`]: the
//! marker types live here; what each does with the op (cache, background
//! tasks) is the call's business.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::clock::{duration_ns, Clock};

/// Marker types naming what a call does when its timeout passes.
pub mod strategy {
    /// Drop the future and return `Timeout` (the default). Blocking work,
    /// which cannot be dropped, goes on as an orphan holding its place.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Cancel;
    /// Keep the future running as a tracked background task, holding its
    /// place, and return `MovedToBackground { task_id }`.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Background;
    /// Drop the future (as [`Cancel`]) and return the last good value for
    /// the same key, else `Timeout`.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct CacheFallback;
    /// Return `Timeout` at the deadline, but let the future finish on the
    /// runtime, holding its bulkhead place, for at most the op's
    /// `drain_timeout` (then it is dropped); its late result is discarded.
    /// For async database clients: a query dropped mid-flight keeps
    /// running on the server, and its connection goes back to the pool
    /// busy; drained, the next caller gets a clean connection.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Drain;

    /// The strategies whose bodies go on after the deadline (they must be
    /// `Send + 'static`): [`Background`] and [`Drain`]. Sealed.
    pub trait Detaching: Default + Copy + sealed::Sealed {}
    impl Detaching for Background {}
    impl Detaching for Drain {}

    mod sealed {
        pub trait Sealed {}
        impl Sealed for super::Background {}
        impl Sealed for super::Drain {}
    }
}

/// The timing of one poll: started just before it, stopped just after.
/// The poll itself is the caller's, so its output goes straight where the
/// caller wants it.
///
/// Under a clock that follows tokio's (paused in tests), the poll's length
/// is measured on `std::time::Instant`, which does not stop.
pub(crate) struct PollWatch(Option<std::time::Instant>);

impl PollWatch {
    /// Starts timing a poll.
    #[inline]
    pub(crate) fn start(clock: &Clock) -> Self {
        Self(clock.follows_tokio().then(std::time::Instant::now))
    }

    /// The clock's reading after the poll, and how long the poll took;
    /// `poll_start` is a reading taken just before (the caller often has
    /// one already, so this reads the clock once).
    #[inline]
    pub(crate) fn stop(self, clock: &Clock, poll_start: u64) -> (u64, u64) {
        let end = clock.now_ns();
        let took = match self.0 {
            Some(real) => duration_ns(real.elapsed()),
            None => end.saturating_sub(poll_start),
        };
        (end, took)
    }
}

pin_project! {
    /// The timer of one call: its deadline while the body runs (armed only
    /// when the body first returns `Pending`), or the pause before a
    /// retry. Kept beside the body, not around it, so that starting and
    /// ending a body moves nothing but the body.
    pub(crate) struct Timer {
        #[pin]
        sleep: Option<Sleep>,
        polled: bool,
    }
}

impl Timer {
    /// A timer that is not armed.
    pub(crate) const fn new() -> Self {
        Self {
            sleep: None,
            polled: false,
        }
    }

    /// Disarms the timer for the next body.
    #[inline]
    pub(crate) fn reset(self: Pin<&mut Self>) {
        let mut this = self.project();
        if this.sleep.is_some() {
            this.sleep.set(None);
        }
        *this.polled = false;
    }

    /// When the body's next poll starts: `start`, the call's start, for
    /// its first poll (so that poll reads no clock), else now.
    #[inline]
    pub(crate) fn poll_start(self: Pin<&mut Self>, start: u64, clock: &Clock) -> u64 {
        let polled = self.project().polled;
        if *polled {
            clock.now_ns()
        } else {
            *polled = true;
            start
        }
    }

    /// After a poll that left the body pending: whether its deadline
    /// (`timeout_ns` after `start`; `u64::MAX`: none) has passed. The
    /// timer is armed at the first such poll and wakes the task then.
    pub(crate) fn deadline_passed(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        clock: &Clock,
        start: u64,
        timeout_ns: u64,
    ) -> bool {
        if timeout_ns == u64::MAX {
            return false;
        }
        let mut this = self.project();
        if this.sleep.is_none() {
            let deadline = clock.instant_at(start.saturating_add(timeout_ns));
            this.sleep.set(Some(tokio::time::sleep_until(deadline)));
        }
        matches!(
            this.sleep.as_pin_mut().map(|s| s.poll(cx)),
            Some(Poll::Ready(()))
        )
    }

    /// Arms the timer for a pause of `delay` (a backoff).
    pub(crate) fn pause(self: Pin<&mut Self>, delay: std::time::Duration) {
        self.project().sleep.set(Some(tokio::time::sleep(delay)));
    }

    /// Whether the pause armed by [`pause`](Self::pause) is over.
    pub(crate) fn poll_pause(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.project().sleep.as_pin_mut() {
            Some(sleep) => sleep.poll(cx),
            None => Poll::Ready(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// How one poll of a timed body went.
    enum Polled<T> {
        /// The body is done, at this reading of the clock.
        Done(T, u64),
        /// The body is not done and its deadline has not passed.
        Pending,
        /// The deadline passed first.
        TimedOut,
    }

    /// Polls `body` once, timed. The call started at `start` (a reading of
    /// `clock`, which is also the first poll's start); `timeout_ns` is its
    /// budget (`u64::MAX`: none). `took` is set to the poll's length.
    fn poll_body<F: Future>(
        mut timer: Pin<&mut Timer>,
        body: Pin<&mut F>,
        cx: &mut Context<'_>,
        clock: &Clock,
        (start, timeout_ns): (u64, u64),
        took: &mut u64,
    ) -> Polled<F::Output> {
        let poll_start = timer.as_mut().poll_start(start, clock);
        let watch = PollWatch::start(clock);
        let out = body.poll(cx);
        let (end, ns) = watch.stop(clock, poll_start);
        *took = ns;
        if let Poll::Ready(v) = out {
            return Polled::Done(v, end);
        }
        if timer.deadline_passed(cx, clock, start, timeout_ns) {
            Polled::TimedOut
        } else {
            Polled::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_at_the_deadline_and_counts_slow_polls() {
        let clock = Clock::new();
        let start = clock.now_ns();
        let mut body = std::pin::pin!(async {
            std::thread::sleep(Duration::from_millis(3));
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let mut timer = std::pin::pin!(Timer::new());
        let mut slow = Vec::new();
        let out = std::future::poll_fn(|cx| {
            let mut took = 0;
            let polled = poll_body(
                timer.as_mut(),
                body.as_mut(),
                cx,
                &clock,
                (start, 1_000_000_000),
                &mut took,
            );
            slow.push(took);
            match polled {
                Polled::Pending => Poll::Pending,
                Polled::TimedOut => Poll::Ready(None),
                Polled::Done((), end) => Poll::Ready(Some(end)),
            }
        })
        .await;
        assert_eq!(out, None, "timed out");
        assert_eq!(clock.now_ns() - start, 1_000_000_000);
        assert!(slow[0] >= 3_000_000, "the blocking first poll: {slow:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_ready_at_once_arms_no_timer() {
        let clock = Clock::new();
        let start = clock.now_ns();
        let body = std::pin::pin!(async { 7 });
        let mut timer = std::pin::pin!(Timer::new());
        let waker = futures_noop_waker();
        let mut cx = Context::from_waker(&waker);
        match poll_body(timer.as_mut(), body, &mut cx, &clock, (start, 5), &mut 0) {
            Polled::Done(7, _) => {}
            _ => panic!("ready at once"),
        }
        assert!(timer.project().sleep.is_none());
    }

    fn futures_noop_waker() -> std::task::Waker {
        std::task::Waker::noop().clone()
    }
}
