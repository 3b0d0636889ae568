//! The registry as Prometheus metric families.

use std::sync::atomic::Ordering;

use crate::breaker::BreakerState;
use crate::metrics::prometheus::Exposition;
use crate::registry::Registry;

use crate::monitor::AlertState;

impl Registry {
    /// Every metric in the Prometheus text exposition format (what
    /// `GET /metrics` serves): ops, routes, limiter-layer rules, alerts and
    /// background tasks.
    pub fn prometheus(&self) -> String {
        prometheus(self)
    }
}

/// Every metric of `reg` in the Prometheus text format.
fn prometheus(reg: &Registry) -> String {
    let mut x = Exposition::new();
    let ops = reg.ops();
    let snaps: Vec<_> = ops.iter().map(|o| o.snapshot()).collect();

    x.family(
        "limiter_op_calls_total",
        "counter",
        "Calls that reached admission, each retry included.",
    );
    for s in &snaps {
        x.sample(
            "limiter_op_calls_total",
            &[("op", &s.name)],
            s.counters.calls as f64,
        );
    }
    x.family(
        "limiter_op_outcomes_total",
        "counter",
        "Admitted calls by how they ended.",
    );
    for s in &snaps {
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
    x.family(
        "limiter_op_rejected_total",
        "counter",
        "Calls refused by a limit, by reason.",
    );
    for s in &snaps {
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
    for (name, help, get) in [
        (
            "limiter_op_retries_total",
            "Retries made.",
            (|c: &crate::CountersSnapshot| c.retries) as fn(&_) -> u64,
        ),
        (
            "limiter_op_slow_polls_total",
            "Polls longer than the slow-poll threshold.",
            |c| c.slow_polls,
        ),
        (
            "limiter_op_orphans_total",
            "Offloaded calls abandoned by a timeout.",
            |c| c.orphans,
        ),
    ] {
        x.family(name, "counter", help);
        for s in &snaps {
            x.sample(name, &[("op", &s.name)], get(&s.counters) as f64);
        }
    }
    for (name, help, get) in [
        (
            "limiter_op_in_flight",
            "Calls running.",
            (|s: &crate::OpSnapshot| s.bulkhead.in_flight) as fn(&_) -> u32,
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
        x.family(name, "gauge", help);
        for s in &snaps {
            x.sample(name, &[("op", &s.name)], f64::from(get(s)));
        }
    }
    x.family(
        "limiter_op_breaker_state",
        "gauge",
        "1 for the state the op's circuit breaker is in, 0 for the others.",
    );
    for s in &snaps {
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
    x.family(
        "limiter_op_duration_seconds",
        "histogram",
        "Latency of admitted calls.",
    );
    for op in &ops {
        x.histogram(
            "limiter_op_duration_seconds",
            &[("op", op.name())],
            &op.core.metrics.latency_counts(),
        );
    }

    let routes = reg.monitor().routes.all();
    x.family(
        "limiter_http_requests_total",
        "counter",
        "HTTP responses by route template, method and status.",
    );
    for r in &routes {
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
    x.family(
        "limiter_http_in_flight",
        "gauge",
        "HTTP requests being handled.",
    );
    for r in &routes {
        x.sample(
            "limiter_http_in_flight",
            &[("method", r.method), ("route", &r.route)],
            r.in_flight.load(Ordering::Relaxed) as f64,
        );
    }
    x.family(
        "limiter_http_slow_polls_total",
        "counter",
        "Handler polls longer than the slow-poll threshold.",
    );
    for r in &routes {
        x.sample(
            "limiter_http_slow_polls_total",
            &[("method", r.method), ("route", &r.route)],
            r.slow_polls.load(Ordering::Relaxed) as f64,
        );
    }
    x.family(
        "limiter_http_request_duration_seconds",
        "histogram",
        "HTTP response latency by route template.",
    );
    for r in &routes {
        x.histogram(
            "limiter_http_request_duration_seconds",
            &[("method", r.method), ("route", &r.route)],
            &r.counts(),
        );
    }

    x.family(
        "limiter_rule_decisions_total",
        "counter",
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

    x.family("limiter_alerts_open", "gauge", "Open alerts by level.");
    let alerts = reg.monitor().alerts();
    for level in ["warning", "error", "critical"] {
        let n = alerts
            .iter()
            .filter(|a| a.state != AlertState::Resolved)
            .filter(|a| format!("{:?}", a.level).eq_ignore_ascii_case(level))
            .count();
        x.sample("limiter_alerts_open", &[("level", level)], n as f64);
    }

    #[cfg(feature = "redis")]
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
            x.family(name, "counter", help);
            x.sample(name, &[], v as f64);
        }
        x.family(
            "limiter_redis_paused",
            "gauge",
            "1 while Redis is left alone after failures.",
        );
        x.sample(
            "limiter_redis_paused",
            &[],
            if st.paused { 1.0 } else { 0.0 },
        );
    }
    x.family(
        "limiter_op_backend_fallbacks_total",
        "counter",
        "Calls whose shared (Redis) rate limit was decided by the op's degradation.",
    );
    for s in &snaps {
        x.sample(
            "limiter_op_backend_fallbacks_total",
            &[("op", &s.name)],
            s.counters.backend_fallbacks as f64,
        );
    }

    let bg = reg.tasks().snapshot();
    x.family(
        "limiter_background_tasks",
        "gauge",
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
        "counter",
        "Background tasks started.",
    );
    x.sample("limiter_background_spawned_total", &[], bg.spawned as f64);
    x.family(
        "limiter_background_rejected_total",
        "counter",
        "Background tasks refused.",
    );
    x.sample("limiter_background_rejected_total", &[], bg.rejected as f64);
    x.finish()
}
