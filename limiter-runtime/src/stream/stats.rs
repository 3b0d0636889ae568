//! The statistics of the stream handlers of one name.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::config::{Strategy, StreamConfig};
use crate::metrics::{Counts, Histogram, LatencySnapshot};

/// Why an item offered to a stream never reached its consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Dropped from the head of a full buffer to make room for a newer one.
    Oldest,
    /// Dropped on arrival: the buffer was full ([`Strategy::DropNewest`]).
    Newest,
    /// Heavier than the whole byte budget: it could never fit.
    TooLarge,
    /// Still buffered when the consumer went away.
    Closed,
}

impl DropReason {
    /// Every reason, in the order of the snapshot's fields.
    pub const ALL: [DropReason; 4] = [
        DropReason::Oldest,
        DropReason::Newest,
        DropReason::TooLarge,
        DropReason::Closed,
    ];

    /// The name used in snapshots and in the `reason` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Oldest => "oldest",
            DropReason::Newest => "newest",
            DropReason::TooLarge => "too_large",
            DropReason::Closed => "closed",
        }
    }
}

/// What an adaptive handler does with a send that finds the buffer full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamMode {
    /// The sender waits for room.
    Blocking,
    /// The oldest items are dropped to make room.
    Dropping,
}

/// Why an adaptive handler changed mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SwitchReason {
    /// To dropping: the buffer would take longer than the target latency to
    /// drain at the consumer's measured rate.
    SlowConsumer,
    /// To dropping: a sender blocked for the target latency without room.
    Stalled,
    /// To blocking: the buffer drains within the target latency again.
    Recovered,
}

/// One change of mode of an adaptive handler.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModeSwitch {
    /// The mode it switched to.
    pub to: StreamMode,
    /// Why.
    pub reason: SwitchReason,
    /// Items buffered then.
    pub buffered_items: usize,
    /// The consumer's time per item then, in milliseconds (`None` before
    /// the first measurement).
    pub service_ms: Option<f64>,
    /// The projected drain time (`buffered_items × service_ms`).
    pub drain_ms: Option<f64>,
    /// When, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
}

/// Items dropped, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DroppedSnapshot {
    /// [`DropReason::Oldest`].
    pub oldest: u64,
    /// [`DropReason::Newest`].
    pub newest: u64,
    /// [`DropReason::TooLarge`].
    pub too_large: u64,
    /// [`DropReason::Closed`].
    pub closed: u64,
}

impl DroppedSnapshot {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.oldest + self.newest + self.too_large + self.closed
    }

    /// The count of `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::Oldest => self.oldest,
            DropReason::Newest => self.newest,
            DropReason::TooLarge => self.too_large,
            DropReason::Closed => self.closed,
        }
    }
}

/// The statistics of the stream handlers of one name, at one moment
/// (see [`Registry::backpressure`](crate::Registry::backpressure)).
///
/// Handlers of one name add up; `in == out + dropped + buffered` holds
/// whenever no send is half-way.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StreamSnapshot {
    /// The name.
    pub name: String,
    /// The strategy of the latest handler made under this name.
    pub strategy: Strategy,
    /// Its item limit (per handler).
    pub max_items: usize,
    /// Its byte budget (per handler), if any.
    pub max_bytes: Option<usize>,
    /// Its target latency in milliseconds ([`Strategy::Adaptive`] only).
    pub target_latency_ms: Option<f64>,
    /// Handlers alive now.
    pub handlers: u64,
    /// Items the handlers took (queued or dropped by them).
    pub items_in: u64,
    /// Items delivered to consumers.
    pub items_out: u64,
    /// Items dropped, by reason.
    pub dropped: DroppedSnapshot,
    /// Items offered after the consumer went away, given back to the
    /// producer in the error (not counted in `items_in`).
    pub refused_closed: u64,
    /// `try_send` calls that found a blocking buffer full and gave the
    /// item back (not counted in `items_in`).
    pub refused_full: u64,
    /// Items buffered now (all handlers).
    pub buffered_items: u64,
    /// Bytes buffered now (all handlers).
    pub buffered_bytes: u64,
    /// The most items one handler held at once.
    pub peak_items: u64,
    /// The most bytes one handler held at once.
    pub peak_bytes: u64,
    /// Sends that had to wait for room.
    pub blocked_sends: u64,
    /// Senders waiting for room now.
    pub waiting_senders: u64,
    /// Time from enqueue to dequeue.
    pub queue_wait: LatencySnapshot,
    /// The consumer's time per item: from handing it an item to its next
    /// pull.
    pub processing: LatencySnapshot,
    /// [`Strategy::Adaptive`]: `dropping` while any handler drops, else
    /// `blocking`; `None` for the fixed strategies.
    pub mode: Option<StreamMode>,
    /// Adaptive handlers dropping now.
    pub dropping_handlers: u64,
    /// Changes of mode to dropping.
    pub switches_to_dropping: u64,
    /// Changes of mode to blocking.
    pub switches_to_blocking: u64,
    /// The latest change of mode.
    pub last_switch: Option<ModeSwitch>,
}

/// The limits last registered under a name.
#[derive(Debug, Clone)]
struct Limits {
    strategy: Strategy,
    max_items: usize,
    max_bytes: Option<usize>,
    target_latency: Duration,
}

/// The live statistics of one name, shared by its handlers.
pub(crate) struct StreamStats {
    name: String,
    limits: Mutex<Limits>,
    pub(crate) handlers: AtomicU64,
    pub(crate) items_in: AtomicU64,
    pub(crate) items_out: AtomicU64,
    dropped: [AtomicU64; 4],
    pub(crate) refused_closed: AtomicU64,
    pub(crate) refused_full: AtomicU64,
    pub(crate) buffered_items: AtomicU64,
    pub(crate) buffered_bytes: AtomicU64,
    peak_items: AtomicU64,
    peak_bytes: AtomicU64,
    pub(crate) blocked_sends: AtomicU64,
    pub(crate) waiting_senders: AtomicU64,
    wait: Histogram,
    processing: Histogram,
    pub(crate) dropping_handlers: AtomicU64,
    switches: [AtomicU64; 2],
    last_switch: Mutex<Option<ModeSwitch>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl StreamStats {
    pub(crate) fn new(config: &StreamConfig) -> Self {
        let zero = || AtomicU64::new(0);
        Self {
            name: config.name.clone(),
            limits: Mutex::new(Limits::of(config)),
            handlers: zero(),
            items_in: zero(),
            items_out: zero(),
            dropped: std::array::from_fn(|_| zero()),
            refused_closed: zero(),
            refused_full: zero(),
            buffered_items: zero(),
            buffered_bytes: zero(),
            peak_items: zero(),
            peak_bytes: zero(),
            blocked_sends: zero(),
            waiting_senders: zero(),
            wait: Histogram::default(),
            processing: Histogram::default(),
            dropping_handlers: zero(),
            switches: [zero(), zero()],
            last_switch: Mutex::new(None),
        }
    }

    /// The name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// A new handler of this name, with `config`'s limits.
    pub(crate) fn attach(&self, config: &StreamConfig) {
        *lock(&self.limits) = Limits::of(config);
        self.handlers.fetch_add(1, Ordering::Relaxed);
    }

    /// An item taken into a handler's buffer, which now holds `items` and
    /// `bytes`.
    pub(crate) fn enqueued(&self, bytes: usize, items: usize, total_bytes: usize) {
        self.items_in.fetch_add(1, Ordering::Relaxed);
        self.buffered_items.fetch_add(1, Ordering::Relaxed);
        self.buffered_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.peak_items.fetch_max(items as u64, Ordering::Relaxed);
        self.peak_bytes
            .fetch_max(total_bytes as u64, Ordering::Relaxed);
    }

    /// A buffered item of `bytes` left the buffer: delivered after `waited`
    /// or dropped for `reason`.
    pub(crate) fn removed(&self, bytes: usize, outcome: Result<Duration, DropReason>) {
        self.buffered_items.fetch_sub(1, Ordering::Relaxed);
        self.buffered_bytes
            .fetch_sub(bytes as u64, Ordering::Relaxed);
        match outcome {
            Ok(waited) => {
                self.items_out.fetch_add(1, Ordering::Relaxed);
                self.wait.record(nanos(waited));
            }
            Err(reason) => self.count_drop(reason),
        }
    }

    /// An item dropped on arrival (never buffered) for `reason`.
    pub(crate) fn dropped_on_arrival(&self, reason: DropReason) {
        self.items_in.fetch_add(1, Ordering::Relaxed);
        self.count_drop(reason);
    }

    fn count_drop(&self, reason: DropReason) {
        self.dropped[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The consumer spent `d` on an item.
    pub(crate) fn processed(&self, d: Duration) {
        self.processing.record(nanos(d));
    }

    /// An adaptive handler changed mode.
    pub(crate) fn switched(&self, switch: ModeSwitch) {
        let (i, dropping) = match switch.to {
            StreamMode::Dropping => (0, true),
            StreamMode::Blocking => (1, false),
        };
        self.switches[i].fetch_add(1, Ordering::Relaxed);
        if dropping {
            self.dropping_handlers.fetch_add(1, Ordering::Relaxed);
        } else {
            self.dropping_handlers.fetch_sub(1, Ordering::Relaxed);
        }
        tracing::debug!(stream = %self.name, to = ?switch.to, reason = ?switch.reason, "stream mode switch");
        *lock(&self.last_switch) = Some(switch);
    }

    /// The bucket counts of the queue wait, for Prometheus.
    pub(crate) fn wait_counts(&self) -> Counts {
        self.wait.counts()
    }

    /// The bucket counts of the processing time, for Prometheus.
    pub(crate) fn processing_counts(&self) -> Counts {
        self.processing.counts()
    }

    pub(crate) fn snapshot(&self) -> StreamSnapshot {
        let limits = lock(&self.limits).clone();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let dropping = get(&self.dropping_handlers);
        let adaptive = limits.strategy == Strategy::Adaptive;
        StreamSnapshot {
            name: self.name.clone(),
            strategy: limits.strategy,
            max_items: limits.max_items,
            max_bytes: limits.max_bytes,
            target_latency_ms: adaptive.then_some(limits.target_latency.as_secs_f64() * 1e3),
            handlers: get(&self.handlers),
            items_in: get(&self.items_in),
            items_out: get(&self.items_out),
            dropped: self.dropped_snapshot(),
            refused_closed: get(&self.refused_closed),
            refused_full: get(&self.refused_full),
            buffered_items: get(&self.buffered_items),
            buffered_bytes: get(&self.buffered_bytes),
            peak_items: get(&self.peak_items),
            peak_bytes: get(&self.peak_bytes),
            blocked_sends: get(&self.blocked_sends),
            waiting_senders: get(&self.waiting_senders),
            queue_wait: self.wait.snapshot(),
            processing: self.processing.snapshot(),
            mode: adaptive.then_some(if dropping > 0 {
                StreamMode::Dropping
            } else {
                StreamMode::Blocking
            }),
            dropping_handlers: dropping,
            switches_to_dropping: get(&self.switches[0]),
            switches_to_blocking: get(&self.switches[1]),
            last_switch: lock(&self.last_switch).clone(),
        }
    }

    fn dropped_snapshot(&self) -> DroppedSnapshot {
        let d = |r: DropReason| self.dropped[r as usize].load(Ordering::Relaxed);
        DroppedSnapshot {
            oldest: d(DropReason::Oldest),
            newest: d(DropReason::Newest),
            too_large: d(DropReason::TooLarge),
            closed: d(DropReason::Closed),
        }
    }
}

impl Limits {
    fn of(c: &StreamConfig) -> Self {
        Self {
            strategy: c.strategy,
            max_items: c.max_items,
            max_bytes: c.max_bytes,
            target_latency: c.target_latency,
        }
    }
}

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
