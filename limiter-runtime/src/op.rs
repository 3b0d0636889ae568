//! One named operation: its configuration layers, its limiters, its metrics,
//! and admission (breaker → rate → bulkhead).

mod admission;
mod blocking;
mod charge;
mod lease;
mod permit;
mod remote;
#[cfg(feature = "axum")]
mod rule;
mod shared_place;
mod snapshot;

pub use admission::Place;
use admission::TicketGuard;
pub(crate) use admission::{Admission, Admitted, Deferred};
pub use permit::Permit;
#[cfg(feature = "axum")]
pub(crate) use rule::KeyedTerms;
pub use snapshot::{KeyUsage, OpSnapshot};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::breaker::{Breaker, Ticket};
use crate::bulkhead::{Bulkhead, Limits};
use crate::cache::ValueCache;
use crate::clock::{duration_ns, Clock};
use crate::error::{ConfigError, LimitError};
use crate::keys::LimitKey;
use crate::metrics::{CallOutcome, Entry, OpMetrics};
use crate::rate::{KeyedOutcome, KeyedRate, RateState};
use crate::settings::{OpConfig, ResolvedConfig};
use crate::shared::Shared;

/// The limiters in force, swapped as a whole when the configuration changes.
pub(crate) struct Policy {
    pub(crate) cfg: ResolvedConfig,
    /// What a call needs after admission, copied out at admission.
    terms: Terms,
    /// Limits on and kept in process: what [`OpCore::enter`] decides alone.
    local: bool,
    rate: Option<Arc<RateState>>,
    rate_per_key: Option<Arc<KeyedRate>>,
    /// Slices of the shared buckets, under `mode = "lease"`.
    leases: Option<lease::Leases>,
    /// Admission can be decided in line from the op-wide lease: the op
    /// leases its only rate and keeps its breaker and bulkhead here.
    lease_in_line: bool,
}

#[derive(Default)]
struct Layers {
    declared: OpConfig,
    overrides: OpConfig,
}

pub(crate) struct OpCore {
    pub(crate) name: Arc<str>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) clock: Clock,
    layers: Mutex<Layers>,
    /// Every policy ever installed, the one in force at `current`. Read on
    /// every call: an index load and a lookup, with no reference count and
    /// no guard (an `ArcSwap` load and its guard cost a call about 90
    /// instructions and two full barriers). Policies are installed only when
    /// the configuration changes, so the list stays short; a replaced per-key
    /// table is emptied when it goes out of force (see [`OpCore::install`]).
    policies: boxcar::Vec<Policy>,
    current: AtomicUsize,
    pub(crate) breaker: Breaker,
    pub(crate) bulkhead: Arc<Bulkhead>,
    pub(crate) metrics: Arc<OpMetrics>,
    pub(crate) cache: ValueCache,
    pub(crate) flights: crate::coalesce::Flights,
    pub(crate) adaptive: crate::adaptive::Aimd,
    retries_ignored_warned: std::sync::atomic::AtomicBool,
    /// The name of the `LimiterLayer` rule this op is the limit of.
    pub(crate) rule: std::sync::OnceLock<Arc<str>>,
    /// The breaker kept in the shared store as last read by monitoring
    /// (ops with `backend = redis` and a breaker).
    pub(crate) shared_breaker: Mutex<Option<crate::backend::SharedBreakerView>>,
    /// Calls of this instance past the op's shared bulkhead
    /// (`concurrency = "shared"`).
    shared_places: shared_place::SharedPlaces,
}

/// The identity of a call to coalesce: its key's hash (see [`Op::call_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallKey(Option<u64>);

/// A handle on one operation; cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), limiter_runtime::LimitError> {
/// let reg = limiter_runtime::Registry::new();
/// let user = String::from("alice");
/// let rows = reg
///     .op("db")
///     .run(Some(&user), || async { Ok::<_, limiter_runtime::LimitError>(42) })
///     .await?;
/// assert_eq!(rows, 42);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Op {
    pub(crate) core: Arc<OpCore>,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Op").field("name", &self.core.name).finish()
    }
}

impl OpCore {
    pub(crate) fn new(name: Arc<str>, shared: Arc<Shared>, cfg: ResolvedConfig) -> Self {
        let policy = Policy::build(&cfg, None);
        let clock = Clock::of(&shared.clock);
        Self {
            breaker: Breaker::new(name.clone(), cfg.breaker.clone()),
            bulkhead: Arc::new(Bulkhead::new(name.clone(), Limits::of(&cfg), cfg.max_keys)),
            cache: ValueCache::new(cfg.max_keys),
            name,
            shared,
            clock,
            layers: Mutex::new(Layers::default()),
            policies: boxcar::Vec::from_iter([policy]),
            current: AtomicUsize::new(0),
            metrics: Arc::new(OpMetrics::default()),
            flights: crate::coalesce::Flights::default(),
            adaptive: crate::adaptive::Aimd::new(cfg.max_concurrent, cfg.adaptive.clone()),
            retries_ignored_warned: std::sync::atomic::AtomicBool::new(false),
            rule: std::sync::OnceLock::new(),
            shared_breaker: Mutex::new(None),
            shared_places: shared_place::SharedPlaces::default(),
        }
    }

    /// Resolves the layers with `change` applied, without keeping it.
    pub(crate) fn resolve_with(
        &self,
        defaults: &OpConfig,
        declared: Option<&OpConfig>,
        overrides: Option<&OpConfig>,
    ) -> Result<ResolvedConfig, ConfigError> {
        let layers = self.layers.lock().unwrap_or_else(|e| e.into_inner());
        OpConfig::resolve(
            &self.name,
            &[
                defaults,
                declared.unwrap_or(&layers.declared),
                overrides.unwrap_or(&layers.overrides),
            ],
        )
    }

    /// Keeps new layers and puts their resolution in force. Live state
    /// (breaker state, in-flight counts, waiters) carries over.
    pub(crate) fn install(
        &self,
        declared: Option<OpConfig>,
        overrides: Option<OpConfig>,
        cfg: ResolvedConfig,
    ) {
        {
            let mut layers = self.layers.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(d) = declared {
                layers.declared = d;
            }
            if let Some(o) = overrides {
                layers.overrides = o;
            }
        }
        let now = self.clock.now_ns();
        self.breaker.set_policy(cfg.breaker.clone(), now);
        // Under the adaptive limit's lock, so that no late adaptive step
        // overwrites the new bound (see `observe_adaptive`).
        self.adaptive
            .reset(cfg.max_concurrent, cfg.adaptive.clone(), || {
                self.bulkhead.set_limits(Limits::of(&cfg));
            });
        self.bulkhead.keys.set_cap(cfg.max_keys);
        self.cache.set_cap(cfg.max_keys);
        let old = self.policy();
        if old.cfg == cfg {
            return; // nothing changed: the policy in force stays
        }
        let new = Policy::build(&cfg, Some(old));
        let replaced = match (
            &old.rate_per_key,
            same_keyed(&old.rate_per_key, &new.rate_per_key),
        ) {
            (Some(was), false) => Some(Arc::clone(was)),
            _ => None,
        };
        let index = self.policies.push(new);
        self.current.store(index, Ordering::Release);
        self.return_leases(old);
        if let Some(was) = replaced {
            // Out of force for good, once the new policy is published: free
            // its keys (the policy that held it is kept, see `policies`).
            was.clear();
        }
    }

    /// The policy in force.
    #[inline]
    pub(crate) fn policy(&self) -> &Policy {
        let index = self.current.load(Ordering::Acquire);
        match self.policies.get(index) {
            Some(p) => p,
            None => unreachable!("the current policy was installed before its index was stored"),
        }
    }

    /// Says, once, that configured retries cannot apply to a call site that
    /// runs its body once (an attribute without `retries = N`).
    pub(crate) fn warn_once_retries_ignored(&self) {
        if !self.retries_ignored_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                op = &*self.name,
                "retries are configured for this op, but its call site runs the body once (a future cannot be re-made); add `retries = N` to the attribute to enable them"
            );
        }
    }

    /// Whether the declared layer was set (by an attribute or `declare`).
    pub(crate) fn is_declared(&self) -> bool {
        self.layers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .declared
            != OpConfig::default()
    }

    fn reject(&self, err: LimitError) -> LimitError {
        self.metrics.reject(&err);
        crate::shed::note();
        err
    }

    /// Records how an admitted call that ran from `start` to `end`
    /// (readings of the op's clock) ended: breaker outcome (failures, slow
    /// calls; nothing but the probe place for a cancelled call) and
    /// metrics, counting its `entry` if that is still to be done. Reads no
    /// policy unless the op's concurrency limit is adaptive.
    #[inline]
    pub(crate) fn complete(
        &self,
        ticket: Ticket,
        terms: &Terms,
        (start, end): (u64, u64),
        outcome: CallOutcome,
        poll_ns: u64,
        entry: Entry,
    ) {
        let elapsed = end.saturating_sub(start);
        let slow = elapsed > terms.slow_call_ns;
        // A cancelled call or an excused error says nothing of what the op
        // protects: neither the adaptive limit nor the breaker hears of it
        // (a probe's place is given back).
        let neutral = matches!(outcome, CallOutcome::Cancelled | CallOutcome::Excused);
        if terms.adaptive && !neutral {
            self.observe_adaptive(outcome, elapsed);
        }
        if slow {
            OpMetrics::inc(&self.metrics.counters.slow_calls);
        }
        match (outcome, ticket) {
            _ if neutral => self.release_ticket(ticket),
            (_, Ticket::Shared(t)) => self.settle_shared(t, Some(outcome.is_failure() || slow)),
            _ => self
                .breaker
                .record(ticket, outcome.is_failure() || slow, end),
        }
        self.metrics.finish(outcome, elapsed, poll_ns, entry);
    }

    /// Feeds an outcome to the adaptive concurrency limit, under the
    /// adaptive policy in force now (nothing if the op is no longer
    /// adaptive). A new limit reaches the bulkhead under the adaptive
    /// limit's lock (lock order: adaptive, then bulkhead), so that a
    /// reconfiguration cannot slip in between.
    fn observe_adaptive(&self, outcome: CallOutcome, elapsed_ns: u64) {
        let elapsed = Duration::from_nanos(elapsed_ns);
        if let Some(limit) = self
            .adaptive
            .observe(outcome.is_failure(), elapsed, |limit| {
                self.bulkhead.set_max(limit);
            })
        {
            tracing::debug!(
                op = &*self.name,
                limit,
                "adaptive concurrency limit changed"
            );
        }
    }
}

impl Policy {
    /// Builds the limiters for `cfg`, keeping the state of `old` where the
    /// rate limit did not change.
    fn build(cfg: &ResolvedConfig, old: Option<&Policy>) -> Self {
        let rate = cfg.rate.as_ref().map(|spec| match old {
            Some(Policy {
                cfg:
                    ResolvedConfig {
                        rate: Some(old_spec),
                        ..
                    },
                rate: Some(state),
                ..
            }) if old_spec == spec => Arc::clone(state),
            _ => Arc::new(RateState::new(spec)),
        });
        let rate_per_key = cfg.rate_per_key.as_ref().map(|spec| match old {
            Some(Policy {
                rate_per_key: Some(keyed),
                ..
            }) if keyed.spec == *spec => {
                keyed.set_cap(cfg.max_keys);
                Arc::clone(keyed)
            }
            _ => Arc::new(KeyedRate::new(spec.clone(), cfg.max_keys)),
        });
        Self {
            cfg: cfg.clone(),
            terms: Terms::of(cfg),
            local: cfg.enabled && cfg.backend == crate::settings::Backend::Local,
            rate,
            rate_per_key,
            leases: (cfg.mode == crate::settings::SharedMode::Lease).then(|| {
                lease::Leases::new(cfg.rate.as_ref(), cfg.rate_per_key.as_ref(), cfg.max_keys)
            }),
            lease_in_line: cfg.mode == crate::settings::SharedMode::Lease
                && cfg.breaker.is_none()
                && cfg.rate_per_key.is_none()
                && cfg.concurrency == crate::settings::ConcurrencyScope::Local
                && cfg
                    .rate
                    .as_ref()
                    .is_some_and(|r| r.algorithm == crate::settings::Algorithm::TokenBucket),
        }
    }
}

/// What a call needs of its op's policy once admitted, copied out at
/// admission so that finishing it reads no policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Terms {
    /// Nanoseconds; `u64::MAX` for none. Plain integers keep this small
    /// and cheap to copy through admission.
    pub(crate) timeout_ns: u64,
    pub(crate) slow_poll_ns: u64,
    /// Nanoseconds; `u64::MAX` for none.
    slow_call_ns: u64,
    adaptive: bool,
    /// Whether retries are configured.
    pub(crate) retries: bool,
}

impl Terms {
    fn of(cfg: &ResolvedConfig) -> Self {
        Self {
            timeout_ns: cfg.timeout.map_or(u64::MAX, duration_ns),
            slow_poll_ns: duration_ns(cfg.slow_poll),
            slow_call_ns: cfg
                .breaker
                .as_ref()
                .and_then(|b| b.slow_call)
                .map_or(u64::MAX, duration_ns),
            adaptive: cfg.adaptive.is_some(),
            retries: cfg.retry.is_some(),
        }
    }

    /// The call's timeout.
    pub(crate) fn timeout(&self) -> Option<Duration> {
        (self.timeout_ns != u64::MAX).then(|| Duration::from_nanos(self.timeout_ns))
    }
}

impl Op {
    /// Operation name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// Runs the call `f` (typically a limited call of this op) at most once
    /// at a time per key: callers that arrive while an identical call runs
    /// share its value instead of running their own; with `ttl`, a value is
    /// also answered from the cache for that long without running at all.
    ///
    /// A failed or cancelled call shares nothing: its followers run their
    /// own. The value must be `Clone` to be shared.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), limiter_runtime::LimitError> {
    /// use std::time::Duration;
    /// let reg = limiter_runtime::Registry::new();
    /// let op = reg.op("profile");
    /// let user = 7u64;
    /// let load = || op.run(Some(&user), || async { Ok::<_, limiter_runtime::LimitError>("ann".to_string()) });
    /// let (a, b) = tokio::join!(
    ///     op.coalesced(Some(&user), Some(Duration::from_secs(5)), load),
    ///     op.coalesced(Some(&user), Some(Duration::from_secs(5)), load),
    /// );
    /// assert_eq!((a?, b?), ("ann".to_string(), "ann".to_string()));
    /// assert_eq!(op.snapshot().counters.succeeded, 1, "ran once");
    /// # Ok(()) }
    /// ```
    pub fn coalesced<'a, T, E, F, Fut>(
        &'a self,
        key: Option<&dyn LimitKey>,
        ttl: Option<Duration>,
        f: F,
    ) -> impl std::future::Future<Output = Result<T, E>> + use<'a, T, E, F, Fut>
    where
        T: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        self.coalesced_by(self.call_key(key), ttl, f)
    }

    /// The identity of a call for [`coalesced_by`](Self::coalesced_by): the
    /// key's hash, taken at once so that the key can then be moved.
    pub fn call_key(&self, key: Option<&dyn LimitKey>) -> CallKey {
        CallKey(key.map(|k| self.core.shared.hasher.hash(k)))
    }

    /// [`coalesced`](Self::coalesced) with a key hashed beforehand.
    pub fn coalesced_by<'a, T, E, F, Fut>(
        &'a self,
        key: CallKey,
        ttl: Option<Duration>,
        f: F,
    ) -> impl std::future::Future<Output = Result<T, E>> + use<'a, T, E, F, Fut>
    where
        T: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let key = key.0;
        async move {
            let core = &*self.core;
            if let Some(ttl) = ttl {
                if let Some(v) = core.cache.get::<T>(key, Some(ttl)) {
                    OpMetrics::inc(&core.metrics.counters.cache_hits);
                    return Ok(v);
                }
            }
            match core.flights.join(key) {
                crate::coalesce::Role::Follower(rx) => {
                    if let Some(v) = crate::coalesce::follow::<T>(rx).await {
                        OpMetrics::inc(&core.metrics.counters.coalesced);
                        return Ok(v);
                    }
                    f().await
                }
                crate::coalesce::Role::Leader(lead) => {
                    let out = f().await;
                    match &out {
                        Ok(v) => {
                            if ttl.is_some() {
                                core.cache.store(key, v.clone());
                            }
                            lead.publish(Some(Arc::new(v.clone())));
                        }
                        Err(_) => lead.publish(None),
                    }
                    out
                }
            }
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> ResolvedConfig {
        self.core.policy().cfg.clone()
    }

    /// Holds the breaker open until [`reset_breaker`](Self::reset_breaker).
    /// Has no effect when the op has no breaker.
    pub fn force_open_breaker(&self) {
        self.core.breaker.force_open(self.core.clock.now_ns());
        self.core.set_shared_breaker(true);
    }

    /// Closes the breaker and clears its window (in Redis too, for ops
    /// that keep it there).
    pub fn reset_breaker(&self) {
        self.core.breaker.reset(self.core.clock.now_ns());
        self.core.set_shared_breaker(false);
    }

    /// Takes one call from `key`'s per-key rate limit without running
    /// anything, as governor's `check_key` does: for work the caller
    /// accounts for itself (a message consumer, a loop of sends). `Ok` when
    /// admitted or when the op has no per-key rate; `RateLimited` (counted
    /// as a refusal) or `Overloaded` (the key table is full of busy keys)
    /// otherwise. Checks the in-process limit: for an op kept in Redis that
    /// is the one its `degradation = "local"` falls back to.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use limiter_runtime::{OpConfig, Registry};
    /// let reg = Registry::new();
    /// reg.configure("send", OpConfig::default().with_rate_per_key("2/s")?)?;
    /// let op = reg.op("send");
    /// op.check_key(&"alice")?;
    /// op.check_key(&"alice")?;
    /// assert!(op.check_key(&"alice").is_err());
    /// assert!(op.check_key(&"bob").is_ok());
    /// # Ok(()) }
    /// ```
    pub fn check_key(&self, key: &dyn LimitKey) -> Result<(), LimitError> {
        let core = &*self.core;
        let hash = core.shared.hasher.hash(key);
        let now = core.clock.now_ns();
        let policy = core.policy();
        let Some(keyed) = &policy.rate_per_key else {
            return Ok(());
        };
        let err = match keyed.try_acquire(hash, now, 1) {
            KeyedOutcome::Admitted => return Ok(()),
            KeyedOutcome::Limited(refusal) => LimitError::RateLimited {
                op: core.name.clone(),
                retry_after: refusal.wait,
                quota: refusal.quota(&keyed.spec, true),
            },
            KeyedOutcome::TableFull => LimitError::Overloaded {
                op: core.name.clone(),
                retry_after: policy.cfg.retry_after,
            },
        };
        Err(core.reject(err))
    }

    /// Calls the in-process rate limit would admit now: `key`'s (`None`
    /// when the op has no per-key rate, or the key is not tracked: it
    /// has its whole budget), or with no key the op-wide rate's (`None`
    /// when the op has none). For an op kept in Redis this is the limiter
    /// its `degradation = "local"` falls back to.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use limiter_runtime::{OpConfig, Registry};
    /// let reg = Registry::new();
    /// reg.configure("send", OpConfig::default().with_rate_per_key("5/s")?)?;
    /// let op = reg.op("send");
    /// op.check_key(&"alice")?;
    /// assert_eq!(op.available(Some(&"alice")), Some(4));
    /// assert_eq!(op.available(Some(&"bob")), None);
    /// # Ok(()) }
    /// ```
    pub fn available(&self, key: Option<&dyn LimitKey>) -> Option<u64> {
        let core = &*self.core;
        let now = core.clock.now_ns();
        let policy = core.policy();
        match key {
            Some(key) => {
                let hash = core.shared.hasher.hash(key);
                policy.rate_per_key.as_ref()?.available(hash, now)
            }
            None => policy.rate.as_ref().map(|r| r.available(now)),
        }
    }

    /// Charges `n` calls to the op-wide rate and to `key`'s rate after the
    /// fact, whatever is left: for work whose size was known only once it
    /// ran, when the call was not made through [`Call::charge`](crate::Call::charge)
    /// (a stream's total, a job finished elsewhere). A key charged past
    /// its budget is refused until the debt is paid back. For an op kept
    /// in Redis the charge is sent off the caller's path.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use limiter_runtime::{OpConfig, Registry};
    /// let reg = Registry::new();
    /// reg.configure("llm", OpConfig::default().with_rate_per_key("100/min")?)?;
    /// let op = reg.op("llm");
    /// op.charge(Some(&"alice"), 150u32);
    /// assert!(op.check_key(&"alice").is_err(), "alice owes 50 tokens");
    /// # Ok(()) }
    /// ```
    pub fn charge(&self, key: Option<&dyn LimitKey>, n: impl crate::cost::IntoCost) {
        let core = &self.core;
        let hash = key.map(|k| core.shared.hasher.hash(k));
        let shared_key = key.and_then(|k| core.shared_key_name(k));
        core.charge(hash, shared_key, n.into_cost());
    }

    /// Forgets the per-key state of `key`: its rate limit state, and its
    /// bulkhead counts when no call of that key is running or waiting.
    /// Returns whether anything was forgotten.
    pub fn reset_key(&self, key: &dyn LimitKey) -> bool {
        let hash = self.core.shared.hasher.hash(key);
        let rate = self
            .core
            .policy()
            .rate_per_key
            .as_ref()
            .is_some_and(|k| k.remove(hash));
        let bulk = self.core.bulkhead.keys.remove_unused(hash);
        rate || bulk
    }

    /// Drops the state of idle keys now (it is also dropped when the key
    /// table fills up). Returns how many keys were dropped.
    pub fn sweep_keys(&self) -> usize {
        let now = self.core.clock.now_ns();
        let rate = self
            .core
            .policy()
            .rate_per_key
            .as_ref()
            .map_or(0, |k| k.sweep(now));
        rate + self.core.bulkhead.keys.sweep(now)
    }

    /// What the op's bulkhead holds now: calls running, holding a queue
    /// place, and waiting for one (`overload = "block"`).
    ///
    /// ```
    /// # use limiter_runtime::{Load, Registry};
    /// let reg = Registry::new();
    /// assert_eq!(reg.op("idle").load(), Load { in_flight: 0, queued: 0, blocked: 0 });
    /// ```
    pub fn load(&self) -> Load {
        let (in_flight, queued, blocked) = self.core.bulkhead.counts();
        Load {
            in_flight,
            queued,
            blocked,
        }
    }
}

/// What an op's bulkhead holds at one moment (see [`Op::load`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Load {
    /// Calls running (holding a place).
    pub in_flight: u32,
    /// Calls waiting in the queue for a place.
    pub queued: u32,
    /// Calls waiting for a queue place (`overload = "block"`).
    pub blocked: u32,
}

/// Whether two policies share one per-key rate table.
fn same_keyed(a: &Option<Arc<KeyedRate>>, b: &Option<Arc<KeyedRate>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
