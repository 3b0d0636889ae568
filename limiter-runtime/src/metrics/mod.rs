//! Per-operation counters, latency histogram and slow-poll counts.

mod histogram;
mod per_thread;
pub(crate) mod prometheus;

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::error::{LimitError, QueueScope};
use histogram::HistShard;
pub use histogram::LatencySnapshot;
pub(crate) use histogram::{Counts, Histogram};
use per_thread::PerThread;

/// How an admitted call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum CallOutcome {
    Success,
    /// The body returned an error.
    Failure,
    Timeout,
    Panic,
    /// The caller dropped the future.
    Cancelled,
    /// The body returned an error that is not a failure of what the op
    /// protects: an op it called refused it (load shedding below), or the
    /// call's failure classifier excuses it (a client's mistake). Counted
    /// with the failures in `failed`, never by the breaker.
    Excused,
}

impl CallOutcome {
    /// Whether the breaker counts it as a failure.
    pub(crate) fn is_failure(self) -> bool {
        matches!(
            self,
            CallOutcome::Failure | CallOutcome::Timeout | CallOutcome::Panic
        )
    }
}

macro_rules! counters {
    ($(#[$meta:meta])* $name:ident / $snap:ident { $( $(#[$fmeta:meta])* $field:ident ),+ $(,)? }) => {
        #[derive(Default)]
        pub(crate) struct $name { $( pub(crate) $field: AtomicU64, )+ }

        $(#[$meta])*
        #[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct $snap { $( $(#[$fmeta])* pub $field: u64, )+ }

        impl $name {
            pub(crate) fn snapshot(&self) -> $snap {
                $snap { $( $field: self.$field.load(Ordering::Relaxed), )+ }
            }
        }
    };
}

counters! {
    /// Counters of one operation.
    Counters / CountersSnapshot {
        /// Calls that reached admission (each retry counts again).
        calls,
        /// Calls that got past every limit and ran.
        admitted,
        /// Calls whose body succeeded.
        succeeded,
        /// Calls whose body returned an error.
        failed,
        /// Of `failed`: errors that are no failure of what the op protects
        /// (an op the body called refused it, or the call's classifier
        /// excuses the error, a client's mistake). Neither the breaker nor
        /// the monitor's error rate counts them.
        excused,
        /// Calls that ran out of time.
        timeouts,
        /// Of `timeouts`: async bodies dropped at their deadline (`cancel`,
        /// `cache_fallback`). For a database client the query may have kept
        /// running on the server, its connection back in the pool busy.
        dropped_at_timeout,
        /// Calls whose body panicked.
        panics,
        /// Calls whose caller went away mid-run.
        cancelled,
        /// Refused by the rate limit.
        rejected_rate_limited,
        /// Refused because a per-key queue was full.
        rejected_queue_full_key,
        /// Refused because the op-wide queue was full.
        rejected_queue_full_global,
        /// Waited longer than the queue timeout.
        rejected_queue_timeout,
        /// Refused by the open breaker.
        rejected_circuit_open,
        /// Refused because the key table or the service was saturated.
        rejected_overloaded,
        /// Timed out and carried on as background tasks.
        moved_to_background,
        /// Timed out (`strategy = "drain"`) and finished afterwards, holding
        /// their place; their late results were discarded.
        drained,
        /// Timed out (`strategy = "drain"`) and dropped at `drain_timeout`.
        drain_dropped,
        /// Timed-out bodies draining now.
        draining,
        /// Timed out and answered from the fallback cache.
        cache_fallbacks,
        /// Answered from a fresh cached response without running.
        cache_hits,
        /// Answered by sharing an identical call that was already running.
        coalesced,
        /// Retries made.
        retries,
        /// Bodies started on an offload pool (`run_blocking`, plain `fn`s
        /// under `#[limit_blocking]`).
        offloaded,
        /// Offloaded blocking work abandoned by a timeout (it cannot be aborted).
        orphans,
        /// Abandoned blocking work still running now.
        orphans_running,
        /// Polls of the wrapped future longer than the slow-poll threshold.
        slow_polls,
        /// Calls slower than the breaker's `slow_call`.
        slow_calls,
        /// Longest single poll seen, in nanoseconds.
        max_poll_ns,
        /// Calls whose shared (Redis) rate limit could not be asked and that
        /// were decided by the op's degradation instead.
        backend_fallbacks,
    }
}

/// What one thread counts of one operation on the hot path; the rest of
/// [`Counters`] is shared (refusals, retries: paths that are slow anyway).
#[derive(Default)]
struct OpShard {
    latency: HistShard,
    calls: AtomicU64,
    admitted: AtomicU64,
    /// By [`CallOutcome`] as index.
    outcomes: [AtomicU64; 6],
    max_poll_ns: AtomicU64,
}

/// Whether an admitted call is still to be counted in `calls` (and
/// `admitted`). A call admitted at once is counted with its outcome when
/// its body is ready at the first poll (one access to the thread's slot
/// instead of two), else when that poll returns: a snapshot taken during
/// a call's first poll does not count it yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// Already counted.
    Counted,
    /// To count in `calls` only: it runs with every limit off.
    Unlimited,
    /// To count in `calls` and `admitted`.
    Admitted,
}

/// Counters and latency of one operation.
#[derive(Default)]
pub(crate) struct OpMetrics {
    pub(crate) counters: Counters,
    local: PerThread<OpShard>,
}

impl OpMetrics {
    #[inline]
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a call that reached admission and was let through (or ran
    /// unlimited, with `admitted` false).
    #[inline]
    pub(crate) fn entered(&self, admitted: bool) {
        let l = self.local.local();
        l.add(&l.value.calls, 1);
        if admitted {
            l.add(&l.value.admitted, 1);
        }
    }

    /// Counts `entry` now, if it is still to be counted.
    #[inline]
    pub(crate) fn count(&self, entry: &mut Entry) {
        match std::mem::replace(entry, Entry::Counted) {
            Entry::Counted => {}
            Entry::Unlimited => self.entered(false),
            Entry::Admitted => self.entered(true),
        }
    }

    /// Counts a refusal and traces it.
    pub(crate) fn reject(&self, err: &LimitError) {
        let c = &self.counters;
        let counter = match err {
            LimitError::RateLimited { .. } | LimitError::CostExceedsLimit { .. } => {
                &c.rejected_rate_limited
            }
            LimitError::QueueFull {
                scope: QueueScope::Key,
                ..
            } => &c.rejected_queue_full_key,
            LimitError::QueueFull {
                scope: QueueScope::Global,
                ..
            } => &c.rejected_queue_full_global,
            LimitError::QueueTimeout { .. } => &c.rejected_queue_timeout,
            LimitError::CircuitOpen { .. } => &c.rejected_circuit_open,
            LimitError::Overloaded { .. } => &c.rejected_overloaded,
            LimitError::Timeout { .. } => &c.timeouts,
            LimitError::MovedToBackground { .. } => &c.moved_to_background,
        };
        Self::inc(counter);
        self.entered(false);
        tracing::debug!(op = err.op(), reason = err.code(), retry_after = ?err.retry_after(), "call refused");
    }

    /// Records how an admitted call ended and how long it took, and counts
    /// its `entry` if that is still to be done; `poll_ns` is the length of
    /// its last poll (0: none to record), kept when it is the longest seen.
    /// One access to this thread's slot.
    #[inline]
    pub(crate) fn finish(&self, outcome: CallOutcome, latency_ns: u64, poll_ns: u64, entry: Entry) {
        let l = self.local.local();
        if entry != Entry::Counted {
            l.add(&l.value.calls, 1);
            if entry == Entry::Admitted {
                l.add(&l.value.admitted, 1);
            }
        }
        l.add(&l.value.outcomes[outcome as usize], 1);
        l.value.latency.record(&l, latency_ns);
        if poll_ns > 0 {
            l.max(&l.value.max_poll_ns, poll_ns);
        }
    }

    /// Keeps the longest poll seen; a poll longer than `threshold_ns`
    /// blocked the executor thread that long, and is counted and reported
    /// as slow.
    #[inline]
    pub(crate) fn poll_took(&self, ns: u64, threshold_ns: u64, op: &str) {
        let l = self.local.local();
        l.max(&l.value.max_poll_ns, ns);
        self.check_slow_poll(ns, threshold_ns, op);
    }

    /// Counts and reports the poll when it is longer than `threshold_ns`.
    #[inline]
    pub(crate) fn check_slow_poll(&self, ns: u64, threshold_ns: u64, op: &str) {
        if ns > threshold_ns {
            self.slow_poll(ns, op);
        }
    }

    /// Counts and reports a poll that blocked the executor thread.
    #[cold]
    fn slow_poll(&self, ns: u64, op: &str) {
        Self::inc(&self.counters.slow_polls);
        tracing::warn!(
            op,
            poll_ms = ns as f64 / 1e6,
            "slow poll: the executor thread was blocked inside this operation"
        );
    }

    /// Every counter now.
    pub(crate) fn counters_snapshot(&self) -> CountersSnapshot {
        let mut s = self.counters.snapshot();
        let sum = |f: fn(&OpShard) -> &AtomicU64| self.local.sum(f);
        s.calls += sum(|x| &x.calls);
        s.admitted += sum(|x| &x.admitted);
        s.succeeded += sum(|x| &x.outcomes[CallOutcome::Success as usize]);
        s.failed += sum(|x| &x.outcomes[CallOutcome::Failure as usize]);
        let excused = sum(|x| &x.outcomes[CallOutcome::Excused as usize]);
        s.failed += excused;
        s.excused += excused;
        s.timeouts += sum(|x| &x.outcomes[CallOutcome::Timeout as usize]);
        s.panics += sum(|x| &x.outcomes[CallOutcome::Panic as usize]);
        s.cancelled += sum(|x| &x.outcomes[CallOutcome::Cancelled as usize]);
        s.max_poll_ns = self
            .local
            .iter()
            .map(|x| x.max_poll_ns.load(Ordering::Relaxed))
            .fold(s.max_poll_ns, u64::max);
        s
    }

    /// Latency buckets of admitted calls now.
    pub(crate) fn latency_counts(&self) -> Counts {
        HistShard::merge(self.local.iter().map(|x| &x.latency))
    }

    /// Latency percentiles of admitted calls.
    pub(crate) fn latency_snapshot(&self) -> LatencySnapshot {
        LatencySnapshot::of(
            &self.latency_counts(),
            HistShard::max_of(self.local.iter().map(|x| &x.latency)),
        )
    }
}
