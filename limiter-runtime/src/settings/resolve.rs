//! Merging configuration layers into the values an operation runs with, and
//! checking them.

use std::time::Duration;

use serde::Serialize;

use super::types::{
    Algorithm, Backend, Backoff, BreakerConfig, ConcurrencyScope, Degradation, OpConfig, OpKind,
    OverloadPolicy, RetryConfig, SharedMode,
};
use crate::error::ConfigError;
use crate::spec::{DisplayDuration, Rate};

/// Rate windows with the algorithm and burst they run with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateSpec {
    /// Windows; every one must admit a call.
    pub windows: Vec<Rate>,
    /// Token-bucket capacity of the first window (`None` for window algorithms).
    pub burst: Option<u32>,
    /// Algorithm.
    pub algorithm: Algorithm,
}

/// Retry settings in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// Delay growth.
    pub backoff: Backoff,
    /// First delay.
    #[serde(serialize_with = "ser_duration")]
    pub base: Duration,
    /// Longest delay.
    #[serde(serialize_with = "ser_duration")]
    pub max: Duration,
}

/// Adaptive concurrency settings in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdaptivePolicy {
    /// Lowest in-flight bound.
    pub min: u32,
    /// Latency target: slower calls lower the bound.
    #[serde(serialize_with = "ser_duration")]
    pub target: Duration,
}

/// Circuit-breaker settings in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerPolicy {
    /// Failure rate that opens the breaker.
    pub failure_rate: f64,
    /// Calls needed before the rate is judged.
    pub min_calls: u32,
    /// Size of the count-based window.
    pub window: u32,
    /// Calls slower than this are failures.
    #[serde(serialize_with = "ser_opt_duration")]
    pub slow_call: Option<Duration>,
    /// Time spent open before probing.
    #[serde(serialize_with = "ser_duration")]
    pub recovery: Duration,
    /// Concurrent probes while half-open.
    pub half_open_calls: u32,
    /// Successful probes that close the breaker.
    pub success_threshold: u32,
    /// Consecutive failures that open the breaker.
    pub consecutive_failures: Option<u32>,
}

/// The values an operation runs with after all layers are merged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedConfig {
    /// Category.
    pub kind: Option<OpKind>,
    /// Limits on (`false`: metrics only).
    pub enabled: bool,
    /// Deadline of one attempt.
    #[serde(serialize_with = "ser_opt_duration")]
    pub timeout: Option<Duration>,
    /// Op-wide rate limit.
    pub rate: Option<RateSpec>,
    /// Per-key rate limit.
    pub rate_per_key: Option<RateSpec>,
    /// Op-wide in-flight bound.
    pub max_concurrent: u32,
    /// Per-key in-flight bound.
    pub max_concurrent_per_key: u32,
    /// Op-wide queue places.
    pub queue: u32,
    /// Per-key queue places.
    pub queue_per_key: u32,
    /// Longest wait in the queue.
    #[serde(serialize_with = "ser_duration")]
    pub queue_timeout: Duration,
    /// Longest a timed-out `drain` body runs on.
    #[serde(serialize_with = "ser_duration")]
    pub drain_timeout: Duration,
    /// Overload policy.
    pub overload: OverloadPolicy,
    /// Where the op-wide rate state lives.
    pub backend: Backend,
    /// What a Redis-backed rate limit does while Redis cannot answer.
    pub degradation: Degradation,
    /// How a Redis-backed rate is checked.
    pub mode: SharedMode,
    /// Where `max_concurrent` counts.
    pub concurrency: ConcurrencyScope,
    /// Instances sharing the op, when configured (else learned).
    pub instances: Option<u32>,
    /// Retry hint for `QueueFull` and `Overloaded`.
    #[serde(serialize_with = "ser_duration")]
    pub retry_after: Duration,
    /// Retries, when on.
    pub retry: Option<RetryPolicy>,
    /// Breaker, when on.
    pub breaker: Option<BreakerPolicy>,
    /// Slow-poll threshold.
    #[serde(serialize_with = "ser_duration")]
    pub slow_poll: Duration,
    /// Cap of tracked keys.
    pub max_keys: usize,
    /// Adaptive concurrency, when on (`max_concurrent` is its ceiling).
    pub adaptive: Option<AdaptivePolicy>,
}

pub(crate) fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&DisplayDuration(*d))
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.collect_str(&DisplayDuration(*d)),
        None => s.serialize_none(),
    }
}

impl OpConfig {
    /// The built-in base layer: the seeds' defaults (3 in flight and 10
    /// queued per key, 100 in flight and 500 queued per op, retry-after 5 s,
    /// queue timeout 30 s, `drop_newest`), no timeout, no rate limit,
    /// breaker and retries off, 1 ms slow-poll threshold, 100 000 keys.
    pub fn builtin_defaults() -> OpConfig {
        OpConfig {
            kind: None,
            enabled: Some(true),
            timeout: None,
            rate: None,
            rate_per_key: None,
            burst: None,
            algorithm: Some(Algorithm::TokenBucket),
            backend: Some(Backend::Local),
            degradation: Some(Degradation::Local),
            mode: Some(SharedMode::Exact),
            concurrency: Some(ConcurrencyScope::Local),
            instances: None,
            max_concurrent: Some(100),
            max_concurrent_per_key: Some(3),
            queue: Some(500),
            queue_per_key: Some(10),
            queue_timeout: Some(Duration::from_secs(30)),
            drain_timeout: Some(Duration::from_secs(30)),
            overload: Some(OverloadPolicy::DropNewest),
            retry_after: Some(Duration::from_secs(5)),
            retry: RetryConfig {
                retries: Some(0),
                backoff: Some(Backoff::Exponential),
                base: Some(Duration::from_millis(100)),
                max: Some(Duration::from_secs(10)),
            },
            breaker: BreakerConfig {
                enabled: Some(false),
                failure_rate: Some(0.5),
                min_calls: Some(10),
                window: Some(20),
                slow_call: None,
                recovery: Some(Duration::from_secs(60)),
                half_open_calls: Some(1),
                success_threshold: Some(1),
                consecutive_failures: None,
            },
            slow_poll: Some(Duration::from_millis(1)),
            max_keys: Some(100_000),
            adaptive: Some(false),
            adaptive_min: None,
            adaptive_target: None,
        }
    }

    /// Merges `layers` (lowest first) over the built-in defaults and the
    /// preset of the resulting kind, then checks the result.
    pub fn resolve(op: &str, layers: &[&OpConfig]) -> Result<ResolvedConfig, ConfigError> {
        let kind = layers.iter().rev().find_map(|l| l.kind);
        let mut merged = OpConfig::builtin_defaults();
        // The registry defaults are the first layer; the kind preset sits
        // right above them so that anything declared or configured wins.
        if let Some((defaults, rest)) = layers.split_first() {
            merged.overlay(defaults);
            if let Some(kind) = kind {
                merged.overlay(&OpConfig::preset(kind));
            }
            for layer in rest {
                merged.overlay(layer);
            }
        } else if let Some(kind) = kind {
            merged.overlay(&OpConfig::preset(kind));
        }
        merged.kind = kind;
        // A registry-wide burst (`RATE_LIMIT_BURST_LIMIT`) is for the ops
        // whose rates are token buckets; an op that chose a window
        // algorithm itself is not refused for it.
        let above_defaults = |f: fn(&OpConfig) -> bool| layers.iter().skip(1).any(|l| f(l));
        if above_defaults(|l| l.algorithm.is_some())
            && !above_defaults(|l| l.burst.is_some())
            && merged.algorithm != Some(Algorithm::TokenBucket)
        {
            merged.burst = None;
        }
        merged.validate_resolved(op)
    }

    /// Checks the merged layers and turns them into the values the op runs
    /// with. The checks run in a fixed order (burst, retry, breaker,
    /// `max_keys`, `max_concurrent`, timeout, adaptive, backend, then the
    /// fields of the result in declaration order); the first failing one is
    /// the error.
    fn validate_resolved(self, op: &str) -> Result<ResolvedConfig, ConfigError> {
        let check = Check { op };
        let (algorithm, burst) = check.algorithm_and_burst(&self)?;
        let retry = check.retry(&self.retry)?;
        let breaker = check.breaker(&self.breaker)?;
        let max_keys = check.max_keys(self.max_keys)?;
        let max_concurrent = check
            .at_least_one("max_concurrent", self.max_concurrent)?
            .unwrap_or(100);
        let timeout = check.positive("timeout", self.timeout)?;
        let adaptive = check.adaptive(&self, max_concurrent, timeout)?;
        let backend = check.backend(self.backend)?;
        let (mode, concurrency) = check.shared(&self, backend)?;
        Ok(ResolvedConfig {
            kind: self.kind,
            enabled: self.enabled.unwrap_or(true),
            timeout,
            rate: check.rate_spec("rate", self.rate, algorithm, burst)?,
            rate_per_key: check.rate_spec("rate_per_key", self.rate_per_key, algorithm, burst)?,
            max_concurrent,
            max_concurrent_per_key: check
                .at_least_one("max_concurrent_per_key", self.max_concurrent_per_key)?
                .unwrap_or(3),
            queue: self.queue.unwrap_or(0),
            queue_per_key: self.queue_per_key.unwrap_or(0),
            queue_timeout: required(check.positive("queue_timeout", self.queue_timeout)?),
            drain_timeout: required(check.positive("drain_timeout", self.drain_timeout)?),
            overload: self.overload.unwrap_or(OverloadPolicy::DropNewest),
            backend,
            degradation: self.degradation.unwrap_or(Degradation::Local),
            mode,
            concurrency,
            instances: check.at_least_one("instances", self.instances)?,
            retry_after: required(check.positive("retry_after", self.retry_after)?),
            retry,
            breaker,
            slow_poll: required(check.positive("slow_poll", self.slow_poll)?),
            max_keys,
            adaptive,
        })
    }
}

/// The checks of one op's merged configuration; errors name the op.
#[derive(Clone, Copy)]
struct Check<'a> {
    op: &'a str,
}

/// A duration that must be set, or zero when it is not (the built-in
/// defaults set every such field).
fn required(v: Option<Duration>) -> Duration {
    v.unwrap_or_default()
}

impl Check<'_> {
    /// The error for `field` holding the refused `value`.
    fn invalid(&self, field: &'static str, value: String, reason: &str) -> ConfigError {
        ConfigError::Invalid {
            op: self.op.to_owned(),
            field,
            value,
            reason: reason.to_owned(),
        }
    }

    /// `d` unless it is zero.
    fn positive(
        &self,
        field: &'static str,
        d: Option<Duration>,
    ) -> Result<Option<Duration>, ConfigError> {
        match d {
            Some(d) if d.is_zero() => {
                Err(self.invalid(field, "0s".into(), "must be greater than zero"))
            }
            other => Ok(other),
        }
    }

    /// `v` unless it is zero.
    fn at_least_one(
        &self,
        field: &'static str,
        v: Option<u32>,
    ) -> Result<Option<u32>, ConfigError> {
        match v {
            Some(0) => Err(self.invalid(field, "0".into(), "must be at least 1")),
            other => Ok(other),
        }
    }

    /// The rate algorithm, and the burst, which must be at least 1 and
    /// is refused with a window algorithm when a rate is set.
    fn algorithm_and_burst(&self, cfg: &OpConfig) -> Result<(Algorithm, Option<u32>), ConfigError> {
        let algorithm = cfg.algorithm.unwrap_or(Algorithm::TokenBucket);
        let burst = self.at_least_one("burst", cfg.burst)?;
        if burst.is_some()
            && algorithm != Algorithm::TokenBucket
            && (cfg.rate.is_some() || cfg.rate_per_key.is_some())
        {
            return Err(self.invalid(
                "burst",
                burst.unwrap_or_default().to_string(),
                &format!("burst applies only to algorithm `token_bucket`, not `{algorithm}`"),
            ));
        }
        Ok((algorithm, burst))
    }

    /// The rate limit of `field`, whose windows (at least one) are sorted
    /// shortest first; token buckets get `burst` or the default burst.
    fn rate_spec(
        &self,
        field: &'static str,
        windows: Option<Vec<Rate>>,
        algorithm: Algorithm,
        burst: Option<u32>,
    ) -> Result<Option<RateSpec>, ConfigError> {
        match windows {
            None => Ok(None),
            Some(w) if w.is_empty() => {
                Err(self.invalid(field, "[]".into(), "needs at least one window"))
            }
            Some(mut windows) => {
                windows.sort_by_key(|w| w.period());
                Ok(Some(RateSpec {
                    burst: (algorithm == Algorithm::TokenBucket)
                        .then(|| burst.unwrap_or_else(|| default_burst(&windows[0]))),
                    windows,
                    algorithm,
                }))
            }
        }
    }

    /// The retry policy (`None` without retries): positive delays, and a
    /// longest delay no shorter than the first when retries are on.
    fn retry(&self, r: &RetryConfig) -> Result<Option<RetryPolicy>, ConfigError> {
        let retries = r.retries.unwrap_or(0);
        let retry_base = required(self.positive("retry.base", r.base)?);
        let retry_max = required(self.positive("retry.max", r.max)?);
        if retries > 0 && retry_max < retry_base {
            return Err(self.invalid(
                "retry.max",
                DisplayDuration(retry_max).to_string(),
                &format!(
                    "must not be shorter than retry.base ({})",
                    DisplayDuration(retry_base)
                ),
            ));
        }
        Ok((retries > 0).then(|| RetryPolicy {
            retries,
            backoff: r.backoff.unwrap_or(Backoff::Exponential),
            base: retry_base,
            max: retry_max,
        }))
    }

    /// The breaker policy when the breaker is on: a failure rate in (0, 1],
    /// a window that can hold `min_calls`, positive durations and counts.
    fn breaker(&self, b: &BreakerConfig) -> Result<Option<BreakerPolicy>, ConfigError> {
        if !b.enabled.unwrap_or(false) {
            return Ok(None);
        }
        let failure_rate = b.failure_rate.unwrap_or(0.5);
        if !(failure_rate > 0.0 && failure_rate <= 1.0) {
            return Err(self.invalid(
                "breaker.failure_rate",
                failure_rate.to_string(),
                "must be in (0, 1]",
            ));
        }
        let window = self.at_least_one("breaker.window", b.window)?.unwrap_or(20);
        let min_calls = self
            .at_least_one("breaker.min_calls", b.min_calls)?
            .unwrap_or(10);
        if min_calls > window {
            return Err(self.invalid(
                "breaker.min_calls",
                min_calls.to_string(),
                &format!(
                    "must not exceed breaker.window ({window}), or the breaker could never open"
                ),
            ));
        }
        Ok(Some(BreakerPolicy {
            failure_rate,
            min_calls,
            window,
            slow_call: self.positive("breaker.slow_call", b.slow_call)?,
            recovery: required(self.positive("breaker.recovery", b.recovery)?),
            half_open_calls: self
                .at_least_one("breaker.half_open_calls", b.half_open_calls)?
                .unwrap_or(1),
            success_threshold: self
                .at_least_one("breaker.success_threshold", b.success_threshold)?
                .unwrap_or(1),
            consecutive_failures: self
                .at_least_one("breaker.consecutive_failures", b.consecutive_failures)?,
        }))
    }

    /// The cap of tracked keys: at least 1, 100 000 when unset.
    fn max_keys(&self, max_keys: Option<usize>) -> Result<usize, ConfigError> {
        match max_keys {
            Some(0) => Err(self.invalid("max_keys", "0".into(), "must be at least 1")),
            Some(n) => Ok(n),
            None => Ok(100_000),
        }
    }

    /// The adaptive concurrency policy when it is on: a floor no higher
    /// than `max_concurrent`, and a positive latency target (half the
    /// timeout, or 1 s, when unset).
    fn adaptive(
        &self,
        cfg: &OpConfig,
        max_concurrent: u32,
        timeout: Option<Duration>,
    ) -> Result<Option<AdaptivePolicy>, ConfigError> {
        if !cfg.adaptive.unwrap_or(false) {
            return Ok(None);
        }
        let min = self
            .at_least_one("adaptive_min", cfg.adaptive_min)?
            .unwrap_or(1);
        if min > max_concurrent {
            return Err(self.invalid(
                "adaptive_min",
                min.to_string(),
                &format!("must not exceed max_concurrent ({max_concurrent})"),
            ));
        }
        let target = self
            .positive("adaptive_target", cfg.adaptive_target)?
            .unwrap_or_else(|| timeout.map_or(Duration::from_secs(1), |t| t / 2));
        Ok(Some(AdaptivePolicy { min, target }))
    }

    /// `mode = "lease"` and `concurrency = "shared"` share through the
    /// store: both need `backend = "redis"`, and a lease is a slice of a
    /// token bucket. (An op in lease mode with no rate has nothing to
    /// lease: a rule's op is configured before its rule gives it a rate.)
    fn shared(
        &self,
        cfg: &OpConfig,
        backend: Backend,
    ) -> Result<(SharedMode, ConcurrencyScope), ConfigError> {
        let mode = cfg.mode.unwrap_or(SharedMode::Exact);
        let concurrency = cfg.concurrency.unwrap_or(ConcurrencyScope::Local);
        let needs_redis = |field, value: String, what: &str| {
            self.invalid(
                field,
                value,
                &format!("{what} through Redis: needs `backend = \"redis\"`"),
            )
        };
        if backend != Backend::Redis {
            if mode == SharedMode::Lease {
                return Err(needs_redis("mode", mode.to_string(), "leases tokens"));
            }
            if concurrency == ConcurrencyScope::Shared {
                return Err(needs_redis(
                    "concurrency",
                    concurrency.to_string(),
                    "counts calls in flight across instances",
                ));
            }
        }
        if mode == SharedMode::Lease
            && cfg.algorithm.unwrap_or(Algorithm::TokenBucket) != Algorithm::TokenBucket
        {
            return Err(self.invalid(
                "mode",
                mode.to_string(),
                "leases slices of a token bucket: set `algorithm = \"token_bucket\"`",
            ));
        }
        Ok((mode, concurrency))
    }

    /// The rate-state backend, refusing Redis in a build without it.
    fn backend(&self, backend: Option<Backend>) -> Result<Backend, ConfigError> {
        let backend = backend.unwrap_or(Backend::Local);
        if backend == Backend::Redis && !cfg!(feature = "redis") {
            return Err(self.invalid(
                "backend",
                "redis".into(),
                "needs the `redis` feature of limiter",
            ));
        }
        Ok(backend)
    }
}

/// Default burst: the rate per second of the window (at least 1), so that
/// `"100/s"` can take 100 calls at once and `"60/min"` one per second.
fn default_burst(window: &Rate) -> u32 {
    (window.per_second_f64().round() as u32).clamp(1, window.count())
}

impl OpConfig {
    /// The preset layer of a kind (the seeds' `DB_CONFIG`, `FILE_CONFIG`,
    /// `API_CONFIG`, and matching values for the other kinds).
    ///
    /// | kind | timeout | max concurrent | breaker | retries |
    /// | --- | --- | --- | --- | --- |
    /// | `database` | 10 s | 20 | on | 3 |
    /// | `file_io` | 5 s | 10 | off | 2 |
    /// | `network_io` | 10 s | 50 | on | 2 |
    /// | `cpu_intensive` | 30 s | CPU count | off | 0 |
    /// | `memory` | 30 s | 4 | off | 0 |
    /// | `external_api` | 15 s | 5 | on | 5 |
    /// | `sleep` | 60 s | 100 | off | 0 |
    /// | `subprocess` | 30 s | 4 | off | 0 |
    pub fn preset(kind: OpKind) -> OpConfig {
        let (timeout, max_concurrent, breaker, retries) = match kind {
            OpKind::Database => (10, 20, true, 3),
            OpKind::FileIo => (5, 10, false, 2),
            OpKind::NetworkIo => (10, 50, true, 2),
            OpKind::CpuIntensive => (30, cpu_count(), false, 0),
            OpKind::Memory => (30, 4, false, 0),
            OpKind::ExternalApi => (15, 5, true, 5),
            OpKind::Sleep => (60, 100, false, 0),
            OpKind::Subprocess => (30, 4, false, 0),
        };
        OpConfig {
            kind: Some(kind),
            timeout: Some(Duration::from_secs(timeout)),
            max_concurrent: Some(max_concurrent),
            retry: RetryConfig {
                retries: Some(retries),
                ..RetryConfig::default()
            },
            breaker: BreakerConfig {
                enabled: Some(breaker),
                ..BreakerConfig::default()
            },
            ..OpConfig::default()
        }
    }
}

pub(crate) fn cpu_count() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid_field(cfg: OpConfig) -> &'static str {
        match OpConfig::resolve("op", &[&OpConfig::default(), &cfg]) {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_seeds() {
        let r = OpConfig::resolve("op", &[]).unwrap();
        assert_eq!(r.max_concurrent, 100);
        assert_eq!(r.max_concurrent_per_key, 3);
        assert_eq!(r.queue, 500);
        assert_eq!(r.queue_per_key, 10);
        assert_eq!(r.retry_after, Duration::from_secs(5));
        assert_eq!(r.queue_timeout, Duration::from_secs(30));
        assert!(r.breaker.is_none() && r.retry.is_none() && r.timeout.is_none());
    }

    #[test]
    fn sharing_through_redis_needs_the_redis_backend() {
        let lease = OpConfig {
            mode: Some(SharedMode::Lease),
            rate: Some(crate::spec::parse_rates("10/s").unwrap()),
            ..OpConfig::default()
        };
        let err = OpConfig::resolve("op", &[&OpConfig::default(), &lease]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "op `op`: mode = lease: leases tokens through Redis: needs `backend = \"redis\"`"
        );
        let shared = OpConfig {
            concurrency: Some(ConcurrencyScope::Shared),
            ..OpConfig::default()
        };
        assert_eq!(invalid_field(shared), "concurrency");
        let zero = OpConfig {
            instances: Some(0),
            ..OpConfig::default()
        };
        assert_eq!(invalid_field(zero), "instances");
        let r = OpConfig::resolve("op", &[]).unwrap();
        assert_eq!(
            (r.mode, r.concurrency, r.instances),
            (SharedMode::Exact, ConcurrencyScope::Local, None)
        );
    }

    #[test]
    fn kind_preset_sits_under_declared_values() {
        let declared = OpConfig {
            kind: Some(OpKind::Database),
            max_concurrent: Some(7),
            ..OpConfig::default()
        };
        let r = OpConfig::resolve("db", &[&OpConfig::default(), &declared]).unwrap();
        assert_eq!(r.timeout, Some(Duration::from_secs(10)));
        assert_eq!(r.max_concurrent, 7);
        assert!(r.breaker.is_some());
        assert_eq!(r.retry.unwrap().retries, 3);
    }

    #[test]
    fn zero_values_are_rejected_by_name() {
        assert_eq!(
            invalid_field(OpConfig {
                timeout: Some(Duration::ZERO),
                ..Default::default()
            }),
            "timeout"
        );
        assert_eq!(
            invalid_field(OpConfig {
                max_concurrent: Some(0),
                ..Default::default()
            }),
            "max_concurrent"
        );
        assert_eq!(
            invalid_field(OpConfig {
                burst: Some(0),
                ..Default::default()
            }),
            "burst"
        );
        let mut b = OpConfig::default();
        b.breaker.enabled = Some(true);
        b.breaker.failure_rate = Some(1.5);
        assert_eq!(invalid_field(b), "breaker.failure_rate");
        let mut b = OpConfig::default();
        b.breaker.enabled = Some(true);
        b.breaker.min_calls = Some(50);
        b.breaker.window = Some(10);
        assert_eq!(invalid_field(b), "breaker.min_calls");
    }

    #[test]
    fn burst_with_window_algorithm_is_rejected() {
        let cfg = OpConfig {
            burst: Some(5),
            algorithm: Some(Algorithm::FixedWindow),
            ..OpConfig::default()
        }
        .with_rate("10/s")
        .unwrap();
        assert_eq!(invalid_field(cfg), "burst");
    }

    #[test]
    fn default_burst_is_rate_per_second() {
        let cfg = OpConfig::default().with_rate("100/s").unwrap();
        let r = OpConfig::resolve("op", &[&cfg]).unwrap();
        assert_eq!(r.rate.unwrap().burst, Some(100));
        let cfg = OpConfig::default().with_rate("60/min, 1000/h").unwrap();
        let r = OpConfig::resolve("op", &[&cfg]).unwrap();
        assert_eq!(r.rate.unwrap().burst, Some(1));
    }
}
