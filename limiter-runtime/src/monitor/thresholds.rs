//! What the monitor alerts on, and how it samples.

use std::time::Duration;

use serde::Serialize;

use crate::error::ConfigError;
use crate::settings::ser_duration;

/// Alert thresholds. The defaults are the seeds': response time 1 s / 5 s /
/// 10 s, error rate 5 % / 10 % / 20 %, slow polls 3 / 10 (and 1 % of the
/// calls); a condition is
/// raised once it has held for 10 s, and called critical once it has been
/// critical for 30 s.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Thresholds {
    /// p95 latency for warning, error and critical.
    #[serde(serialize_with = "ser_durations")]
    pub response_time: [Duration; 3],
    /// Failed share of calls for warning, error and critical.
    pub error_rate: [f64; 3],
    /// Slow polls within the recent window for warning and error.
    pub slow_polls: [u64; 2],
    /// Share of the recent window's calls the slow polls must also reach:
    /// a busy route whose thread was preempted in one poll of a thousand
    /// has nothing to fix.
    pub slow_poll_share: f64,
    /// Calls a window needs before its latency and error rate are judged.
    pub min_calls: u64,
    /// Recent p95 over baseline p95 that counts as a regression.
    pub regression_ratio: f64,
    /// The recent window alerts and recommendations look at.
    #[serde(serialize_with = "ser_duration")]
    pub recent: Duration,
    /// The baseline window (before the recent one) regressions compare with.
    #[serde(serialize_with = "ser_duration")]
    pub baseline: Duration,
    /// How long a condition must be found at every evaluation before its
    /// alert is raised (zero: at the first). A breaker that opens and
    /// recovers, or a burst of errors at start-up, within it raises nothing.
    #[serde(serialize_with = "ser_duration")]
    pub sustain: Duration,
    /// How long a condition must stay at the critical level before its
    /// alert says critical (zero: at once); until then it says error.
    #[serde(serialize_with = "ser_duration")]
    pub critical_after: Duration,
}

fn ser_durations<S: serde::Serializer>(d: &[Duration; 3], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(3))?;
    for x in d {
        seq.serialize_element(&x.as_secs_f64())?;
    }
    seq.end()
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            response_time: [
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(10),
            ],
            error_rate: [0.05, 0.10, 0.20],
            slow_polls: [3, 10],
            slow_poll_share: 0.01,
            min_calls: 10,
            regression_ratio: 1.5,
            recent: Duration::from_secs(60),
            baseline: Duration::from_secs(600),
            sustain: Duration::from_secs(10),
            critical_after: Duration::from_secs(30),
        }
    }
}

/// How the monitor samples and what it alerts on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonitorConfig {
    /// Alert thresholds.
    pub thresholds: Thresholds,
    /// Time between two samples of every route and op (the resolution of
    /// the latency chart and of the windows).
    #[serde(serialize_with = "ser_duration")]
    pub sample_interval: Duration,
    /// Samples kept per route and op.
    pub history: usize,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            thresholds: Thresholds::default(),
            sample_interval: Duration::from_secs(5),
            history: 180,
        }
    }
}

fn invalid(field: &'static str, value: impl std::fmt::Debug, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        op: "<monitor>".into(),
        field,
        value: format!("{value:?}"),
        reason: reason.into(),
    }
}

impl MonitorConfig {
    /// Checks that levels rise, ratios are ratios and windows are not empty.
    ///
    /// ```
    /// use limiter_runtime::monitor::MonitorConfig;
    /// let mut cfg = MonitorConfig::default();
    /// cfg.thresholds.error_rate = [0.2, 0.1, 0.3];
    /// let err = cfg.validate().unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "op `<monitor>`: thresholds.error_rate = [0.2, 0.1, 0.3]: must not decrease from warning to critical"
    /// );
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let t = &self.thresholds;
        let rising = "must not decrease from warning to critical";
        if t.response_time.windows(2).any(|w| w[0] > w[1]) {
            return Err(invalid("thresholds.response_time", t.response_time, rising));
        }
        if t.error_rate.windows(2).any(|w| w[0] > w[1]) {
            return Err(invalid("thresholds.error_rate", t.error_rate, rising));
        }
        if t.error_rate.iter().any(|r| !(0.0..=1.0).contains(r)) {
            return Err(invalid(
                "thresholds.error_rate",
                t.error_rate,
                "must be ratios between 0 and 1",
            ));
        }
        if t.slow_polls[0] > t.slow_polls[1] {
            return Err(invalid("thresholds.slow_polls", t.slow_polls, rising));
        }
        if !(0.0..=1.0).contains(&t.slow_poll_share) {
            return Err(invalid(
                "thresholds.slow_poll_share",
                t.slow_poll_share,
                "must be a ratio between 0 and 1",
            ));
        }
        if !(t.regression_ratio > 1.0 && t.regression_ratio.is_finite()) {
            return Err(invalid(
                "thresholds.regression_ratio",
                t.regression_ratio,
                "must be a finite number above 1",
            ));
        }
        for (field, d) in [
            ("thresholds.recent", t.recent),
            ("thresholds.baseline", t.baseline),
            ("sample_interval", self.sample_interval),
        ] {
            if d.is_zero() {
                return Err(invalid(field, d, "must be longer than zero"));
            }
        }
        if self.history < 2 {
            return Err(invalid("history", self.history, "must be at least 2"));
        }
        Ok(())
    }
}
