//! A producer stream pulled eagerly into a stream handler by a task of its
//! own, so that a slow reader meets the handler's strategy instead of
//! slowing the producer down unseen.

use std::fmt;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};

use futures_core::Stream;

use super::receiver::Receiver;
use super::sender::Sender;

/// A stream read through a stream handler (see [`buffered`](super::buffered)):
/// a spawned pump moves the producer's items into the bounded buffer as
/// fast as the producer yields them, and this reads them out.
///
/// Dropping it (the reader went away mid-stream) frees the buffer and ends
/// the pump, which drops the producer stream, even while the pump is
/// waiting for the producer's next item.
pub struct Buffered<T> {
    rx: Receiver<T>,
}

impl<T> fmt::Debug for Buffered<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buffered").field("rx", &self.rx).finish()
    }
}

impl<T> Buffered<T> {
    /// Spawns the pump of `stream` into `tx` on `handle`.
    pub(crate) fn spawn<S>(
        handle: &tokio::runtime::Handle,
        stream: S,
        tx: Sender<T>,
        rx: Receiver<T>,
    ) -> Self
    where
        S: Stream<Item = T> + Send + 'static,
        T: Send + 'static,
    {
        handle.spawn(pump(stream, tx));
        Self { rx }
    }

    /// Items buffered now.
    pub fn buffered_items(&self) -> usize {
        self.rx.buffered_items()
    }

    /// Bytes buffered now.
    pub fn buffered_bytes(&self) -> usize {
        self.rx.buffered_bytes()
    }
}

impl<T> Stream for Buffered<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }
}

/// Moves the items of `stream` into `tx` until the stream ends or the
/// consumer goes (noticed while waiting for the producer too).
async fn pump<S: Stream>(stream: S, tx: Sender<S::Item>) {
    let mut stream = pin!(stream);
    loop {
        let next = tokio::select! {
            biased;
            () = tx.closed() => return,
            next = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)) => next,
        };
        let Some(item) = next else { return };
        if tx.send(item).await.is_err() {
            return;
        }
    }
}
