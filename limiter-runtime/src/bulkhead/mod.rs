//! Bulkhead: op-wide and per-key in-flight bounds with a bounded, prioritised
//! wait queue.
//!
//! A call runs at once when both the op and its key have a free place.
//! Otherwise it waits in the queue (op-wide `queue` places, `queue_per_key`
//! per key), ordered by priority (higher first) then arrival. When the queue
//! that would take it is full, the overload policy decides: `drop_newest`
//! refuses the new call, `drop_oldest` refuses the oldest waiter of that
//! queue and takes its place, `block` waits for a queue place. Every wait is
//! bounded by `queue_timeout`.
//!
//! While nobody waits and no per-key bound applies, a place is taken and
//! given back without a lock (see [`gate`]). Otherwise places are handed
//! over under one mutex: a released place goes straight to the first
//! eligible waiter, so no wake-up is lost and no place is counted twice. A waiter that is dropped (its caller went away, or it timed out)
//! removes itself; if a place was handed to it at the same moment, it gives
//! the place back.

mod gate;

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::{LimitError, QueueScope, Quota};
use crate::keys::{KeyState, KeyTable, Owed};
use crate::settings::{OverloadPolicy, ResolvedConfig};
use crate::sync::{Mutex, MutexGuard};
use gate::Gate;

/// Counts of one key. Changed only under the bulkhead's mutex.
#[derive(Debug, Default)]
pub(crate) struct KeySlot {
    in_flight: AtomicU32,
    queued: AtomicU32,
}

impl KeySlot {
    /// Calls of the key running and queued.
    pub(crate) fn counts(&self) -> (u32, u32) {
        (
            self.in_flight.load(Ordering::Relaxed),
            self.queued.load(Ordering::Relaxed),
        )
    }
}

impl KeyState for KeySlot {
    type Ctx = ();

    /// Nothing with no call running or queued; otherwise the slot is in
    /// use and never dropped.
    fn owed(&self, _: &(), _now_ns: u64) -> Owed {
        if self.in_flight.load(Ordering::Relaxed) == 0 && self.queued.load(Ordering::Relaxed) == 0 {
            Owed::Nothing
        } else {
            Owed::Everything
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max: u32,
    pub(crate) max_per_key: u32,
    pub(crate) queue: u32,
    pub(crate) queue_per_key: u32,
    pub(crate) queue_timeout: Duration,
    pub(crate) overload: OverloadPolicy,
    pub(crate) retry_after: Duration,
}

impl Limits {
    /// Whether calls with a key count against per-key bounds.
    fn per_key(&self) -> bool {
        self.max_per_key != u32::MAX || self.queue_per_key > 0
    }

    pub(crate) fn of(cfg: &ResolvedConfig) -> Self {
        Self {
            max: cfg.max_concurrent,
            max_per_key: cfg.max_concurrent_per_key,
            queue: cfg.queue,
            queue_per_key: cfg.queue_per_key,
            queue_timeout: cfg.queue_timeout,
            overload: cfg.overload,
            retry_after: cfg.retry_after,
        }
    }
}

type Grant = Result<(), LimitError>;

struct Waiter {
    key: Option<Arc<KeySlot>>,
    priority: i64,
    tx: oneshot::Sender<Grant>,
}

struct State {
    limits: Limits,
    queued: u32,
    seq: u64,
    /// Waiters holding a queue place, by (priority desc, arrival).
    waiters: BTreeMap<(Reverse<i64>, u64), Waiter>,
    /// Waiters waiting for a queue place (`block`), by arrival.
    blocked: BTreeMap<u64, Waiter>,
}

/// One bulkhead per operation.
pub(crate) struct Bulkhead {
    op: Arc<str>,
    /// Calls running and waiting; the lock-free fast path.
    gate: Gate,
    /// Whether calls with a key count against per-key bounds.
    per_key: std::sync::atomic::AtomicBool,
    /// Whether a key's running calls are bounded (then keyed calls cannot
    /// take the fast path; a per-key queue bound alone applies only to
    /// calls that wait, which go through the mutex anyway).
    key_bound: std::sync::atomic::AtomicBool,
    state: Mutex<State>,
    pub(crate) keys: KeyTable<Arc<KeySlot>>,
}

/// A view of a bulkhead for snapshots.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct BulkheadSnapshot {
    /// Calls running now.
    pub in_flight: u32,
    /// Calls holding a queue place.
    pub queued: u32,
    /// Calls waiting for a queue place (`overload = "block"`).
    pub blocked: u32,
    /// Highest `in_flight` seen.
    pub peak_in_flight: u32,
    /// Op-wide bound.
    pub max_concurrent: u32,
    /// Op-wide queue places.
    pub queue: u32,
    /// Keys tracked.
    pub keys: usize,
}

fn count(a: &Option<Arc<KeySlot>>, f: impl Fn(&KeySlot) -> &AtomicU32) -> u32 {
    a.as_ref().map_or(0, |k| f(k).load(Ordering::Relaxed))
}

fn add(a: &Option<Arc<KeySlot>>, f: impl Fn(&KeySlot) -> &AtomicU32, delta: i32) {
    if let Some(k) = a {
        let c = f(k);
        c.store(
            c.load(Ordering::Relaxed).saturating_add_signed(delta),
            Ordering::Relaxed,
        );
    }
}

fn in_flight(k: &KeySlot) -> &AtomicU32 {
    &k.in_flight
}

fn queued(k: &KeySlot) -> &AtomicU32 {
    &k.queued
}

impl State {
    fn key_can_run(&self, key: &Option<Arc<KeySlot>>) -> bool {
        key.is_none() || count(key, in_flight) < self.limits.max_per_key
    }

    fn key_can_queue(&self, key: &Option<Arc<KeySlot>>) -> bool {
        key.is_none() || count(key, queued) < self.limits.queue_per_key
    }

    /// Gives a running call's place back (under the mutex).
    fn give_place(&mut self, gate: &Gate, key: &Option<Arc<KeySlot>>) {
        gate.give();
        add(key, in_flight, -1);
    }

    /// Lets a waiter (already out of its map) run.
    fn grant(&mut self, gate: &Gate, w: Waiter) {
        gate.grant();
        add(&w.key, in_flight, 1);
        if let Err(Ok(())) = w.tx.send(Ok(())) {
            // The waiter is gone (cannot happen while it is in a map, since it
            // removes itself under this lock before it drops its receiver).
            self.give_place(gate, &w.key);
        }
    }

    fn unqueue(&mut self, w: &Waiter) {
        self.queued = self.queued.saturating_sub(1);
        add(&w.key, queued, -1);
    }

    /// Hands free places to waiters and free queue places to blocked callers.
    fn dispatch(&mut self, gate: &Gate) {
        while gate.has_room() {
            if let Some(k) = self
                .waiters
                .iter()
                .find(|(_, w)| self.key_can_run(&w.key))
                .map(|(k, _)| *k)
            {
                let w = self.waiters.remove(&k).expect("key found above");
                self.unqueue(&w);
                self.grant(gate, w);
                continue;
            }
            if let Some(s) = self
                .blocked
                .iter()
                .find(|(_, w)| self.key_can_run(&w.key))
                .map(|(s, _)| *s)
            {
                let w = self.blocked.remove(&s).expect("key found above");
                self.grant(gate, w);
                continue;
            }
            break;
        }
        while self.queued < self.limits.queue {
            let Some(s) = self
                .blocked
                .iter()
                .find(|(_, w)| self.key_can_queue(&w.key))
                .map(|(s, _)| *s)
            else {
                break;
            };
            let w = self.blocked.remove(&s).expect("key found above");
            self.enqueue(s, w);
        }
    }

    fn enqueue(&mut self, seq: u64, w: Waiter) {
        self.queued += 1;
        add(&w.key, queued, 1);
        self.waiters.insert((Reverse(w.priority), seq), w);
    }

    /// The oldest queued waiter of `scope` (of `key` for a per-key queue).
    fn oldest(&self, scope: QueueScope, key: &Option<Arc<KeySlot>>) -> Option<(Reverse<i64>, u64)> {
        self.waiters
            .iter()
            .filter(|(_, w)| match (scope, key, &w.key) {
                (QueueScope::Global, _, _) => true,
                (QueueScope::Key, Some(k), Some(wk)) => Arc::ptr_eq(k, wk),
                (QueueScope::Key, _, _) => false,
            })
            .min_by_key(|((_, seq), _)| *seq)
            .map(|(k, _)| *k)
    }
}

/// What a caller got on arrival.
enum Entry {
    Run(Option<Arc<KeySlot>>),
    Wait {
        key: Option<Arc<KeySlot>>,
        seq: u64,
        priority: i64,
        rx: oneshot::Receiver<Grant>,
        deadline: Instant,
    },
}

impl Bulkhead {
    pub(crate) fn new(op: Arc<str>, limits: Limits, max_keys: usize) -> Self {
        Self {
            op,
            gate: Gate::new(limits.max),
            per_key: std::sync::atomic::AtomicBool::new(limits.per_key()),
            key_bound: std::sync::atomic::AtomicBool::new(limits.max_per_key != u32::MAX),
            state: Mutex::new(State {
                limits,
                queued: 0,
                seq: 0,
                waiters: BTreeMap::new(),
                blocked: BTreeMap::new(),
            }),
            keys: KeyTable::new(max_keys),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Swaps the limits; waiters that now fit are let through.
    pub(crate) fn set_limits(&self, limits: Limits) {
        let mut st = self.lock();
        st.limits = limits;
        self.gate.set_max(limits.max);
        self.per_key.store(limits.per_key(), Ordering::Relaxed);
        self.key_bound
            .store(limits.max_per_key != u32::MAX, Ordering::Relaxed);
        st.dispatch(&self.gate);
    }

    /// Changes only the op-wide in-flight bound (the adaptive limit).
    pub(crate) fn set_max(&self, max: u32) {
        let mut st = self.lock();
        st.limits.max = max.max(1);
        self.gate.set_max(st.limits.max);
        st.dispatch(&self.gate);
    }

    /// Takes a place without waiting, when nobody waits and a place is
    /// free; gives `this` back otherwise (or when the call's key counts
    /// against per-key bounds: then [`acquire`](Self::acquire) decides).
    #[inline]
    pub(crate) fn try_acquire<B: Deref<Target = Bulkhead>>(
        this: B,
        key: Option<u64>,
        _now_ns: u64,
    ) -> Result<BulkPermit<B>, B> {
        if key.is_some() && this.key_bound.load(Ordering::Relaxed) {
            return Err(this);
        }
        if this.gate.try_take() {
            Ok(BulkPermit {
                bulkhead: this,
                key: None,
                armed: true,
                attached: None,
            })
        } else {
            Err(this)
        }
    }

    /// Waits for a place. Dropping the returned future at any point leaves
    /// no place or queue place taken.
    pub(crate) async fn acquire<B: Deref<Target = Bulkhead>>(
        this: B,
        key: Option<u64>,
        priority: i64,
        now_ns: u64,
    ) -> Result<BulkPermit<B>, LimitError> {
        let (key, seq, priority, rx, deadline) = match this.enter(key, priority, now_ns)? {
            Entry::Run(key) => {
                return Ok(BulkPermit {
                    bulkhead: this,
                    key,
                    armed: true,
                    attached: None,
                })
            }
            Entry::Wait {
                key,
                seq,
                priority,
                rx,
                deadline,
            } => (key, seq, priority, rx, deadline),
        };
        let mut guard = WaitGuard {
            bulkhead: &this,
            key: key.clone(),
            seq,
            priority,
            rx: Some(rx),
        };
        let rx = guard.rx.as_mut().expect("set above");
        let waited = tokio::time::timeout_at(deadline, rx).await;
        let outcome = match waited {
            Ok(Ok(grant)) => {
                guard.rx = None;
                grant
            }
            Ok(Err(_closed)) => {
                guard.rx = None;
                Err(LimitError::Overloaded {
                    op: this.op.clone(),
                    retry_after: this.lock().limits.retry_after,
                })
            }
            Err(_elapsed) => guard.time_out(),
        };
        drop(guard);
        outcome.map(|()| BulkPermit {
            bulkhead: this,
            key,
            armed: true,
            attached: None,
        })
    }

    fn enter(&self, key: Option<u64>, priority: i64, now_ns: u64) -> Result<Entry, LimitError> {
        let key = key.filter(|_| self.per_key.load(Ordering::Relaxed));
        let key = match key {
            None => None,
            Some(hash) => match self
                .keys
                .get_or_insert(hash, now_ns, || Arc::new(KeySlot::default()))
            {
                Some(slot) => Some(slot),
                None => {
                    return Err(LimitError::Overloaded {
                        op: self.op.clone(),
                        retry_after: self.lock().limits.retry_after,
                    })
                }
            },
        };
        let mut st = self.lock();
        if self.gate.take_or_wait(st.key_can_run(&key)) {
            add(&key, in_flight, 1);
            return Ok(Entry::Run(key));
        }
        // Registered as waiting in the gate: every way out below that does
        // not queue must say so.
        let mut waiting = Waiting {
            gate: &self.gate,
            queued: false,
        };
        let full = if !st.key_can_queue(&key) {
            Some(QueueScope::Key)
        } else if st.queued >= st.limits.queue {
            Some(QueueScope::Global)
        } else {
            None
        };
        let (tx, rx) = oneshot::channel();
        st.seq += 1;
        let seq = st.seq;
        let waiter = Waiter {
            key: key.clone(),
            priority,
            tx,
        };
        let limits = st.limits;
        let queue_full = |scope| LimitError::QueueFull {
            op: self.op.clone(),
            scope,
            retry_after: limits.retry_after,
            quota: match scope {
                QueueScope::Key => Quota::concurrency(u64::from(limits.max_per_key), true),
                QueueScope::Global => Quota::concurrency(u64::from(limits.max), false),
            },
        };
        match (full, limits.overload) {
            (None, _) => {
                st.enqueue(seq, waiter);
                waiting.queued = true;
            }
            (Some(scope), OverloadPolicy::DropNewest) => return Err(queue_full(scope)),
            (Some(scope), OverloadPolicy::DropOldest) => {
                let Some(victim) = st.oldest(scope, &key) else {
                    return Err(queue_full(scope));
                };
                // Evict only if that makes room for the newcomer in both
                // queues (it may not after the limits shrank, or when the
                // other queue is full as well).
                let same_key = match (&key, &st.waiters[&victim].key) {
                    (Some(k), Some(v)) => Arc::ptr_eq(k, v),
                    _ => false,
                };
                let key_fits = key.is_none()
                    || count(&key, queued) - u32::from(same_key) < limits.queue_per_key;
                let global_fits = st.queued - 1 < limits.queue;
                if !(key_fits && global_fits) {
                    return Err(queue_full(if key_fits {
                        QueueScope::Global
                    } else {
                        QueueScope::Key
                    }));
                }
                let victim = st.waiters.remove(&victim).expect("found above");
                st.unqueue(&victim);
                self.gate.unwait();
                let _ = victim.tx.send(Err(queue_full(scope)));
                st.enqueue(seq, waiter);
                waiting.queued = true;
            }
            (Some(_), OverloadPolicy::Block) => {
                st.blocked.insert(seq, waiter);
                waiting.queued = true;
            }
        }
        Ok(Entry::Wait {
            key,
            seq,
            priority,
            rx,
            deadline: crate::clock::deadline(Instant::now(), limits.queue_timeout),
        })
    }

    /// Gives a place back: one atomic subtraction when nobody waits and
    /// the place has no key, else under the lock.
    #[inline]
    fn release(&self, key: &Option<Arc<KeySlot>>) {
        if key.is_none() && !self.gate.give() {
            return;
        }
        self.release_locked(key);
    }

    /// [`release`](Self::release) of a keyed place, or with waiters to
    /// hand the place to (`gate.give` already ran for an unkeyed one).
    #[cold]
    fn release_locked(&self, key: &Option<Arc<KeySlot>>) {
        let mut st = self.lock();
        if key.is_some() {
            st.give_place(&self.gate, key);
        }
        st.dispatch(&self.gate);
    }

    /// Current counts: (in flight, queued, blocked).
    pub(crate) fn counts(&self) -> (u32, u32, u32) {
        let st = self.lock();
        (self.gate.in_flight(), st.queued, st.blocked.len() as u32)
    }

    pub(crate) fn snapshot(&self) -> BulkheadSnapshot {
        let keys = self.keys.len();
        let st = self.lock();
        BulkheadSnapshot {
            in_flight: self.gate.in_flight(),
            queued: st.queued,
            blocked: st.blocked.len() as u32,
            peak_in_flight: self.gate.peak(),
            max_concurrent: st.limits.max,
            queue: st.limits.queue,
            keys,
        }
    }
}

/// Says the gate that a caller registered as waiting did not queue after
/// all (it ran into a full queue).
struct Waiting<'a> {
    gate: &'a Gate,
    queued: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.queued {
            self.gate.unwait();
        }
    }
}

/// Removes a waiter that stops waiting, and returns a place handed to it in
/// the meantime.
struct WaitGuard<'a> {
    bulkhead: &'a Bulkhead,
    key: Option<Arc<KeySlot>>,
    seq: u64,
    priority: i64,
    rx: Option<oneshot::Receiver<Grant>>,
}

impl WaitGuard<'_> {
    /// Leaves the queue at the deadline; a place granted at that very moment
    /// is kept.
    fn time_out(&mut self) -> Grant {
        let mut st = self.bulkhead.lock();
        if self.withdraw(&mut st) {
            self.rx = None;
            return Err(LimitError::QueueTimeout {
                op: self.bulkhead.op.clone(),
            });
        }
        drop(st);
        self.rx
            .take()
            .and_then(|mut rx| rx.try_recv().ok())
            .unwrap_or_else(|| {
                Err(LimitError::QueueTimeout {
                    op: self.bulkhead.op.clone(),
                })
            })
    }

    /// Takes the waiter out of the queue if it is still there.
    fn withdraw(&self, st: &mut State) -> bool {
        if let Some(w) = st.waiters.remove(&(Reverse(self.priority), self.seq)) {
            st.unqueue(&w);
            self.bulkhead.gate.unwait();
            st.dispatch(&self.bulkhead.gate);
            return true;
        }
        if st.blocked.remove(&self.seq).is_some() {
            self.bulkhead.gate.unwait();
            return true;
        }
        false
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        let mut st = self.bulkhead.lock();
        if self.withdraw(&mut st) {
            return;
        }
        // Not in any queue: a grant or a refusal was sent under the lock.
        if let Ok(Ok(())) = rx.try_recv() {
            // Granted, but nobody will run: give the place back.
            st.give_place(&self.bulkhead.gate, &self.key);
            st.dispatch(&self.bulkhead.gate);
        }
    }
}

/// Something held exactly as long as a bulkhead place (a place of the same
/// op in a bulkhead shared by every instance): given back, by dropping it,
/// just before the place.
pub(crate) type Attached = Box<dyn Send + Sync>;

/// A place in the bulkhead; released on drop.
pub(crate) struct BulkPermit<B: Deref<Target = Bulkhead>> {
    bulkhead: B,
    key: Option<Arc<KeySlot>>,
    armed: bool,
    attached: Option<Attached>,
}

impl<B: Deref<Target = Bulkhead>> BulkPermit<B> {
    /// The same place, owned through `bulkhead` (which must be this one).
    pub(crate) fn into_owned(mut self, bulkhead: Arc<Bulkhead>) -> BulkPermit<Arc<Bulkhead>> {
        debug_assert!(std::ptr::eq(&*self.bulkhead, &*bulkhead));
        self.armed = false;
        BulkPermit {
            bulkhead,
            key: self.key.take(),
            armed: true,
            attached: self.attached.take(),
        }
    }

    /// Holds `held` as long as this place: it is dropped when the place is
    /// released, on whatever path.
    pub(crate) fn attach(&mut self, held: Attached) {
        self.attached = Some(held);
    }
}

impl<B: Deref<Target = Bulkhead>> Drop for BulkPermit<B> {
    fn drop(&mut self) {
        drop(self.attached.take());
        if self.armed {
            self.bulkhead.release(&self.key);
        }
    }
}

/// Model checks of the hand-over (`RUSTFLAGS="--cfg limiter_loom" cargo test
/// --release -p limiter-runtime loom`): a release racing a caller that is
/// about to queue, and a waiter that leaves (dropped or timed out) at the
/// moment a place is handed to it. No wake-up is lost, no place is counted
/// twice, and every place comes back.
#[cfg(all(test, limiter_loom))]
mod loom_tests {
    use super::*;
    use loom::thread;

    fn bulkhead(max: u32, max_per_key: u32) -> Arc<Bulkhead> {
        let limits = Limits {
            max,
            max_per_key,
            queue: 2,
            queue_per_key: 2,
            queue_timeout: Duration::from_secs(1),
            overload: OverloadPolicy::DropNewest,
            retry_after: Duration::from_secs(1),
        };
        Arc::new(Bulkhead::new("loom".into(), limits, 16))
    }

    /// Takes the bulkhead's one free place.
    fn occupy(b: &Arc<Bulkhead>) -> BulkPermit<Arc<Bulkhead>> {
        Bulkhead::try_acquire(Arc::clone(b), None, 0)
            .ok()
            .expect("room")
    }

    /// Queues a caller behind the running one, as `acquire` would.
    fn queue_one(b: &Bulkhead) -> WaitGuard<'_> {
        let Ok(Entry::Wait {
            key,
            seq,
            priority,
            rx,
            ..
        }) = b.enter(None, 0, 0)
        else {
            panic!("full: waits");
        };
        WaitGuard {
            bulkhead: b,
            key,
            seq,
            priority,
            rx: Some(rx),
        }
    }

    /// A running call ends while another arrives: the newcomer runs at once
    /// or is handed the place while it waits.
    #[test]
    fn loom_bulkhead_release_racing_arrival_loses_no_wakeup() {
        loom::model(|| {
            let b = bulkhead(1, u32::MAX);
            let running = occupy(&b);
            let ender = thread::spawn(move || drop(running));
            let entry = b.enter(None, 0, 0).expect("queue has room");
            ender.join().unwrap();
            let key = match entry {
                Entry::Run(key) => key,
                Entry::Wait { key, mut rx, .. } => {
                    assert!(matches!(rx.try_recv(), Ok(Ok(()))), "wake-up lost");
                    key
                }
            };
            assert_eq!(b.counts(), (1, 0, 0), "exactly the newcomer runs");
            b.release(&key);
            assert_eq!(b.counts(), (0, 0, 0));
        });
    }

    /// Two newcomers race a release for one place: exactly one runs (at
    /// once or handed the place), the other waits in the queue, and the
    /// next release hands the place on to it.
    #[test]
    fn loom_bulkhead_two_arrivals_one_place() {
        loom::model(|| {
            let b = bulkhead(1, u32::MAX);
            let running = occupy(&b);
            let ender = thread::spawn(move || drop(running));
            let arrivals: Vec<_> = (0..2)
                .map(|_| {
                    let b = Arc::clone(&b);
                    thread::spawn(move || match b.enter(None, 0, 0) {
                        Ok(Entry::Run(_)) => None,
                        Ok(Entry::Wait { rx, .. }) => Some(rx),
                        Err(e) => panic!("queue had room: {e:?}"),
                    })
                })
                .collect();
            ender.join().unwrap();
            let mut runs = 0;
            let mut waiting = Vec::new();
            for a in arrivals {
                match a.join().unwrap() {
                    None => runs += 1,
                    Some(mut rx) => match rx.try_recv() {
                        Ok(Ok(())) => runs += 1,
                        Ok(Err(e)) => panic!("refused: {e:?}"),
                        Err(_) => waiting.push(rx),
                    },
                }
            }
            assert_eq!((runs, waiting.len()), (1, 1), "one place, two callers");
            assert_eq!(b.counts(), (1, 1, 0));
            b.release(&None);
            let mut rx = waiting.pop().unwrap();
            assert!(matches!(rx.try_recv(), Ok(Ok(()))), "place not handed on");
            assert_eq!(b.counts(), (1, 0, 0));
            b.release(&None);
            assert_eq!(b.counts(), (0, 0, 0));
        });
    }

    /// The same race on a key bounded to one running call: the key's count
    /// follows the place.
    #[test]
    fn loom_bulkhead_keyed_handover() {
        loom::model(|| {
            let b = bulkhead(2, 1);
            let Ok(Entry::Run(first)) = b.enter(Some(7), 0, 0) else {
                panic!("room for the first call");
            };
            let ender = {
                let b = Arc::clone(&b);
                thread::spawn(move || b.release(&first))
            };
            let entry = b.enter(Some(7), 0, 0).expect("queue has room");
            ender.join().unwrap();
            let key = match entry {
                Entry::Run(key) => key,
                Entry::Wait { key, mut rx, .. } => {
                    assert!(matches!(rx.try_recv(), Ok(Ok(()))), "wake-up lost");
                    key
                }
            };
            assert_eq!(b.counts(), (1, 0, 0));
            assert_eq!(key.as_ref().map(|k| k.counts()), Some((1, 0)));
            b.release(&key);
            assert_eq!(b.counts(), (0, 0, 0));
            assert_eq!(key.as_ref().map(|k| k.counts()), Some((0, 0)));
        });
    }

    /// A waiter whose caller goes away (its future dropped) as a place is
    /// handed to it: the place is given back, not lost.
    #[test]
    fn loom_bulkhead_cancelled_waiter_returns_the_place() {
        loom::model(|| {
            let b = bulkhead(1, u32::MAX);
            let running = occupy(&b);
            let waiter = queue_one(&b);
            let ender = thread::spawn(move || drop(running));
            drop(waiter);
            ender.join().unwrap();
            assert_eq!(b.counts(), (0, 0, 0), "place or queue place leaked");
            assert!(Bulkhead::try_acquire(Arc::clone(&b), None, 0).is_ok());
        });
    }

    /// A waiter timing out as a place is handed to it keeps the place or
    /// leaves without it, never both and never neither.
    #[test]
    fn loom_bulkhead_timeout_racing_grant() {
        loom::model(|| {
            let b = bulkhead(1, u32::MAX);
            let running = occupy(&b);
            let mut guard = queue_one(&b);
            let key = guard.key.clone();
            let ender = thread::spawn(move || drop(running));
            let outcome = guard.time_out();
            drop(guard);
            ender.join().unwrap();
            match outcome {
                Ok(()) => {
                    assert_eq!(b.counts(), (1, 0, 0));
                    b.release(&key);
                }
                Err(e) => assert!(matches!(e, LimitError::QueueTimeout { .. }), "{e:?}"),
            }
            assert_eq!(b.counts(), (0, 0, 0));
        });
    }
}
