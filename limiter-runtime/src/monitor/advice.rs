//! Threshold checks (which raise alerts) and recommendations (sentences with
//! the numbers that prompted them).

use std::time::Duration;

use crate::breaker::BreakerState;
use crate::op::OpSnapshot;

use super::alerts::{AlertKind, AlertLevel, Finding};
use super::history::Window;
use super::thresholds::Thresholds;

/// Latency below this never counts as a regression: a jump from 40 µs to
/// 200 µs is noise, not news.
const REGRESSION_FLOOR: Duration = Duration::from_millis(5);

/// A route or op over the recent window (and the baseline before it).
pub(crate) struct View<'a> {
    /// `route GET /x/{id}` or `op db`.
    pub(crate) subject: &'a str,
    pub(crate) recent: &'a Window,
    pub(crate) baseline: Option<&'a Window>,
}

/// Formats seconds the way people read them: `4.2 s`, `340 ms`, `85 µs`.
pub(crate) fn human(secs: f64) -> String {
    if secs >= 1.0 {
        format!("{secs:.1} s")
    } else if secs >= 1e-3 {
        format!("{:.0} ms", secs * 1e3)
    } else {
        format!("{:.0} µs", secs * 1e6)
    }
}

fn percent(r: f64) -> String {
    format!("{:.1}%", r * 100.0)
}

fn level_of(value: f64, [warn, err, crit]: [f64; 3]) -> Option<(AlertLevel, f64)> {
    if value >= crit {
        Some((AlertLevel::Critical, crit))
    } else if value >= err {
        Some((AlertLevel::Error, err))
    } else if value >= warn {
        Some((AlertLevel::Warning, warn))
    } else {
        None
    }
}

fn level_name(l: AlertLevel) -> &'static str {
    match l {
        AlertLevel::Warning => "warning",
        AlertLevel::Error => "error",
        AlertLevel::Critical => "critical",
    }
}

/// The threshold checks of one route or op over the recent window.
pub(crate) fn check(t: &Thresholds, v: &View<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    let r = v.recent;
    let window = human(r.span_ms as f64 / 1e3);
    let finding = |kind, level, message, value, threshold| Finding {
        kind,
        subject: v.subject.to_owned(),
        level,
        message,
        value,
        threshold,
    };
    if r.calls >= t.min_calls {
        let p95 = r.quantile_s(0.95);
        let limits = t.response_time.map(|d| d.as_secs_f64());
        if let Some((level, limit)) = level_of(p95, limits) {
            out.push(finding(
                AlertKind::ResponseTime,
                level,
                format!(
                    "{}: p95 {} over the last {window} is above the {} {} threshold",
                    v.subject,
                    human(p95),
                    human(limit),
                    level_name(level)
                ),
                p95,
                limit,
            ));
        }
        let rate = r.error_rate();
        if let Some((level, limit)) = level_of(rate, t.error_rate) {
            out.push(finding(
                AlertKind::ErrorRate,
                level,
                format!(
                    "{}: {} of the last {} calls failed (over {window}), above the {} {} threshold",
                    v.subject,
                    percent(rate),
                    r.calls,
                    percent(limit),
                    level_name(level)
                ),
                rate,
                limit,
            ));
        }
    }
    let slow = r.slow_polls;
    if let Some((level, limit)) = slow_poll_level(t, r) {
        out.push(finding(
            AlertKind::SlowPolls,
            level,
            format!(
                "{}: {slow} polls blocked the executor thread in the last {window} (threshold {limit})",
                v.subject
            ),
            slow as f64,
            limit as f64,
        ));
    }
    if let Some((recent, base, ratio)) = regression(t, v) {
        out.push(finding(
            AlertKind::Regression,
            if ratio >= 2.0 * t.regression_ratio {
                AlertLevel::Error
            } else {
                AlertLevel::Warning
            },
            format!(
                "{}: p95 rose from {} (baseline) to {} (last {window}), {ratio:.1}×",
                v.subject,
                human(base),
                human(recent)
            ),
            ratio,
            t.regression_ratio,
        ));
    }
    out
}

/// The level of a window's slow polls: their count against the thresholds,
/// once they are also `slow_poll_share` of its calls.
fn slow_poll_level(t: &Thresholds, r: &Window) -> Option<(AlertLevel, u64)> {
    let [warn, err] = t.slow_polls;
    let slow = r.slow_polls;
    if (slow as f64) < t.slow_poll_share * r.calls as f64 {
        None
    } else if slow >= err {
        Some((AlertLevel::Error, err))
    } else if slow >= warn {
        Some((AlertLevel::Warning, warn))
    } else {
        None
    }
}

/// Recent p95, baseline p95 and their ratio, when the recent one is worse
/// by the regression ratio and both windows hold enough calls.
fn regression(t: &Thresholds, v: &View<'_>) -> Option<(f64, f64, f64)> {
    let base = v.baseline?;
    if v.recent.calls < t.min_calls || base.calls < t.min_calls {
        return None;
    }
    let recent = v.recent.quantile_s(0.95);
    let before = base.quantile_s(0.95);
    if before <= 0.0 || recent < REGRESSION_FLOOR.as_secs_f64() {
        return None;
    }
    let ratio = recent / before;
    (ratio >= t.regression_ratio).then_some((recent, before, ratio))
}

/// An open breaker as an alert.
pub(crate) fn check_breaker(op: &OpSnapshot) -> Option<Finding> {
    let b = &op.breaker;
    let level = match b.state {
        BreakerState::Open | BreakerState::ForcedOpen => AlertLevel::Error,
        BreakerState::HalfOpen => AlertLevel::Warning,
        BreakerState::Closed | BreakerState::Disabled => return None,
    };
    let state = match b.state {
        BreakerState::ForcedOpen => "held open by hand",
        BreakerState::HalfOpen => "half-open, probing",
        _ => "open",
    };
    let retry = b.retry_after_ms.map_or(String::new(), |ms| {
        format!(", next probe in {}", human(ms as f64 / 1e3))
    });
    Some(Finding {
        kind: AlertKind::CircuitOpen,
        subject: format!("op {}", op.name),
        level,
        message: format!(
            "op `{}`: circuit {state} (opened {} times so far{retry}); calls fail fast",
            op.name, b.opened
        ),
        value: b.opened as f64,
        threshold: op.config.breaker.as_ref().map_or(0.0, |p| p.failure_rate),
    })
}

/// Recommendations for a route.
pub(crate) fn advise_route(t: &Thresholds, v: &View<'_>, out: &mut Vec<String>) {
    let r = v.recent;
    let window = human(r.span_ms as f64 / 1e3);
    if r.calls >= t.min_calls {
        let p95 = r.quantile_s(0.95);
        let warn = t.response_time[0].as_secs_f64();
        if p95 >= warn {
            out.push(format!(
                "{}: p95 {} over the last {window} is above the {} target; put its slow calls behind \
                 `#[limit_blocking(timeout = ...)]` or cache it with `#[optimize_route(level = Ultra, cache_ttl = ...)]`",
                v.subject,
                human(p95),
                human(warn)
            ));
        }
        let rate = r.error_rate();
        if rate >= t.error_rate[0] {
            out.push(format!(
                "{}: {} of the last {} responses were server errors; look at the ops it calls \
                 (breakers, timeouts) on /monitoring/ops",
                v.subject,
                percent(rate),
                r.calls
            ));
        }
    }
    if slow_poll_level(t, r).is_some() {
        out.push(format!(
            "{}: {} polls blocked the executor thread in the last {window}; blocking work in the \
             handler itself belongs in a plain `fn` under `#[limit_blocking]` (the blocking pool); \
             if the ops it calls already run there (see their advice), the thread was starved by \
             CPU-bound work elsewhere",
            v.subject, r.slow_polls
        ));
    }
    if let Some((recent, base, ratio)) = regression(t, v) {
        out.push(format!(
            "{}: p95 is {ratio:.1}× its baseline ({} → {}); check what changed (deploy, data size, a dependency)",
            v.subject,
            human(base),
            human(recent)
        ));
    }
}

/// Recommendations for an op.
pub(crate) fn advise_op(t: &Thresholds, op: &OpSnapshot, recent: &Window, out: &mut Vec<String>) {
    let c = &op.counters;
    let cfg = &op.config;
    let name = &op.name;
    if let Some(timeout) = cfg.timeout {
        if recent.calls >= t.min_calls {
            let p95 = recent.quantile_s(0.95);
            let share = p95 / timeout.as_secs_f64();
            if share >= 0.8 {
                out.push(format!(
                    "op `{name}`: p95 {} is {:.0}% of its {} timeout; calls near it will time out — \
                     raise `timeout` or make the work faster",
                    human(p95),
                    share * 100.0,
                    human(timeout.as_secs_f64())
                ));
            }
        }
    }
    let calls = c.calls.max(1);
    let share = |n: u64| n as f64 / calls as f64;
    if c.rejected_rate_limited > 0 && share(c.rejected_rate_limited) >= 0.05 {
        let limit = cfg
            .rate
            .as_ref()
            .or(cfg.rate_per_key.as_ref())
            .map(|s| {
                s.windows
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        out.push(format!(
            "op `{name}`: {} of {} calls were refused by its rate limit ({limit}); raise `rate` if the \
             callers are legitimate, or cache the result",
            percent(share(c.rejected_rate_limited)),
            c.calls
        ));
    }
    let full = c.rejected_queue_full_global + c.rejected_queue_full_key + c.rejected_queue_timeout;
    if full > 0 && share(full) >= 0.01 {
        out.push(format!(
            "op `{name}`: {full} of {} calls found no place (max_concurrent {}, queue {}, queue timeout {}); \
             raise `max_concurrent` if the backend has room, or shed earlier with a smaller `queue`",
            c.calls,
            cfg.max_concurrent,
            cfg.queue,
            human(cfg.queue_timeout.as_secs_f64())
        ));
    }
    if matches!(
        op.breaker.state,
        BreakerState::Open | BreakerState::ForcedOpen
    ) {
        let recovery = cfg.breaker.as_ref().map_or(String::new(), |b| {
            format!(" for {}", human(b.recovery.as_secs_f64()))
        });
        out.push(format!(
            "op `{name}`: circuit open (opened {} times so far); calls fail fast{recovery}. \
             Check the dependency, and give users a degraded answer with `fallback = ...`",
            op.breaker.opened
        ));
    }
    if slow_poll_level(t, recent).is_some() {
        // An op whose body already runs on a blocking pool has nothing to
        // move there: its polls were slow because the executor thread was
        // starved (CPU-bound work elsewhere, too few worker threads).
        let fix = if c.offloaded > 0 {
            "its body already runs on a blocking pool, so the executor thread itself was starved: \
             look for CPU-bound or blocking work in other async code, or add worker threads"
        } else {
            "make it a plain `fn` so it runs on the blocking pool"
        };
        out.push(format!(
            "op `{name}`: {} polls over {} blocked the executor thread (longest {}); {fix}",
            recent.slow_polls,
            human(cfg.slow_poll.as_secs_f64()),
            human(c.max_poll_ns as f64 / 1e9)
        ));
    }
    let database = cfg.kind == Some(crate::settings::OpKind::Database);
    if database && c.dropped_at_timeout > 0 {
        out.push(format!(
            "op `{name}`: {} timed-out queries were dropped on the client and may have kept running on \
             the server, their connections back in the pool busy (the next calls queue behind them); \
             use `strategy = \"drain\"` or a `statement_timeout` ≤ the op's timeout",
            c.dropped_at_timeout
        ));
    }
    if c.drained + c.drain_dropped > 0 {
        out.push(format!(
            "op `{name}`: {} timed-out calls ran on after their timeout holding their place ({} still \
             draining, {} dropped at `drain_timeout`); make the work give up sooner (a \
             `statement_timeout` ≤ the op's timeout, or an `on_timeout` cancel)",
            c.drained + c.drain_dropped,
            c.draining,
            c.drain_dropped
        ));
    }
    if c.orphans > 0 {
        out.push(format!(
            "op `{name}`: {} offloaded calls kept running after their timeout ({} still running); \
             blocking work cannot be aborted, so shorten it or raise the timeout",
            c.orphans, c.orphans_running
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::history::Window;

    #[test]
    fn human_units() {
        assert_eq!(human(4.2), "4.2 s");
        assert_eq!(human(0.34), "340 ms");
        assert_eq!(human(0.000_085), "85 µs");
    }

    /// Slow polls of an op whose body already runs on a blocking pool are
    /// not answered with "make it a plain `fn`".
    #[test]
    fn slow_poll_advice_knows_offloaded_ops() {
        let reg = crate::Registry::new();
        let t = Thresholds::default();
        let recent = Window {
            span_ms: 60_000,
            slow_polls: t.slow_polls[0],
            ..Window::default()
        };
        let advice = |offloaded: u64| {
            let mut snap = reg.op("files").snapshot();
            snap.counters.offloaded = offloaded;
            let mut out = Vec::new();
            advise_op(&t, &snap, &recent, &mut out);
            out.into_iter()
                .find(|a| a.contains("blocked the executor thread"))
                .expect("slow poll advice")
        };
        assert!(advice(0).contains("make it a plain `fn`"), "{}", advice(0));
        let offloaded = advice(3);
        assert!(
            !offloaded.contains("make it a plain") && offloaded.contains("starved"),
            "{offloaded}"
        );
    }

    /// A database op whose timed-out queries were dropped on the client
    /// is told why its pool suffers; drained calls are named as such.
    #[test]
    fn timed_out_queries_are_named_as_the_cause() {
        let reg = crate::Registry::new();
        reg.configure(
            "db",
            crate::OpConfig {
                kind: Some(crate::settings::OpKind::Database),
                ..crate::OpConfig::default()
            },
        )
        .unwrap();
        let t = Thresholds::default();
        let advice = |dropped: u64, drained: u64| {
            let mut snap = reg.op("db").snapshot();
            snap.counters.dropped_at_timeout = dropped;
            snap.counters.drained = drained;
            let mut out = Vec::new();
            advise_op(&t, &snap, &Window::default(), &mut out);
            out
        };
        let dropped = advice(873, 0).join("\n");
        assert!(
            dropped.contains("873 timed-out queries were dropped on the client")
                && dropped.contains("strategy = \"drain\"")
                && dropped.contains("statement_timeout"),
            "{dropped}"
        );
        let drained = advice(0, 12).join("\n");
        assert!(
            drained.contains("12 timed-out calls ran on after their timeout holding their place"),
            "{drained}"
        );
        assert!(advice(0, 0).iter().all(|a| !a.contains("timed-out")));
    }

    /// A few slow polls among many calls (a preempted thread now and then)
    /// are no finding; the same few among fewer calls are.
    #[test]
    fn slow_polls_count_as_a_share_of_the_calls() {
        let t = Thresholds::default();
        let window = |calls, slow_polls| Window {
            span_ms: 60_000,
            calls,
            slow_polls,
            ..Window::default()
        };
        let kinds = |w: &Window| {
            let view = View {
                subject: "route GET /x",
                recent: w,
                baseline: None,
            };
            check(&t, &view)
                .into_iter()
                .map(|f| (f.kind, f.level))
                .collect::<Vec<_>>()
        };
        assert!(kinds(&window(10_000, 12)).is_empty(), "0.12% of the calls");
        assert_eq!(
            kinds(&window(1_000, 12)),
            [(AlertKind::SlowPolls, AlertLevel::Error)],
            "1.2% of the calls"
        );
        assert_eq!(
            kinds(&window(100, 3)),
            [(AlertKind::SlowPolls, AlertLevel::Warning)]
        );
        let mut advice = Vec::new();
        let busy = window(10_000, 12);
        advise_route(
            &t,
            &View {
                subject: "route GET /x",
                recent: &busy,
                baseline: None,
            },
            &mut advice,
        );
        assert!(advice.is_empty(), "{advice:?}");
    }

    #[test]
    fn levels_follow_the_thresholds() {
        let t = [1.0, 5.0, 10.0];
        assert_eq!(level_of(0.5, t), None);
        assert_eq!(level_of(1.0, t), Some((AlertLevel::Warning, 1.0)));
        assert_eq!(level_of(7.0, t), Some((AlertLevel::Error, 5.0)));
        assert_eq!(level_of(12.0, t), Some((AlertLevel::Critical, 10.0)));
    }
}
