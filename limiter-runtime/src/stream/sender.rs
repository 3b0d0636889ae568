//! The producer's end of a stream handler.

use std::fmt;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Instant;

use super::chan::{Chan, Offer, SendOutcome};
use super::config::Strategy;
use super::stats::StreamStats;

/// The consumer is gone: the item comes back.
#[derive(PartialEq, Eq, thiserror::Error)]
#[error("the stream's consumer is gone")]
pub struct SendError<T>(pub T);

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

/// Why [`Sender::try_send`] gave its item back.
#[derive(PartialEq, Eq, thiserror::Error)]
pub enum TrySendError<T> {
    /// The buffer is full and the strategy blocks (now).
    #[error("the stream's buffer is full")]
    Full(T),
    /// The consumer is gone.
    #[error("the stream's consumer is gone")]
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The item.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(t) | TrySendError::Closed(t) => t,
        }
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

/// Sends items into a stream handler; cloneable. The stream ends when
/// every sender is dropped (after the buffered items).
pub struct Sender<T> {
    pub(crate) chan: Arc<Chan<T>>,
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (items, bytes) = self.chan.buffered();
        f.debug_struct("Sender")
            .field("stream", &self.chan.stats.name())
            .field("buffered_items", &items)
            .field("buffered_bytes", &bytes)
            .finish()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.chan.add_sender();
        Self {
            chan: Arc::clone(&self.chan),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.chan.drop_sender();
    }
}

/// Counts a sender waiting for room, until dropped.
struct Waiting<'a>(&'a StreamStats);

impl<'a> Waiting<'a> {
    fn start(stats: &'a StreamStats) -> Self {
        stats.blocked_sends.fetch_add(1, Ordering::Relaxed);
        stats.waiting_senders.fetch_add(1, Ordering::Relaxed);
        Self(stats)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting_senders.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<T> Sender<T> {
    /// Sends `item`, applying the strategy when the buffer is full:
    /// [`Strategy::Block`] (and [`Strategy::Adaptive`] while blocking)
    /// waits for room; the drop strategies return at once, saying what was
    /// dropped. Fails only when the consumer is gone, giving the item back.
    ///
    /// Cancel-safe in the sense that dropping the future while it waits
    /// drops the item and counts nothing.
    pub async fn send(&self, item: T) -> Result<SendOutcome, SendError<T>> {
        let bytes = self.chan.weigh(&item);
        let mut item = item;
        let mut waiting: Option<(Instant, Waiting<'_>)> = None;
        loop {
            let mut room = pin!(self.chan.room.notified());
            room.as_mut().enable();
            let blocked = waiting.as_ref().map(|(t, _)| t.elapsed());
            match self.chan.offer(item, bytes, blocked) {
                Offer::Done(outcome) => return Ok(outcome),
                Offer::Closed(it) => return Err(self.refused_closed(it)),
                Offer::Full(it) => item = it,
            }
            let since = waiting
                .get_or_insert_with(|| (Instant::now(), Waiting::start(&self.chan.stats)))
                .0;
            if self.chan.strategy() == Strategy::Adaptive {
                // Woken by room, or at the target latency to re-decide.
                let deadline = since + self.chan.target_latency();
                let _ = tokio::time::timeout_at(deadline, room).await;
            } else {
                room.await;
            }
        }
    }

    /// Sends `item` without waiting: a full buffer that blocks gives it
    /// back as [`TrySendError::Full`] (counted as `refused_full`); the drop
    /// strategies behave as in [`send`](Self::send).
    pub fn try_send(&self, item: T) -> Result<SendOutcome, TrySendError<T>> {
        let bytes = self.chan.weigh(&item);
        match self.chan.offer(item, bytes, None) {
            Offer::Done(outcome) => Ok(outcome),
            Offer::Closed(it) => Err(TrySendError::Closed(self.refused_closed(it).0)),
            Offer::Full(it) => {
                self.chan.stats.refused_full.fetch_add(1, Ordering::Relaxed);
                Err(TrySendError::Full(it))
            }
        }
    }

    fn refused_closed(&self, item: T) -> SendError<T> {
        self.chan
            .stats
            .refused_closed
            .fetch_add(1, Ordering::Relaxed);
        SendError(item)
    }

    /// Resolves when the consumer is gone (the receiver was dropped).
    pub async fn closed(&self) {
        loop {
            let mut gone = pin!(self.chan.room.notified());
            gone.as_mut().enable();
            if self.chan.is_closed() {
                return;
            }
            gone.await;
        }
    }

    /// Whether the consumer is gone.
    pub fn is_closed(&self) -> bool {
        self.chan.is_closed()
    }

    /// Items buffered now in this handler.
    pub fn buffered_items(&self) -> usize {
        self.chan.buffered().0
    }

    /// Bytes buffered now in this handler.
    pub fn buffered_bytes(&self) -> usize {
        self.chan.buffered().1
    }
}
