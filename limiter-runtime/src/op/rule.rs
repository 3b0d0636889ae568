//! The op side of a `LimiterLayer` rule. A rule is an op whose per-key
//! rate is the rule's windows, keyed by client id: the layer takes each
//! request from that rate through these calls, so the op's run-time
//! overrides (`Registry::configure`, `limiter.toml`, the environment), its
//! backend and degradation, its on/off switch and its metrics apply to the
//! rule as to any op.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::error::LimitError;
use crate::keys::LimitKey;
use crate::metrics::{CallOutcome, Entry, OpMetrics};
use crate::rate::KeyedRate;
use crate::settings::{Backend, Degradation};

use super::Op;

/// The per-key rate of an op in force, with what decides when it is kept
/// in the shared store and the store cannot answer.
pub(crate) struct KeyedTerms {
    pub(crate) keyed: Arc<KeyedRate>,
    pub(crate) backend: Backend,
    pub(crate) degradation: Degradation,
    /// The hint of a `fail_closed` refusal.
    pub(crate) retry_after: Duration,
}

impl Op {
    /// The per-key rate in force, or `None` when the op limits nothing now
    /// (turned off, by its configuration or the registry's switch, or no
    /// per-key rate).
    pub(crate) fn keyed_terms(&self) -> Option<KeyedTerms> {
        let core = &*self.core;
        if !core.shared.enabled.load(Ordering::Relaxed) {
            return None;
        }
        let policy = core.policy();
        if !policy.cfg.enabled {
            return None;
        }
        Some(KeyedTerms {
            keyed: Arc::clone(policy.rate_per_key.as_ref()?),
            backend: policy.cfg.backend,
            degradation: policy.cfg.degradation,
            retry_after: policy.cfg.retry_after,
        })
    }

    /// The rule's per-key rate taken from this instance's lease of
    /// `shared_key`'s bucket, when the op runs in `mode = "lease"`:
    /// `Ok(held)` (tokens still held here), a refusal, or why the store
    /// could not answer. `None`: not leased, check it exactly.
    pub(crate) async fn take_leased(
        &self,
        shared_key: u64,
    ) -> Option<Result<u64, Result<crate::rate::Refusal, String>>> {
        let core = &*self.core;
        let policy = core.policy();
        let (Some(leases), Some(spec)) = (&policy.leases, &policy.cfg.rate_per_key) else {
            return None;
        };
        if spec.algorithm != crate::settings::Algorithm::TokenBucket {
            return None;
        }
        core.take_leased(leases, policy, spec, Some(shared_key), 1)
            .await
            .transpose()
    }

    /// How many tokens one request takes from the in-process limiter while
    /// the shared store cannot answer: the instances sharing the op, so
    /// that each applies its share of the limit.
    pub(crate) fn degraded_share(&self) -> u64 {
        let core = &*self.core;
        u64::from(core.instances(core.policy(), core.store().as_ref()))
    }

    /// `key`'s hash in this op's per-key tables.
    pub(crate) fn key_hash(&self, key: &dyn LimitKey) -> u64 {
        self.core.shared.hasher.hash(key)
    }

    /// A reading of the op's clock (the time its rate state runs on).
    pub(crate) fn now_ns(&self) -> u64 {
        self.core.clock.now_ns()
    }

    /// Counts a request the op let through.
    pub(crate) fn count_admitted(&self) {
        self.core.metrics.entered(true);
    }

    /// Counts a request the op refused.
    pub(crate) fn count_refused(&self, err: &LimitError) {
        self.core.metrics.reject(err);
    }

    /// Counts a decision taken without the shared store, which could not
    /// answer.
    pub(crate) fn count_fallback(&self) {
        OpMetrics::inc(&self.core.metrics.counters.backend_fallbacks);
    }

    /// Records how a request the op let through ended (`Cancelled`: the
    /// client went away first; `Excused`: an op inside refused it) and how
    /// long it took; counted already on entry.
    pub(crate) fn count_finished(&self, outcome: CallOutcome, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.core.metrics.finish(outcome, ns, 0, Entry::Counted);
    }
}
