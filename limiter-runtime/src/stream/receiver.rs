//! The consumer's end of a stream handler.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::chan::Chan;

/// Receives the items of a stream handler, oldest first, as a
/// [`futures_core::Stream`]; it ends when every sender is gone and the
/// buffer is empty.
///
/// The time from handing out an item to the next pull is the consumer's
/// processing time of that item (what the adaptive strategy measures).
/// Dropping the receiver frees the buffer (its items are counted as
/// dropped, reason `closed`) and makes every send fail.
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (items, bytes) = self.chan.buffered();
        f.debug_struct("Receiver")
            .field("stream", &self.chan.stats.name())
            .field("buffered_items", &items)
            .field("buffered_bytes", &bytes)
            .finish()
    }
}

impl<T> Receiver<T> {
    pub(crate) fn new(chan: Arc<Chan<T>>) -> Self {
        Self { chan }
    }

    /// The next item; `None` once the stream ended.
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Items buffered now.
    pub fn buffered_items(&self) -> usize {
        self.chan.buffered().0
    }

    /// Bytes buffered now.
    pub fn buffered_bytes(&self) -> usize {
        self.chan.buffered().1
    }
}

impl<T> Stream for Receiver<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.chan.pull(cx.waker())
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.chan.close_receiver();
    }
}
