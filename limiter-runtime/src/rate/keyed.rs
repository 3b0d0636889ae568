//! A rate limit applied to each key on its own, with each key's state
//! kept in its slot of the key table: for the usual single-window token
//! bucket that is one word (the key's theoretical arrival time), with the
//! parameters kept once for every key. Other shapes (windows, several
//! rates) keep a boxed [`RateState`] per key.
//!
//! The two shapes keep separate tables, so a token-bucket key's slot holds
//! its cell alone (no enum tag beside it): 24 bytes with the key and its
//! last use, which keeps a large table's footprint, and its cache misses,
//! down.
//!
//! A check runs under the key's shard lock (one lock, one lookup, the
//! take): no reference count is taken or dropped and no state leaves the
//! table, so an idle key costs its slot alone.

use std::time::Duration;

use crate::keys::{KeyState, KeyTable, Owed};
use crate::settings::{Algorithm, RateSpec};

use super::gcra::{GcraCell, GcraParams};
use super::{RateState, Refusal};

/// A rate limit applied to each key on its own.
pub(crate) struct KeyedRate {
    pub(crate) spec: RateSpec,
    table: Table,
}

/// Every key's state, by the shape of the spec.
enum Table {
    /// A single token bucket window: each key keeps its cell alone, the
    /// parameters are kept once here.
    Gcra(GcraParams, KeyTable<GcraCell>),
    /// Any other spec: each key keeps every window with its parameters.
    Cells(KeyTable<Box<RateState>>),
}

/// What one per-key check found.
pub(crate) enum KeyedOutcome {
    Admitted,
    Limited(Refusal),
    /// No room to track the key.
    TableFull,
}

impl KeyState for GcraCell {
    type Ctx = GcraParams;

    /// Nothing with a full bucket; everything when the bucket refuses now;
    /// else ranked by the time until it is full again.
    fn owed(&self, p: &GcraParams, now_ns: u64) -> Owed {
        if self.is_idle(now_ns) {
            Owed::Nothing
        } else if self.available(p, now_ns) == 0 {
            Owed::Everything
        } else {
            Owed::Some(self.debt_ns(now_ns))
        }
    }
}

impl KeyedRate {
    pub(crate) fn new(spec: RateSpec, max_keys: usize) -> Self {
        let table = match (&*spec.windows, spec.algorithm) {
            ([w], Algorithm::TokenBucket) => {
                let params = GcraParams::new(w, spec.burst.unwrap_or(w.count()));
                Table::Gcra(params, KeyTable::with_ctx(max_keys, params))
            }
            _ => Table::Cells(KeyTable::new(max_keys)),
        };
        Self { spec, table }
    }

    /// Takes `n` calls (one call of cost `n`) from `key`'s limit at `now`.
    #[inline]
    pub(crate) fn try_acquire(&self, key: u64, now: u64, n: u64) -> KeyedOutcome {
        let taken = match &self.table {
            // Under the shard's lock: the only writer of the cell.
            Table::Gcra(p, table) => table.with(key, now, GcraCell::default, |cell| {
                cell.try_acquire_exclusive(p, now, n)
                    .map(drop)
                    .map_err(gcra_refusal)
            }),
            Table::Cells(table) => table.with(
                key,
                now,
                || self.fresh(),
                |s| s.try_acquire(now, n).map(drop),
            ),
        };
        match taken {
            Some(Ok(())) => KeyedOutcome::Admitted,
            Some(Err(refusal)) => KeyedOutcome::Limited(refusal),
            None => KeyedOutcome::TableFull,
        }
    }

    /// Like [`KeyedRate::try_acquire`], and on admission also the key's
    /// tightest window now: its index in the spec and how many calls it
    /// has left.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn try_acquire_remaining(
        &self,
        key: u64,
        now: u64,
        n: u64,
    ) -> (KeyedOutcome, (usize, u64)) {
        let outcome = |taken: Result<(), Refusal>, left: &dyn Fn() -> (usize, u64)| match taken {
            Ok(()) => (KeyedOutcome::Admitted, left()),
            Err(refusal) => (KeyedOutcome::Limited(refusal), (refusal.window, 0)),
        };
        let checked = match &self.table {
            Table::Gcra(p, table) => table.with(key, now, GcraCell::default, |cell| {
                let taken = cell.try_acquire_exclusive(p, now, n);
                outcome(taken.map(drop).map_err(gcra_refusal), &|| {
                    (0, cell.available(p, now))
                })
            }),
            Table::Cells(table) => table.with(
                key,
                now,
                || self.fresh(),
                |s| outcome(s.try_acquire(now, n).map(drop), &|| s.tightest(now)),
            ),
        };
        checked.unwrap_or((KeyedOutcome::TableFull, (0, 0)))
    }

    /// Charges `key` `n` calls at `now` whatever it has left (work whose
    /// size was known only after it ran): the key may go into debt, which
    /// refuses its next calls until paid back. `false` when the key could
    /// not be tracked (the table is full of keys that owe more).
    pub(crate) fn charge(&self, key: u64, now: u64, n: u64) -> bool {
        match &self.table {
            Table::Gcra(p, table) => table
                .with(key, now, GcraCell::default, |cell| cell.charge(p, now, n))
                .is_some(),
            Table::Cells(table) => table
                .with(key, now, || self.fresh(), |s| s.charge(now, n))
                .is_some(),
        }
    }

    /// Calls `key` would be admitted now; `None` when the key is not
    /// tracked.
    pub(crate) fn available(&self, key: u64, now: u64) -> Option<u64> {
        match &self.table {
            Table::Gcra(p, table) => table.peek(key, |cell| cell.available(p, now)),
            Table::Cells(table) => table.peek(key, |s| s.available(now)),
        }
    }

    /// A new key's state of a multi-window spec.
    fn fresh(&self) -> Box<RateState> {
        Box::new(RateState::new(&self.spec))
    }

    /// Forgets `key`; returns whether it was tracked.
    pub(crate) fn remove(&self, key: u64) -> bool {
        match &self.table {
            Table::Gcra(_, t) => t.remove(key),
            Table::Cells(t) => t.remove(key),
        }
    }

    /// Drops every idle key; returns how many were dropped.
    pub(crate) fn sweep(&self, now: u64) -> usize {
        match &self.table {
            Table::Gcra(_, t) => t.sweep(now),
            Table::Cells(t) => t.sweep(now),
        }
    }

    /// Forgets every key and frees the memory they took.
    pub(crate) fn clear(&self) {
        match &self.table {
            Table::Gcra(_, t) => t.clear(),
            Table::Cells(t) => t.clear(),
        }
    }

    /// Changes the number of keys kept.
    pub(crate) fn set_cap(&self, cap: usize) {
        match &self.table {
            Table::Gcra(_, t) => t.set_cap(cap),
            Table::Cells(t) => t.set_cap(cap),
        }
    }

    /// Keys tracked now.
    pub(crate) fn len(&self) -> usize {
        match &self.table {
            Table::Gcra(_, t) => t.len(),
            Table::Cells(t) => t.len(),
        }
    }

    /// Keys evicted so far.
    pub(crate) fn evicted(&self) -> u64 {
        match &self.table {
            Table::Gcra(_, t) => t.evicted(),
            Table::Cells(t) => t.evicted(),
        }
    }

    /// Evictions so far that dropped a key's debt (see
    /// [`KeyTable::forgotten`]).
    pub(crate) fn forgotten(&self) -> u64 {
        match &self.table {
            Table::Gcra(_, t) => t.forgotten(),
            Table::Cells(t) => t.forgotten(),
        }
    }
}

/// The refusal of a token bucket that is `wait` nanoseconds short.
fn gcra_refusal(wait: u64) -> Refusal {
    Refusal {
        wait: Duration::from_nanos(wait),
        window: 0,
    }
}
