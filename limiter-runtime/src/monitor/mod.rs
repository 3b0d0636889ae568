//! The performance monitor: per-route HTTP metrics, periodic samples of
//! every route and op, threshold alerts with a lifecycle, regression
//! detection and recommendations.
//!
//! Each [`Registry`](crate::Registry) has one ([`Registry::monitor`](crate::Registry::monitor)).
//! Recording costs a few atomic adds; windows (the last minute, the baseline
//! before it, one point of the chart) are differences of samples taken every
//! [`MonitorConfig::sample_interval`], computed when someone reads.
//!
//! ```
//! use std::time::Duration;
//! use limiter_runtime::{monitor::AlertKind, Registry};
//!
//! let reg = Registry::new();
//! let mut cfg = reg.monitor().config();
//! cfg.thresholds.min_calls = 1;
//! cfg.thresholds.sustain = Duration::ZERO; // raise at the first evaluation
//! reg.monitor().configure(cfg).unwrap();
//!
//! let route = reg.monitor().route("GET", "/users/{id}");
//! for _ in 0..4 {
//!     route.finish(503, Duration::from_millis(3));
//! }
//! reg.refresh_monitor();
//! let alerts = reg.monitor().alerts();
//! assert_eq!(alerts[0].kind, AlertKind::ErrorRate);
//! assert_eq!(alerts[0].subject, "route GET /users/{id}");
//! ```

mod advice;
mod alerts;
mod history;
mod route;
mod rules;
mod thresholds;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::breaker::BreakerState;
use crate::error::ConfigError;
use crate::op::{Op, OpSnapshot};

pub use alerts::{Alert, AlertError, AlertKind, AlertLevel, AlertState};
pub(crate) use route::RouteStats;
pub use route::{
    RoutePoint, RouteSnapshot, StatusClasses, MAX_ROUTES, OTHER_ROUTE, UNMATCHED_ROUTE,
};
pub use rules::{RuleDecision, RuleSnapshot, RuleStats};
pub use thresholds::{MonitorConfig, Thresholds};

use advice::View;
use alerts::{AlertBook, Holds};
use history::{Sample, Series, Window};
use route::RouteTable;
use rules::RuleTable;

/// Unix milliseconds now.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One limit's state for one key (`GET /monitoring/limits/{key}`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyLimitView {
    /// `op db` or `rule POST /auth/login`.
    pub source: String,
    /// The rate limit, e.g. `5/1m, 20/1h`.
    pub limit: Option<String>,
    /// Calls the key may make now.
    pub available: Option<u64>,
    /// Calls of the key running.
    pub in_flight: u32,
    /// Calls of the key queued.
    pub queued: u32,
}

/// The monitor of one registry.
pub struct Monitor {
    started: Instant,
    pub(crate) routes: RouteTable,
    rules: RuleTable,
    state: Mutex<State>,
    sampler: AtomicBool,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("uptime", &self.started.elapsed())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    config: MonitorConfig,
    last_sample_ms: u64,
    routes: HashMap<String, Series>,
    ops: HashMap<String, Series>,
    alerts: AlertBook,
    recommendations: Vec<String>,
}

/// A handle to record the requests of one route.
#[derive(Clone)]
pub struct RouteRecorder {
    stats: Arc<RouteStats>,
}

impl std::fmt::Debug for RouteRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteRecorder").finish_non_exhaustive()
    }
}

impl RouteRecorder {
    /// Counts a request that started; pair with [`RouteRecorder::finish`].
    pub fn start(&self) {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a response with `status` after `latency`, ending a request
    /// counted by [`RouteRecorder::start`] (or, without one, counting it
    /// now).
    pub fn finish(&self, status: u16, latency: Duration) {
        self.end(status, latency, false);
    }

    /// Counts a response that was a limit's refusal (see
    /// [`LimitError::is_refusal`](crate::LimitError::is_refusal)), ending a
    /// request as [`RouteRecorder::finish`] does: rejected by design, it
    /// never counts as an error, whatever its status (503 for a full queue
    /// or an open breaker).
    pub fn refused(&self, status: u16, latency: Duration) {
        self.end(status, latency, true);
    }

    fn end(&self, status: u16, latency: Duration, refused: bool) {
        let sub = self
            .stats
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if sub.is_err() {
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
        }
        self.stats
            .finish(status, crate::clock::duration_ns(latency), refused);
    }

    /// Counts one poll of the handler that blocked the thread for longer
    /// than the slow-poll threshold.
    pub fn slow_poll(&self) {
        self.stats.slow_polls.fetch_add(1, Ordering::Relaxed);
    }

    /// The request ended without a response (the client went away).
    pub fn abandon(&self) {
        let _ = self
            .stats
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

/// Totals across routes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RouteTotals {
    /// Routes seen.
    pub count: usize,
    /// Requests received.
    pub requests: u64,
    /// 5xx responses.
    pub errors: u64,
    /// 5xx over all responses.
    pub error_rate: f64,
    /// 408, 429 and 503 responses.
    pub rejected: u64,
    /// Requests being handled.
    pub in_flight: u64,
}

/// Totals across ops.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OpTotals {
    /// Ops known.
    pub count: usize,
    /// Calls.
    pub calls: u64,
    /// Calls refused by a limit.
    pub rejected: u64,
    /// Calls running.
    pub in_flight: u64,
    /// Calls queued.
    pub queued: u64,
}

/// Breakers by state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BreakerTotals {
    /// Closed breakers.
    pub closed: usize,
    /// Open breakers.
    pub open: usize,
    /// Half-open breakers.
    pub half_open: usize,
    /// Breakers held open by hand.
    pub forced_open: usize,
}

/// Open alerts by state and level.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AlertTotals {
    /// Active alerts.
    pub active: usize,
    /// Acknowledged alerts.
    pub acknowledged: usize,
    /// Open critical alerts.
    pub critical: usize,
    /// Open error alerts.
    pub error: usize,
    /// Open warnings.
    pub warning: usize,
}

/// Background tasks in brief.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TaskTotals {
    /// Tasks waiting for a place.
    pub pending: usize,
    /// Tasks running.
    pub running: usize,
    /// Tasks started since the process began.
    pub spawned: u64,
    /// Tasks refused.
    pub rejected: u64,
}

/// Everything at a glance (`GET /monitoring/summary`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Seconds since the monitor started.
    pub uptime_s: f64,
    /// Whether limits are on.
    pub enabled: bool,
    /// Routes.
    pub routes: RouteTotals,
    /// Ops.
    pub ops: OpTotals,
    /// Breakers.
    pub breakers: BreakerTotals,
    /// Open alerts.
    pub alerts: AlertTotals,
    /// Background tasks.
    pub background: TaskTotals,
    /// Limiter-layer rules and their decisions.
    pub rules: Vec<RuleSnapshot>,
    /// What to change, with the numbers.
    pub recommendations: Vec<String>,
}

fn op_rejected(s: &OpSnapshot) -> u64 {
    let c = &s.counters;
    c.rejected_rate_limited
        + c.rejected_queue_full_key
        + c.rejected_queue_full_global
        + c.rejected_queue_timeout
        + c.rejected_circuit_open
        + c.rejected_overloaded
}

fn op_sample(op: &Op, snap: &OpSnapshot, t_ms: u64) -> Sample {
    let c = &snap.counters;
    // A call moved to the background at its deadline (`strategy =
    // "background"`) goes on by design, answered 202: it ended as a timeout
    // for the breaker, but it is no error a user saw.
    let timeouts = c.timeouts.saturating_sub(c.moved_to_background);
    // An excused error (an inner op's refusal, a client's mistake by the
    // call's classifier) is no failure of what the op protects.
    let failed = c.failed.saturating_sub(c.excused);
    Sample {
        t_ms,
        calls: c.succeeded + c.failed + c.timeouts + c.panics,
        errors: failed + timeouts + c.panics,
        slow_polls: c.slow_polls,
        latency: op.core.metrics.latency_counts(),
    }
}

fn route_sample(r: &RouteStats, t_ms: u64) -> Sample {
    let latency = r.counts();
    Sample {
        t_ms,
        calls: latency.count(),
        errors: r.errors(),
        slow_polls: r.slow_polls.load(Ordering::Relaxed),
        latency,
    }
}

impl Default for Monitor {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            routes: RouteTable::default(),
            rules: RuleTable::default(),
            state: Mutex::new(State::default()),
            sampler: AtomicBool::new(false),
        }
    }
}

impl Monitor {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The configuration in force.
    pub fn config(&self) -> MonitorConfig {
        self.state().config.clone()
    }

    /// Replaces the configuration after checking it.
    pub fn configure(&self, config: MonitorConfig) -> Result<(), ConfigError> {
        config.validate()?;
        self.state().config = config;
        Ok(())
    }

    /// The recorder of `method` + route `template` (e.g. `/users/{id}`:
    /// the template, never the raw path).
    pub fn route(&self, method: &str, template: &str) -> RouteRecorder {
        RouteRecorder {
            stats: self.routes.get(method, template),
        }
    }

    /// The decision counters of the limiter-layer rule `name` (shared by
    /// every layer whose rule has that name and shadow setting).
    pub fn rule(&self, name: &str, shadow: bool) -> Arc<RuleStats> {
        self.rules.get(name, shadow)
    }

    /// Decisions of every limiter-layer rule.
    pub fn rules(&self) -> Vec<RuleSnapshot> {
        self.rules.all()
    }

    /// Every route with its history.
    pub fn routes(&self) -> Vec<RouteSnapshot> {
        let now = unix_ms();
        let routes = self.routes.all();
        let st = self.state();
        routes
            .iter()
            .map(|r| {
                let history = st
                    .routes
                    .get(&r.label())
                    .map(|series| {
                        series
                            .intervals(&route_sample(r, now))
                            .into_iter()
                            .map(|(t_ms, w)| point(t_ms, &w))
                            .collect()
                    })
                    .unwrap_or_default();
                r.snapshot(history)
            })
            .collect()
    }

    /// Every alert, open and recently resolved, oldest first.
    pub fn alerts(&self) -> Vec<Alert> {
        self.state().alerts.all().to_vec()
    }

    /// Marks an alert as seen. Acknowledging twice is not an error.
    pub fn acknowledge(&self, id: u64) -> Result<Alert, AlertError> {
        self.state().alerts.acknowledge(id, unix_ms())
    }

    /// Closes an alert by hand. If its condition still holds at the next
    /// evaluation, a new alert is raised.
    pub fn resolve(&self, id: u64) -> Result<Alert, AlertError> {
        self.state().alerts.resolve(id, unix_ms())
    }

    /// The recommendations of the last evaluation.
    pub fn recommendations(&self) -> Vec<String> {
        self.state().recommendations.clone()
    }

    /// Totals for routes and open alerts, plus uptime (ops, breakers and
    /// tasks are filled in by [`crate::Registry::monitoring_summary`]).
    pub(crate) fn summary(&self, ops: &[OpSnapshot]) -> Summary {
        let routes = self.routes.all();
        let mut rt = RouteTotals {
            count: routes.len(),
            ..RouteTotals::default()
        };
        let mut responses = 0;
        for r in &routes {
            rt.requests += r.requests.load(Ordering::Relaxed);
            rt.errors += r.errors();
            rt.rejected += r.rejected();
            rt.in_flight += r.in_flight.load(Ordering::Relaxed);
            responses += r.counts().count();
        }
        rt.error_rate = route::ratio(rt.errors, responses);
        let mut ot = OpTotals {
            count: ops.len(),
            ..OpTotals::default()
        };
        let mut bt = BreakerTotals::default();
        for s in ops {
            ot.calls += s.counters.calls;
            ot.rejected += op_rejected(s);
            ot.in_flight += u64::from(s.bulkhead.in_flight);
            ot.queued += u64::from(s.bulkhead.queued);
            match s.breaker.state {
                BreakerState::Closed => bt.closed += 1,
                BreakerState::Open => bt.open += 1,
                BreakerState::HalfOpen => bt.half_open += 1,
                BreakerState::ForcedOpen => bt.forced_open += 1,
                BreakerState::Disabled => {}
            }
        }
        let st = self.state();
        let mut at = AlertTotals::default();
        for a in st.alerts.all() {
            match a.state {
                AlertState::Active => at.active += 1,
                AlertState::Acknowledged => at.acknowledged += 1,
                AlertState::Resolved => continue,
            }
            match a.level {
                AlertLevel::Critical => at.critical += 1,
                AlertLevel::Error => at.error += 1,
                AlertLevel::Warning => at.warning += 1,
            }
        }
        Summary {
            uptime_s: self.started.elapsed().as_secs_f64(),
            enabled: true,
            routes: rt,
            ops: ot,
            breakers: bt,
            alerts: at,
            background: TaskTotals::default(),
            rules: self.rules.all(),
            recommendations: st.recommendations.clone(),
        }
    }

    /// Takes a sample if one is due, then checks every threshold, updates
    /// the alerts and the recommendations.
    pub(crate) fn refresh(&self, ops: &[Op]) {
        self.refresh_at(ops, unix_ms());
    }

    /// [`Monitor::refresh`] at `now` (unix milliseconds).
    fn refresh_at(&self, ops: &[Op], now: u64) {
        let snaps: Vec<OpSnapshot> = ops.iter().map(Op::snapshot).collect();
        let routes = self.routes.all();
        let mut st = self.state();
        let st = &mut *st;
        let cfg = st.config.clone();
        let t = &cfg.thresholds;
        let recent_ms = t.recent.as_millis() as u64;
        let baseline_ms = t.baseline.as_millis() as u64;
        let due = now.saturating_sub(st.last_sample_ms) >= cfg.sample_interval.as_millis() as u64;

        let mut findings = Vec::new();
        let mut advice = Vec::new();
        let mut checked = Vec::new();
        for r in &routes {
            let label = r.label();
            let subject = format!("route {label}");
            let sample = route_sample(r, now);
            let series = st.routes.entry(label).or_default();
            let (recent, baseline) = windows(series, &sample, recent_ms, baseline_ms);
            let view = View {
                subject: &subject,
                recent: &recent,
                baseline: baseline.as_ref(),
            };
            findings.extend(advice::check(t, &view));
            advice::advise_route(t, &view, &mut advice);
            if due {
                series.push(sample, cfg.history);
            }
            checked.push(subject);
        }
        for (op, snap) in ops.iter().zip(&snaps) {
            let subject = format!("op {}", snap.name);
            let sample = op_sample(op, snap, now);
            let series = st.ops.entry(snap.name.to_string()).or_default();
            let (recent, baseline) = windows(series, &sample, recent_ms, baseline_ms);
            let view = View {
                subject: &subject,
                recent: &recent,
                baseline: baseline.as_ref(),
            };
            findings.extend(advice::check(t, &view));
            findings.extend(advice::check_breaker(snap));
            advice::advise_op(t, snap, &recent, &mut advice);
            if due {
                series.push(sample, cfg.history);
            }
            checked.push(subject);
        }
        if due {
            st.last_sample_ms = now;
        }
        let is_checked = |s: &str| checked.iter().any(|c| c == s);
        let holds = Holds {
            sustain_ms: t.sustain.as_millis() as u64,
            critical_ms: t.critical_after.as_millis() as u64,
        };
        st.alerts.apply(findings, &is_checked, now, holds);
        st.recommendations = advice;
    }

    /// Marks the sampler task as running, unless it already runs. The
    /// claim, moved into the task, marks it as stopped when dropped (the
    /// task ends, panics, or is dropped with its runtime), so that a later
    /// [`Registry::start_monitor`](crate::Registry::start_monitor) starts
    /// another one.
    pub(crate) fn claim_sampler(&self) -> bool {
        !self.sampler.swap(true, Ordering::AcqRel)
    }

    /// Gives the sampler's claim back (its task ended).
    pub(crate) fn release_sampler(&self) {
        self.sampler.store(false, Ordering::Release);
    }

    /// The sampling interval.
    pub(crate) fn sample_interval(&self) -> Duration {
        self.state().config.sample_interval
    }
}

fn windows(
    series: &Series,
    now: &Sample,
    recent_ms: u64,
    baseline_ms: u64,
) -> (Window, Option<Window>) {
    (
        series.recent(now, recent_ms),
        series.baseline(now, recent_ms, baseline_ms),
    )
}

fn point(t_ms: u64, w: &Window) -> RoutePoint {
    let ms = |q| w.latency.quantile(q) as f64 / 1e6;
    RoutePoint {
        t_ms,
        requests: w.calls,
        p50_ms: ms(0.50),
        p95_ms: ms(0.95),
        p99_ms: ms(0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Registry;

    /// A monitor sampling every second that raises conditions at once.
    fn monitor(recent_s: u64, baseline_s: u64) -> Monitor {
        let m = Monitor::default();
        let mut cfg = MonitorConfig {
            sample_interval: Duration::from_secs(1),
            history: 1000,
            ..MonitorConfig::default()
        };
        cfg.thresholds.recent = Duration::from_secs(recent_s);
        cfg.thresholds.baseline = Duration::from_secs(baseline_s);
        cfg.thresholds.sustain = Duration::ZERO;
        cfg.thresholds.critical_after = Duration::ZERO;
        m.configure(cfg).unwrap();
        m
    }

    /// A route failing every call, evaluated every second from `t0`: the
    /// alerts of its error rate by second.
    fn failing_route(m: &Monitor, seconds: u64, t0: u64) -> Vec<Option<(AlertLevel, u64)>> {
        let route = m.route("GET", "/down");
        (0..=seconds)
            .map(|sec| {
                for _ in 0..20 {
                    route.finish(500, Duration::from_millis(3));
                }
                m.refresh_at(&[], t0 + sec * 1000);
                m.alerts()
                    .iter()
                    .find(|a| a.kind == AlertKind::ErrorRate)
                    .map(|a| (a.level, a.first_seen_ms))
            })
            .collect()
    }

    /// With the default holds a failing route raises nothing for 10 s, then
    /// an error, and critical only after 30 s at the critical level.
    #[test]
    fn alerts_wait_for_sustained_conditions() {
        let m = Monitor::default();
        m.configure(MonitorConfig {
            sample_interval: Duration::from_secs(1),
            ..MonitorConfig::default()
        })
        .unwrap();
        let t0 = 5_000_000;
        let by_second = failing_route(&m, 45, t0);
        assert!(by_second[..10].iter().all(Option::is_none), "{by_second:?}");
        assert_eq!(by_second[10], Some((AlertLevel::Error, t0 + 10_000)));
        assert_eq!(by_second[29], Some((AlertLevel::Error, t0 + 10_000)));
        assert_eq!(by_second[30], Some((AlertLevel::Critical, t0 + 10_000)));
        assert_eq!(m.alerts().len(), 1, "{:#?}", m.alerts());
    }

    /// Zero holds raise at the first evaluation, at the level found.
    #[test]
    fn zero_holds_raise_at_once() {
        let m = monitor(60, 600);
        let by_second = failing_route(&m, 1, 1_000);
        assert_eq!(by_second[0], Some((AlertLevel::Critical, 1_000)));
    }

    /// 503s that were a limit's refusals (a full queue, an open breaker)
    /// are rejections by design: no error-rate alert, whatever their share.
    #[test]
    fn refusals_raise_no_error_rate_alert() {
        let m = monitor(60, 600);
        let route = m.route("POST", "/reports");
        for _ in 0..40 {
            route.refused(503, Duration::from_millis(1));
            route.finish(200, Duration::from_millis(5));
        }
        m.refresh_at(&[], 1_000);
        assert!(m.alerts().is_empty(), "{:#?}", m.alerts());
        for _ in 0..40 {
            route.finish(502, Duration::from_millis(5));
        }
        m.refresh_at(&[], 2_000);
        let alerts = m.alerts();
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        // The window starts at the first sample: the 40 failures since.
        assert_eq!(alerts[0].kind, AlertKind::ErrorRate);
        assert!(
            alerts[0].message.contains("100.0% of the last 40 calls"),
            "{}",
            alerts[0].message
        );
    }

    #[test]
    fn a_slower_recent_window_is_a_regression_with_its_numbers() {
        let m = monitor(10, 60);
        let route = m.route("GET", "/reports/{id}");
        let t0 = 1_000_000;
        for sec in 0..=60u64 {
            let latency = if sec < 50 { 2 } else { 20 };
            for _ in 0..20 {
                route.finish(200, Duration::from_millis(latency));
            }
            m.refresh_at(&[], t0 + sec * 1000);
        }
        let alerts = m.alerts();
        let reg = alerts
            .iter()
            .find(|a| a.kind == AlertKind::Regression)
            .expect("a regression alert");
        assert_eq!(reg.subject, "route GET /reports/{id}");
        assert_eq!(
            reg.level,
            AlertLevel::Error,
            "about 10x is well past 2 x 1.5"
        );
        assert!(reg.value > 8.0 && reg.value < 12.0, "ratio {}", reg.value);
        assert!(
            reg.message
                .contains("p95 rose from 2 ms (baseline) to 20 ms"),
            "{}",
            reg.message
        );
        assert!(m
            .recommendations()
            .iter()
            .any(|r| r.contains("GET /reports/{id}: p95 is")
                && r.contains("its baseline (2 ms → 20 ms)")));
        // No response-time alert: 20 ms is far below 1 s.
        assert!(!alerts.iter().any(|a| a.kind == AlertKind::ResponseTime));
    }

    #[test]
    fn steady_latency_is_no_regression_and_cleared_conditions_resolve() {
        let m = monitor(10, 60);
        let route = m.route("GET", "/steady");
        for sec in 0..=60u64 {
            for _ in 0..20 {
                route.finish(if sec < 55 { 200 } else { 500 }, Duration::from_millis(3));
            }
            m.refresh_at(&[], 1_000 + sec * 1000);
        }
        let alerts = m.alerts();
        assert!(!alerts.iter().any(|a| a.kind == AlertKind::Regression));
        let err = alerts
            .iter()
            .find(|a| a.kind == AlertKind::ErrorRate)
            .expect("an error-rate alert");
        assert_eq!(err.state, AlertState::Active);
        // The 5xx burst leaves the recent window: the alert resolves itself.
        for sec in 61..=80u64 {
            for _ in 0..20 {
                route.finish(200, Duration::from_millis(3));
            }
            m.refresh_at(&[], 1_000 + sec * 1000);
        }
        let err = m.alerts().into_iter().find(|a| a.id == err.id).unwrap();
        assert_eq!(
            (err.state, err.resolution),
            (AlertState::Resolved, Some("cleared"))
        );
    }

    #[tokio::test]
    async fn op_recommendations_are_sentences_with_numbers() {
        let reg = Registry::new();
        let mut cfg = MonitorConfig::default();
        cfg.thresholds.sustain = Duration::ZERO;
        reg.monitor().configure(cfg).unwrap();
        reg.configure(
            "db",
            crate::OpConfig {
                timeout: Some(Duration::from_millis(100)),
                max_concurrent: Some(1),
                queue: Some(0),
                ..crate::OpConfig::default()
            },
        )
        .unwrap();
        let op = reg.op("db");
        for _ in 0..12 {
            op.run(None, || async {
                std::thread::sleep(Duration::from_millis(90));
                Ok::<_, crate::LimitError>(())
            })
            .await
            .unwrap();
        }
        let _held = op.acquire(None).await.unwrap();
        assert!(op.acquire(None).await.is_err(), "queue full");
        reg.refresh_monitor();
        let advice = reg.monitor().recommendations();
        let timeout = advice
            .iter()
            .find(|r| r.contains("timeout"))
            .expect("a timeout recommendation");
        assert!(
            // p95 of 90 ms sleeps: 9x ms, more on a loaded machine.
            timeout.starts_with("op `db`: p95 ") && timeout.contains("% of its 100 ms timeout"),
            "{timeout}"
        );
        assert!(
            advice
                .iter()
                .any(|r| r.contains("1 of 14 calls found no place (max_concurrent 1, queue 0")),
            "{advice:#?}"
        );
        assert!(
            advice
                .iter()
                .any(|r| r.contains("polls over 1 ms blocked the executor thread")),
            "{advice:#?}"
        );
        let slow = reg
            .monitor()
            .alerts()
            .into_iter()
            .find(|a| a.kind == AlertKind::SlowPolls)
            .expect("slow polls alert");
        assert_eq!(slow.level, AlertLevel::Error, "12 slow polls >= 10");
    }

    /// Calls moved to the background (202, by design) raise no error-rate
    /// alert; calls that fail do.
    #[tokio::test(start_paused = true)]
    async fn background_moves_are_not_errors() {
        let reg = Registry::new();
        let mut cfg = MonitorConfig::default();
        cfg.thresholds.min_calls = 1;
        cfg.thresholds.sustain = Duration::ZERO;
        reg.monitor().configure(cfg).unwrap();
        reg.configure(
            "report",
            crate::OpConfig {
                timeout: Some(Duration::from_millis(10)),
                ..crate::OpConfig::default()
            },
        )
        .unwrap();
        let op = reg.op("report");
        for _ in 0..12 {
            let r = op
                .call()
                .background()
                .run(|| async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, crate::LimitError>(())
                })
                .await;
            assert!(matches!(
                r,
                Err(crate::LimitError::MovedToBackground { .. })
            ));
        }
        reg.refresh_monitor();
        let rate_alerts = |reg: &Registry| {
            reg.monitor()
                .alerts()
                .into_iter()
                .filter(|a| a.kind == AlertKind::ErrorRate)
                .count()
        };
        assert_eq!(rate_alerts(&reg), 0, "{:#?}", reg.monitor().alerts());
        for _ in 0..12 {
            let _ = op
                .run(None, || async {
                    Err::<(), _>(crate::LimitError::Timeout { op: "x".into() })
                })
                .await;
        }
        tokio::time::sleep(reg.monitor().sample_interval()).await;
        reg.refresh_monitor();
        assert_eq!(rate_alerts(&reg), 1, "real failures do raise it");
    }

    /// Errors the call's classifier excuses (a client's mistake) are no
    /// failures of the op: no error-rate alert, while failures do raise one.
    #[tokio::test]
    async fn excused_errors_are_not_op_errors() {
        #[derive(Debug)]
        enum DbError {
            NotFound,
            Down,
            Limit,
        }
        impl From<crate::LimitError> for DbError {
            fn from(_: crate::LimitError) -> Self {
                DbError::Limit
            }
        }
        let reg = Registry::new();
        let mut cfg = MonitorConfig::default();
        cfg.thresholds.sustain = Duration::ZERO;
        reg.monitor().configure(cfg).unwrap();
        let op = reg.op("db");
        let run = |err: fn() -> DbError| {
            op.call()
                .failure(|e: &DbError| matches!(e, DbError::Down))
                .run(move || async move { Err::<(), _>(err()) })
        };
        for _ in 0..20 {
            assert!(matches!(
                run(|| DbError::NotFound).await,
                Err(DbError::NotFound)
            ));
        }
        reg.refresh_monitor();
        let snap = op.snapshot();
        assert_eq!((snap.counters.failed, snap.counters.excused), (20, 20));
        let rate_alerts = || {
            reg.monitor()
                .alerts()
                .into_iter()
                .filter(|a| a.kind == AlertKind::ErrorRate)
                .count()
        };
        assert_eq!(rate_alerts(), 0, "{:#?}", reg.monitor().alerts());
        for _ in 0..20 {
            assert!(matches!(run(|| DbError::Down).await, Err(DbError::Down)));
        }
        reg.refresh_monitor();
        assert_eq!(rate_alerts(), 1, "real failures do raise it");
    }

    /// The sampler task dies with its runtime; its flag must go with it, or
    /// no later `start_monitor` ever samples again.
    #[test]
    fn sampler_restarts_after_its_runtime_is_dropped() {
        let reg: &'static Registry = Box::leak(Box::new(Registry::new()));
        let paused = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap()
        };
        let last_sample = || reg.monitor().state().last_sample_ms;
        let first = paused();
        first.block_on(async { assert!(reg.start_monitor()) });
        drop(first);
        assert_eq!(last_sample(), 0, "nothing sampled yet");
        let second = paused();
        second.block_on(async {
            assert!(reg.start_monitor());
            tokio::time::sleep(reg.monitor().sample_interval() + Duration::from_millis(1)).await;
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        });
        assert_ne!(last_sample(), 0, "the new runtime's sampler sampled");
    }
}
