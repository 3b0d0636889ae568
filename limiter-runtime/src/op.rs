//! One named operation: its configuration layers, its limiters, its metrics,
//! and admission (breaker → rate → bulkhead).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::breaker::{Breaker, BreakerSnapshot, Ticket};
use crate::bulkhead::{BulkPermit, Bulkhead, BulkheadSnapshot, Limits};
use crate::cache::ValueCache;
use crate::clock::{duration_ns, Clock};
use crate::error::{ConfigError, LimitError};
use crate::keys::LimitKey;
use crate::metrics::{CallOutcome, CountersSnapshot, LatencySnapshot, OpMetrics};
use crate::rate::{KeyedOutcome, KeyedRate, RateSnapshot, RateState};
use crate::settings::{OpConfig, ResolvedConfig};
use crate::shared::Shared;

/// The limiters in force, swapped as a whole when the configuration changes.
pub(crate) struct Policy {
    pub(crate) cfg: ResolvedConfig,
    /// What a call needs after admission, copied out at admission.
    terms: Terms,
    rate: Option<Arc<RateState>>,
    rate_per_key: Option<Arc<KeyedRate>>,
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
    pub(crate) policy: ArcSwap<Policy>,
    pub(crate) breaker: Breaker,
    pub(crate) bulkhead: Arc<Bulkhead>,
    pub(crate) metrics: Arc<OpMetrics>,
    pub(crate) cache: ValueCache,
    pub(crate) flights: crate::coalesce::Flights,
    pub(crate) adaptive: crate::adaptive::Aimd,
    retries_ignored_warned: std::sync::atomic::AtomicBool,
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
        Self {
            breaker: Breaker::new(name.clone(), cfg.breaker.clone()),
            bulkhead: Arc::new(Bulkhead::new(name.clone(), Limits::of(&cfg), cfg.max_keys)),
            cache: ValueCache::new(cfg.max_keys),
            name,
            shared,
            clock: Clock::new(),
            layers: Mutex::new(Layers::default()),
            policy: ArcSwap::from_pointee(policy),
            metrics: Arc::new(OpMetrics::default()),
            flights: crate::coalesce::Flights::default(),
            adaptive: crate::adaptive::Aimd::new(cfg.max_concurrent, cfg.adaptive.clone()),
            retries_ignored_warned: std::sync::atomic::AtomicBool::new(false),
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
        let old = self.policy.load_full();
        self.policy.store(Arc::new(Policy::build(&cfg, Some(&old))));
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
        err
    }

    /// Records how an admitted call ended at `end` (a reading of the op's
    /// clock): breaker outcome (failures, slow calls; nothing but the probe
    /// place for a cancelled call) and metrics. Reads no policy unless the
    /// op's concurrency limit is adaptive.
    pub(crate) fn complete(
        &self,
        ticket: Ticket,
        terms: &Terms,
        start: u64,
        end: u64,
        outcome: CallOutcome,
    ) {
        let elapsed = end.saturating_sub(start);
        let slow = elapsed > terms.slow_call_ns;
        if terms.adaptive && outcome != CallOutcome::Cancelled {
            self.observe_adaptive(outcome, elapsed);
        }
        if slow {
            OpMetrics::inc(&self.metrics.counters.slow_calls);
        }
        if outcome == CallOutcome::Cancelled {
            self.release_ticket(ticket);
        } else {
            let failed = outcome.is_failure() || slow;
            #[cfg(feature = "redis")]
            if let Ticket::Shared(t) = ticket {
                self.settle_shared(t, Some(failed));
            }
            self.breaker.record(ticket, failed, end);
        }
        self.metrics.finish(outcome, elapsed);
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

    /// Breaker, then rate limits, then a bulkhead place held through
    /// `bulkhead`. Returns what the call runs with.
    pub(crate) async fn admit<B>(
        &self,
        bulkhead: B,
        key: Option<u64>,
        shared_key: Option<u64>,
        priority: i64,
    ) -> Result<Admitted<B>, LimitError>
    where
        B: std::ops::Deref<Target = Bulkhead>,
    {
        match self.enter(bulkhead, key) {
            Entered::Admitted(a) => Ok(a),
            Entered::Refused(e) => Err(e),
            Entered::Later(later) => {
                Box::pin(self.admit_later(later, key, shared_key, priority)).await
            }
        }
    }

    /// Admission as far as it goes without waiting. The usual path reads
    /// the clock and the policy once, takes the breaker's state with one
    /// load, the rate with one compare-and-swap and the bulkhead place with
    /// another, and allocates nothing. What must wait (a queue place, a
    /// Redis round trip) is left to [`admit_later`](Self::admit_later).
    #[inline]
    pub(crate) fn enter<B>(&self, bulkhead: B, key: Option<u64>) -> Entered<B>
    where
        B: std::ops::Deref<Target = Bulkhead>,
    {
        let now = self.clock.now_ns();
        let policy = self.policy.load();
        let terms = policy.terms;
        if !(policy.cfg.enabled && self.shared.enabled.load(Ordering::Relaxed)) {
            self.metrics.entered(false);
            return Entered::Admitted(Admitted {
                ticket: Ticket::Bypass,
                bulk: None,
                terms,
                start: now,
            });
        }
        #[cfg(feature = "redis")]
        if policy.cfg.backend == crate::settings::Backend::Redis {
            return Entered::Later(Later {
                bulkhead,
                ticket: None,
                now,
            });
        }
        let ticket = match self.admit_local(&policy, key, now) {
            Ok(t) => t,
            Err(e) => return Entered::Refused(e),
        };
        drop(policy);
        match Bulkhead::try_acquire(bulkhead, key, now) {
            Ok(bulk) => {
                self.metrics.entered(true);
                Entered::Admitted(Admitted {
                    ticket: ticket.disarm(),
                    bulk: Some(bulk),
                    terms,
                    start: now,
                })
            }
            Err(bulkhead) => Entered::Later(Later {
                bulkhead,
                ticket: Some(ticket.disarm()),
                now,
            }),
        }
    }

    /// The rest of an admission [`enter`](Self::enter) could not finish:
    /// waiting for a bulkhead place, or the whole admission of an op kept
    /// in Redis.
    pub(crate) async fn admit_later<B>(
        &self,
        later: Later<B>,
        key: Option<u64>,
        #[cfg_attr(not(feature = "redis"), allow(unused_variables))] shared_key: Option<u64>,
        priority: i64,
    ) -> Result<Admitted<B>, LimitError>
    where
        B: std::ops::Deref<Target = Bulkhead>,
    {
        let Later {
            bulkhead,
            ticket,
            now,
        } = later;
        let Some(ticket) = ticket else {
            #[cfg(feature = "redis")]
            return self
                .admit_shared(bulkhead, key, shared_key, priority, now)
                .await;
            #[cfg(not(feature = "redis"))]
            unreachable!("only an op kept in Redis is admitted without a ticket");
        };
        let ticket = TicketGuard { core: self, ticket };
        let terms = self.policy.load().terms;
        self.wait_place(ticket, terms, bulkhead, key, priority, now)
            .await
    }

    /// The last step of a call admitted by the breaker and rate limits:
    /// waits for a bulkhead place (the ticket goes back if it is refused or
    /// the wait is dropped).
    async fn wait_place<B>(
        &self,
        ticket: TicketGuard<'_>,
        terms: Terms,
        bulkhead: B,
        key: Option<u64>,
        priority: i64,
        now: u64,
    ) -> Result<Admitted<B>, LimitError>
    where
        B: std::ops::Deref<Target = Bulkhead>,
    {
        match Bulkhead::acquire(bulkhead, key, priority, now).await {
            Ok(bulk) => {
                self.metrics.entered(true);
                Ok(Admitted {
                    ticket: ticket.disarm(),
                    bulk: Some(bulk),
                    terms,
                    start: self.clock.now_ns(),
                })
            }
            Err(e) => Err(self.reject(e)),
        }
    }

    /// The in-process breaker and rate limits (op-wide, then the key's).
    #[inline]
    fn admit_local(
        &self,
        policy: &Policy,
        key: Option<u64>,
        now: u64,
    ) -> Result<TicketGuard<'_>, LimitError> {
        let ticket = self.admit_breaker(now)?;
        self.check_local_rates(policy, key, now)?;
        Ok(ticket)
    }

    /// The in-process breaker's ticket, or the call refused as
    /// `CircuitOpen`.
    #[inline]
    fn admit_breaker(&self, now: u64) -> Result<TicketGuard<'_>, LimitError> {
        match self.breaker.admit(now) {
            Ok(ticket) => Ok(TicketGuard { core: self, ticket }),
            Err(retry_after) => Err(self.reject(LimitError::CircuitOpen {
                op: self.name.clone(),
                retry_after,
            })),
        }
    }

    /// The in-process rate limits, op-wide then per key.
    #[inline]
    fn check_local_rates(
        &self,
        policy: &Policy,
        key: Option<u64>,
        now: u64,
    ) -> Result<(), LimitError> {
        if let (Some(rate), Some(spec)) = (&policy.rate, &policy.cfg.rate) {
            if let Err(refusal) = rate.try_acquire(now) {
                return Err(self.reject(LimitError::RateLimited {
                    op: self.name.clone(),
                    retry_after: refusal.wait,
                    quota: refusal.quota(spec, false),
                }));
            }
        }
        if let (Some(key), Some(keyed)) = (key, &policy.rate_per_key) {
            match keyed.try_acquire(key, now) {
                KeyedOutcome::Admitted => {}
                KeyedOutcome::Limited(refusal) => {
                    return Err(self.reject(LimitError::RateLimited {
                        op: self.name.clone(),
                        retry_after: refusal.wait,
                        quota: refusal.quota(&keyed.spec, true),
                    }))
                }
                KeyedOutcome::TableFull => {
                    return Err(self.reject(LimitError::Overloaded {
                        op: self.name.clone(),
                        retry_after: policy.cfg.retry_after,
                    }))
                }
            }
        }
        Ok(())
    }

    /// Admission for an op that keeps its breaker and rates in Redis.
    #[cfg(feature = "redis")]
    async fn admit_shared<B>(
        &self,
        bulkhead: B,
        key: Option<u64>,
        shared_key: Option<u64>,
        priority: i64,
        now: u64,
    ) -> Result<Admitted<B>, LimitError>
    where
        B: std::ops::Deref<Target = Bulkhead>,
    {
        let policy = self.policy.load();
        let terms = policy.terms;
        let shared = policy
            .cfg
            .breaker
            .clone()
            .map(|b| (b, policy.cfg.degradation, policy.cfg.retry_after));
        drop(policy);
        let ticket = match shared {
            Some((breaker, degradation, retry_after)) => {
                match self
                    .shared_breaker_admit(&breaker, degradation, retry_after, now)
                    .await
                {
                    Ok(t) => TicketGuard {
                        core: self,
                        ticket: t,
                    },
                    Err(e) => return Err(self.reject(e)),
                }
            }
            None => self.admit_breaker(now)?,
        };
        let remote = {
            let policy = self.policy.load();
            Remote {
                rate: policy.cfg.rate.clone(),
                rate_per_key: policy.cfg.rate_per_key.clone(),
                degradation: policy.cfg.degradation,
                retry_after: policy.cfg.retry_after,
                local: policy.rate.clone(),
                local_keyed: policy.rate_per_key.clone(),
            }
        };
        if let Err(e) = self.check_shared(&remote, key, shared_key, now).await {
            return Err(self.reject(e));
        }
        self.wait_place(ticket, terms, bulkhead, key, priority, now)
            .await
    }
}

/// A background call on the shared breaker.
#[cfg(feature = "redis")]
type SharedJob = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), crate::redis::BackendError>> + Send>,
>;

/// What a Redis-backed admission needs from the policy, held across the
/// round trip (the policy guard is not).
#[cfg(feature = "redis")]
struct Remote {
    rate: Option<crate::settings::RateSpec>,
    rate_per_key: Option<crate::settings::RateSpec>,
    degradation: crate::settings::Degradation,
    retry_after: Duration,
    local: Option<Arc<RateState>>,
    local_keyed: Option<Arc<KeyedRate>>,
}

impl OpCore {
    /// Gives back what a ticket holds (a half-open probe place), here or in
    /// Redis.
    pub(crate) fn release_ticket(&self, ticket: Ticket) {
        #[cfg(feature = "redis")]
        if let Ticket::Shared(t) = ticket {
            self.settle_shared(t, None);
        }
        self.breaker.release(ticket);
    }

    /// The name of `key` in Redis when this op keeps per-key rates there.
    #[cfg(feature = "redis")]
    pub(crate) fn shared_key_name(&self, key: &dyn LimitKey) -> Option<u64> {
        let p = self.policy.load();
        if p.cfg.backend != crate::settings::Backend::Redis || p.cfg.rate_per_key.is_none() {
            return None;
        }
        self.shared.redis.load().as_ref().map(|b| b.key_name(key))
    }

    /// Without the `redis` feature no op keeps anything in Redis.
    #[cfg(not(feature = "redis"))]
    pub(crate) fn shared_key_name(&self, _key: &dyn LimitKey) -> Option<u64> {
        None
    }
}

#[cfg(feature = "redis")]
impl OpCore {
    /// Admission through the op's breaker kept in Redis, degraded as
    /// configured when Redis cannot answer: `local` uses the in-process
    /// breaker, `fail_open` lets the call through, `fail_closed` refuses it.
    async fn shared_breaker_admit(
        &self,
        breaker: &crate::settings::BreakerPolicy,
        degradation: crate::settings::Degradation,
        retry_after: Duration,
        now: u64,
    ) -> Result<Ticket, LimitError> {
        use crate::settings::Degradation;
        let failure = match self.shared.redis.load_full() {
            None => "no redis is set (Registry::set_redis)".to_owned(),
            Some(backend) => match backend.breaker_admit(&self.name, breaker).await {
                Ok(Ok(t)) => return Ok(Ticket::Shared(t)),
                Ok(Err(wait)) => {
                    return Err(LimitError::CircuitOpen {
                        op: self.name.clone(),
                        retry_after: wait,
                    })
                }
                Err(e) => e.to_string(),
            },
        };
        OpMetrics::inc(&self.metrics.counters.backend_fallbacks);
        tracing::debug!(op = &*self.name, reason = %failure, ?degradation, "shared breaker degraded");
        match degradation {
            Degradation::FailOpen => Ok(Ticket::Bypass),
            Degradation::FailClosed => Err(LimitError::Overloaded {
                op: self.name.clone(),
                retry_after,
            }),
            Degradation::Local => {
                self.breaker
                    .admit(now)
                    .map_err(|retry_after| LimitError::CircuitOpen {
                        op: self.name.clone(),
                        retry_after,
                    })
            }
        }
    }

    /// Forces open (or resets) the op's breaker in Redis, when it keeps it
    /// there; done in the background, like outcomes.
    pub(crate) fn set_shared_breaker(&self, open: bool) {
        if self.policy.load().cfg.backend != crate::settings::Backend::Redis {
            return;
        }
        self.on_shared_breaker(
            "breaker change not made in redis",
            move |backend, name, _| {
                Box::pin(async move {
                    if open {
                        backend.breaker_force_open(&name).await
                    } else {
                        backend.breaker_reset(&name).await
                    }
                })
            },
        );
    }

    /// Records an outcome (or gives back a probe place, `None`) in the
    /// breaker kept in Redis, off the caller's path.
    fn settle_shared(&self, ticket: crate::redis::SharedTicket, failed: Option<bool>) {
        self.on_shared_breaker(
            "breaker outcome not recorded in redis",
            move |backend, name, policy| {
                Box::pin(async move {
                    match failed {
                        Some(f) => backend
                            .breaker_record(&name, ticket, f, &policy)
                            .await
                            .map(drop),
                        None => backend
                            .breaker_release(&name, ticket, &policy)
                            .await
                            .map(drop),
                    }
                })
            },
        );
    }

    /// Runs `job` on the shared breaker in the background, when the op has a
    /// breaker, a Redis is set and a tokio runtime is at hand; a failure is
    /// logged with `what`.
    fn on_shared_breaker(
        &self,
        what: &'static str,
        job: impl FnOnce(
                Arc<crate::redis::RedisBackend>,
                Arc<str>,
                crate::settings::BreakerPolicy,
            ) -> SharedJob
            + Send
            + 'static,
    ) {
        let Some(policy) = self.policy.load().cfg.breaker.clone() else {
            return;
        };
        let (Some(backend), Ok(rt)) = (
            self.shared.redis.load_full(),
            tokio::runtime::Handle::try_current(),
        ) else {
            return;
        };
        let name = self.name.clone();
        rt.spawn(async move {
            if let Err(e) = job(backend, name.clone(), policy).await {
                tracing::debug!(op = &*name, error = %e, "{what}");
            }
        });
    }

    /// The op-wide and per-key rates kept in Redis.
    async fn check_shared(
        &self,
        r: &Remote,
        key: Option<u64>,
        shared_key: Option<u64>,
        now: u64,
    ) -> Result<(), LimitError> {
        if let Some(spec) = &r.rate {
            let local = r.local.as_deref().map(|l| move || l.try_acquire(now));
            self.check_shared_rate(spec, None, false, r, local).await?;
        }
        if let (Some(spec), Some(local_key)) = (&r.rate_per_key, key) {
            let local = r.local_keyed.as_deref().map(|k| {
                move || match k.try_acquire(local_key, now) {
                    KeyedOutcome::Admitted | KeyedOutcome::TableFull => Ok(()),
                    KeyedOutcome::Limited(refusal) => Err(refusal),
                }
            });
            self.check_shared_rate(spec, shared_key, true, r, local)
                .await?;
        }
        Ok(())
    }

    /// One rate kept in Redis, degraded as configured when Redis cannot
    /// answer (or none is set, or the key has no name there).
    async fn check_shared_rate(
        &self,
        spec: &crate::settings::RateSpec,
        shared_key: Option<u64>,
        per_key: bool,
        r: &Remote,
        local: Option<impl FnOnce() -> Result<(), crate::rate::Refusal>>,
    ) -> Result<(), LimitError> {
        use crate::redis::Check;
        use crate::settings::Degradation;
        let backend = self.shared.redis.load_full();
        let failure = match (&backend, per_key, shared_key) {
            (None, _, _) => "no redis is set (Registry::set_redis)".to_owned(),
            (Some(_), true, None) => "the key has no name in redis".to_owned(),
            (Some(backend), _, key) => match backend.check(&self.name, key, spec).await {
                Ok(Check::Admitted { .. }) => return Ok(()),
                Ok(Check::Limited { wait, window }) => {
                    let w = spec.windows[window.min(spec.windows.len() - 1)];
                    return Err(LimitError::RateLimited {
                        op: self.name.clone(),
                        retry_after: wait,
                        quota: crate::Quota::rate(u64::from(w.count()), w.period(), per_key),
                    });
                }
                Err(e) => e.to_string(),
            },
        };
        OpMetrics::inc(&self.metrics.counters.backend_fallbacks);
        tracing::debug!(op = &*self.name, reason = %failure, degradation = ?r.degradation, "shared rate limit degraded");
        match r.degradation {
            Degradation::FailOpen => Ok(()),
            Degradation::FailClosed => Err(LimitError::Overloaded {
                op: self.name.clone(),
                retry_after: r.retry_after,
            }),
            Degradation::Local => match local.map(|check| check()) {
                Some(Err(refusal)) => Err(LimitError::RateLimited {
                    op: self.name.clone(),
                    retry_after: refusal.wait,
                    quota: refusal.quota(spec, per_key),
                }),
                _ => Ok(()),
            },
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
                keyed.table.set_cap(cfg.max_keys);
                Arc::clone(keyed)
            }
            _ => Arc::new(KeyedRate::new(spec.clone(), cfg.max_keys)),
        });
        Self {
            cfg: cfg.clone(),
            terms: Terms::of(cfg),
            rate,
            rate_per_key,
        }
    }
}

/// Returns a half-open probe place if admission stops before the call runs.
struct TicketGuard<'a> {
    core: &'a OpCore,
    ticket: Ticket,
}

impl TicketGuard<'_> {
    fn disarm(self) -> Ticket {
        let t = self.ticket;
        std::mem::forget(self);
        t
    }
}

impl Drop for TicketGuard<'_> {
    fn drop(&mut self) {
        self.core.release_ticket(self.ticket);
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

/// How far [`OpCore::enter`] got.
pub(crate) enum Entered<B: std::ops::Deref<Target = Bulkhead>> {
    Admitted(Admitted<B>),
    Refused(LimitError),
    /// Must wait: see [`OpCore::admit_later`].
    Later(Later<B>),
}

/// An admission left to finish after a wait.
pub(crate) struct Later<B> {
    bulkhead: B,
    /// The breaker's ticket, when breaker and rates already admitted the
    /// call (only the bulkhead place is missing); `None` for an op kept in
    /// Redis, whose admission starts over.
    ticket: Option<Ticket>,
    now: u64,
}

/// What admission granted.
pub(crate) struct Admitted<B: std::ops::Deref<Target = Bulkhead>> {
    pub(crate) ticket: Ticket,
    pub(crate) bulk: Option<BulkPermit<B>>,
    pub(crate) terms: Terms,
    /// When the call starts running (a reading of the op's clock).
    pub(crate) start: u64,
}

/// An admitted call in progress, borrowed from its [`Op`]. Its owner
/// (the call's future) ends it exactly once, after dropping the body or
/// handing the place over to whatever goes on running it.
pub(crate) struct Admission<'a> {
    core: &'a OpCore,
    ticket: Ticket,
    bulk: Option<BulkPermit<&'a Bulkhead>>,
    pub(crate) terms: Terms,
    pub(crate) start: u64,
}

impl<'a> Admission<'a> {
    pub(crate) fn new(core: &'a OpCore, a: Admitted<&'a Bulkhead>) -> Self {
        Self {
            core,
            ticket: a.ticket,
            bulk: a.bulk,
            terms: a.terms,
            start: a.start,
        }
    }

    /// Records the outcome of a call that ended at `end` and releases its
    /// place.
    #[inline]
    pub(crate) fn finish(self, outcome: CallOutcome, end: u64) {
        self.core
            .complete(self.ticket, &self.terms, self.start, end, outcome);
        drop(self.bulk);
    }

    /// Records `outcome` now and hands the place over, still held, to
    /// whoever decides when the body is gone.
    pub(crate) fn end_detached(self, outcome: CallOutcome) -> Place {
        let end = self.core.clock.now_ns();
        self.core
            .complete(self.ticket, &self.terms, self.start, end, outcome);
        let owner = Arc::clone(&self.core.bulkhead);
        Place(self.bulk.map(|b| b.into_owned(owner)))
    }
}

/// A bulkhead place held by a call that has ended for its caller (timed
/// out, or dropped) while its body may still be alive: released when
/// dropped, which the call does only once the body is gone.
pub struct Place(Option<BulkPermit<Arc<Bulkhead>>>);

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Place")
            .field("held", &self.0.is_some())
            .finish()
    }
}

/// A place in an operation, held while the guarded work runs (RAII).
///
/// Dropping it records a success, unless [`mark_failed`](Self::mark_failed)
/// was called or the thread is panicking; either way the place is released.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), limiter_runtime::LimitError> {
/// let reg = limiter_runtime::Registry::new();
/// let user = 7u64;
/// let permit = reg.op("chat").acquire(Some(&user)).await?;
/// // ... the guarded work ...
/// drop(permit);
/// # Ok(()) }
/// ```
pub struct Permit {
    core: Arc<OpCore>,
    ticket: Ticket,
    bulk: Option<BulkPermit<Arc<Bulkhead>>>,
    terms: Terms,
    start: u64,
    failed: bool,
}

impl Permit {
    pub(crate) fn new(core: Arc<OpCore>, a: Admitted<Arc<Bulkhead>>) -> Self {
        Self {
            core,
            ticket: a.ticket,
            bulk: a.bulk,
            terms: a.terms,
            start: a.start,
            failed: false,
        }
    }

    /// Records the guarded work as failed when the permit is dropped.
    pub fn mark_failed(&mut self) {
        self.failed = true;
    }

    /// The operation this permit belongs to.
    pub fn op(&self) -> &str {
        &self.core.name
    }

    /// The deadline configured for the operation, if any (a permit does not
    /// enforce it: the holder decides what to do with it).
    pub fn timeout(&self) -> Option<Duration> {
        self.terms.timeout()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let outcome = if std::thread::panicking() {
            CallOutcome::Panic
        } else if self.failed {
            CallOutcome::Failure
        } else {
            CallOutcome::Success
        };
        let end = self.core.clock.now_ns();
        self.core
            .complete(self.ticket, &self.terms, self.start, end, outcome);
        drop(self.bulk.take());
    }
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("op", &self.core.name)
            .finish()
    }
}

/// What an op holds for one key (see [`Op::key_usage`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
        self.core.policy.load().cfg.clone()
    }

    /// Holds the breaker open until [`reset_breaker`](Self::reset_breaker).
    /// Has no effect when the op has no breaker.
    pub fn force_open_breaker(&self) {
        self.core.breaker.force_open(self.core.clock.now_ns());
        #[cfg(feature = "redis")]
        self.core.set_shared_breaker(true);
    }

    /// Closes the breaker and clears its window (in Redis too, for ops
    /// that keep it there).
    pub fn reset_breaker(&self) {
        self.core.breaker.reset(self.core.clock.now_ns());
        #[cfg(feature = "redis")]
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
        let policy = core.policy.load();
        let Some(keyed) = &policy.rate_per_key else {
            return Ok(());
        };
        let err = match keyed.try_acquire(hash, now) {
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

    /// Forgets the per-key state of `key`: its rate limit state, and its
    /// bulkhead counts when no call of that key is running or waiting.
    /// Returns whether anything was forgotten.
    pub fn reset_key(&self, key: &dyn LimitKey) -> bool {
        let hash = self.core.shared.hasher.hash(key);
        let rate = self
            .core
            .policy
            .load()
            .rate_per_key
            .as_ref()
            .is_some_and(|k| k.table.remove(hash));
        let bulk = self.core.bulkhead.keys.remove_unused(hash);
        rate || bulk
    }

    /// What the op holds for `key`: calls of the per-key rate limit it
    /// would admit now, and its calls running and queued. `None` when the op
    /// tracks nothing for that key.
    pub fn key_usage(&self, key: &dyn LimitKey) -> Option<KeyUsage> {
        let hash = self.core.shared.hasher.hash(key);
        let now = self.core.clock.now_ns();
        let policy = self.core.policy.load();
        let rate = policy
            .rate_per_key
            .as_ref()
            .and_then(|k| k.table.get(hash).map(|s| (k, s)));
        let slot = self.core.bulkhead.keys.get(hash);
        if rate.is_none() && slot.is_none() {
            return None;
        }
        let (in_flight, queued) = slot.map_or((0, 0), |s| s.counts());
        Some(KeyUsage {
            available: rate.as_ref().map(|(_, s)| s.available(now)),
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

    /// Drops the state of idle keys now (it is also dropped when the key
    /// table fills up). Returns how many keys were dropped.
    pub fn sweep_keys(&self) -> usize {
        let now = self.core.clock.now_ns();
        let rate = self
            .core
            .policy
            .load()
            .rate_per_key
            .as_ref()
            .map_or(0, |k| k.table.sweep(now));
        rate + self.core.bulkhead.keys.sweep(now)
    }

    /// Calls running now, holding a queue place, and waiting for one.
    pub fn load(&self) -> (u32, u32, u32) {
        self.core.bulkhead.counts()
    }

    /// Everything known about this op.
    pub fn snapshot(&self) -> OpSnapshot {
        let core = &*self.core;
        let now = core.clock.now_ns();
        let policy = core.policy.load();
        OpSnapshot {
            name: core.name.clone(),
            config: policy.cfg.clone(),
            counters: core.metrics.counters_snapshot(),
            latency: core.metrics.latency_snapshot(),
            bulkhead: core.bulkhead.snapshot(),
            breaker: core.breaker.snapshot(now),
            rate: policy
                .rate
                .as_ref()
                .zip(policy.cfg.rate.as_ref())
                .map(|(s, spec)| RateSnapshot {
                    spec: spec.clone(),
                    available: Some(s.available(now)),
                    keys: None,
                    keys_evicted: None,
                }),
            rate_per_key: policy.rate_per_key.as_ref().map(|k| RateSnapshot {
                spec: k.spec.clone(),
                available: None,
                keys: Some(k.table.len()),
                keys_evicted: Some(k.table.evicted()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Registry;

    fn adaptive(max: u32) -> OpConfig {
        OpConfig {
            max_concurrent: Some(max),
            adaptive: Some(true),
            adaptive_min: Some(2),
            ..OpConfig::default()
        }
    }

    fn bound(op: &Op) -> u32 {
        op.core.bulkhead.snapshot().max_concurrent
    }

    /// An adaptive step computed before a reconfiguration must not reach
    /// the bulkhead after it: the new bound and the adaptive limit agree.
    #[test]
    fn a_late_adaptive_step_cannot_undo_a_reconfiguration() {
        let reg = Registry::new();
        reg.configure("a", adaptive(12)).unwrap();
        let op = reg.op("a");
        let core = &*op.core;
        std::thread::scope(|s| {
            let mut reconfigure = None;
            let step = core.adaptive.observe(true, Duration::ZERO, |limit| {
                // The step is computed; a reconfiguration starts before it
                // is applied. It cannot finish until the step is applied.
                let r = s.spawn(|| reg.configure("a", adaptive(100)).unwrap());
                // Give it every chance to finish first: if it could (the
                // install not waiting for the step), the step would then
                // undo it and the bound below would be 10.
                for _ in 0..200 {
                    if r.is_finished() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                reconfigure = Some(r);
                core.bulkhead.set_max(limit);
            });
            assert_eq!(step, Some(10));
            reconfigure.unwrap().join().unwrap();
        });
        assert_eq!(bound(&op), 100, "the reconfiguration's bound is enforced");
        assert_eq!(op.snapshot().adaptive_limit, Some(100));
        // And the adaptive limit still moves the bulkhead.
        core.observe_adaptive(CallOutcome::Failure, 0);
        assert_eq!((bound(&op), core.adaptive.current()), (90, 90));
    }

    /// A call admitted while the op was adaptive, ending after adaptive was
    /// switched off, leaves the configured bound alone. (The interleaving
    /// where the step had read the adaptive policy before the change is
    /// pinned by `adaptive::tests::observe_does_nothing_once_not_adaptive`:
    /// the step now reads the policy installed with the AIMD state.)
    #[test]
    fn an_adaptive_step_after_adaptive_is_off_changes_nothing() {
        let reg = Registry::new();
        reg.configure("a", adaptive(50)).unwrap();
        let op = reg.op("a");
        let terms = op.core.policy.load().terms;
        assert!(terms.adaptive, "admitted under the adaptive policy");
        reg.configure(
            "a",
            OpConfig {
                max_concurrent: Some(50),
                ..OpConfig::default()
            },
        )
        .unwrap();
        op.core.observe_adaptive(CallOutcome::Failure, 0);
        assert_eq!(bound(&op), 50);
    }
}
