//! Monotonic time as nanoseconds since a base instant, so lock-free state can
//! keep time in one `AtomicU64`.
//!
//! Two sources, chosen when a [`Clock`] is made:
//!
//! * **Fast** (the usual case): the CPU's time-stamp counter through
//!   [`quanta`], about 10 ns a reading against about 25 ns for
//!   `Instant::now()` (a `clock_gettime` call). A limited call reads the clock
//!   twice (admission and end), so this is a third of the runtime's per-call
//!   cost saved. quanta falls back to the OS clock where the counter is not
//!   invariant.
//! * **Tokio**: `tokio::time::Instant`, when the clock is made inside a
//!   runtime whose clock is paused (`tokio::time::pause()`,
//!   `#[tokio::test(start_paused = true)]`). Tests that pause tokio's clock
//!   then drive every limiter deterministically with `advance` and `sleep`.
//!   A paused clock cannot be asked whether it is paused; it is recognised
//!   by not moving while real time does (a 2 µs wait, once per clock).

use std::time::Duration;

use tokio::time::Instant;

/// Where readings come from.
#[derive(Debug, Clone)]
enum Source {
    Fast {
        clock: quanta::Clock,
        /// A raw reading of `clock` (its counter, not yet nanoseconds).
        base: u64,
    },
    Tokio {
        base: Instant,
    },
}

/// A base instant; readings are nanoseconds since it.
#[derive(Debug, Clone)]
pub(crate) struct Clock {
    source: Source,
    /// The tokio instant of the base, to turn readings into deadlines.
    tokio_base: Instant,
}

impl Clock {
    /// A clock following tokio's when tokio's clock is paused here, else the
    /// fast one.
    pub(crate) fn new() -> Self {
        let tokio_base = Instant::now();
        let source = if tokio_paused() {
            Source::Tokio { base: tokio_base }
        } else {
            let clock = quanta::Clock::new();
            let base = clock.raw();
            Source::Fast { clock, base }
        };
        Self { source, tokio_base }
    }

    /// Whether readings follow tokio's (paused) clock.
    pub(crate) fn follows_tokio(&self) -> bool {
        matches!(self.source, Source::Tokio { .. })
    }

    /// Nanoseconds since the base (saturating at zero).
    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        match &self.source {
            // A raw counter reading scaled by one multiply and shift: no
            // `Instant` or `Duration` on the way.
            Source::Fast { clock, base } => clock.delta_as_nanos(*base, clock.raw()),
            Source::Tokio { base } => duration_ns(Instant::now().saturating_duration_since(*base)),
        }
    }

    /// The reading `ns` as a tokio instant, for timers. With the fast source
    /// the two clocks may drift apart by microseconds over hours; timers do
    /// not need better.
    pub(crate) fn instant_at(&self, ns: u64) -> Instant {
        match &self.source {
            Source::Tokio { base } => deadline(*base, Duration::from_nanos(ns)),
            Source::Fast { .. } => {
                // Re-anchor on the present so drift does not accumulate.
                let now_ns = self.now_ns();
                let now = Instant::now();
                if ns >= now_ns {
                    deadline(now, Duration::from_nanos(ns - now_ns))
                } else {
                    now.checked_sub(Duration::from_nanos(now_ns - ns))
                        .unwrap_or(self.tokio_base)
                }
            }
        }
    }
}

/// Whether the current thread is in a tokio runtime whose clock is paused:
/// the clock does not move while real time passes.
fn tokio_paused() -> bool {
    if tokio::runtime::Handle::try_current().is_err() {
        return false;
    }
    let before = Instant::now();
    let real = std::time::Instant::now();
    while real.elapsed() < Duration::from_micros(2) {
        std::hint::spin_loop();
    }
    Instant::now() == before
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_a_paused_tokio_clock() {
        let c = Clock::new();
        assert!(c.follows_tokio());
        let t0 = c.now_ns();
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(c.now_ns() - t0, 250_000_000);
        assert_eq!(
            c.instant_at(t0 + 1_000),
            c.tokio_base + Duration::from_nanos(t0 + 1_000)
        );
    }

    #[tokio::test]
    async fn reads_real_time_otherwise() {
        let c = Clock::new();
        assert!(!c.follows_tokio());
        let t0 = c.now_ns();
        std::thread::sleep(Duration::from_millis(5));
        let d = c.now_ns() - t0;
        assert!((4_000_000..500_000_000).contains(&d), "{d}");
        let at = c.instant_at(c.now_ns() + 1_000_000_000);
        let ahead = at - Instant::now();
        assert!(
            ahead > Duration::from_millis(900) && ahead <= Duration::from_secs(1),
            "{ahead:?}"
        );
    }

    #[test]
    fn outside_a_runtime_is_fast() {
        assert!(!Clock::new().follows_tokio());
    }
}
