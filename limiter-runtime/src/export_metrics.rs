//! The registry published through the [`metrics`](https://docs.rs/metrics)
//! facade: the families of the `/metrics` text, with the same names, label
//! names and label values, to whatever recorder the service installed
//! (OpenTelemetry, StatsD, a Prometheus exporter, ...).
//!
//! # Why a publisher, not a `metrics` call per call
//!
//! The hot path counts into per-thread slots with plain stores (see
//! `metrics::per_thread`): a call costs a few nanoseconds. A `counter!` or
//! `histogram!` per call would add a recorder look-up (a global atomic load,
//! a dynamic call, a key hashed into the recorder's registry, or an atomic
//! add on a cache line every thread shares) to every call, for numbers the
//! registry already keeps. So this module reads what the registry counts,
//! the same walk over the families as the text export
//! (`export::families`), and sets it on the recorder: counters with
//! [`Counter::absolute`](::metrics::Counter::absolute), gauges with
//! [`Gauge::set`](::metrics::Gauge::set), and histograms by recording what
//! each latency bucket gained since the last publication. Calls pay nothing;
//! the recorder is as fresh as the last [`Publisher::publish`], at the
//! interval of [`spawn_publisher`] or on demand (before a push exporter
//! sends, in a test).
//!
//! A histogram's values are recorded as the top of their bucket (within
//! 3 % of the value, as the percentiles the registry reports): the bucket
//! counts an exporter computes from them for the bounds of the text export
//! equal the text's; the sum may exceed the text's `_sum` by up to 3 %.

use std::collections::HashMap;
use std::time::Duration;

use ::metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder, Unit};

use crate::export::{families, Kind, Sink};
use crate::metrics::Counts;
use crate::registry::Registry;

/// Where the published series come from, for recorders that filter by it.
static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);

/// One series: its family and its labels, in the text export's order.
type SeriesKey = (&'static str, Vec<(&'static str, String)>);

/// Publishes a registry's families to the installed `metrics` recorder,
/// each time [`publish`](Publisher::publish) is called.
///
/// It registers each series once, with the recorder in force then, and
/// keeps its handle (recorders such as OpenTelemetry's turn
/// [`absolute`](::metrics::Counter::absolute) into an increment from the
/// handle's last value, so a handle registered anew would count every
/// total again). It remembers the latency buckets it published, to record
/// only what each histogram gained since: one publisher per registry and
/// recorder, made once the recorder is installed (two would record every
/// latency twice).
///
/// ```
/// use limiter_runtime::metrics_export::Publisher;
/// use limiter_runtime::{LimitError, Registry};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let reg = Registry::new();
/// reg.op("db").run(None, || async { Ok::<_, LimitError>(()) }).await.unwrap();
/// let mut publisher = Publisher::new();
/// // With the recorder the service installed (`metrics::set_global_recorder`):
/// // `limiter_op_calls_total{op="db"}` is 1.
/// publisher.publish(&reg);
/// # }
/// ```
#[cfg_attr(all(docsrs, limiter_doc_cfg), doc(cfg(feature = "metrics")))]
#[derive(Default)]
pub struct Publisher {
    /// Each family's kind, once described to the recorder.
    described: HashMap<&'static str, Kind>,
    /// Each series' handle, registered at its first publication.
    series: HashMap<SeriesKey, Handle>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("families", &self.described.len())
            .field("series", &self.series.len())
            .finish()
    }
}

/// One series' handle on the recorder.
enum Handle {
    Counter(Counter),
    Gauge(Gauge),
    /// With the buckets published so far.
    Histogram(Histogram, Counts),
}

impl Publisher {
    /// A publisher that has published nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets every series of `reg` on the `metrics` recorder in force (the
    /// global one, or a thread's local one), with the names and labels of
    /// [`Registry::prometheus`]; describes each family (help text, unit)
    /// the first time.
    pub fn publish(&mut self, reg: &Registry) {
        families(reg, self);
    }
}

/// Publishes `reg` every `every` on the tokio runtime, to the global
/// `metrics` recorder, until the task is aborted: install the recorder
/// first.
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() {
/// use std::time::Duration;
/// // metrics::set_global_recorder(my_exporter) first.
/// let task = limiter_runtime::metrics_export::spawn_publisher(
///     limiter_runtime::registry(),
///     Duration::from_secs(10),
/// );
/// # task.abort();
/// # }
/// ```
///
/// # Panics
///
/// Outside a tokio runtime, or when `every` is zero.
#[cfg_attr(all(docsrs, limiter_doc_cfg), doc(cfg(feature = "metrics")))]
pub fn spawn_publisher(reg: &'static Registry, every: Duration) -> tokio::task::JoinHandle<()> {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::spawn(async move {
        let mut publisher = Publisher::new();
        loop {
            interval.tick().await;
            publisher.publish(reg);
        }
    })
}

/// The recorder's key of one series.
fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|&(k, v)| Label::new(k, v.to_owned()))
        .collect();
    Key::from_parts(name, labels)
}

impl Publisher {
    /// The handle of the series `name{labels}`, registered by `register`
    /// on its first use.
    fn handle(
        &mut self,
        name: &'static str,
        labels: &[(&'static str, &str)],
        register: impl FnOnce(&dyn Recorder, &Key) -> Handle,
    ) -> &mut Handle {
        let series = (
            name,
            labels.iter().map(|&(k, v)| (k, v.to_owned())).collect(),
        );
        self.series.entry(series).or_insert_with(|| {
            let key = key(name, labels);
            ::metrics::with_recorder(|r| register(r, &key))
        })
    }
}

impl Sink for Publisher {
    fn family(&mut self, name: &'static str, kind: Kind, help: &'static str) {
        if self.described.insert(name, kind) == Some(kind) {
            return;
        }
        ::metrics::with_recorder(|r| match kind {
            Kind::Counter => r.describe_counter(name.into(), None, help.into()),
            Kind::Gauge => r.describe_gauge(name.into(), None, help.into()),
            Kind::Histogram => r.describe_histogram(name.into(), Some(Unit::Seconds), help.into()),
        });
    }

    fn sample(&mut self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        let counter = self.described.get(name) == Some(&Kind::Counter);
        match self.handle(name, labels, |r, key| {
            if counter {
                Handle::Counter(r.register_counter(key, &METADATA))
            } else {
                Handle::Gauge(r.register_gauge(key, &METADATA))
            }
        }) {
            // Every counter of the registry is a whole number.
            Handle::Counter(c) => c.absolute(value as u64),
            Handle::Gauge(g) => g.set(value),
            Handle::Histogram(..) => {}
        }
    }

    fn histogram(&mut self, name: &'static str, labels: &[(&'static str, &str)], counts: &Counts) {
        // Registered even before it holds anything: the series exists from
        // the first publication, as in the text.
        let handle = self.handle(name, labels, |r, key| {
            Handle::Histogram(r.register_histogram(key, &METADATA), Counts::default())
        });
        if let Handle::Histogram(h, published) = handle {
            for (top_ns, n) in counts.since(published).buckets() {
                h.record_many(top_ns as f64 / 1e9, n as usize);
            }
            *published = counts.clone();
        }
    }
}
