//! The bounded buffer shared by a handler's senders and its receiver.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::adaptive::Adaptive;
use super::config::{Strategy, StreamConfig};
use super::stats::{DropReason, StreamMode, StreamStats};

/// How an item is weighed against the byte budget.
pub(crate) type Weigher<T> = Arc<dyn Fn(&T) -> usize + Send + Sync>;

/// What a send did with its item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// The item is buffered; `dropped_oldest` older items were dropped to
    /// make room for it (0 unless the strategy drops the oldest).
    Queued {
        /// Older items dropped for it.
        dropped_oldest: usize,
    },
    /// The item itself was dropped, for `reason` ([`DropReason::Newest`]
    /// or [`DropReason::TooLarge`]).
    Dropped(DropReason),
}

impl SendOutcome {
    /// Whether anything (this item or older ones) was dropped.
    pub fn dropped_any(&self) -> bool {
        !matches!(self, SendOutcome::Queued { dropped_oldest: 0 })
    }
}

/// The result of one attempt to put an item in the buffer.
pub(crate) enum Offer<T> {
    Done(SendOutcome),
    /// The buffer is full and the strategy (now) blocks: the item back.
    Full(T),
    /// The receiver is gone: the item back.
    Closed(T),
}

struct Entry<T> {
    item: T,
    bytes: usize,
    at: Instant,
}

struct State<T> {
    queue: VecDeque<Entry<T>>,
    bytes: usize,
    senders: usize,
    receiver_alive: bool,
    receiver_waker: Option<Waker>,
    /// When the consumer got the item it holds (until its next pull).
    handed_at: Option<Instant>,
    adaptive: Option<Adaptive>,
}

/// One handler: its buffer, limits and the statistics of its name.
pub(crate) struct Chan<T> {
    state: Mutex<State<T>>,
    /// Senders waiting for room or for the receiver to go.
    pub(crate) room: Notify,
    max_items: usize,
    max_bytes: Option<usize>,
    strategy: Strategy,
    target_latency: Duration,
    weigher: Option<Weigher<T>>,
    pub(crate) stats: Arc<StreamStats>,
}

impl<T> Chan<T> {
    pub(crate) fn new(
        config: &StreamConfig,
        weigher: Option<Weigher<T>>,
        stats: Arc<StreamStats>,
    ) -> Self {
        let adaptive =
            (config.strategy == Strategy::Adaptive).then(|| Adaptive::new(config.target_latency));
        Self {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                bytes: 0,
                senders: 1,
                receiver_alive: true,
                receiver_waker: None,
                handed_at: None,
                adaptive,
            }),
            room: Notify::new(),
            max_items: config.max_items,
            max_bytes: config.max_bytes,
            strategy: config.strategy,
            target_latency: config.target_latency,
            weigher,
            stats,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The weight of `item` in bytes (0 without a weigher).
    pub(crate) fn weigh(&self, item: &T) -> usize {
        self.weigher.as_ref().map_or(0, |w| w(item))
    }

    pub(crate) fn strategy(&self) -> Strategy {
        self.strategy
    }

    pub(crate) fn target_latency(&self) -> Duration {
        self.target_latency
    }

    /// Items and bytes buffered now.
    pub(crate) fn buffered(&self) -> (usize, usize) {
        let st = self.lock();
        (st.queue.len(), st.bytes)
    }

    /// Whether the receiver is gone.
    pub(crate) fn is_closed(&self) -> bool {
        !self.lock().receiver_alive
    }

    fn fits(&self, st: &State<T>, bytes: usize) -> bool {
        st.queue.len() < self.max_items && self.max_bytes.is_none_or(|max| st.bytes + bytes <= max)
    }

    /// Tries to buffer `item` of `bytes`, applying the strategy when the
    /// buffer is full; `blocked` is how long this send has waited so far.
    pub(crate) fn offer(&self, item: T, bytes: usize, blocked: Option<Duration>) -> Offer<T> {
        let mut st = self.lock();
        if !st.receiver_alive {
            return Offer::Closed(item);
        }
        if self.max_bytes.is_some_and(|max| bytes > max) {
            self.stats.dropped_on_arrival(DropReason::TooLarge);
            return Offer::Done(SendOutcome::Dropped(DropReason::TooLarge));
        }
        let mut dropped_oldest = 0;
        if !self.fits(&st, bytes) {
            match self.full_action(&mut st, blocked) {
                Strategy::DropNewest => {
                    self.stats.dropped_on_arrival(DropReason::Newest);
                    return Offer::Done(SendOutcome::Dropped(DropReason::Newest));
                }
                Strategy::DropOldest => dropped_oldest = self.make_room(&mut st, bytes),
                _ => return Offer::Full(item),
            }
        }
        st.bytes += bytes;
        st.queue.push_back(Entry {
            item,
            bytes,
            at: Instant::now(),
        });
        self.stats.enqueued(bytes, st.queue.len(), st.bytes);
        let waker = st.receiver_waker.take();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
        Offer::Done(SendOutcome::Queued { dropped_oldest })
    }

    /// What a full buffer does: [`Strategy::DropNewest`],
    /// [`Strategy::DropOldest`] or [`Strategy::Block`] (the adaptive
    /// strategy's decision is one of the last two).
    fn full_action(&self, st: &mut State<T>, blocked: Option<Duration>) -> Strategy {
        let depth = st.queue.len();
        let holding = st.handed_at.map(|t| t.elapsed());
        match st.adaptive.as_mut() {
            None => self.strategy,
            Some(a) => {
                let d = a.decide(depth, holding, blocked);
                if let Some(switch) = d.switch {
                    self.stats.switched(switch);
                }
                match d.mode {
                    StreamMode::Blocking => Strategy::Block,
                    StreamMode::Dropping => Strategy::DropOldest,
                }
            }
        }
    }

    /// Drops the oldest items until one of `bytes` fits; how many.
    fn make_room(&self, st: &mut State<T>, bytes: usize) -> usize {
        let mut n = 0;
        while !self.fits(st, bytes) {
            let Some(e) = st.queue.pop_front() else { break };
            st.bytes -= e.bytes;
            self.stats.removed(e.bytes, Err(DropReason::Oldest));
            n += 1;
        }
        n
    }

    /// The receiver's pull: the next item, `None` when every sender is
    /// gone and the buffer is empty, pending when it must wait (its waker
    /// is kept).
    pub(crate) fn pull(&self, waker: &Waker) -> Poll<Option<T>> {
        let mut st = self.lock();
        let now = Instant::now();
        if let Some(t) = st.handed_at.take() {
            let d = now.saturating_duration_since(t);
            self.stats.processed(d);
            if let Some(a) = st.adaptive.as_mut() {
                a.observe(d);
            }
        }
        if let Some(e) = st.queue.pop_front() {
            st.bytes -= e.bytes;
            st.handed_at = Some(now);
            self.stats
                .removed(e.bytes, Ok(now.saturating_duration_since(e.at)));
            drop(st);
            self.room.notify_waiters();
            return Poll::Ready(Some(e.item));
        }
        if st.senders == 0 {
            return Poll::Ready(None);
        }
        st.receiver_waker = Some(waker.clone());
        Poll::Pending
    }

    /// The receiver is gone: every buffered item is dropped as `closed`
    /// and the waiting senders are woken (their sends fail).
    pub(crate) fn close_receiver(&self) {
        let drained: Vec<Entry<T>> = {
            let mut st = self.lock();
            st.receiver_alive = false;
            st.bytes = 0;
            st.handed_at = None;
            st.queue.drain(..).collect()
        };
        for e in &drained {
            self.stats.removed(e.bytes, Err(DropReason::Closed));
        }
        // The items themselves are dropped outside the lock.
        drop(drained);
        self.room.notify_waiters();
    }

    pub(crate) fn add_sender(&self) {
        self.lock().senders += 1;
    }

    /// A sender is gone; the last one wakes the receiver (its stream ends
    /// once the buffer is empty).
    pub(crate) fn drop_sender(&self) {
        let waker = {
            let mut st = self.lock();
            st.senders -= 1;
            if st.senders == 0 {
                st.receiver_waker.take()
            } else {
                None
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for Chan<T> {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        for e in st.queue.drain(..) {
            self.stats.removed(e.bytes, Err(DropReason::Closed));
        }
        if st
            .adaptive
            .as_ref()
            .is_some_and(|a| a.mode() == StreamMode::Dropping)
        {
            self.stats
                .dropping_handlers
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.stats
            .handlers
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
