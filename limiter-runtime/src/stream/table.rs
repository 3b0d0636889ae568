//! The stream handlers' statistics by name: one table per registry.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use futures_core::Stream;

use super::buffered::Buffered;
use super::chan::{Chan, Weigher};
use super::config::{StreamConfig, StreamError};
use super::receiver::Receiver;
use super::sender::Sender;
use super::stats::{StreamSnapshot, StreamStats};

/// Names kept at most before the idle ones (no live handler) are forgotten.
const MAX_NAMES: usize = 1024;

/// The statistics of every stream handler made through it, by name. Each
/// [`Registry`](crate::Registry) has one ([`Registry::streams`](crate::Registry::streams));
/// the free functions of [`stream`](super) use the global registry's.
///
/// A name's totals outlive its handlers (Prometheus counters never go
/// back), so a table holds one entry per name ever used; past 1024 names,
/// the names with no live handler are forgotten to make room.
#[derive(Default)]
pub struct StreamTable {
    names: Mutex<BTreeMap<String, Arc<StreamStats>>>,
}

impl fmt::Debug for StreamTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamTable")
            .field("names", &self.lock().keys().collect::<Vec<_>>())
            .finish()
    }
}

impl StreamTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<StreamStats>>> {
        self.names.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A handler of items that weigh nothing (so `max_bytes` must be
    /// unset): its sender and receiver.
    pub fn channel<T>(
        &self,
        config: StreamConfig,
    ) -> Result<(Sender<T>, Receiver<T>), StreamError> {
        self.make(config, None)
    }

    /// A handler whose items weigh `weigher(&item)` bytes against
    /// `max_bytes`.
    pub fn weighed_channel<T>(
        &self,
        config: StreamConfig,
        weigher: impl Fn(&T) -> usize + Send + Sync + 'static,
    ) -> Result<(Sender<T>, Receiver<T>), StreamError> {
        self.make(config, Some(Arc::new(weigher)))
    }

    /// `stream` pulled eagerly into a handler by a spawned task (see
    /// [`Buffered`]). Needs a tokio runtime.
    pub fn buffered<S>(
        &self,
        stream: S,
        config: StreamConfig,
    ) -> Result<Buffered<S::Item>, StreamError>
    where
        S: Stream + Send + 'static,
        S::Item: Send + 'static,
    {
        self.pump(stream, config, None)
    }

    /// [`buffered`](Self::buffered) with items weighed by `weigher`.
    pub fn weighed_buffered<S>(
        &self,
        stream: S,
        config: StreamConfig,
        weigher: impl Fn(&S::Item) -> usize + Send + Sync + 'static,
    ) -> Result<Buffered<S::Item>, StreamError>
    where
        S: Stream + Send + 'static,
        S::Item: Send + 'static,
    {
        self.pump(stream, config, Some(Arc::new(weigher)))
    }

    /// The statistics of every name, sorted by name.
    pub fn snapshots(&self) -> Vec<StreamSnapshot> {
        self.stats().iter().map(|s| s.snapshot()).collect()
    }

    /// The live statistics of every name, sorted by name.
    pub(crate) fn stats(&self) -> Vec<Arc<StreamStats>> {
        self.lock().values().cloned().collect()
    }

    fn pump<S>(
        &self,
        stream: S,
        config: StreamConfig,
        weigher: Option<Weigher<S::Item>>,
    ) -> Result<Buffered<S::Item>, StreamError>
    where
        S: Stream + Send + 'static,
        S::Item: Send + 'static,
    {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| StreamError::NoRuntime(config.name.clone()))?;
        let (tx, rx) = self.make(config, weigher)?;
        Ok(Buffered::spawn(&handle, stream, tx, rx))
    }

    fn make<T>(
        &self,
        config: StreamConfig,
        weigher: Option<Weigher<T>>,
    ) -> Result<(Sender<T>, Receiver<T>), StreamError> {
        config.validate(weigher.is_some())?;
        let stats = self.attach(&config);
        let chan = Arc::new(Chan::new(&config, weigher, stats));
        Ok((
            Sender {
                chan: Arc::clone(&chan),
            },
            Receiver::new(chan),
        ))
    }

    /// The statistics of `config`'s name, with one more live handler.
    fn attach(&self, config: &StreamConfig) -> Arc<StreamStats> {
        let mut names = self.lock();
        if !names.contains_key(&config.name) && names.len() >= MAX_NAMES {
            names.retain(|_, s| s.handlers.load(Ordering::Relaxed) > 0);
        }
        let stats = names
            .entry(config.name.clone())
            .or_insert_with(|| Arc::new(StreamStats::new(config)));
        stats.attach(config);
        Arc::clone(stats)
    }
}
