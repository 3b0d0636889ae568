//! Slow-poll detection: a single poll of the wrapped future that takes
//! longer than a threshold means the executor thread was blocked that long.
//!
//! Measured with `std::time::Instant` on purpose: blocking is real time, and
//! a paused tokio clock would hide it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use super::OpMetrics;

/// Polls `fut` and counts every poll slower than `threshold_ns`.
pub(crate) struct Watched<'a, F> {
    pub(crate) fut: Pin<&'a mut F>,
    pub(crate) threshold_ns: u64,
    pub(crate) metrics: &'a OpMetrics,
    pub(crate) op: &'a str,
}

impl<F: Future> Future for Watched<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let start = Instant::now();
        let out = self.fut.as_mut().poll(cx);
        let took = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if took > self.threshold_ns {
            let c = &self.metrics.counters;
            c.slow_polls.fetch_add(1, Ordering::Relaxed);
            c.max_poll_ns.fetch_max(took, Ordering::Relaxed);
            tracing::warn!(
                op = self.op,
                poll_ms = took as f64 / 1e6,
                "slow poll: the executor thread was blocked inside this operation"
            );
        } else {
            self.metrics
                .counters
                .max_poll_ns
                .fetch_max(took, Ordering::Relaxed);
        }
        out
    }
}
