//! Admission of an op that keeps its breaker and rates in the registry's
//! shared store (a [`SharedState`](crate::backend::SharedState), Redis in
//! practice), and the op's degradation when the store cannot answer,
//! applied in one place ([`OpCore::degrade`]).

use std::sync::Arc;
use std::time::Duration;

use crate::backend::{BackendError, Check, SharedTicket, Store, StoreFuture, Take};
use crate::breaker::Ticket;
use crate::bulkhead::Bulkhead;
use crate::error::LimitError;
use crate::keys::LimitKey;
use crate::metrics::OpMetrics;
use crate::rate::{too_costly, KeyedOutcome, Refusal};
use crate::settings::{Algorithm, Backend, BreakerPolicy, ConcurrencyScope, Degradation, RateSpec};

use super::{Admitted, OpCore, Policy, TicketGuard};

impl OpCore {
    /// The store, when this op keeps its state in it and one is set.
    pub(super) fn store(&self) -> Option<Arc<Store>> {
        self.shared.store.load_full()
    }

    /// The name of `key` in the store when this op keeps per-key rates
    /// there.
    pub(crate) fn shared_key_name(&self, key: &dyn LimitKey) -> Option<u64> {
        let p = self.policy();
        if p.cfg.backend != Backend::Redis || p.cfg.rate_per_key.is_none() {
            return None;
        }
        self.shared.store.load().as_ref().map(|s| s.key_name(key))
    }

    /// Admission for an op that keeps its breaker and rates in the store:
    /// the breaker, then the rates, then a bulkhead place (then, with
    /// `concurrency = "shared"`, a place of the bulkhead every instance
    /// shares, all within `queue_timeout`).
    pub(super) async fn admit_shared<B>(
        &self,
        bulkhead: B,
        key: Option<u64>,
        shared_key: Option<u64>,
        priority: i64,
        now: u64,
        cost: u32,
    ) -> Result<Admitted<'_, B>, LimitError>
    where
        B: std::ops::Deref<Target = Bulkhead>,
    {
        let arrived = tokio::time::Instant::now();
        // The policy lives as long as the op (installed policies are kept),
        // so it is held across the round trips without a copy.
        let remote = self.policy();
        let terms = &remote.terms;
        let ticket = match &remote.cfg.breaker {
            Some(breaker) => match self.shared_breaker_admit(breaker, remote, now).await {
                Ok(ticket) => TicketGuard { core: self, ticket },
                Err(e) => return Err(self.reject(e)),
            },
            None => self.admit_breaker(now)?,
        };
        let take = Take::Tokens(cost);
        if let Err(e) = self.check_shared(remote, key, shared_key, now, take).await {
            return Err(self.reject(e));
        }
        if remote.cfg.concurrency != ConcurrencyScope::Shared {
            return self
                .wait_place(ticket, terms, bulkhead, key, priority, now)
                .await;
        }
        let mut bulk = Bulkhead::acquire(bulkhead, key, priority, now)
            .await
            .map_err(|e| self.reject(e))?;
        let deadline = crate::clock::deadline(arrived, remote.cfg.queue_timeout);
        self.take_shared_place(&mut bulk, remote, deadline)
            .await
            .map_err(|e| self.reject(e))?;
        Ok(self.admitted(ticket, terms, bulk))
    }

    /// Admission through the op's shared breaker, degraded as configured
    /// when the store cannot answer (the local fallback is the in-process
    /// breaker).
    async fn shared_breaker_admit(
        &self,
        breaker: &BreakerPolicy,
        r: &Policy,
        now: u64,
    ) -> Result<Ticket, LimitError> {
        let failure = match self.store() {
            None => NO_STORE.to_owned(),
            Some(store) => match store.breaker_admit(&self.name, breaker).await {
                Ok(Ok(t)) => return Ok(Ticket::Shared(t)),
                Ok(Err(wait)) => return Err(self.circuit_open(wait)),
                Err(e) => e.to_string(),
            },
        };
        let mut ticket = Ticket::Bypass;
        self.degrade("breaker", &failure, r, || {
            ticket = self
                .breaker
                .admit(now)
                .map_err(|wait| self.circuit_open(wait))?;
            Ok(())
        })?;
        Ok(ticket)
    }

    /// The op-wide and per-key rates kept in the store: a call's take
    /// (admitted or refused), or a charge after the fact (never refused).
    async fn check_shared(
        &self,
        r: &Policy,
        key: Option<u64>,
        shared_key: Option<u64>,
        now: u64,
        take: Take,
    ) -> Result<(), LimitError> {
        // Degraded to this instance, a call takes its tokens times the
        // instances sharing the op: each applies its share of the limit
        // (worked out only when degraded).
        let tokens = u64::from(take.tokens());
        let share = || tokens * u64::from(self.instances(r, self.store().as_ref()));
        if let Some(spec) = &r.cfg.rate {
            let local = r.rate.as_deref();
            self.check_shared_rate(spec, None, false, r, take, || match (local, take) {
                (Some(l), Take::Tokens(_)) => l.try_acquire(now, share()).map(drop),
                (Some(l), Take::Charge(_)) => {
                    l.charge(now, share());
                    Ok(())
                }
                (None, _) => Ok(()),
            })
            .await?;
        }
        if let (Some(spec), Some(local_key)) = (&r.cfg.rate_per_key, key) {
            let local = r.rate_per_key.as_deref();
            self.check_shared_rate(spec, shared_key, true, r, take, || match (local, take) {
                (Some(k), Take::Tokens(_)) => match k.try_acquire(local_key, now, share()) {
                    KeyedOutcome::Admitted | KeyedOutcome::TableFull => Ok(()),
                    KeyedOutcome::Limited(refusal) => Err(refusal),
                },
                (Some(k), Take::Charge(_)) => {
                    k.charge(local_key, now, share());
                    Ok(())
                }
                (None, _) => Ok(()),
            })
            .await?;
        }
        Ok(())
    }

    /// Charges a call's key (and the op-wide rate) `n` after the fact,
    /// in the store, off the caller's path; degraded as a check is when
    /// the store cannot answer (`local`: the in-process limiter is
    /// charged).
    pub(crate) fn charge_shared(
        self: &Arc<Self>,
        key: Option<u64>,
        shared_key: Option<u64>,
        n: u32,
    ) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // No runtime to send it from (a plain thread): the local
            // limiter is charged, as when the store cannot answer.
            self.charge_local(key, n);
            return;
        };
        let core = Arc::clone(self);
        rt.spawn(async move {
            let now = core.clock.now_ns();
            let _ = core
                .check_shared(core.policy(), key, shared_key, now, Take::Charge(n))
                .await;
        });
    }

    /// One rate kept in the store, degraded as configured when the store
    /// cannot answer (or none is set, or the key has no name there); the
    /// local fallback is `local`, the in-process limiter.
    async fn check_shared_rate(
        &self,
        spec: &RateSpec,
        shared_key: Option<u64>,
        per_key: bool,
        r: &Policy,
        take: Take,
        local: impl FnOnce() -> Result<(), Refusal>,
    ) -> Result<(), LimitError> {
        let cost = take.tokens();
        if let (Take::Tokens(n), Some(window)) = (take, too_costly(spec, cost)) {
            // Refused before the round trip: a take no window ever holds
            // would be admitted into debt by a full bucket's script.
            let refusal = Refusal {
                wait: Duration::MAX,
                window,
            };
            return Err(self.rate_refusal(spec, refusal, per_key, n));
        }
        let failure = 'failed: {
            if let (Some(leases), Take::Tokens(n), Algorithm::TokenBucket, true) = (
                &r.leases,
                take,
                spec.algorithm,
                !per_key || shared_key.is_some(),
            ) {
                match self.take_leased(leases, r, spec, shared_key, n).await {
                    Ok(Some(_)) => return Ok(()),
                    Err(Ok(refusal)) => {
                        return Err(self.rate_refusal(spec, refusal, per_key, cost));
                    }
                    Err(Err(reason)) => break 'failed reason,
                    Ok(None) => {}
                }
            }
            match (self.store(), per_key, shared_key) {
                (None, _, _) => NO_STORE.to_owned(),
                (Some(_), true, None) => "the key has no name in the store".to_owned(),
                (Some(store), _, key) => match store.check(&self.name, key, spec, take).await {
                    Ok(Check::Admitted { .. }) => return Ok(()),
                    Ok(Check::Limited { wait, window }) => {
                        let window = window.min(spec.windows.len() - 1);
                        let refusal = Refusal { wait, window };
                        return Err(self.rate_refusal(spec, refusal, per_key, cost));
                    }
                    Err(e) => e.to_string(),
                },
            }
        };
        self.degrade("rate limit", &failure, r, || {
            local().map_err(|refusal| self.rate_refusal(spec, refusal, per_key, cost))
        })
    }

    /// The one place a store's failure to answer becomes a decision:
    /// `fail_open` lets the call through, `fail_closed` refuses it as
    /// `Overloaded`, `local` asks the in-process limiter (`local`).
    pub(super) fn degrade(
        &self,
        what: &str,
        failure: &str,
        r: &Policy,
        local: impl FnOnce() -> Result<(), LimitError>,
    ) -> Result<(), LimitError> {
        OpMetrics::inc(&self.metrics.counters.backend_fallbacks);
        let degradation = r.cfg.degradation;
        tracing::debug!(op = &*self.name, reason = %failure, ?degradation, "shared {what} degraded");
        match degradation {
            Degradation::FailOpen => Ok(()),
            Degradation::FailClosed => Err(LimitError::Overloaded {
                op: self.name.clone(),
                retry_after: r.cfg.retry_after,
            }),
            Degradation::Local => local(),
        }
    }

    fn circuit_open(&self, retry_after: Duration) -> LimitError {
        LimitError::CircuitOpen {
            op: self.name.clone(),
            retry_after,
        }
    }

    /// Reads the op's breaker kept in the store, for monitoring (off the
    /// call path), when the op keeps one there; on a store error the last
    /// view read stays.
    pub(crate) async fn refresh_shared_breaker(&self) {
        let kept_there = {
            let p = self.policy();
            p.cfg.backend == Backend::Redis && p.cfg.breaker.is_some()
        };
        let store = match (kept_there, self.store()) {
            (true, Some(store)) => store,
            _ => return,
        };
        match store.breaker_view(&self.name).await {
            Ok(view) => {
                *self
                    .shared_breaker
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = view
            }
            Err(e) => tracing::debug!(op = &*self.name, error = %e, "shared breaker not read"),
        }
    }

    /// Forces open (or resets) the op's breaker in the store, when it
    /// keeps it there; done in the background, like outcomes.
    pub(crate) fn set_shared_breaker(&self, open: bool) {
        if self.policy().cfg.backend != Backend::Redis {
            return;
        }
        self.on_shared_breaker(
            "breaker change not made in the store",
            move |store, name, _| Box::pin(async move { store.breaker_set(&name, open).await }),
        );
    }

    /// Records an outcome (or gives back a probe place, `None`) in the
    /// shared breaker, off the caller's path.
    pub(super) fn settle_shared(&self, ticket: SharedTicket, failed: Option<bool>) {
        self.on_shared_breaker(
            "breaker outcome not recorded in the store",
            move |store, name, policy| {
                Box::pin(async move {
                    store
                        .breaker_settle(&name, ticket, failed, &policy)
                        .await
                        .map(drop)
                })
            },
        );
    }

    /// Runs `job` on the shared breaker in the background, when the op has
    /// a breaker, a store is set and a tokio runtime is at hand; a failure
    /// is logged with `what`.
    fn on_shared_breaker(
        &self,
        what: &'static str,
        job: impl FnOnce(Arc<Store>, Arc<str>, BreakerPolicy) -> StoreFuture<'static, ()>
            + Send
            + 'static,
    ) {
        let Some(policy) = self.policy().cfg.breaker.clone() else {
            return;
        };
        let (Some(store), Ok(rt)) = (self.store(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let name = self.name.clone();
        rt.spawn(async move {
            let out: Result<(), BackendError> = job(store, name.clone(), policy).await;
            if let Err(e) = out {
                tracing::debug!(op = &*name, error = %e, "{what}");
            }
        });
    }
}

/// Why an op kept in the store was decided without it.
pub(super) const NO_STORE: &str = "no shared store is set (Registry::set_redis)";
