//! A lock-free log-linear latency histogram.
//!
//! Written here rather than taken from `hdrhistogram` because recording must
//! be wait-free from many threads at once on the hot path: hdrhistogram's
//! `Histogram::record` takes `&mut self`, so sharing it needs a lock or
//! per-thread recorders with a channel. This one is a fixed array of
//! buckets per thread (plain stores, added up when read) with the same
//! log-linear layout (32 linear sub-buckets per power of two: values are
//! kept within 1/32 ≈ 3 % relative error).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::per_thread::{Local, PerThread};

const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = (SUB + (64 - SUB_BITS as u64) * SUB) as usize;

fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = exp - SUB_BITS;
    let sub = (v >> shift) - SUB; // 0..SUB
    (SUB + u64::from(shift) * SUB + sub) as usize
}

/// The largest value that falls in bucket `i`.
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = (i - SUB) / SUB;
    let sub = (i - SUB) % SUB;
    let low = (SUB + sub) << shift;
    low + ((1u64 << shift) - 1)
}

/// One thread's share of a histogram: bucket counts, sum and largest value.
pub(crate) struct HistShard {
    buckets: Box<[AtomicU64; BUCKETS]>,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Default for HistShard {
    fn default() -> Self {
        Self {
            buckets: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

impl HistShard {
    /// Records `nanos` in this shard, owned by the thread behind `local`.
    #[inline]
    pub(crate) fn record<T>(&self, local: &Local<'_, T>, nanos: u64) {
        local.add(&self.buckets[index(nanos)], 1);
        local.add(&self.sum, nanos);
        local.max(&self.max, nanos);
    }

    /// The non-empty buckets of all `shards` added up.
    pub(crate) fn merge<'a>(shards: impl Iterator<Item = &'a HistShard>) -> Counts {
        let mut total = vec![0u64; BUCKETS];
        let mut sum = 0u64;
        for s in shards {
            for (t, b) in total.iter_mut().zip(s.buckets.iter()) {
                *t += b.load(Ordering::Relaxed);
            }
            sum = sum.wrapping_add(s.sum.load(Ordering::Relaxed));
        }
        let buckets = total
            .into_iter()
            .enumerate()
            // BUCKETS < 2^16, checked by a test.
            .filter_map(|(i, n)| (n > 0).then_some((i as u16, n)))
            .collect::<Vec<_>>();
        Counts {
            count: buckets.iter().map(|b| b.1).sum(),
            buckets,
            sum,
        }
    }

    /// The largest value recorded in any of `shards`.
    pub(crate) fn max_of<'a>(shards: impl Iterator<Item = &'a HistShard>) -> u64 {
        shards
            .map(|s| s.max.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }
}

/// Concurrent histogram of nanosecond values, one shard per thread (see
/// [`PerThread`]): recording is a few plain stores, never a locked
/// instruction.
#[derive(Default)]
pub(crate) struct Histogram {
    shards: PerThread<HistShard>,
}

/// Percentiles of a histogram, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[non_exhaustive]
pub struct LatencySnapshot {
    /// Values recorded.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest value.
    pub max_ms: f64,
}

impl LatencySnapshot {
    /// The snapshot of `counts` whose largest value was `max` nanoseconds.
    pub(crate) fn of(counts: &Counts, max: u64) -> Self {
        let ms = |ns: u64| ns as f64 / 1e6;
        let q = |q| ms(counts.quantile(q).min(max));
        LatencySnapshot {
            count: counts.count,
            mean_ms: if counts.count == 0 {
                0.0
            } else {
                ms(counts.sum) / counts.count as f64
            },
            p50_ms: q(0.50),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            max_ms: ms(max),
        }
    }
}

impl Histogram {
    #[inline]
    pub(crate) fn record(&self, nanos: u64) {
        let local = self.shards.local();
        local.value.record(&local, nanos);
    }

    /// The value at quantile `q` (0..=1), in nanoseconds: the highest value
    /// of the bucket holding that rank, capped at the largest value seen.
    #[cfg(test)]
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        self.counts()
            .quantile(q)
            .min(HistShard::max_of(self.shards.iter()))
    }

    /// The non-empty buckets now, for windows (the difference of two) and
    /// for the Prometheus exposition.
    pub(crate) fn counts(&self) -> Counts {
        HistShard::merge(self.shards.iter())
    }

    pub(crate) fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot::of(&self.counts(), HistShard::max_of(self.shards.iter()))
    }
}

/// Bucket counts of a histogram at one moment (only non-empty buckets, in
/// bucket order), or of the values recorded between two moments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    buckets: Vec<(u16, u64)>,
    count: u64,
    sum: u64,
}

impl Counts {
    /// Values counted.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the values, in nanoseconds.
    pub(crate) fn sum(&self) -> u64 {
        self.sum
    }

    /// The non-empty buckets in order, each as the largest value it holds
    /// (nanoseconds) and its count: for exporters that take values one by
    /// one (the `metrics` facade).
    #[cfg(feature = "metrics")]
    pub(crate) fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.buckets
            .iter()
            .map(|&(i, n)| (upper(usize::from(i)), n))
    }

    /// The values recorded after `earlier` (a snapshot of the same histogram
    /// taken before this one).
    pub(crate) fn since(&self, earlier: &Counts) -> Counts {
        let mut old = earlier.buckets.iter().peekable();
        let buckets: Vec<(u16, u64)> = self
            .buckets
            .iter()
            .filter_map(|&(i, n)| {
                while old.next_if(|o| o.0 < i).is_some() {}
                let before = old.next_if(|o| o.0 == i).map_or(0, |o| o.1);
                let d = n.saturating_sub(before);
                (d > 0).then_some((i, d))
            })
            .collect();
        Counts {
            count: buckets.iter().map(|b| b.1).sum(),
            buckets,
            sum: self.sum.saturating_sub(earlier.sum),
        }
    }

    /// The value at quantile `q` (the top of the bucket holding that rank),
    /// in nanoseconds; 0 when empty.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for &(i, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return upper(usize::from(i));
            }
        }
        self.buckets.last().map_or(0, |b| upper(usize::from(b.0)))
    }

    /// Values whose bucket lies wholly at or below `bound` nanoseconds. A
    /// bucket straddling `bound` counts above it, so the figure errs by at
    /// most the bucket width (3 %).
    pub(crate) fn at_most(&self, bound: u64) -> u64 {
        self.buckets
            .iter()
            .take_while(|b| upper(usize::from(b.0)) <= bound)
            .map(|b| b.1)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = 0;
        for v in [
            0u64,
            1,
            31,
            32,
            33,
            63,
            64,
            1000,
            1_000_000,
            u64::MAX / 2,
            u64::MAX,
        ] {
            let i = index(v);
            assert!(i < BUCKETS);
            assert!(i >= last);
            assert!(
                upper(i) >= v,
                "value {v} above its bucket's top {}",
                upper(i)
            );
            last = i;
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
        assert!(BUCKETS <= usize::from(u16::MAX));
    }

    #[test]
    fn counts_since_give_the_window_between_two_moments() {
        let h = Histogram::default();
        for v in 1..=100u64 {
            h.record(v * 1_000_000); // 1..100 ms
        }
        let before = h.counts();
        for _ in 0..100 {
            h.record(500_000_000); // 500 ms
        }
        let window = h.counts().since(&before);
        assert_eq!(window.count(), 100);
        assert_eq!(window.sum(), 100 * 500_000_000);
        let p50 = window.quantile(0.5) as f64;
        assert!((p50 / 5e8 - 1.0).abs() < 0.035, "p50 {p50}");
        // 10 ms sits in a bucket reaching 3 % above it: counted from there.
        assert_eq!(before.at_most(10_000_000), 9);
        assert_eq!(before.at_most(10_300_000), 10);
        assert_eq!(window.at_most(100_000_000), 0);
        assert_eq!(window.at_most(u64::MAX), 100);
        assert_eq!(Counts::default().quantile(0.99), 0);
    }

    #[test]
    fn quantiles_within_three_percent() {
        let h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 / 5_000_000.0 - 1.0).abs() < 0.035, "p50 {p50}");
        assert!((p99 / 9_900_000.0 - 1.0).abs() < 0.035, "p99 {p99}");
        assert_eq!(h.quantile(1.0), 10_000_000);
        let s = h.snapshot();
        assert_eq!(s.count, 10_000);
        assert!((s.mean_ms - 5.0005).abs() < 1e-9);
    }
}
