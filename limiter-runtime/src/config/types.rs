//! The configuration model: [`OpConfig`] layers and the enums they use.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use crate::spec::Rate;

macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)? }
        what = $what:literal;
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum $name { $( $(#[$vmeta])* #[serde(rename = $text)] $variant ),+ }

        impl $name {
            /// Every accepted spelling, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The spelling used in attributes and files.
            pub fn as_str(&self) -> &'static str {
                match self { $( $name::$variant => $text ),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                match text.trim() {
                    $( $text => Ok($name::$variant), )+
                    other => Err(format!(
                        "unknown {} `{}`; expected one of: {}",
                        $what,
                        other,
                        Self::NAMES.join(", ")
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum! {
    /// Category of a blocking or slow operation; selects preset defaults
    /// (see [`OpKind::preset`]) and, for offloaded work, the pool it runs on.
    pub enum OpKind {
        /// Database queries.
        Database => "database",
        /// File system reads and writes.
        FileIo => "file_io",
        /// Raw network I/O.
        NetworkIo => "network_io",
        /// CPU-heavy computation; offloaded work runs on the bounded CPU pool.
        CpuIntensive => "cpu_intensive",
        /// Large allocations and copies.
        Memory => "memory",
        /// Calls to third-party APIs.
        ExternalApi => "external_api",
        /// Deliberate waits.
        Sleep => "sleep",
        /// Child processes.
        Subprocess => "subprocess",
    }
    what = "kind";
}

named_enum! {
    /// Rate limiting algorithm.
    pub enum Algorithm {
        /// Token bucket implemented as GCRA: lock-free, smooth, with `burst`.
        TokenBucket => "token_bucket",
        /// Sliding-window counter: the previous window weighted by overlap
        /// plus the current one.
        SlidingWindow => "sliding_window",
        /// Fixed window counter, reset at each window boundary.
        FixedWindow => "fixed_window",
    }
    what = "algorithm";
}

named_enum! {
    /// What happens to a new call when the wait queue is full.
    pub enum OverloadPolicy {
        /// Reject the new call with `QueueFull`.
        DropNewest => "drop_newest",
        /// Reject the oldest waiter with `QueueFull` and queue the new call.
        DropOldest => "drop_oldest",
        /// Wait for a queue place (bounded by `queue_timeout`).
        Block => "block",
    }
    what = "overload policy";
}

named_enum! {
    /// Delay growth between retries.
    pub enum Backoff {
        /// `base · 2^attempt`, capped at `backoff_max`, with jitter.
        Exponential => "exponential",
        /// `base` every time, with jitter.
        Constant => "constant",
    }
    what = "backoff";
}

named_enum! {
    /// What a call does when its timeout passes. The strategy is chosen where
    /// the call is made ([`crate::Call::background`],
    /// [`crate::Call::cache_fallback`]) because it changes what the call's
    /// future must be (`'static` to keep running, `Clone` output to be cached).
    pub enum TimeoutStrategy {
        /// Drop the future and return `Timeout`.
        Cancel => "cancel",
        /// Keep the future running as a tracked background task and return
        /// `MovedToBackground { task_id }`.
        Background => "background",
        /// Return the last good value for the same key, else `Timeout`.
        CacheFallback => "cache_fallback",
    }
    what = "strategy";
}

/// Circuit-breaker settings of one layer; `None` fields inherit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BreakerConfig {
    /// Turn the breaker on or off.
    pub enabled: Option<bool>,
    /// Failure rate in the window that opens the breaker, in `(0, 1]`.
    pub failure_rate: Option<f64>,
    /// Calls the window must hold before the rate is judged.
    pub min_calls: Option<u32>,
    /// Number of most recent calls the window holds.
    pub window: Option<u32>,
    /// Calls slower than this count as failures.
    pub slow_call: Option<Duration>,
    /// How long the breaker stays open before letting probes through.
    pub recovery: Option<Duration>,
    /// Probes allowed at once while half-open.
    pub half_open_calls: Option<u32>,
    /// Successful probes needed to close again.
    pub success_threshold: Option<u32>,
    /// Consecutive failures that open the breaker whatever the rate
    /// (the seeds' `failure_threshold`).
    pub consecutive_failures: Option<u32>,
}

/// Retry settings of one layer; `None` fields inherit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetryConfig {
    /// Retries after the first attempt (0 turns retrying off).
    pub retries: Option<u32>,
    /// Delay growth.
    pub backoff: Option<Backoff>,
    /// First delay.
    pub base: Option<Duration>,
    /// Longest delay; a `retry_after` longer than this is not waited for.
    pub max: Option<Duration>,
}

/// One layer of configuration for an operation.
///
/// Layers stack: registry defaults, then the [`OpKind`] preset, then the
/// declared layer (what the attribute says, or [`crate::Registry::declare`]),
/// then the override layer ([`crate::Registry::configure`], environment,
/// `limiter.toml`). A `None` field inherits from the layer below.
///
/// ```
/// use std::time::Duration;
/// use limiter_runtime::{OpConfig, OpKind};
/// let cfg = OpConfig {
///     kind: Some(OpKind::Database),
///     timeout: Some(Duration::from_secs(2)),
///     max_concurrent: Some(8),
///     ..OpConfig::default()
/// }
/// .with_rate("100/s").unwrap();
/// assert_eq!(cfg.rate.as_ref().unwrap()[0].count(), 100);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpConfig {
    /// Category; selects the preset layer.
    pub kind: Option<OpKind>,
    /// `false` runs calls with metrics only, no limits.
    pub enabled: Option<bool>,
    /// Deadline of one attempt.
    pub timeout: Option<Duration>,
    /// Op-wide rate windows.
    pub rate: Option<Vec<Rate>>,
    /// Rate windows applied to each key separately.
    pub rate_per_key: Option<Vec<Rate>>,
    /// Token-bucket capacity of the shortest window.
    pub burst: Option<u32>,
    /// Rate algorithm.
    pub algorithm: Option<Algorithm>,
    /// Op-wide in-flight bound.
    pub max_concurrent: Option<u32>,
    /// In-flight bound per key.
    pub max_concurrent_per_key: Option<u32>,
    /// Op-wide waiting places.
    pub queue: Option<u32>,
    /// Waiting places per key.
    pub queue_per_key: Option<u32>,
    /// Longest wait for a place.
    pub queue_timeout: Option<Duration>,
    /// What a full queue does to new calls.
    pub overload: Option<OverloadPolicy>,
    /// Retry hint returned with `QueueFull` and `Overloaded`.
    pub retry_after: Option<Duration>,
    /// Retry settings.
    pub retry: RetryConfig,
    /// Circuit-breaker settings.
    pub breaker: BreakerConfig,
    /// A single poll longer than this counts as a slow poll.
    pub slow_poll: Option<Duration>,
    /// Cap of tracked keys (per-key rate and bulkhead state).
    pub max_keys: Option<usize>,
}

impl OpConfig {
    /// Sets `rate` from its text form (`"100/s"`, `"60/min, 1000/h"`).
    pub fn with_rate(mut self, text: &str) -> Result<Self, crate::spec::SpecError> {
        self.rate = Some(crate::spec::parse_rates(text)?);
        Ok(self)
    }

    /// Sets `rate_per_key` from its text form.
    pub fn with_rate_per_key(mut self, text: &str) -> Result<Self, crate::spec::SpecError> {
        self.rate_per_key = Some(crate::spec::parse_rates(text)?);
        Ok(self)
    }

    /// Lays `top` over `self`: every field `top` sets wins.
    pub fn overlay(&mut self, top: &OpConfig) {
        macro_rules! take {
            ($($field:ident).+) => {
                if top.$($field).+.is_some() {
                    self.$($field).+ = top.$($field).+.clone();
                }
            };
        }
        take!(kind);
        take!(enabled);
        take!(timeout);
        take!(rate);
        take!(rate_per_key);
        take!(burst);
        take!(algorithm);
        take!(max_concurrent);
        take!(max_concurrent_per_key);
        take!(queue);
        take!(queue_per_key);
        take!(queue_timeout);
        take!(overload);
        take!(retry_after);
        take!(retry.retries);
        take!(retry.backoff);
        take!(retry.base);
        take!(retry.max);
        take!(breaker.enabled);
        take!(breaker.failure_rate);
        take!(breaker.min_calls);
        take!(breaker.window);
        take!(breaker.slow_call);
        take!(breaker.recovery);
        take!(breaker.half_open_calls);
        take!(breaker.success_threshold);
        take!(breaker.consecutive_failures);
        take!(slow_poll);
        take!(max_keys);
    }

    /// Multiplies the capacity figures (concurrency, queues, rate counts,
    /// burst) by `factor`, rounding and keeping each at least 1. Used by
    /// configuration profiles.
    pub fn scale_limits(&mut self, factor: f64) {
        let scale =
            |v: u32| ((f64::from(v) * factor).round().max(1.0)).min(f64::from(u32::MAX)) as u32;
        for field in [
            &mut self.max_concurrent,
            &mut self.max_concurrent_per_key,
            &mut self.burst,
        ]
        .into_iter()
        .flatten()
        {
            *field = scale(*field);
        }
        for field in [&mut self.queue, &mut self.queue_per_key]
            .into_iter()
            .flatten()
        {
            if *field > 0 {
                *field = scale(*field);
            }
        }
        for windows in [&mut self.rate, &mut self.rate_per_key]
            .into_iter()
            .flatten()
        {
            for w in windows.iter_mut() {
                if let Ok(r) = Rate::new(scale(w.count()), w.period()) {
                    *w = r;
                }
            }
        }
    }
}
