//! What a stream handler is built from: its name, limits and strategy.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// What a send does when the buffer is full (in items or in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Drop the oldest buffered items until the new one fits: the consumer
    /// always gets the freshest data (live audio, telemetry).
    DropOldest,
    /// Drop the new item: what is buffered is delivered, the excess is lost.
    DropNewest,
    /// The sender waits until the consumer makes room: nothing is lost,
    /// the producer slows down to the consumer's pace.
    #[default]
    Block,
    /// Blocks while the consumer keeps up and drops the oldest items when
    /// it does not, judged from the consumer's measured rate (the rule is
    /// in [`StreamConfig::target_latency`]).
    Adaptive,
}

impl Strategy {
    /// The name used in snapshots and metrics (`drop_oldest`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Strategy::DropOldest => "drop_oldest",
            Strategy::DropNewest => "drop_newest",
            Strategy::Block => "block",
            Strategy::Adaptive => "adaptive",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The limits and overload strategy of one stream handler (a
/// [`channel`](super::channel) or a [`buffered`](super::buffered) stream).
///
/// Fields are public so a struct literal with `..Default::default()`
/// works; the builder methods say the same thing in a chain:
///
/// ```
/// use limiter_runtime::stream::{StreamConfig, Strategy};
/// let a = StreamConfig { max_items: 64, strategy: Strategy::DropOldest, ..Default::default() }
///     .named("tts");
/// let b = StreamConfig::new("tts").max_items(64).strategy(Strategy::DropOldest);
/// assert_eq!(a, b);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// The name its statistics are kept under (in
    /// [`Registry::backpressure`](crate::Registry::backpressure), the
    /// `stream` label in Prometheus). Handlers of one name add up, so a
    /// name should say *what* streams (`"tts"`), never *which* one (no
    /// request ids): every name is kept for the registry's lifetime.
    pub name: String,
    /// Items buffered at most (at least 1). Default 1024.
    pub max_items: usize,
    /// Bytes buffered at most, as the handler's weigher counts them
    /// (needs a weigher: see [`weighed_channel`](super::weighed_channel)).
    /// An item heavier than the whole budget is dropped as `too_large`.
    /// Default: no byte limit.
    pub max_bytes: Option<usize>,
    /// What a send does when the buffer is full. Default [`Strategy::Block`].
    pub strategy: Strategy,
    /// For [`Strategy::Adaptive`]: the longest wait in the buffer that still
    /// counts as keeping up. Default 1 s.
    ///
    /// The rule, applied at each send that finds the buffer full: with `n`
    /// the items buffered and `S` the consumer's time per item (an
    /// exponentially weighted mean, weight ¼, of the processing times
    /// measured between its pulls, and at least the time it has spent so
    /// far on the item it holds),
    ///
    /// * while `n × S ≤ target_latency` (the buffer would drain within the
    ///   target at the measured rate) the send **blocks** until there is
    ///   room, as [`Strategy::Block`];
    /// * when `n × S > target_latency` it **drops the oldest** items to make
    ///   room, as [`Strategy::DropOldest`];
    /// * a send that has blocked for `target_latency` without getting room
    ///   (the consumer stalled) switches to dropping too;
    /// * before the first processing time is measured it blocks (bounded by
    ///   the previous rule).
    ///
    /// Every change of mode is counted, with its reason, in the snapshot.
    pub target_latency: Duration,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            name: "stream".into(),
            max_items: 1024,
            max_bytes: None,
            strategy: Strategy::Block,
            target_latency: Duration::from_secs(1),
        }
    }
}

impl StreamConfig {
    /// The defaults under `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self::default().named(name)
    }

    /// Sets the name.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the item limit.
    pub fn max_items(mut self, n: usize) -> Self {
        self.max_items = n;
        self
    }

    /// Sets the byte budget.
    pub fn max_bytes(mut self, n: usize) -> Self {
        self.max_bytes = Some(n);
        self
    }

    /// Sets the strategy.
    pub fn strategy(mut self, s: Strategy) -> Self {
        self.strategy = s;
        self
    }

    /// Sets the adaptive strategy's target latency.
    pub fn target_latency(mut self, d: Duration) -> Self {
        self.target_latency = d;
        self
    }

    /// Checks the values; `weighed` says whether the handler has a weigher.
    pub(crate) fn validate(&self, weighed: bool) -> Result<(), StreamError> {
        let invalid = |field, value: String, reason: &str| {
            Err(StreamError::Invalid {
                stream: self.name.clone(),
                field,
                value,
                reason: reason.into(),
            })
        };
        if self.name.is_empty() {
            return invalid("name", "\"\"".into(), "a stream needs a name");
        }
        if self.max_items == 0 {
            return invalid("max_items", "0".into(), "must be at least 1");
        }
        match self.max_bytes {
            Some(0) => invalid("max_bytes", "0".into(), "must be at least 1"),
            Some(n) if !weighed => invalid(
                "max_bytes",
                n.to_string(),
                "a byte budget needs a weigher (use weighed_channel or weighed_buffered)",
            ),
            _ if self.strategy == Strategy::Adaptive && self.target_latency.is_zero() => {
                invalid("target_latency", "0s".into(), "must be above zero")
            }
            _ => Ok(()),
        }
    }
}

/// Why a stream handler could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// A value of the [`StreamConfig`] is invalid.
    #[error("stream `{stream}`: {field} = {value}: {reason}")]
    Invalid {
        /// The stream's name.
        stream: String,
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// [`buffered`](super::buffered) spawns its pump on the current tokio
    /// runtime, and there is none.
    #[error("stream `{0}`: buffered() must be called inside a tokio runtime")]
    NoRuntime(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_values_are_named() {
        let err = |c: StreamConfig, weighed| c.validate(weighed).unwrap_err().to_string();
        assert_eq!(
            err(StreamConfig::new("a").max_items(0), false),
            "stream `a`: max_items = 0: must be at least 1"
        );
        assert!(err(StreamConfig::new("a").max_bytes(10), false).contains("needs a weigher"));
        assert!(StreamConfig::new("a").max_bytes(10).validate(true).is_ok());
        let adaptive = StreamConfig::new("a")
            .strategy(Strategy::Adaptive)
            .target_latency(Duration::ZERO);
        assert!(err(adaptive, false).contains("target_latency"));
        assert!(err(StreamConfig::new(""), false).contains("needs a name"));
    }
}
