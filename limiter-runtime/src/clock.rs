//! Monotonic time as nanoseconds since a base instant, so lock-free state can
//! keep time in one `AtomicU64`.
//!
//! Three sources, picked by the registry's [`ClockSource`] when an op's
//! [`Clock`] is made:
//!
//! * **Fast** (the usual case): the CPU's time-stamp counter through
//!   [`quanta`], about 10 ns a reading against about 25 ns for
//!   `Instant::now()` (a `clock_gettime` call). A limited call reads the clock
//!   twice (admission and end), so this is a third of the runtime's per-call
//!   cost saved. quanta falls back to the OS clock where the counter is not
//!   invariant.
//! * **Tokio**: `tokio::time::Instant`, paused or not, so tests that pause
//!   tokio's clock drive every limiter deterministically with `advance` and
//!   `sleep`.
//! * **Manual**: a [`ManualClock`] the test moves by hand (governor's
//!   `FakeRelativeClock`), for tests without a runtime or with one whose
//!   clock runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// The time a registry's ops read (see [`crate::Registry::with_clock`]).
///
/// ```
/// use std::time::Duration;
/// use limiter_runtime::{ClockSource, LimitError, ManualClock, OpConfig, Registry};
///
/// let clock = ManualClock::new();
/// let reg = Registry::with_clock(ClockSource::Manual(clock.clone()));
/// reg.configure("send", OpConfig::default().with_rate_per_key("1/min").unwrap()).unwrap();
/// let op = reg.op("send");
/// op.check_key(&"alice").unwrap();
/// assert!(matches!(op.check_key(&"alice"), Err(LimitError::RateLimited { .. })));
/// clock.advance(Duration::from_secs(60));
/// op.check_key(&"alice").unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub enum ClockSource {
    /// The CPU's time-stamp counter; or tokio's clock for an op first used
    /// inside a tokio runtime whose clock is paused then (recognised by two
    /// readings of tokio's clock being equal: a running clock moves
    /// between two readings; mistaking one for paused only costs readings
    /// of the same time at tokio's price). The default.
    #[default]
    Auto,
    /// The CPU's time-stamp counter, always.
    System,
    /// `tokio::time::Instant`, always: follows tokio's clock whether it is
    /// paused before or after the ops are made.
    Tokio,
    /// A clock moved by hand. It drives what the limits count (rates, the
    /// breaker's recovery, latencies, slow calls); timers (timeouts, queue
    /// waits) still run on tokio's clock, so pair them with `Tokio` and a
    /// paused runtime instead.
    Manual(ManualClock),
}

/// A clock that moves only when told: every clone reads and moves the same
/// time. Starts at zero.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    ns: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock `by` forward.
    pub fn advance(&self, by: Duration) {
        self.ns.fetch_add(duration_ns(by), Ordering::Relaxed);
    }

    /// The time since the clock started.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.ns.load(Ordering::Relaxed))
    }
}

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
    Manual(Arc<AtomicU64>),
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
    /// fast one ([`ClockSource::Auto`]).
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Self::of(&ClockSource::Auto)
    }

    /// A clock reading `source`.
    pub(crate) fn of(source: &ClockSource) -> Self {
        let tokio_base = Instant::now();
        let source = match source {
            ClockSource::Auto if tokio_paused() => Source::Tokio { base: tokio_base },
            ClockSource::Tokio => Source::Tokio { base: tokio_base },
            ClockSource::Auto | ClockSource::System => {
                let clock = quanta::Clock::new();
                let base = clock.raw();
                Source::Fast { clock, base }
            }
            ClockSource::Manual(m) => Source::Manual(Arc::clone(&m.ns)),
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
            test_source => test_now_ns(test_source),
        }
    }

    /// The reading `ns` as a tokio instant, for timers. With the fast source
    /// the two clocks may drift apart by microseconds over hours; timers do
    /// not need better.
    pub(crate) fn instant_at(&self, ns: u64) -> Instant {
        match &self.source {
            Source::Tokio { base } => deadline(*base, Duration::from_nanos(ns)),
            // Timers run on tokio's clock, from the present.
            Source::Fast { .. } | Source::Manual(_) => {
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

/// A reading of a test clock (tokio's or a manual one), off the path the
/// fast source takes.
#[inline(never)]
fn test_now_ns(source: &Source) -> u64 {
    match source {
        Source::Fast { clock, base } => clock.delta_as_nanos(*base, clock.raw()),
        Source::Tokio { base } => duration_ns(Instant::now().saturating_duration_since(*base)),
        Source::Manual(ns) => ns.load(Ordering::Relaxed),
    }
}

/// Whether the current thread is in a tokio runtime whose clock is paused:
/// two readings of it are equal (a running clock, read at nanosecond
/// resolution, moves between two readings). No waiting.
fn tokio_paused() -> bool {
    if tokio::runtime::Handle::try_current().is_err() {
        return false;
    }
    Instant::now() == Instant::now()
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

    #[tokio::test]
    async fn an_explicit_tokio_clock_follows_a_pause_after_it_was_made() {
        let c = Clock::of(&ClockSource::Tokio);
        assert!(!Clock::new().follows_tokio(), "running: auto is fast");
        tokio::time::pause();
        let t0 = c.now_ns();
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(c.now_ns() - t0, 3_000_000_000);
        tokio::time::resume();
    }

    #[test]
    fn a_manual_clock_moves_when_told() {
        let m = ManualClock::new();
        let c = Clock::of(&ClockSource::Manual(m.clone()));
        assert_eq!(c.now_ns(), 0);
        m.advance(Duration::from_millis(1500));
        assert_eq!(c.now_ns(), 1_500_000_000);
        assert_eq!(m.elapsed(), Duration::from_millis(1500));
    }
}
