//! Request coalescing: identical concurrent calls (same op, same key) run
//! once; the others wait for that one and share its value.
//!
//! The first caller of a key leads: it runs the call and publishes its
//! value. Callers that arrive while it runs follow: they wait and get a
//! clone. When the leader fails or is cancelled, its followers run their own
//! calls, so an error is never shared and a cancelled leader strands nobody.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// What a leader published: `Some(value)` on success, `None` when it failed
/// or went away.
type Outcome = Option<Arc<dyn Any + Send + Sync>>;

/// The calls in flight of one op, by key.
#[derive(Default)]
pub(crate) struct Flights {
    flights: Mutex<HashMap<Option<u64>, watch::Receiver<Option<Outcome>>>>,
}

/// A caller's part in a flight.
pub(crate) enum Role<'a> {
    Leader(Lead<'a>),
    Follower(watch::Receiver<Option<Outcome>>),
}

impl Flights {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Option<u64>, watch::Receiver<Option<Outcome>>>> {
        self.flights.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins the flight of `key`, or starts one.
    pub(crate) fn join(&self, key: Option<u64>) -> Role<'_> {
        let mut flights = self.lock();
        if let Some(rx) = flights.get(&key) {
            if rx.borrow().is_none() {
                return Role::Follower(rx.clone());
            }
        }
        let (tx, rx) = watch::channel(None);
        flights.insert(key, rx);
        Role::Leader(Lead {
            flights: self,
            key,
            tx: Some(tx),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The leader's duty to publish; publishes "failed" if dropped unpublished.
pub(crate) struct Lead<'a> {
    flights: &'a Flights,
    key: Option<u64>,
    tx: Option<watch::Sender<Option<Outcome>>>,
}

impl Lead<'_> {
    /// Ends the flight with `value` (`None`: the call failed).
    pub(crate) fn publish(mut self, value: Outcome) {
        self.end(value);
    }

    fn end(&mut self, value: Outcome) {
        if let Some(tx) = self.tx.take() {
            // Remove first, so that a caller arriving now starts a new flight
            // instead of joining one that is over.
            let mut flights = self.flights.lock();
            if flights
                .get(&self.key)
                .is_some_and(|rx| rx.same_channel(&tx.subscribe()))
            {
                flights.remove(&self.key);
            }
            drop(flights);
            let _ = tx.send(Some(value));
        }
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        self.end(None);
    }
}

/// Waits for the leader; `Some(value)` when it succeeded with a `T`.
pub(crate) async fn follow<T: Any + Clone>(mut rx: watch::Receiver<Option<Outcome>>) -> Option<T> {
    let outcome = rx.wait_for(Option::is_some).await.ok()?.clone();
    outcome.flatten()?.downcast_ref::<T>().cloned()
}
