//! Readiness of the service as its limits see it, for load balancers and
//! Kubernetes probes (`GET /monitoring/health`): ready unless a critical
//! alert is unresolved, a breaker is open, or the Redis that an op keeps
//! its state in is down. Liveness never depends on any of that.

use serde::Serialize;

use crate::breaker::BreakerState;
use crate::monitor::{AlertLevel, AlertState};
use crate::registry::Registry;
use crate::settings::Backend;

/// Why the service is not ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HealthReason {
    /// A critical alert is active or acknowledged (not resolved).
    CriticalAlert {
        /// The alert's id.
        id: u64,
        /// What it is about (`op db`, `route GET /x`).
        subject: String,
        /// Its sentence with the figures.
        message: String,
    },
    /// An op's breaker is open (or held open by hand).
    BreakerOpen {
        /// The op.
        op: String,
        /// Milliseconds until probes are let through (none while held).
        retry_after_ms: Option<u64>,
    },
    /// Ops keep their state in Redis and Redis does not answer (or none is
    /// configured).
    BackendDown {
        /// The ops kept there.
        ops: Vec<String>,
        /// What is wrong.
        detail: String,
    },
}

/// The readiness report (`GET /monitoring/health`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// `"ok"` or `"unavailable"`.
    pub status: &'static str,
    /// Every reason the service is not ready (empty when ready).
    pub reasons: Vec<HealthReason>,
}

impl Health {
    /// Whether the service is ready (no reason against it).
    pub fn is_ready(&self) -> bool {
        self.reasons.is_empty()
    }
}

impl Registry {
    /// Whether the service is ready to take traffic, and if not why:
    /// unresolved critical alerts, open breakers, a down Redis for the ops
    /// kept there. Reads the monitor's last sample and the ops' state now;
    /// asks no dependency.
    ///
    /// ```
    /// let reg = limiter_runtime::Registry::new();
    /// assert!(reg.health().is_ready());
    /// ```
    pub fn health(&self) -> Health {
        let mut reasons = critical_alerts(self);
        reasons.extend(open_breakers(self));
        reasons.extend(backend_down(self));
        Health {
            status: if reasons.is_empty() {
                "ok"
            } else {
                "unavailable"
            },
            reasons,
        }
    }
}

fn critical_alerts(reg: &Registry) -> Vec<HealthReason> {
    reg.monitor()
        .alerts()
        .into_iter()
        .filter(|a| a.level == AlertLevel::Critical && a.state != AlertState::Resolved)
        .map(|a| HealthReason::CriticalAlert {
            id: a.id,
            subject: a.subject,
            message: a.message,
        })
        .collect()
}

fn open_breakers(reg: &Registry) -> Vec<HealthReason> {
    reg.ops()
        .iter()
        .map(|op| (op.name().to_owned(), op.snapshot().breaker))
        .filter(|(_, b)| matches!(b.state, BreakerState::Open | BreakerState::ForcedOpen))
        .map(|(op, b)| HealthReason::BreakerOpen {
            op,
            retry_after_ms: b.retry_after_ms,
        })
        .collect()
}

fn backend_down(reg: &Registry) -> Option<HealthReason> {
    let ops: Vec<String> = reg
        .ops()
        .iter()
        .filter(|op| op.config().backend == Backend::Redis)
        .map(|op| op.name().to_owned())
        .collect();
    if ops.is_empty() {
        return None;
    }
    let detail = store_problem(reg)?;
    Some(HealthReason::BackendDown { ops, detail })
}

/// What is wrong with the registry's shared store, if anything.
#[cfg(feature = "redis")]
fn store_problem(reg: &Registry) -> Option<String> {
    match reg.redis() {
        Some(redis) if redis.stats().paused => {
            Some("Redis failed repeatedly and is paused between probes".into())
        }
        Some(_) => None,
        None if reg.has_shared_state() => None,
        None => Some("no Redis is configured (LIMITER_REDIS_URL, Registry::set_redis)".into()),
    }
}

/// What is wrong with the registry's shared store, if anything.
#[cfg(not(feature = "redis"))]
fn store_problem(reg: &Registry) -> Option<String> {
    (!reg.has_shared_state()).then(|| "no shared store is set".into())
}
