//! Streams with backpressure: a bounded buffer with an overload strategy
//! between a producer and a consumer.
//!
//! A handler is a [`Sender`] and a [`Receiver`] (a [`futures_core::Stream`])
//! around one buffer limited in items and, with a weigher, in bytes (a
//! memory budget that is never exceeded). When it is full a send follows
//! the [`Strategy`]: drop the oldest items, drop the new one, wait for room
//! (the producer slows down to the consumer's pace), or adapt — wait while
//! the consumer keeps up, drop the oldest when it does not (the rule is in
//! [`StreamConfig::target_latency`]). Every item taken is delivered or
//! counted as dropped, by [`DropReason`]; the queue wait and the
//! consumer's processing time are measured. The statistics are kept by
//! name in the registry: [`Registry::backpressure`](crate::Registry::backpressure),
//! `GET /monitoring/backpressure`, the `limiter_stream_*` Prometheus
//! families and the dashboard.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use limiter_runtime::stream::{self, SendOutcome, StreamConfig, Strategy};
//!
//! let config = StreamConfig::new("tts.audio")
//!     .max_items(2)
//!     .max_bytes(1024)
//!     .strategy(Strategy::DropOldest);
//! let (tx, mut rx) = stream::weighed_channel(config, |chunk: &Vec<u8>| chunk.len())?;
//! tx.send(vec![1; 100]).await?;
//! tx.send(vec![2; 100]).await?;
//! // Full: the oldest chunk makes room for the newest.
//! assert_eq!(tx.send(vec![3; 100]).await?, SendOutcome::Queued { dropped_oldest: 1 });
//! drop(tx);
//! assert_eq!(rx.recv().await, Some(vec![2; 100]));
//! assert_eq!(rx.recv().await, Some(vec![3; 100]));
//! assert_eq!(rx.recv().await, None);
//! # Ok(()) }
//! ```
//!
//! [`buffered`] puts a handler behind any stream, e.g. the body of a
//! streaming axum response, so that a slow client meets the strategy:
//!
//! ```no_run
//! # fn demo(chunks: impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static)
//! #     -> Result<(), limiter_runtime::stream::StreamError> {
//! use limiter_runtime::stream::{self, StreamConfig, Strategy};
//! let config = StreamConfig::new("tts").max_bytes(1 << 20).strategy(Strategy::DropOldest);
//! let body = stream::weighed_buffered(chunks, config, |c| c.as_ref().map_or(0, Vec::len))?;
//! // axum::body::Body::from_stream(body)
//! # Ok(()) }
//! ```

mod adaptive;
mod buffered;
mod chan;
mod config;
mod receiver;
mod sender;
mod stats;
mod table;

use std::sync::Arc;

use futures_core::Stream;
use std::sync::LazyLock as Lazy;

pub use buffered::Buffered;
pub use chan::SendOutcome;
pub use config::{Strategy, StreamConfig, StreamError};
pub use receiver::Receiver;
pub use sender::{SendError, Sender, TrySendError};
pub(crate) use stats::StreamStats;
pub use stats::{
    DropReason, DroppedSnapshot, ModeSwitch, StreamMode, StreamSnapshot, SwitchReason,
};
pub use table::StreamTable;

static GLOBAL: Lazy<Arc<StreamTable>> = Lazy::new(|| Arc::new(StreamTable::new()));

/// The table of the global registry.
pub(crate) fn global_table() -> Arc<StreamTable> {
    Arc::clone(&GLOBAL)
}

/// A handler of the global registry whose items weigh nothing (see
/// [`StreamTable::channel`]).
pub fn channel<T>(config: StreamConfig) -> Result<(Sender<T>, Receiver<T>), StreamError> {
    GLOBAL.channel(config)
}

/// A handler of the global registry whose items weigh `weigher(&item)`
/// bytes (see [`StreamTable::weighed_channel`]).
pub fn weighed_channel<T>(
    config: StreamConfig,
    weigher: impl Fn(&T) -> usize + Send + Sync + 'static,
) -> Result<(Sender<T>, Receiver<T>), StreamError> {
    GLOBAL.weighed_channel(config, weigher)
}

/// `stream` pulled eagerly into a handler of the global registry (see
/// [`StreamTable::buffered`]).
pub fn buffered<S>(stream: S, config: StreamConfig) -> Result<Buffered<S::Item>, StreamError>
where
    S: Stream + Send + 'static,
    S::Item: Send + 'static,
{
    GLOBAL.buffered(stream, config)
}

/// [`buffered`] with items weighed by `weigher` (see
/// [`StreamTable::weighed_buffered`]).
pub fn weighed_buffered<S>(
    stream: S,
    config: StreamConfig,
    weigher: impl Fn(&S::Item) -> usize + Send + Sync + 'static,
) -> Result<Buffered<S::Item>, StreamError>
where
    S: Stream + Send + 'static,
    S::Item: Send + 'static,
{
    GLOBAL.weighed_buffered(stream, config, weigher)
}

#[cfg(test)]
mod tests;
