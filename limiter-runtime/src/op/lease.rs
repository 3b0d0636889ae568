//! `mode = "lease"`: an op's shared token buckets served in this process
//! from slices leased from the store (`rate/lease.rs`), one round trip per
//! slice instead of per call. A slice is fetched ahead of need (in the
//! background once half of what this instance asks for is used), one
//! fetch at a time per bucket; calls that find the lease empty while a
//! fetch is on its way wait for it. Unused tokens go back when a slice
//! expires or the policy is replaced.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::backend::{BackendError, Store};
use crate::clock::Clock;
use crate::rate::lease::{
    interval_micros, lease_cap, slice_expiry, Lease, LeaseWindow, Served, Slice, LEASE_HORIZON_NS,
};
use crate::rate::Refusal;
use crate::settings::RateSpec;

use super::{OpCore, Policy};

/// Most takes one call makes of a lease before it is refused (each may
/// wait for a fetch).
const ATTEMPTS: usize = 3;

/// Longest a call waits for another call's fetch before fetching itself.
const FETCH_WAIT: Duration = Duration::from_millis(100);

/// Why a leased op was decided without the store.
const NO_STORE: &str = "no shared store is set (Registry::set_redis)";

/// The leases of one policy: the op-wide bucket's and each key's.
pub(crate) struct Leases {
    op_wide: Option<Arc<LeaseSlot>>,
    per_key: Option<Mutex<HashMap<u64, Arc<LeaseSlot>>>>,
    max_keys: usize,
}

/// One bucket's lease and the signal of its fetches.
pub(crate) struct LeaseSlot {
    lease: Mutex<Lease>,
    fetched: Notify,
}

impl LeaseSlot {
    fn new(spec: &RateSpec) -> Arc<Self> {
        Arc::new(Self {
            lease: Mutex::new(Lease::new(windows(spec))),
            fetched: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lease> {
        self.lease.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The lease windows of a token bucket spec, as the store's script sees
/// them (whole microseconds).
fn windows(spec: &RateSpec) -> Vec<LeaseWindow> {
    spec.windows
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let interval_us = interval_micros(w);
            let capacity = match (i, spec.burst) {
                (0, Some(b)) => b,
                _ => w.count(),
            };
            LeaseWindow {
                interval_ns: interval_us * 1_000,
                horizon_ns: interval_us * 1_000 * u64::from(capacity.max(1)),
            }
        })
        .collect()
}

impl Leases {
    /// The leases of a policy with these rates, when it runs in lease mode.
    pub(crate) fn new(
        rate: Option<&RateSpec>,
        rate_per_key: Option<&RateSpec>,
        max_keys: usize,
    ) -> Self {
        Self {
            op_wide: rate.map(LeaseSlot::new),
            per_key: rate_per_key.map(|_| Mutex::new(HashMap::new())),
            max_keys,
        }
    }

    /// The slot of the op-wide bucket (`key` None) or of a key; `None`
    /// when the key table is full of leases still in use (the call is
    /// then checked exactly).
    fn slot(&self, spec: &RateSpec, key: Option<u64>) -> Option<Arc<LeaseSlot>> {
        let Some(key) = key else {
            return self.op_wide.clone();
        };
        let mut map = self
            .per_key
            .as_ref()?
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = map.get(&key) {
            return Some(Arc::clone(slot));
        }
        if map.len() >= self.max_keys {
            // Keys holding nothing and fetching nothing go first.
            map.retain(|_, s| {
                let l = s.lock();
                l.fetching || l.held() > 0
            });
            if map.len() >= self.max_keys {
                return None;
            }
        }
        let slot = LeaseSlot::new(spec);
        map.insert(key, Arc::clone(&slot));
        Some(slot)
    }

    /// Every slice held, for its tokens to go back (the policy was
    /// replaced).
    fn drain(&self) -> Vec<(Option<u64>, Vec<Slice>)> {
        let mut out = Vec::new();
        if let Some(slot) = &self.op_wide {
            out.push((None, slot.lock().drain()));
        }
        if let Some(map) = &self.per_key {
            let map = map.lock().unwrap_or_else(|e| e.into_inner());
            for (key, slot) in map.iter() {
                out.push((Some(*key), slot.lock().drain()));
            }
        }
        out
    }
}

/// What one take of a lease leads to.
enum Step<'a> {
    /// Served (this many tokens still held); start this fetch ahead of
    /// need, if any.
    Served(Option<u64>, u64),
    /// Refused here for this many ns.
    Refused(u64),
    /// Empty with a fetch on its way: wait for it.
    Await(tokio::sync::futures::Notified<'a>),
    /// Empty: fetch a slice of at least `least`.
    Fetch { least: u64 },
}

/// What a fetch needs, owned, so that it can run in the background.
struct Fetcher {
    store: Arc<Store>,
    op: Arc<str>,
    spec: RateSpec,
    key: Option<u64>,
    clock: Clock,
}

impl Fetcher {
    /// Leases a slice into `slot`; wakes the calls waiting for it.
    async fn fetch(&self, slot: &LeaseSlot, least: u64, most: u64) -> Result<(), BackendError> {
        // Every instance holds up to two slices of its share of the
        // horizon: the bucket runs up to twice the horizon ahead.
        let reach = Duration::from_nanos(2 * LEASE_HORIZON_NS);
        let (least, most) = (to_u32(least), to_u32(most.max(least)));
        let got = self
            .store
            .lease(&self.op, self.key, &self.spec, least, most, reach)
            .await;
        let now = self.clock.now_ns();
        {
            let mut lease = slot.lock();
            lease.fetching = false;
            match &got {
                Ok(grant) if grant.tokens > 0 => {
                    let starts: Vec<i128> = grant
                        .starts_us
                        .iter()
                        .map(|s| i128::from(now) + i128::from(*s) * 1_000)
                        .collect();
                    let tokens = u64::from(grant.tokens);
                    let expires = slice_expiry(lease.windows(), &starts, tokens, now);
                    lease.add(Slice {
                        starts,
                        ends_us: grant.ends_us.clone(),
                        tokens,
                        used: 0,
                        expires,
                    });
                }
                Ok(grant) => lease.refused(now, duration_ns(grant.wait)),
                Err(_) => {}
            }
        }
        slot.fetched.notify_waiters();
        got.map(drop)
    }

    /// Fetches in the background (no runtime: the next empty take
    /// fetches in line instead).
    fn fetch_ahead(self, slot: Arc<LeaseSlot>, most: u64) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            slot.lock().fetching = false;
            return;
        };
        rt.spawn(async move {
            if let Err(e) = self.fetch(&slot, 1, most).await {
                tracing::debug!(op = &*self.op, error = %e, "lease not fetched ahead");
            }
        });
    }

    /// Gives the unused tokens of `slices` back, in the background.
    fn give_back(self, slices: Vec<Slice>) {
        let slices: Vec<Slice> = slices.into_iter().filter(|s| s.used < s.tokens).collect();
        if slices.is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            for s in slices {
                let left = to_u32(s.tokens - s.used);
                let back = self
                    .store
                    .give_back(&self.op, self.key, &self.spec, &s.ends_us, left)
                    .await;
                tracing::trace!(op = &*self.op, left, ?back, "lease tokens given back");
            }
        });
    }
}

fn to_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl OpCore {
    /// One shared token bucket under `mode = "lease"`: `n` tokens served
    /// from this instance's slices, fetched from the store when they run
    /// out: `Ok(Some(held))` with the tokens this instance still holds. A
    /// call served or refused from the lease touches no store and
    /// allocates nothing. `Ok(None)`: this key could not be leased (key
    /// table full of leases in use), check it exactly. A store that
    /// cannot answer is the caller's to degrade (`Err(Err(reason))`).
    pub(super) async fn take_leased(
        &self,
        leases: &Leases,
        r: &Policy,
        spec: &RateSpec,
        key: Option<u64>,
        n: u32,
    ) -> Result<Option<u64>, Result<Refusal, String>> {
        let keyed;
        let slot = match key {
            None => match &leases.op_wide {
                Some(slot) => slot,
                None => return Ok(None),
            },
            Some(_) => match leases.slot(spec, key) {
                Some(slot) => {
                    keyed = slot;
                    &keyed
                }
                None => return Ok(None),
            },
        };
        let n = u64::from(n);
        for _ in 0..ATTEMPTS {
            let mut expired = Vec::new();
            let step = {
                let mut lease = slot.lock();
                match lease.take(self.clock.now_ns(), n, &mut expired) {
                    Served::Admitted => {
                        let ahead = lease.wants(1);
                        lease.fetching |= ahead.is_some();
                        Step::Served(ahead, lease.held())
                    }
                    Served::Wait(ns) => Step::Refused(ns),
                    Served::Empty if lease.fetching => Step::Await(slot.fetched.notified()),
                    Served::Empty => {
                        lease.fetching = true;
                        Step::Fetch { least: n }
                    }
                }
            };
            if !expired.is_empty() {
                if let Some(fetcher) = self.fetcher(spec, key) {
                    fetcher.give_back(expired);
                }
            }
            match step {
                Step::Served(ahead, held) => {
                    if let Some(most) = ahead {
                        match self.fetcher(spec, key) {
                            Some(fetcher) => fetcher.fetch_ahead(Arc::clone(slot), most),
                            None => slot.lock().fetching = false,
                        }
                    }
                    return Ok(Some(held));
                }
                Step::Refused(ns) => {
                    return Err(Ok(Refusal {
                        wait: Duration::from_nanos(ns),
                        window: 0,
                    }))
                }
                Step::Await(fetched) => {
                    // Bounded: a fetch that never ends (a lost task) must
                    // not hold calls; the next attempt fetches itself.
                    if tokio::time::timeout(FETCH_WAIT, fetched).await.is_err() {
                        slot.lock().fetching = false;
                    }
                }
                Step::Fetch { least } => {
                    let Some(fetcher) = self.fetcher(spec, key) else {
                        slot.lock().fetching = false;
                        return Err(Err(NO_STORE.to_owned()));
                    };
                    let cap = lease_cap(per_second(spec), self.instances(r, Some(&fetcher.store)));
                    let most = {
                        let mut lease = slot.lock();
                        lease.cap = cap;
                        lease.fetching = false;
                        let most = lease.wants(least).unwrap_or(least);
                        lease.fetching = true;
                        most
                    };
                    if let Err(e) = fetcher.fetch(slot, least, most).await {
                        return Err(Err(e.to_string()));
                    }
                }
            }
        }
        // Fetched, yet others took the slice first every time.
        Err(Ok(Refusal {
            wait: Duration::from_millis(1),
            window: 0,
        }))
    }

    /// The op-wide bucket's lease served in line, without a future: `n`
    /// tokens served (`Some(Ok(()))`) or refused here (`Some(Err)`), or
    /// `None` when the lease is empty and the call must go on to
    /// [`take_leased`](Self::take_leased) (which fetches).
    pub(super) fn serve_leased_now(
        &self,
        leases: &Leases,
        spec: &RateSpec,
        now: u64,
        n: u32,
    ) -> Option<Result<(), Refusal>> {
        let slot = leases.op_wide.as_ref()?;
        let mut expired = Vec::new();
        let (served, ahead) = {
            let mut lease = slot.lock();
            match lease.take(now, u64::from(n), &mut expired) {
                Served::Admitted => {
                    let ahead = lease.wants(1);
                    lease.fetching |= ahead.is_some();
                    (Some(Ok(())), ahead)
                }
                Served::Wait(ns) => (
                    Some(Err(Refusal {
                        wait: Duration::from_nanos(ns),
                        window: 0,
                    })),
                    None,
                ),
                Served::Empty => (None, None),
            }
        };
        if !expired.is_empty() {
            if let Some(fetcher) = self.fetcher(spec, None) {
                fetcher.give_back(expired);
            }
        }
        if let Some(most) = ahead {
            match self.fetcher(spec, None) {
                Some(fetcher) => fetcher.fetch_ahead(Arc::clone(slot), most),
                None => slot.lock().fetching = false,
            }
        }
        served
    }

    /// What a fetch or a give-back of `key`'s bucket needs, when a store
    /// is set.
    fn fetcher(&self, spec: &RateSpec, key: Option<u64>) -> Option<Fetcher> {
        Some(Fetcher {
            store: self.store()?,
            op: Arc::clone(&self.name),
            spec: spec.clone(),
            key,
            clock: self.clock.clone(),
        })
    }

    /// How many instances share this op: configured, else what the store
    /// has seen (1 without one).
    pub(super) fn instances(&self, r: &Policy, store: Option<&Arc<Store>>) -> u32 {
        r.cfg
            .instances
            .unwrap_or_else(|| store.map_or(1, |s| s.instances()))
            .max(1)
    }

    /// Gives back every token the leases of a replaced policy hold.
    pub(crate) fn return_leases(&self, r: &Policy) {
        let (Some(leases), Some(store)) = (&r.leases, self.store()) else {
            return;
        };
        for (key, slices) in leases.drain() {
            let spec = match key {
                None => r.cfg.rate.clone(),
                Some(_) => r.cfg.rate_per_key.clone(),
            };
            if let Some(spec) = spec {
                Fetcher {
                    store: Arc::clone(&store),
                    op: Arc::clone(&self.name),
                    spec,
                    key,
                    clock: self.clock.clone(),
                }
                .give_back(slices);
            }
        }
    }
}

/// Tokens per second of the tightest window.
fn per_second(spec: &RateSpec) -> f64 {
    spec.windows
        .iter()
        .map(|w| w.per_second_f64())
        .fold(f64::INFINITY, f64::min)
}
