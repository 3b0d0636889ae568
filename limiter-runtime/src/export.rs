//! The registry as metric families: one walk over them ([`families`])
//! that every exporter follows, the Prometheus text exposition (what
//! `GET /metrics` serves) and, with the `metrics` feature, the `metrics`
//! facade (`export_metrics`). A family added here reaches both.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::breaker::BreakerState;
use crate::metrics::prometheus::Exposition;
use crate::metrics::Counts;
use crate::monitor::{AlertState, RouteStats};
use crate::registry::Registry;
use crate::stream::{DropReason, StreamSnapshot, StreamStats};
use crate::{CountersSnapshot, Op, OpSnapshot};

impl Registry {
    /// Every metric in the Prometheus text exposition format (what
    /// `GET /metrics` serves): ops, routes, limiter-layer rules, alerts and
    /// background tasks.
    pub fn prometheus(&self) -> String {
        let mut x = Exposition::new();
        families(self, &mut x);
        x.finish()
    }
}

/// What a family's samples are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A total that only grows.
    Counter,
    /// A value now.
    Gauge,
    /// A latency histogram, in seconds.
    Histogram,
}

impl Kind {
    /// The name of the kind in the Prometheus text format.
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Where [`families`] puts the families: each one is announced by
/// [`family`](Sink::family) before its series, whose label names are the
/// same for every series of the family.
pub(crate) trait Sink {
    /// Starts the family `name`.
    fn family(&mut self, name: &'static str, kind: Kind, help: &'static str);
    /// One series of a counter or gauge family.
    fn sample(&mut self, name: &'static str, labels: &[(&'static str, &str)], value: f64);
    /// One series of a histogram family: its buckets in nanoseconds.
    fn histogram(&mut self, name: &'static str, labels: &[(&'static str, &str)], counts: &Counts);
}

impl Sink for Exposition {
    fn family(&mut self, name: &'static str, kind: Kind, help: &'static str) {
        Exposition::family(self, name, kind.as_str(), help);
    }

    fn sample(&mut self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        Exposition::sample(self, name, labels, value);
    }

    fn histogram(&mut self, name: &'static str, labels: &[(&'static str, &str)], counts: &Counts) {
        Exposition::histogram(self, name, labels, counts);
    }
}

/// Every family of `reg`, with its series now, into `x`.
pub(crate) fn families(reg: &Registry, x: &mut dyn Sink) {
    let ops = reg.ops();
    let snaps: Vec<_> = ops.iter().map(|o| o.snapshot()).collect();

    op_calls(x, &snaps);
    op_outcomes(x, &snaps);
    op_rejections(x, &snaps);
    op_event_counters(x, &snaps);
    op_bulkhead_gauges(x, &snaps);
    op_running_after_timeout(x, &snaps);
    op_breaker_states(x, &snaps);
    op_key_tables(x, &snaps);
    op_durations(x, &ops);

    let routes = reg.monitor().routes.all();
    http_requests(x, &routes);
    http_in_flight(x, &routes);
    http_slow_polls(x, &routes);
    http_durations(x, &routes);

    rule_decisions(x, reg);

    open_alerts(x, reg);

    #[cfg(feature = "redis")]
    redis_backend(x, reg);
    op_backend_fallbacks(x, &snaps);

    background_tasks(x, reg);

    let streams = reg.streams().stats();
    stream_counters(x, &streams);
    stream_gauges(x, &streams);
    stream_durations(x, &streams);
}

/// `limiter_op_calls_total`: calls that reached admission, per op.
fn op_calls(x: &mut dyn Sink, snaps: &[OpSnapshot]) {
    x.family(
        "limiter_op_calls_total",
        Kind::Counter,
        "Calls that reached admission, each retry included.",
    );
    for s in snaps {
        x.sample(
            "limiter_op_calls_total",
            &[("op", &s.name)],
            s.counters.calls as f64,
        );
    }
}

/// `limiter_op_outcomes_total`: admitted calls by how they ended, per op.
fn op_outcomes(x: &mut dyn Sink, snaps: &[OpSnapshot]) {
    x.family(
        "limiter_op_outcomes_total",
        Kind::Counter,
        "Admitted calls by how they ended.",
    );
    for s in snaps {
        let c = &s.counters;
        for (outcome, n) in [
            ("succeeded", c.succeeded),
            ("failed", c.failed),
            ("timeout", c.timeouts),
            ("panic", c.panics),
            ("cancelled", c.cancelled),
            ("moved_to_background", c.moved_to_background),
            ("cache_fallback", c.cache_fallbacks),
            ("cache_hit", c.cache_hits),
            ("coalesced", c.coalesced),
        ] {
            x.sample(
                "limiter_op_outcomes_total",
                &[("op", &s.name), ("outcome", outcome)],
                n as f64,
            );
        }
    }
}

/// `limiter_op_rejected_total`: calls refused by a limit, by reason, per op.
fn op_rejections(x: &mut dyn Sink, snaps: &[OpSnapshot]) {
    x.family(
        "limiter_op_rejected_total",
        Kind::Counter,
        "Calls refused by a limit, by reason.",
    );
    for s in snaps {
        let c = &s.counters;
        for (reason, n) in [
            ("rate_limited", c.rejected_rate_limited),
            ("queue_full_key", c.rejected_queue_full_key),
            ("queue_full_global", c.rejected_queue_full_global),
            ("queue_timeout", c.rejected_queue_timeout),
            ("circuit_open", c.rejected_circuit_open),
            ("overloaded", c.rejected_overloaded),
        ] {
            x.sample(
                "limiter_op_rejected_total",
                &[("op", &s.name), ("reason", reason)],
                n as f64,
            );
        }
    }
}

/// The per-op event counters: retries, slow polls and orphans.
fn op_event_counters(x: &mut dyn Sink, snaps: &[OpSnapshot]) {
    for (name, help, get) in [
        (
            "limiter_op_retries_total",
            "Retries made.",
            (|c: &CountersSnapshot| c.retries) as fn(&_) -> u64,
        ),
        (
            "limiter_op_slow_polls_total",
            "Polls longer than the slow-poll threshold.",
            |c| c.slow_polls,
        ),
        (
            "limiter_op_drained_total",
            "Timed-out drain bodies that finished holding their place (results discarded).",
            |c| c.drained,
        ),
        (
            "limiter_op_drain_dropped_total",
            "Timed-out drain bodies dropped at drain_timeout.",
            |c| c.drain_dropped,
        ),
        (
            "limiter_op_dropped_at_timeout_total",
            "Async bodies dropped at their deadline (a database query may run on on the server).",
            |c| c.dropped_at_timeout,
        ),
        (
            "limiter_op_offloaded_total",
            "Bodies started on an offload pool.",
            |c| c.offloaded,
        ),
        (
            "limiter_op_orphans_total",
            "Offloaded calls abandoned by a timeout.",
            |c| c.orphans,
        ),
    ] {
        x.family(name, Kind::Counter, help);
        for s in snaps {
            x.sample(name, &[("op", &s.name)], get(&s.counters) as f64);
        }
    }
}

/// The per-key rate tables of ops that have one: keys tracked, evicted,
/// and evictions that forgot what a key owed.
fn op_key_tables(x: &mut dyn Sink, snaps: &[OpSnapshot]) {
    let keyed: Vec<_> = snaps
        .iter()
        .filter_map(|s| s.rate_per_key.as_ref().map(|r| (&s.name, r)))
        .collect();
    for (name, kind, help, get) in [
        (
            "limiter_op_keys",
            Kind::Gauge,
            "Keys tracked by the per-key rate limit.",
            (|r: &crate::rate::RateSnapshot| r.keys.unwrap_or(0) as u64) as fn(&_) -> u64,
        ),
        (
            "limiter_op_keys_evicted_total",
            Kind::Counter,
            "Keys dropped from the per-key rate table to make room.",
            |r| r.keys_evicted.unwrap_or(0),
        ),
        (
            "limiter_op_keys_forgotten_total",
            Kind::Counter,
            "Evictions that dropped what a key owed (it came back with a fresh budget).",
            |r| r.keys_forgotten.unwrap_or(0),
        ),
    ] {
        x.family(name, kind, help);
        for (op, r) in &keyed {
            x.sample(name, &[("op", op)], get(r) as f64);
        }
    }
}

/// Timed-out bodies still running now: drained ones, holding their
/// place, and orphaned blocking work.
fn op_running_after_timeout(x: &mut dyn Sink, snaps: &[OpSnapshot]) {
    for (name, help, get) in [
        (
            "limiter_op_draining",
            "Timed-out bodies draining now, holding their place.",
            (|c: &CountersSnapshot| c.draining) as fn(&_) -> u64,
        ),
        (
            "limiter_op_orphans_running",
            "Abandoned blocking work still running now.",
            |c| c.orphans_running,
        ),
    ] {
        x.family(name, Kind::Gauge, help);
        for s in snaps {
            x.sample(name, &[("op", &s.name)], get(&s.counters) as f64);
        }
    }
}

/// The per-op bulkhead gauges: in flight, queued, and both bounds.
fn op_bulkhead_gauges(x: &mut dyn Sink, snaps: &[OpSnapshot]) {
    for (name, help, get) in [
        (
            "limiter_op_in_flight",
            "Calls running.",
            (|s: &OpSnapshot| s.bulkhead.in_flight) as fn(&_) -> u32,
        ),
        ("limiter_op_queued", "Calls waiting in the queue.", |s| {
            s.bulkhead.queued
        }),
        (
            "limiter_op_max_concurrent",
            "Calls allowed to run at once.",
            |s| s.bulkhead.max_concurrent,
        ),
        ("limiter_op_queue_capacity", "Queue places.", |s| {
            s.bulkhead.queue
        }),
    ] {
        x.family(name, Kind::Gauge, help);
        for s in snaps {
            x.sample(name, &[("op", &s.name)], f64::from(get(s)));
        }
    }
}

/// `limiter_op_breaker_state`: one 0/1 sample per breaker state, per op.
fn op_breaker_states(x: &mut dyn Sink, snaps: &[OpSnapshot]) {
    x.family(
        "limiter_op_breaker_state",
        Kind::Gauge,
        "1 for the state the op's circuit breaker is in, 0 for the others.",
    );
    for s in snaps {
        for (state, name) in [
            (BreakerState::Closed, "closed"),
            (BreakerState::Open, "open"),
            (BreakerState::HalfOpen, "half_open"),
            (BreakerState::ForcedOpen, "forced_open"),
        ] {
            let v = if s.breaker.state == state { 1.0 } else { 0.0 };
            x.sample(
                "limiter_op_breaker_state",
                &[("op", &s.name), ("state", name)],
                v,
            );
        }
    }
}

/// `limiter_op_duration_seconds`: the latency histogram of each op.
fn op_durations(x: &mut dyn Sink, ops: &[Op]) {
    x.family(
        "limiter_op_duration_seconds",
        Kind::Histogram,
        "Latency of admitted calls.",
    );
    for op in ops {
        x.histogram(
            "limiter_op_duration_seconds",
            &[("op", op.name())],
            &op.core.metrics.latency_counts(),
        );
    }
}

/// `limiter_http_requests_total`: responses by route, method and status.
fn http_requests(x: &mut dyn Sink, routes: &[Arc<RouteStats>]) {
    x.family(
        "limiter_http_requests_total",
        Kind::Counter,
        "HTTP responses by route template, method and status.",
    );
    for r in routes {
        for (code, n) in r.codes() {
            x.sample(
                "limiter_http_requests_total",
                &[
                    ("method", r.method),
                    ("route", &r.route),
                    ("status", &code.to_string()),
                ],
                n as f64,
            );
        }
    }
}

/// `limiter_http_in_flight`: requests being handled, per route.
fn http_in_flight(x: &mut dyn Sink, routes: &[Arc<RouteStats>]) {
    x.family(
        "limiter_http_in_flight",
        Kind::Gauge,
        "HTTP requests being handled.",
    );
    for r in routes {
        x.sample(
            "limiter_http_in_flight",
            &[("method", r.method), ("route", &r.route)],
            r.in_flight.load(Ordering::Relaxed) as f64,
        );
    }
}

/// `limiter_http_slow_polls_total`: slow handler polls, per route.
fn http_slow_polls(x: &mut dyn Sink, routes: &[Arc<RouteStats>]) {
    x.family(
        "limiter_http_slow_polls_total",
        Kind::Counter,
        "Handler polls longer than the slow-poll threshold.",
    );
    for r in routes {
        x.sample(
            "limiter_http_slow_polls_total",
            &[("method", r.method), ("route", &r.route)],
            r.slow_polls.load(Ordering::Relaxed) as f64,
        );
    }
}

/// `limiter_http_request_duration_seconds`: the latency histogram of each
/// route.
fn http_durations(x: &mut dyn Sink, routes: &[Arc<RouteStats>]) {
    x.family(
        "limiter_http_request_duration_seconds",
        Kind::Histogram,
        "HTTP response latency by route template.",
    );
    for r in routes {
        x.histogram(
            "limiter_http_request_duration_seconds",
            &[("method", r.method), ("route", &r.route)],
            &r.counts(),
        );
    }
}

/// `limiter_rule_decisions_total`: limiter-layer decisions, per rule.
fn rule_decisions(x: &mut dyn Sink, reg: &Registry) {
    x.family(
        "limiter_rule_decisions_total",
        Kind::Counter,
        "Limiter-layer decisions by rule.",
    );
    for rule in reg.monitor().rules() {
        for (decision, n) in [
            ("allowed", rule.allowed),
            ("rejected", rule.rejected),
            ("shadow_rejected", rule.shadow_rejected),
            ("bypassed", rule.bypassed),
        ] {
            x.sample(
                "limiter_rule_decisions_total",
                &[
                    ("rule", &rule.name),
                    ("shadow", if rule.shadow { "true" } else { "false" }),
                    ("decision", decision),
                ],
                n as f64,
            );
        }
    }
}

/// `limiter_alerts_open`: alerts not resolved, per level.
fn open_alerts(x: &mut dyn Sink, reg: &Registry) {
    x.family("limiter_alerts_open", Kind::Gauge, "Open alerts by level.");
    let alerts = reg.monitor().alerts();
    for level in ["warning", "error", "critical"] {
        let n = alerts
            .iter()
            .filter(|a| a.state != AlertState::Resolved)
            .filter(|a| format!("{:?}", a.level).eq_ignore_ascii_case(level))
            .count();
        x.sample("limiter_alerts_open", &[("level", level)], n as f64);
    }
}

/// The Redis backend's counters and pause gauge, when one is set.
#[cfg(feature = "redis")]
fn redis_backend(x: &mut dyn Sink, reg: &Registry) {
    if let Some(redis) = reg.redis() {
        let st = redis.stats();
        for (name, help, v) in [
            (
                "limiter_redis_checks_total",
                "Rate checks Redis answered.",
                st.checks,
            ),
            (
                "limiter_redis_errors_total",
                "Rate checks that failed with a Redis error.",
                st.errors,
            ),
            (
                "limiter_redis_timeouts_total",
                "Rate checks that ran out of time.",
                st.timeouts,
            ),
            (
                "limiter_redis_skipped_total",
                "Rate checks not sent while Redis was paused after failures.",
                st.skipped,
            ),
            (
                "limiter_redis_recoveries_total",
                "Times Redis answered again after failing.",
                st.recoveries,
            ),
        ] {
            x.family(name, Kind::Counter, help);
            x.sample(name, &[], v as f64);
        }
        x.family(
            "limiter_redis_paused",
            Kind::Gauge,
            "1 while Redis is left alone after failures.",
        );
        x.sample(
            "limiter_redis_paused",
            &[],
            if st.paused { 1.0 } else { 0.0 },
        );
    }
}

/// `limiter_op_backend_fallbacks_total`: calls whose shared rate limit was
/// decided by the op's degradation, per op.
fn op_backend_fallbacks(x: &mut dyn Sink, snaps: &[OpSnapshot]) {
    x.family(
        "limiter_op_backend_fallbacks_total",
        Kind::Counter,
        "Calls whose shared (Redis) rate limit was decided by the op's degradation.",
    );
    for s in snaps {
        x.sample(
            "limiter_op_backend_fallbacks_total",
            &[("op", &s.name)],
            s.counters.backend_fallbacks as f64,
        );
    }
}

/// The background task manager's gauges and counters.
fn background_tasks(x: &mut dyn Sink, reg: &Registry) {
    let bg = reg.tasks().snapshot();
    x.family(
        "limiter_background_tasks",
        Kind::Gauge,
        "Background tasks pending or running.",
    );
    x.sample(
        "limiter_background_tasks",
        &[("state", "pending")],
        bg.pending as f64,
    );
    x.sample(
        "limiter_background_tasks",
        &[("state", "running")],
        bg.running as f64,
    );
    x.family(
        "limiter_background_spawned_total",
        Kind::Counter,
        "Background tasks started.",
    );
    x.sample("limiter_background_spawned_total", &[], bg.spawned as f64);
    x.family(
        "limiter_background_rejected_total",
        Kind::Counter,
        "Background tasks refused.",
    );
    x.sample("limiter_background_rejected_total", &[], bg.rejected as f64);
}

/// The stream handlers' counters: items in and out, dropped by reason,
/// and changes of mode of the adaptive ones.
fn stream_counters(x: &mut dyn Sink, streams: &[Arc<StreamStats>]) {
    let snaps: Vec<StreamSnapshot> = streams.iter().map(|s| s.snapshot()).collect();
    x.family(
        "limiter_stream_items_total",
        Kind::Counter,
        "Items taken into stream buffers (in) and delivered to consumers (out).",
    );
    for s in &snaps {
        for (direction, n) in [("in", s.items_in), ("out", s.items_out)] {
            x.sample(
                "limiter_stream_items_total",
                &[("stream", &s.name), ("direction", direction)],
                n as f64,
            );
        }
    }
    x.family(
        "limiter_stream_dropped_total",
        Kind::Counter,
        "Items that never reached the consumer, by reason.",
    );
    for s in &snaps {
        for reason in DropReason::ALL {
            x.sample(
                "limiter_stream_dropped_total",
                &[("stream", &s.name), ("reason", reason.as_str())],
                s.dropped.get(reason) as f64,
            );
        }
    }
    x.family(
        "limiter_stream_mode_switches_total",
        Kind::Counter,
        "Changes of mode of adaptive stream handlers, by the mode switched to.",
    );
    for s in &snaps {
        for (to, n) in [
            ("dropping", s.switches_to_dropping),
            ("blocking", s.switches_to_blocking),
        ] {
            x.sample(
                "limiter_stream_mode_switches_total",
                &[("stream", &s.name), ("to", to)],
                n as f64,
            );
        }
    }
}

/// The stream handlers' gauges: what is buffered now and the limits.
fn stream_gauges(x: &mut dyn Sink, streams: &[Arc<StreamStats>]) {
    let snaps: Vec<StreamSnapshot> = streams.iter().map(|s| s.snapshot()).collect();
    for (name, help, get) in [
        (
            "limiter_stream_buffered_items",
            "Items buffered now.",
            (|s: &StreamSnapshot| s.buffered_items as f64) as fn(&_) -> f64,
        ),
        (
            "limiter_stream_buffered_bytes",
            "Bytes buffered now.",
            |s| s.buffered_bytes as f64,
        ),
        (
            "limiter_stream_max_items",
            "Items one handler may buffer.",
            |s| s.max_items as f64,
        ),
        (
            "limiter_stream_max_bytes",
            "Bytes one handler may buffer (+Inf: no byte budget).",
            |s| s.max_bytes.map_or(f64::INFINITY, |b| b as f64),
        ),
        ("limiter_stream_handlers", "Handlers alive.", |s| {
            s.handlers as f64
        }),
        (
            "limiter_stream_dropping_handlers",
            "Adaptive handlers dropping the oldest items now.",
            |s| s.dropping_handlers as f64,
        ),
    ] {
        x.family(name, Kind::Gauge, help);
        for s in &snaps {
            x.sample(name, &[("stream", &s.name)], get(s));
        }
    }
}

/// The stream handlers' histograms: queue wait and processing time.
fn stream_durations(x: &mut dyn Sink, streams: &[Arc<StreamStats>]) {
    for (name, help, counts) in [
        (
            "limiter_stream_queue_wait_seconds",
            "Time items spent in the buffer.",
            (|s: &StreamStats| s.wait_counts()) as fn(&_) -> _,
        ),
        (
            "limiter_stream_processing_seconds",
            "The consumer's time per item (from one pull to the next).",
            |s| s.processing_counts(),
        ),
    ] {
        x.family(name, Kind::Histogram, help);
        for s in streams {
            x.histogram(name, &[("stream", s.name())], &counts(s));
        }
    }
}
