//! Samples of cumulative counters taken at intervals, so that any window
//! (the last minute, the ten minutes before it, one interval for a chart) is
//! the difference of two samples. Recording stays a few atomic adds: all the
//! windowing cost is paid by whoever reads.

use std::collections::VecDeque;

use crate::metrics::Counts;

/// Cumulative figures of one route or op at one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    /// Unix milliseconds.
    pub(crate) t_ms: u64,
    /// Calls or requests so far.
    pub(crate) calls: u64,
    /// Failures (5xx, or failed/timed-out/panicked calls) so far.
    pub(crate) errors: u64,
    /// Slow polls so far.
    pub(crate) slow_polls: u64,
    /// Latency buckets so far.
    pub(crate) latency: Counts,
}

/// What happened between two samples.
#[derive(Debug, Clone, Default)]
pub(crate) struct Window {
    /// Length in milliseconds.
    pub(crate) span_ms: u64,
    pub(crate) calls: u64,
    pub(crate) errors: u64,
    pub(crate) slow_polls: u64,
    pub(crate) latency: Counts,
}

impl Window {
    pub(crate) fn between(earlier: &Sample, later: &Sample) -> Self {
        Window {
            span_ms: later.t_ms.saturating_sub(earlier.t_ms),
            calls: later.calls.saturating_sub(earlier.calls),
            errors: later.errors.saturating_sub(earlier.errors),
            slow_polls: later.slow_polls.saturating_sub(earlier.slow_polls),
            latency: later.latency.since(&earlier.latency),
        }
    }

    pub(crate) fn error_rate(&self) -> f64 {
        super::route::ratio(self.errors, self.calls)
    }

    /// A latency quantile in seconds.
    pub(crate) fn quantile_s(&self, q: f64) -> f64 {
        self.latency.quantile(q) as f64 / 1e9
    }
}

/// The samples of one route or op, oldest first, at most `cap`.
#[derive(Debug, Default)]
pub(crate) struct Series {
    samples: VecDeque<Sample>,
}

impl Series {
    pub(crate) fn push(&mut self, sample: Sample, cap: usize) {
        while self.samples.len() >= cap.max(2) {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The oldest sample taken at or after `t_ms`, or (after a gap in
    /// sampling) the newest one, so a window never reaches back further
    /// than asked.
    fn at_or_after(&self, t_ms: u64) -> Option<&Sample> {
        self.samples
            .iter()
            .find(|s| s.t_ms >= t_ms)
            .or_else(|| self.samples.back())
    }

    /// The window from `span_ms` before `now` up to `now` (the newest
    /// figures, not yet sampled). Shorter when the history is.
    pub(crate) fn recent(&self, now: &Sample, span_ms: u64) -> Window {
        match self.at_or_after(now.t_ms.saturating_sub(span_ms)) {
            Some(start) => Window::between(start, now),
            None => Window::between(&Sample::default(), now),
        }
    }

    /// The window of `span_ms` that ends where [`Series::recent`] of
    /// `recent_ms` starts: the baseline a regression is measured against.
    pub(crate) fn baseline(&self, now: &Sample, recent_ms: u64, span_ms: u64) -> Option<Window> {
        let end = self.at_or_after(now.t_ms.saturating_sub(recent_ms))?;
        let start = self.at_or_after(end.t_ms.saturating_sub(span_ms))?;
        (start.t_ms < end.t_ms).then(|| Window::between(start, end))
    }

    /// One window per sampling interval, oldest first, the last one ending
    /// at `now`.
    pub(crate) fn intervals(&self, now: &Sample) -> Vec<(u64, Window)> {
        let mut out = Vec::with_capacity(self.samples.len());
        let mut prev: Option<&Sample> = None;
        for s in self.samples.iter().chain(std::iter::once(now)) {
            if let Some(p) = prev {
                if s.t_ms > p.t_ms {
                    out.push((s.t_ms, Window::between(p, s)));
                }
            }
            prev = Some(s);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_ms: u64, calls: u64, errors: u64) -> Sample {
        Sample {
            t_ms,
            calls,
            errors,
            ..Sample::default()
        }
    }

    #[test]
    fn windows_are_differences_of_samples() {
        let mut s = Series::default();
        for i in 0..10u64 {
            s.push(sample(i * 1000, i * 10, i), 100);
        }
        let now = sample(10_000, 100, 30);
        let recent = s.recent(&now, 2000);
        assert_eq!(
            (recent.span_ms, recent.calls, recent.errors),
            (2000, 20, 22)
        );
        let base = s.baseline(&now, 2000, 5000).unwrap();
        assert_eq!((base.span_ms, base.calls), (5000, 50));
        assert_eq!(s.intervals(&now).len(), 10);
        assert!((recent.error_rate() - 1.1).abs() < 1e-12);
    }

    #[test]
    fn after_a_gap_the_recent_window_starts_at_the_newest_sample() {
        let mut s = Series::default();
        s.push(sample(0, 0, 0), 100);
        s.push(sample(1_000, 10, 0), 100);
        let now = sample(1_000_000, 20, 0);
        let recent = s.recent(&now, 60_000);
        assert_eq!((recent.span_ms, recent.calls), (999_000, 10));
    }

    #[test]
    fn the_series_is_capped() {
        let mut s = Series::default();
        for i in 0..50u64 {
            s.push(sample(i, i, 0), 8);
        }
        assert_eq!(s.samples.len(), 8);
        assert_eq!(s.samples.front().unwrap().t_ms, 42);
    }
}
