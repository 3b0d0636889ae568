//! The configuration model: [`OpConfig`] layers and the enums they use.

use std::time::Duration;

pub use limiter_spec::{
    Algorithm, Backend, Backoff, ConcurrencyScope, Degradation, OpKind, OverloadPolicy, SharedMode,
    TimeoutStrategy,
};

use crate::spec::Rate;

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
    /// Where the rate state (op-wide and per key) and the breaker state
    /// live: here, or in Redis shared by every
    /// instance (feature `redis`, see [`crate::Registry::set_redis`]).
    pub backend: Option<Backend>,
    /// What a Redis-backed rate limit does while Redis cannot answer.
    pub degradation: Option<Degradation>,
    /// How a Redis-backed rate is checked: `exact` (a round trip per
    /// call, the default) or `lease` (batches of tokens served locally).
    pub mode: Option<SharedMode>,
    /// Where `max_concurrent` counts: this instance (the default) or every
    /// instance, through Redis.
    pub concurrency: Option<ConcurrencyScope>,
    /// How many instances share a Redis-backed op, for the share each
    /// applies while Redis cannot answer (`degradation = "local"`); by
    /// default learned from the instances that reached Redis lately.
    pub instances: Option<u32>,
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
    /// Longest a timed-out body of a `drain` call may run on, holding its
    /// place, before it is dropped.
    pub drain_timeout: Option<Duration>,
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
    /// Adapt the in-flight bound to latency: an AIMD controller between
    /// `adaptive_min` and `max_concurrent` (start), adding about one place
    /// per round of calls within `adaptive_target` and taking 10 % off at
    /// each failure or slower call. AIMD rather than a gradient controller:
    /// it needs no baseline-RTT estimate (noisy at low traffic), reacts at
    /// the first slow call and converges the way TCP does.
    pub adaptive: Option<bool>,
    /// Lowest in-flight bound the adaptive limit goes down to.
    pub adaptive_min: Option<u32>,
    /// Latency above which a call counts against the adaptive limit.
    pub adaptive_target: Option<Duration>,
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
        take!(backend);
        take!(degradation);
        take!(mode);
        take!(concurrency);
        take!(instances);
        take!(max_concurrent);
        take!(max_concurrent_per_key);
        take!(queue);
        take!(queue_per_key);
        take!(queue_timeout);
        take!(drain_timeout);
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
        take!(adaptive);
        take!(adaptive_min);
        take!(adaptive_target);
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
            &mut self.adaptive_min,
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
