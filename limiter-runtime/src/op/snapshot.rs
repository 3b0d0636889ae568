//! What an op knows of itself: [`OpSnapshot`], and [`KeyUsage`] for one
//! key.

use std::sync::Arc;

use serde::Serialize;

use crate::backend::SharedBreakerState;
use crate::breaker::{BreakerSnapshot, BreakerState};
use crate::bulkhead::BulkheadSnapshot;
use crate::keys::LimitKey;
use crate::metrics::{CountersSnapshot, LatencySnapshot};
use crate::rate::RateSnapshot;
use crate::settings::{Backend, ResolvedConfig};

use super::{Op, OpCore, Policy};

/// What an op holds for one key (see [`Op::key_usage`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct KeyUsage {
    /// Calls the per-key rate limit would admit now (`None`: the key has no
    /// rate state).
    pub available: Option<u64>,
    /// The per-key rate limit, e.g. `10/s, 100/min`.
    pub limit: Option<String>,
    /// Calls of the key running.
    pub in_flight: u32,
    /// Calls of the key queued.
    pub queued: u32,
}

/// Everything known about one operation.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct OpSnapshot {
    /// Operation name.
    pub name: Arc<str>,
    /// Configuration in force.
    pub config: ResolvedConfig,
    /// Counters.
    pub counters: CountersSnapshot,
    /// Latency of admitted calls.
    pub latency: LatencySnapshot,
    /// Bulkhead counts.
    pub bulkhead: BulkheadSnapshot,
    /// Breaker state.
    pub breaker: BreakerSnapshot,
    /// Op-wide rate limit.
    pub rate: Option<RateSnapshot>,
    /// Per-key rate limit.
    pub rate_per_key: Option<RateSnapshot>,
    /// Values held for `cache_fallback` and cached responses.
    pub cache_entries: usize,
    /// Keys with a coalesced call in flight.
    pub coalescing: usize,
    /// The adaptive in-flight bound in force, when adaptive.
    pub adaptive_limit: Option<u32>,
}

impl Op {
    /// What the op holds for `key`: calls of the per-key rate limit it
    /// would admit now, and its calls running and queued. `None` when the op
    /// tracks nothing for that key.
    pub fn key_usage(&self, key: &dyn LimitKey) -> Option<KeyUsage> {
        let hash = self.core.shared.hasher.hash(key);
        let now = self.core.clock.now_ns();
        let policy = self.core.policy();
        let rate = policy
            .rate_per_key
            .as_ref()
            .and_then(|k| k.available(hash, now).map(|left| (k, left)));
        let slot = self.core.bulkhead.keys.get(hash);
        if rate.is_none() && slot.is_none() {
            return None;
        }
        let (in_flight, queued) = slot.map_or((0, 0), |s| s.counts());
        Some(KeyUsage {
            available: rate.as_ref().map(|&(_, left)| left),
            limit: rate.map(|(k, _)| {
                k.spec
                    .windows
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }),
            in_flight,
            queued,
        })
    }

    /// Everything known about this op.
    pub fn snapshot(&self) -> OpSnapshot {
        let core = &*self.core;
        let now = core.clock.now_ns();
        let policy = core.policy();
        OpSnapshot {
            name: core.name.clone(),
            config: policy.cfg.clone(),
            counters: core.metrics.counters_snapshot(),
            latency: core.metrics.latency_snapshot(),
            bulkhead: core.bulkhead.snapshot(),
            breaker: core.breaker_view(policy, now),
            rate: policy
                .rate
                .as_ref()
                .zip(policy.cfg.rate.as_ref())
                .map(|(s, spec)| RateSnapshot {
                    spec: spec.clone(),
                    available: Some(s.available(now)),
                    keys: None,
                    keys_evicted: None,
                    keys_forgotten: None,
                }),
            rate_per_key: policy.rate_per_key.as_ref().map(|k| RateSnapshot {
                spec: k.spec.clone(),
                available: None,
                keys: Some(k.len()),
                keys_evicted: Some(k.evicted()),
                keys_forgotten: Some(k.forgotten()),
            }),
            cache_entries: core.cache.len(),
            coalescing: core.flights.len(),
            adaptive_limit: policy
                .cfg
                .adaptive
                .as_ref()
                .map(|_| core.adaptive.current()),
        }
    }
}

impl OpCore {
    /// The breaker as monitoring shows it: the one kept in the shared store
    /// (as last read) for an op that keeps it there, else this process's.
    fn breaker_view(&self, policy: &Policy, now: u64) -> BreakerSnapshot {
        let mut snap = self.breaker.snapshot(now);
        if policy.cfg.backend != Backend::Redis || policy.cfg.breaker.is_none() {
            return snap;
        }
        let shared = *self
            .shared_breaker
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(view) = shared {
            snap.state = match (view.state, view.retry_after) {
                (SharedBreakerState::Closed, _) => BreakerState::Closed,
                (SharedBreakerState::HalfOpen, _) => BreakerState::HalfOpen,
                (SharedBreakerState::Open, None) => BreakerState::ForcedOpen,
                (SharedBreakerState::Open, Some(_)) => BreakerState::Open,
            };
            snap.retry_after_ms = view.retry_after.map(|d| d.as_millis() as u64);
            snap.window_calls = view.window_calls;
            snap.window_failures = view.window_failures;
            snap.failure_rate = if view.window_calls == 0 {
                0.0
            } else {
                f64::from(view.window_failures) / f64::from(view.window_calls)
            };
        }
        snap
    }
}
