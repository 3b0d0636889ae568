//! The adaptive strategy's rule: block while the buffer drains within the
//! target latency at the consumer's measured rate, drop the oldest beyond
//! (the rule is stated in [`StreamConfig::target_latency`](super::StreamConfig::target_latency)).

use std::time::Duration;

use super::stats::{unix_ms, ModeSwitch, StreamMode, SwitchReason};

/// Weight of the newest processing time in the mean.
const ALPHA: f64 = 0.25;

/// One adaptive handler's estimate of its consumer and its current mode.
#[derive(Debug)]
pub(crate) struct Adaptive {
    target: Duration,
    /// The consumer's time per item, in nanoseconds (weighted mean).
    service_ns: Option<f64>,
    mode: StreamMode,
}

/// What a full buffer's send does.
#[derive(Debug, PartialEq)]
pub(crate) struct Decision {
    pub(crate) mode: StreamMode,
    /// Set when the mode changed.
    pub(crate) switch: Option<ModeSwitch>,
}

impl Adaptive {
    pub(crate) fn new(target: Duration) -> Self {
        Self {
            target,
            service_ns: None,
            mode: StreamMode::Blocking,
        }
    }

    /// The consumer took `d` over one item.
    pub(crate) fn observe(&mut self, d: Duration) {
        let x = d.as_nanos() as f64;
        self.service_ns = Some(match self.service_ns {
            None => x,
            Some(s) => s + ALPHA * (x - s),
        });
    }

    /// The mode in force.
    pub(crate) fn mode(&self) -> StreamMode {
        self.mode
    }

    /// The decision for a send that finds `depth` items buffered (full),
    /// the consumer holding its current item for `holding` (if it holds
    /// one) and this sender blocked for `blocked` (if it did).
    pub(crate) fn decide(
        &mut self,
        depth: usize,
        holding: Option<Duration>,
        blocked: Option<Duration>,
    ) -> Decision {
        let held = holding.map_or(0.0, |h| h.as_nanos() as f64);
        let service = self.service_ns.map(|s| s.max(held));
        let drain = service.map(|s| s * depth as f64);
        let target = self.target.as_nanos() as f64;
        let (mode, reason) = if blocked.is_some_and(|b| b >= self.target) {
            (StreamMode::Dropping, SwitchReason::Stalled)
        } else if drain.is_some_and(|d| d > target) {
            (StreamMode::Dropping, SwitchReason::SlowConsumer)
        } else {
            (StreamMode::Blocking, SwitchReason::Recovered)
        };
        let switch = (mode != self.mode).then(|| ModeSwitch {
            to: mode,
            reason,
            buffered_items: depth,
            service_ms: service.map(|s| s / 1e6),
            drain_ms: drain.map(|d| d / 1e6),
            at_unix_ms: unix_ms(),
        });
        self.mode = mode;
        Decision { mode, switch }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn blocks_until_measured_then_follows_the_drain_time() {
        let mut a = Adaptive::new(100 * MS);
        // No measurement: block.
        let d = a.decide(50, None, None);
        assert_eq!((d.mode, d.switch), (StreamMode::Blocking, None));
        // 1 ms per item, 50 items: 50 ms <= 100 ms, block.
        a.observe(MS);
        assert_eq!(a.decide(50, None, None).mode, StreamMode::Blocking);
        // 10 ms per item: 500 ms > 100 ms, drop, and say why.
        for _ in 0..40 {
            a.observe(10 * MS);
        }
        let d = a.decide(50, None, None);
        assert_eq!(d.mode, StreamMode::Dropping);
        let s = d.switch.expect("a switch");
        assert_eq!(s.reason, SwitchReason::SlowConsumer);
        assert!((s.drain_ms.unwrap() - 500.0).abs() < 1.0, "{s:?}");
        // Still dropping: no new switch.
        assert_eq!(a.decide(50, None, None).switch, None);
        // Fewer items buffered: 5 x 10 ms drains in time, block again.
        let d = a.decide(5, None, None);
        assert_eq!(d.switch.unwrap().reason, SwitchReason::Recovered);
    }

    #[test]
    fn a_held_item_and_a_long_block_count() {
        let mut a = Adaptive::new(100 * MS);
        a.observe(MS);
        // The consumer holds its item for 30 ms: 4 x 30 > 100.
        let d = a.decide(4, Some(30 * MS), None);
        assert_eq!(d.switch.unwrap().reason, SwitchReason::SlowConsumer);
        let mut b = Adaptive::new(100 * MS);
        let d = b.decide(1, None, Some(100 * MS));
        assert_eq!(d.switch.unwrap().reason, SwitchReason::Stalled);
        assert_eq!(b.mode(), StreamMode::Dropping);
    }
}
