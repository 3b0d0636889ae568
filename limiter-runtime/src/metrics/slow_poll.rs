//! The body of an admitted call, run and timed: slow-poll detection, the
//! timeout, and the reading of the clock that ends the call.
//!
//! A single poll of the body that takes longer than a threshold means the
//! executor thread was blocked that long. Poll times come from the op's
//! clock, which is real time in a service (the first poll starts at the
//! admission reading, and the reading after the last poll ends the call, so
//! a body that finishes in one poll costs no clock read of its own); under
//! a paused tokio clock, whose time does not pass while code runs, they are
//! taken from `std::time::Instant` instead.
//!
//! The timeout timer is made only when the body first returns `Pending`: a
//! body that is ready at once never touches tokio's timer wheel.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;

use crate::op::OpCore;

/// How a timed body ended.
pub(crate) enum Ended<T> {
    /// With its output, at this reading of the op's clock.
    Done(T, u64),
    /// Its timeout passed first.
    TimedOut,
}

/// Polls `fut` under an optional timeout, counting slow polls. The timer
/// lives in the caller's frame (`sleep`), so this future is small and moves
/// cheaply.
pub(crate) struct Timed<'a, F> {
    pub(crate) fut: Pin<&'a mut F>,
    pub(crate) sleep: Pin<&'a mut Option<Sleep>>,
    pub(crate) core: &'a OpCore,
    /// Admission reading of the op's clock: the first poll's start.
    pub(crate) start: u64,
    pub(crate) polled: bool,
    pub(crate) timeout: Option<Duration>,
    pub(crate) threshold_ns: u64,
}

impl<F: Future> Future for Timed<'_, F> {
    type Output = Ended<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let core = this.core;
        let real = core.clock.follows_tokio().then(std::time::Instant::now);
        let poll_start = if this.polled {
            core.clock.now_ns()
        } else {
            this.polled = true;
            this.start
        };
        let out = this.fut.as_mut().poll(cx);
        let end = core.clock.now_ns();
        let took = match real {
            Some(real) => crate::clock::duration_ns(real.elapsed()),
            None => end.saturating_sub(poll_start),
        };
        core.metrics.poll_took(took);
        if took > this.threshold_ns {
            slow_poll(core, took);
        }
        if let Poll::Ready(v) = out {
            return Poll::Ready(Ended::Done(v, end));
        }
        let Some(timeout) = this.timeout else {
            return Poll::Pending;
        };
        if this.sleep.is_none() {
            let deadline = core.clock.instant_at(
                this.start
                    .saturating_add(crate::clock::duration_ns(timeout)),
            );
            this.sleep.set(Some(tokio::time::sleep_until(deadline)));
        }
        match this.sleep.as_mut().as_pin_mut().map(|s| s.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Ended::TimedOut),
            _ => Poll::Pending,
        }
    }
}

/// Counts and reports a poll that blocked the executor thread.
#[cold]
fn slow_poll(core: &OpCore, took: u64) {
    core.metrics
        .counters
        .slow_polls
        .fetch_add(1, Ordering::Relaxed);
    tracing::warn!(
        op = &*core.name,
        poll_ms = took as f64 / 1e6,
        "slow poll: the executor thread was blocked inside this operation"
    );
}
