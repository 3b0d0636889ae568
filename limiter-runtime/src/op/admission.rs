//! Admission of one call: the breaker, then the rate limits, then a
//! bulkhead place, as far as it goes without waiting ([`OpCore::enter`]),
//! then what must wait (a queue place, the shared store).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::breaker::Ticket;
use crate::bulkhead::{BulkPermit, Bulkhead};
use crate::error::LimitError;
use crate::metrics::{CallOutcome, Entry};
use crate::rate::{capacity, KeyedOutcome, Refusal};
use crate::settings::RateSpec;

use super::{OpCore, Policy, Terms};

impl OpCore {
    /// Breaker, then rate limits, then a bulkhead place held through
    /// `bulkhead`. Returns what the call runs with.
    pub(crate) async fn admit<B>(
        &self,
        bulkhead: B,
        key: Option<u64>,
        shared_key: Option<u64>,
        priority: i64,
        cost: u32,
    ) -> Result<Admitted<'_, B>, LimitError>
    where
        B: std::ops::Deref<Target = Bulkhead>,
    {
        match self.enter_now(bulkhead, key, cost) {
            Ok(a) => Ok(a),
            Err(Deferred::Refused(e)) => Err(e),
            Err(Deferred::Later(later)) => {
                Box::pin(self.admit_later(later, key, shared_key, priority)).await
            }
        }
    }

    /// [`enter`](Self::enter) with the admission returned (kept out of
    /// [`admit`](Self::admit)'s state across its await).
    #[inline]
    fn enter_now<B>(
        &self,
        bulkhead: B,
        key: Option<u64>,
        cost: u32,
    ) -> Result<Admitted<'_, B>, Deferred<B>>
    where
        B: std::ops::Deref<Target = Bulkhead>,
    {
        let mut slot = None;
        self.enter(bulkhead, key, cost, &mut slot)?;
        match slot {
            Some(a) => Ok(a),
            None => unreachable!("`enter` fills the slot when it admits"),
        }
    }

    /// Admission as far as it goes without waiting. The usual path reads
    /// the clock and the policy once, takes the breaker's state with one
    /// load, the rate with one compare-and-swap and the bulkhead place with
    /// another, and allocates nothing. An admission made here is not
    /// counted yet: its [`Entry`] says what its owner must count. What
    /// must wait (a queue place, a Redis round trip) is left to
    /// [`admit_later`](Self::admit_later).
    ///
    /// The admission is written into its owner's `slot` (a call's future
    /// keeps it there until the call ends), not returned: it is made in
    /// place instead of being copied out and in again.
    ///
    /// `cost` is what the call takes from the rate limits (1 for a plain
    /// call, `n` for a batch of `n`); the breaker and the bulkhead count it
    /// as one call.
    #[inline]
    pub(crate) fn enter<'p, B>(
        &'p self,
        bulkhead: B,
        key: Option<u64>,
        cost: u32,
        slot: &mut Option<Admitted<'p, B>>,
    ) -> Result<(), Deferred<B>>
    where
        B: std::ops::Deref<Target = Bulkhead>,
    {
        let now = self.clock.now_ns();
        let policy = self.policy();
        if !(policy.local && self.shared.enabled.load(Ordering::Relaxed)) {
            return self.enter_unlimited_or_shared(policy, bulkhead, key, now, cost, slot);
        }
        let ticket = match self.breaker.admit(now) {
            Ok(t) => t,
            Err(wait) => return Err(Deferred::Refused(self.refuse_open(wait))),
        };
        if let Err(miss) = take_rates(policy, key, now, u64::from(cost)) {
            self.release_ticket(ticket);
            return Err(Deferred::Refused(self.refuse_rate(policy, miss, cost)));
        }
        self.take_place(policy, ticket, bulkhead, key, now, cost, slot)
    }

    /// The breaker (kept here) and a bulkhead place for a call whose rates
    /// already admitted it (from a lease).
    fn enter_place<'p, B>(
        &'p self,
        policy: &'p Policy,
        bulkhead: B,
        key: Option<u64>,
        now: u64,
        cost: u32,
        slot: &mut Option<Admitted<'p, B>>,
    ) -> Result<(), Deferred<B>>
    where
        B: std::ops::Deref<Target = Bulkhead>,
    {
        let ticket = match self.breaker.admit(now) {
            Ok(t) => t,
            Err(wait) => return Err(Deferred::Refused(self.refuse_open(wait))),
        };
        self.take_place(policy, ticket, bulkhead, key, now, cost, slot)
    }

    /// The bulkhead place of a call the breaker (`ticket`) and the rates
    /// admitted: written into `slot`, or left to wait.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn take_place<'p, B>(
        &'p self,
        policy: &'p Policy,
        ticket: Ticket,
        bulkhead: B,
        key: Option<u64>,
        now: u64,
        cost: u32,
        slot: &mut Option<Admitted<'p, B>>,
    ) -> Result<(), Deferred<B>>
    where
        B: std::ops::Deref<Target = Bulkhead>,
    {
        match Bulkhead::try_acquire(bulkhead, key, now) {
            Ok(bulk) => {
                *slot = Some(Admitted {
                    ticket,
                    bulk: Some(bulk),
                    terms: &policy.terms,
                    start: now,
                    entry: Entry::Admitted,
                });
                Ok(())
            }
            Err(bulkhead) => Err(Deferred::Later(Later {
                bulkhead,
                ticket: Some(ticket),
                now,
                cost,
            })),
        }
    }

    /// Admission of a call with every limit off (it runs, counted), of an
    /// op served from its lease (in line), or of an op kept in the shared
    /// store (all of it after a round trip).
    #[cold]
    fn enter_unlimited_or_shared<'p, B>(
        &'p self,
        policy: &'p Policy,
        bulkhead: B,
        key: Option<u64>,
        now: u64,
        cost: u32,
        slot: &mut Option<Admitted<'p, B>>,
    ) -> Result<(), Deferred<B>>
    where
        B: std::ops::Deref<Target = Bulkhead>,
    {
        if !(policy.cfg.enabled && self.shared.enabled.load(Ordering::Relaxed)) {
            *slot = Some(Admitted {
                ticket: Ticket::Bypass,
                bulk: None,
                terms: &policy.terms,
                start: now,
                entry: Entry::Unlimited,
            });
            return Ok(());
        }
        if let (true, Some(leases), Some(spec)) =
            (policy.lease_in_line, &policy.leases, &policy.cfg.rate)
        {
            // Served or refused from this instance's lease: decided here,
            // like a local op; only an empty lease waits for the store.
            match self.serve_leased_now(leases, spec, now, cost) {
                Some(Ok(())) => return self.enter_place(policy, bulkhead, key, now, cost, slot),
                Some(Err(refusal)) => {
                    let err = self.rate_refusal(spec, refusal, false, cost);
                    return Err(Deferred::Refused(self.reject(err)));
                }
                None => {}
            }
        }
        Err(Deferred::Later(Later {
            bulkhead,
            ticket: None,
            now,
            cost,
        }))
    }

    /// The open breaker's refusal, counted.
    #[cold]
    fn refuse_open(&self, retry_after: std::time::Duration) -> LimitError {
        self.reject(LimitError::CircuitOpen {
            op: self.name.clone(),
            retry_after,
        })
    }

    /// A rate limit's refusal, counted.
    #[cold]
    fn refuse_rate(&self, policy: &Policy, miss: RateMiss, cost: u32) -> LimitError {
        let err = match (miss, &policy.cfg.rate, &policy.rate_per_key) {
            (RateMiss::Op(r), Some(spec), _) => self.rate_refusal(spec, r, false, cost),
            (RateMiss::Key(r), _, Some(keyed)) => self.rate_refusal(&keyed.spec, r, true, cost),
            _ => LimitError::Overloaded {
                op: self.name.clone(),
                retry_after: policy.cfg.retry_after,
            },
        };
        self.reject(err)
    }

    /// The refusal of window `r.window` of `spec` for a call of `cost`:
    /// `CostExceedsLimit` when that window can never hold it, else
    /// `RateLimited` with the wait.
    pub(super) fn rate_refusal(
        &self,
        spec: &RateSpec,
        r: Refusal,
        per_key: bool,
        cost: u32,
    ) -> LimitError {
        let quota = r.quota(spec, per_key);
        if u64::from(cost) > capacity(spec, r.window) {
            return LimitError::CostExceedsLimit {
                op: self.name.clone(),
                cost: u64::from(cost),
                quota,
            };
        }
        LimitError::RateLimited {
            op: self.name.clone(),
            retry_after: r.wait,
            quota,
        }
    }

    /// The rest of an admission [`enter`](Self::enter) could not finish:
    /// waiting for a bulkhead place, or the whole admission of an op kept
    /// in Redis.
    pub(crate) async fn admit_later<B>(
        &self,
        later: Later<B>,
        key: Option<u64>,
        shared_key: Option<u64>,
        priority: i64,
    ) -> Result<Admitted<'_, B>, LimitError>
    where
        B: std::ops::Deref<Target = Bulkhead>,
    {
        let Later {
            bulkhead,
            ticket,
            now,
            cost,
        } = later;
        let Some(ticket) = ticket else {
            return self
                .admit_shared(bulkhead, key, shared_key, priority, now, cost)
                .await;
        };
        let ticket = TicketGuard { core: self, ticket };
        let terms = &self.policy().terms;
        self.wait_place(ticket, terms, bulkhead, key, priority, now)
            .await
    }

    /// The last step of a call admitted by the breaker and rate limits:
    /// waits for a bulkhead place (the ticket goes back if it is refused or
    /// the wait is dropped).
    pub(super) async fn wait_place<'p, B>(
        &'p self,
        ticket: TicketGuard<'p>,
        terms: &'p Terms,
        bulkhead: B,
        key: Option<u64>,
        priority: i64,
        now: u64,
    ) -> Result<Admitted<'p, B>, LimitError>
    where
        B: std::ops::Deref<Target = Bulkhead>,
    {
        match Bulkhead::acquire(bulkhead, key, priority, now).await {
            Ok(bulk) => Ok(self.admitted(ticket, terms, bulk)),
            Err(e) => Err(self.reject(e)),
        }
    }

    /// A call that waited for its place `bulk`, admitted (and counted as
    /// entered) now.
    pub(super) fn admitted<'p, B>(
        &'p self,
        ticket: TicketGuard<'p>,
        terms: &'p Terms,
        bulk: BulkPermit<B>,
    ) -> Admitted<'p, B>
    where
        B: std::ops::Deref<Target = Bulkhead>,
    {
        self.metrics.entered(true);
        Admitted {
            ticket: ticket.disarm(),
            bulk: Some(bulk),
            terms,
            start: self.clock.now_ns(),
            entry: Entry::Counted,
        }
    }

    /// The in-process breaker's ticket, or the call refused as
    /// `CircuitOpen`.
    #[inline]
    pub(super) fn admit_breaker(&self, now: u64) -> Result<TicketGuard<'_>, LimitError> {
        match self.breaker.admit(now) {
            Ok(ticket) => Ok(TicketGuard { core: self, ticket }),
            Err(retry_after) => Err(self.reject(LimitError::CircuitOpen {
                op: self.name.clone(),
                retry_after,
            })),
        }
    }
}

impl OpCore {
    /// Gives back what a ticket holds (a half-open probe place), here or in
    /// the shared store.
    pub(crate) fn release_ticket(&self, ticket: Ticket) {
        if let Ticket::Shared(t) = ticket {
            self.settle_shared(t, None);
        }
        self.breaker.release(ticket);
    }
}

/// Returns a half-open probe place if admission stops before the call runs.
pub(super) struct TicketGuard<'a> {
    pub(super) core: &'a OpCore,
    pub(super) ticket: Ticket,
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

/// Why [`OpCore::enter`] did not admit a call at once.
pub(crate) enum Deferred<B: std::ops::Deref<Target = Bulkhead>> {
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
    /// What the call takes from the rate limits.
    cost: u32,
}

/// What admission granted.
pub(crate) struct Admitted<'p, B: std::ops::Deref<Target = Bulkhead>> {
    pub(crate) ticket: Ticket,
    pub(crate) bulk: Option<BulkPermit<B>>,
    /// The terms of the policy it was admitted under.
    pub(crate) terms: &'p Terms,
    /// When the call starts running (a reading of the op's clock).
    pub(crate) start: u64,
    /// What is still to count of it.
    pub(crate) entry: Entry,
}

/// An admitted call in progress, borrowed from its op. Its owner (the
/// call's future) ends it exactly once, after dropping the body or handing
/// the place over to whatever goes on running it.
pub(crate) type Admission<'a> = Admitted<'a, &'a Bulkhead>;

impl Admission<'_> {
    /// Records the outcome of a call of `core` that ended at `end` (its
    /// last poll took `poll_ns`) and releases its place. What is left (it
    /// holds nothing) is for the owner to discard: ended in place, the
    /// admission is not moved out of the call's future.
    #[inline]
    pub(crate) fn finish(&mut self, core: &OpCore, outcome: CallOutcome, end: u64, poll_ns: u64) {
        core.complete(
            self.ticket,
            self.terms,
            (self.start, end),
            outcome,
            poll_ns,
            self.entry,
        );
        self.entry = Entry::Counted;
        drop(self.bulk.take());
    }

    /// Records `outcome` now and hands the place over, still held, to
    /// whoever decides when the body is gone.
    pub(crate) fn end_detached(self, core: &OpCore, outcome: CallOutcome) -> Place {
        let end = core.clock.now_ns();
        core.complete(
            self.ticket,
            self.terms,
            (self.start, end),
            outcome,
            0,
            self.entry,
        );
        let owner = Arc::clone(&core.bulkhead);
        Place(self.bulk.map(|b| Arc::new(b.into_owned(owner))))
    }
}

/// A bulkhead place held by a call that has ended for its caller (timed
/// out, or dropped) while its body may still be alive: released when
/// dropped, which the call does only once the body is gone (and, when
/// shared with a cleanup hook, once that hook has finished too).
pub struct Place(Option<Arc<BulkPermit<Arc<Bulkhead>>>>);

impl Place {
    /// A second holder of the same place: it is released when both are
    /// dropped (a timed-out body and its cleanup hook).
    pub(crate) fn share(&self) -> Place {
        Place(self.0.clone())
    }
}

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Place")
            .field("held", &self.0.is_some())
            .finish()
    }
}

/// Which in-process rate limit refused a call.
pub(super) enum RateMiss {
    /// The op-wide rate.
    Op(Refusal),
    /// The key's rate.
    Key(Refusal),
    /// The key table is full of busy keys.
    TableFull,
}

/// Takes a call of `cost` from the op-wide rate, then from the key's; a
/// key that refuses gets the op-wide take given back (a refused client
/// spends nothing of the others' budget).
#[inline]
fn take_rates(policy: &Policy, key: Option<u64>, now: u64, cost: u64) -> Result<(), RateMiss> {
    let taken = match &policy.rate {
        Some(rate) => rate.try_acquire(now, cost).map_err(RateMiss::Op)?,
        None => None,
    };
    if let (Some(key), Some(keyed)) = (key, &policy.rate_per_key) {
        let miss = match keyed.try_acquire(key, now, cost) {
            KeyedOutcome::Admitted => return Ok(()),
            KeyedOutcome::Limited(refusal) => RateMiss::Key(refusal),
            KeyedOutcome::TableFull => RateMiss::TableFull,
        };
        if let Some(rate) = &policy.rate {
            rate.refund(taken, cost);
        }
        return Err(miss);
    }
    Ok(())
}
