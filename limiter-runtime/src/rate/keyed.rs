//! A rate limit applied to each key on its own, with each key's state
//! kept in its slot of the key table: for the usual single-window token
//! bucket that is one word (the key's theoretical arrival time), with the
//! parameters kept once for every key. Other shapes (windows, several
//! rates) keep a boxed [`RateState`] per key.
//!
//! A check runs under the key's shard lock (one lock, one lookup, the
//! take): no reference count is taken or dropped and no state leaves the
//! table, so an idle key costs its slot alone.

use std::time::Duration;

use crate::keys::{KeyState, KeyTable};
use crate::settings::{Algorithm, RateSpec};

use super::gcra::{GcraCell, GcraParams};
use super::{RateState, Refusal};

/// A rate limit applied to each key on its own.
pub(crate) struct KeyedRate {
    pub(crate) spec: RateSpec,
    /// The parameters of every key's cell, when the spec is one token
    /// bucket window (the keys then keep only their cell).
    gcra: Option<GcraParams>,
    pub(crate) table: KeyTable<KeyRate>,
}

/// What one per-key check found.
pub(crate) enum KeyedOutcome {
    Admitted,
    Limited(Refusal),
    /// No room to track the key.
    TableFull,
}

/// One key's state.
pub(crate) enum KeyRate {
    /// A single token bucket window: its cell alone.
    Gcra(GcraCell),
    /// Any other spec: every window with its parameters.
    Cells(Box<RateState>),
}

impl KeyState for KeyRate {
    fn is_idle(&self, now_ns: u64) -> bool {
        match self {
            KeyRate::Gcra(cell) => cell.is_idle(now_ns),
            KeyRate::Cells(state) => state.is_idle(now_ns),
        }
    }
}

impl KeyedRate {
    pub(crate) fn new(spec: RateSpec, max_keys: usize) -> Self {
        let gcra = match (&*spec.windows, spec.algorithm) {
            ([w], Algorithm::TokenBucket) => {
                Some(GcraParams::new(w, spec.burst.unwrap_or(w.count())))
            }
            _ => None,
        };
        Self {
            spec,
            gcra,
            table: KeyTable::new(max_keys),
        }
    }

    /// A new key's state.
    fn fresh(&self) -> KeyRate {
        match self.gcra {
            Some(_) => KeyRate::Gcra(GcraCell::default()),
            None => KeyRate::Cells(Box::new(RateState::new(&self.spec))),
        }
    }

    /// Takes one call from `state` at `now`, under its shard's lock (the
    /// table only lends a key's state under it, so the cell is written
    /// with a plain store).
    #[inline]
    fn take(&self, state: &KeyRate, now: u64) -> Result<(), Refusal> {
        match (state, &self.gcra) {
            (KeyRate::Gcra(cell), Some(p)) => match cell.try_acquire_exclusive(p, now) {
                Ok(_) => Ok(()),
                Err(wait) => Err(Refusal {
                    wait: Duration::from_nanos(wait),
                    window: 0,
                }),
            },
            (KeyRate::Cells(s), _) => s.try_acquire(now),
            // A key made under another spec: the table is replaced with
            // its spec, so this cannot be reached; admit rather than panic.
            (KeyRate::Gcra(_), None) => Ok(()),
        }
    }

    /// Calls `state` would admit now (its tightest window).
    fn left(&self, state: &KeyRate, now: u64) -> u64 {
        match (state, &self.gcra) {
            (KeyRate::Gcra(cell), Some(p)) => cell.available(p, now),
            (KeyRate::Cells(s), _) => s.available(now),
            (KeyRate::Gcra(_), None) => 0,
        }
    }

    /// Takes one call from `key`'s limit at `now`.
    #[inline]
    pub(crate) fn try_acquire(&self, key: u64, now: u64) -> KeyedOutcome {
        let taken = self
            .table
            .with(key, now, || self.fresh(), |state| self.take(state, now));
        match taken {
            Some(Ok(())) => KeyedOutcome::Admitted,
            Some(Err(refusal)) => KeyedOutcome::Limited(refusal),
            None => KeyedOutcome::TableFull,
        }
    }

    /// Like [`KeyedRate::try_acquire`], and on admission also how many calls
    /// the key has left now (its tightest window).
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn try_acquire_remaining(&self, key: u64, now: u64) -> (KeyedOutcome, u64) {
        self.table
            .with(
                key,
                now,
                || self.fresh(),
                |state| match self.take(state, now) {
                    Ok(()) => (KeyedOutcome::Admitted, self.left(state, now)),
                    Err(refusal) => (KeyedOutcome::Limited(refusal), 0),
                },
            )
            .unwrap_or((KeyedOutcome::TableFull, 0))
    }

    /// Calls `key` would be admitted now; `None` when the key is not
    /// tracked.
    pub(crate) fn available(&self, key: u64, now: u64) -> Option<u64> {
        self.table.peek(key, |state| self.left(state, now))
    }
}
