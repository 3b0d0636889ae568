//! Monotonic time as nanoseconds since a base instant, so lock-free state can
//! keep time in one `AtomicU64`.
//!
//! Time comes from `tokio::time::Instant`, so tests that pause tokio's clock
//! (`tokio::time::pause()`) drive every limiter deterministically.

use std::time::Duration;

use tokio::time::Instant;

/// A base instant; readings are nanoseconds since it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    base: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self {
            base: Instant::now(),
        }
    }

    /// Nanoseconds since the base (saturating at zero).
    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        self.ns_at(Instant::now())
    }

    #[inline]
    pub(crate) fn ns_at(&self, at: Instant) -> u64 {
        duration_ns(at.saturating_duration_since(self.base))
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (584 years).
#[inline]
pub(crate) fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `start + d`, or a deadline decades away when that does not fit (a
/// "wait forever" duration such as `Duration::MAX` must not panic).
pub(crate) fn deadline(start: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);
    start
        .checked_add(d)
        .or_else(|| start.checked_add(FAR))
        .unwrap_or(start)
}
