//! The per-op fields settable by name, shared by the environment
//! (`LIMITER_OP_<NAME>_<FIELD>`) and the file (`[ops.<name>]`) so both read
//! values the same way.

use std::str::FromStr;

use super::types::{
    Algorithm, Backend, Backoff, ConcurrencyScope, Degradation, OpConfig, OpKind, OverloadPolicy,
    SharedMode,
};
pub(crate) use crate::spec::closest;
use crate::spec::{parse_duration, parse_rates};

/// Every per-op field settable by name, in snake case: the `<FIELD>` of
/// `LIMITER_OP_<NAME>_<FIELD>` (upper case) and the keys of `[ops.<name>]`.
pub const FIELDS: &[&str] = &[
    "kind",
    "enabled",
    "timeout",
    "rate",
    "rate_per_key",
    "burst",
    "algorithm",
    "backend",
    "degradation",
    "mode",
    "concurrency",
    "instances",
    "max_concurrent",
    "max_concurrent_per_key",
    "queue",
    "queue_per_key",
    "queue_timeout",
    "drain_timeout",
    "overload",
    "retry_after",
    "retries",
    "backoff",
    "backoff_base",
    "backoff_max",
    "breaker",
    "breaker_failure_rate",
    "breaker_min_calls",
    "breaker_window",
    "breaker_slow_call",
    "breaker_recovery",
    "breaker_half_open_calls",
    "breaker_success_threshold",
    "breaker_consecutive_failures",
    "slow_poll",
    "max_keys",
    "adaptive",
    "adaptive_min",
    "adaptive_target",
];

pub(crate) fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

pub(crate) fn parse_count(text: &str, min: u32) -> Result<u32, String> {
    let n: u32 = text
        .trim()
        .parse()
        .map_err(|_| format!("expected a whole number from {min} to {}", u32::MAX))?;
    if n < min {
        return Err(format!("must be at least {min}"));
    }
    Ok(n)
}

fn parse_enum<T: FromStr<Err = String>>(text: &str) -> Result<T, String> {
    text.parse()
}

fn duration(text: &str) -> Result<std::time::Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

/// Sets `field` of `cfg` from its text form. The error is the reason only;
/// the caller names the variable or key and the value.
pub(crate) fn set_field(cfg: &mut OpConfig, field: &str, text: &str) -> Result<(), String> {
    let b = &mut cfg.breaker;
    let r = &mut cfg.retry;
    match field {
        "kind" => cfg.kind = Some(parse_enum::<OpKind>(text)?),
        "enabled" => cfg.enabled = Some(parse_bool(text)?),
        "timeout" => cfg.timeout = Some(duration(text)?),
        "rate" => cfg.rate = Some(parse_rates(text).map_err(|e| e.to_string())?),
        "rate_per_key" => cfg.rate_per_key = Some(parse_rates(text).map_err(|e| e.to_string())?),
        "burst" => cfg.burst = Some(parse_count(text, 1)?),
        "algorithm" => cfg.algorithm = Some(parse_enum::<Algorithm>(text)?),
        "backend" => cfg.backend = Some(parse_enum::<Backend>(text)?),
        "degradation" => cfg.degradation = Some(parse_enum::<Degradation>(text)?),
        "mode" => cfg.mode = Some(parse_enum::<SharedMode>(text)?),
        "concurrency" => cfg.concurrency = Some(parse_enum::<ConcurrencyScope>(text)?),
        "instances" => cfg.instances = Some(parse_count(text, 1)?),
        "max_concurrent" => cfg.max_concurrent = Some(parse_count(text, 1)?),
        "max_concurrent_per_key" => cfg.max_concurrent_per_key = Some(parse_count(text, 1)?),
        "queue" => cfg.queue = Some(parse_count(text, 0)?),
        "queue_per_key" => cfg.queue_per_key = Some(parse_count(text, 0)?),
        "queue_timeout" => cfg.queue_timeout = Some(duration(text)?),
        "drain_timeout" => cfg.drain_timeout = Some(duration(text)?),
        "overload" => cfg.overload = Some(parse_enum::<OverloadPolicy>(text)?),
        "retry_after" => cfg.retry_after = Some(duration(text)?),
        "retries" => r.retries = Some(parse_count(text, 0)?),
        "backoff" => r.backoff = Some(parse_enum::<Backoff>(text)?),
        "backoff_base" => r.base = Some(duration(text)?),
        "backoff_max" => r.max = Some(duration(text)?),
        "breaker" => b.enabled = Some(parse_bool(text)?),
        "breaker_failure_rate" => {
            let rate: f64 = text
                .trim()
                .parse()
                .map_err(|_| "expected a number in (0, 1]".to_owned())?;
            if !(rate > 0.0 && rate <= 1.0) {
                return Err("must be in (0, 1]".into());
            }
            b.failure_rate = Some(rate);
        }
        "breaker_min_calls" => b.min_calls = Some(parse_count(text, 1)?),
        "breaker_window" => b.window = Some(parse_count(text, 1)?),
        "breaker_slow_call" => b.slow_call = Some(duration(text)?),
        "breaker_recovery" => b.recovery = Some(duration(text)?),
        "breaker_half_open_calls" => b.half_open_calls = Some(parse_count(text, 1)?),
        "breaker_success_threshold" => b.success_threshold = Some(parse_count(text, 1)?),
        "breaker_consecutive_failures" => b.consecutive_failures = Some(parse_count(text, 1)?),
        "slow_poll" => cfg.slow_poll = Some(duration(text)?),
        "max_keys" => {
            let n: usize = text
                .trim()
                .parse()
                .map_err(|_| "expected a whole number".to_owned())?;
            if n == 0 {
                return Err("must be at least 1".into());
            }
            cfg.max_keys = Some(n);
        }
        "adaptive" => cfg.adaptive = Some(parse_bool(text)?),
        "adaptive_min" => cfg.adaptive_min = Some(parse_count(text, 1)?),
        "adaptive_target" => cfg.adaptive_target = Some(duration(text)?),
        other => return Err(unknown_field(other)),
    }
    Ok(())
}

/// A field's value in the form a file writes it: durations, rates and
/// choices as their text (`"10s"`, `"100/s, 1000/h"`, `"database"`),
/// switches and numbers as themselves. [`set_field`] reads each back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FieldValue {
    Bool(bool),
    Count(u64),
    Float(f64),
    Text(String),
}

impl serde::Serialize for FieldValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FieldValue::Bool(b) => s.serialize_bool(*b),
            FieldValue::Count(n) => s.serialize_u64(*n),
            FieldValue::Float(f) => s.serialize_f64(*f),
            FieldValue::Text(t) => s.serialize_str(t),
        }
    }
}

impl FieldValue {
    /// The text [`set_field`] reads.
    #[cfg(test)]
    pub(crate) fn text(&self) -> String {
        match self {
            FieldValue::Bool(b) => b.to_string(),
            FieldValue::Count(n) => n.to_string(),
            FieldValue::Float(f) => f.to_string(),
            FieldValue::Text(t) => t.clone(),
        }
    }
}

/// The value of `field` in `cfg`, `None` when unset (or no such field):
/// the inverse of [`set_field`].
pub(crate) fn get_field(cfg: &OpConfig, field: &str) -> Option<FieldValue> {
    use FieldValue::{Bool, Count, Float, Text};
    fn text(v: impl std::fmt::Display) -> FieldValue {
        Text(v.to_string())
    }
    fn time(d: std::time::Duration) -> FieldValue {
        text(crate::spec::DisplayDuration(d))
    }
    /// `"100/s, 60/min, 5/10s"`: a period of one unit as the bare unit.
    fn rates(windows: &[crate::spec::Rate]) -> FieldValue {
        let texts: Vec<String> = windows
            .iter()
            .map(|w| {
                let period = crate::spec::DisplayDuration(w.period()).to_string();
                match period.strip_prefix('1') {
                    Some("m") => format!("{}/min", w.count()),
                    Some(unit) if unit.starts_with(|c: char| c.is_ascii_alphabetic()) => {
                        format!("{}/{unit}", w.count())
                    }
                    _ => format!("{}/{period}", w.count()),
                }
            })
            .collect();
        Text(texts.join(", "))
    }
    let count = |n: Option<u32>| n.map(|n| Count(u64::from(n)));
    let (b, r) = (&cfg.breaker, &cfg.retry);
    match field {
        "kind" => cfg.kind.map(text),
        "enabled" => cfg.enabled.map(Bool),
        "timeout" => cfg.timeout.map(time),
        "rate" => cfg.rate.as_deref().map(rates),
        "rate_per_key" => cfg.rate_per_key.as_deref().map(rates),
        "burst" => count(cfg.burst),
        "algorithm" => cfg.algorithm.map(text),
        "backend" => cfg.backend.map(text),
        "degradation" => cfg.degradation.map(text),
        "mode" => cfg.mode.map(text),
        "concurrency" => cfg.concurrency.map(text),
        "instances" => count(cfg.instances),
        "max_concurrent" => count(cfg.max_concurrent),
        "max_concurrent_per_key" => count(cfg.max_concurrent_per_key),
        "queue" => count(cfg.queue),
        "queue_per_key" => count(cfg.queue_per_key),
        "queue_timeout" => cfg.queue_timeout.map(time),
        "drain_timeout" => cfg.drain_timeout.map(time),
        "overload" => cfg.overload.map(text),
        "retry_after" => cfg.retry_after.map(time),
        "retries" => count(r.retries),
        "backoff" => r.backoff.map(text),
        "backoff_base" => r.base.map(time),
        "backoff_max" => r.max.map(time),
        "breaker" => b.enabled.map(Bool),
        "breaker_failure_rate" => b.failure_rate.map(Float),
        "breaker_min_calls" => count(b.min_calls),
        "breaker_window" => count(b.window),
        "breaker_slow_call" => b.slow_call.map(time),
        "breaker_recovery" => b.recovery.map(time),
        "breaker_half_open_calls" => count(b.half_open_calls),
        "breaker_success_threshold" => count(b.success_threshold),
        "breaker_consecutive_failures" => count(b.consecutive_failures),
        "slow_poll" => cfg.slow_poll.map(time),
        "max_keys" => cfg.max_keys.map(|n| Count(n as u64)),
        "adaptive" => cfg.adaptive.map(Bool),
        "adaptive_min" => count(cfg.adaptive_min),
        "adaptive_target" => cfg.adaptive_target.map(time),
        _ => None,
    }
}

/// Where a file writes `field`: in the op's table (`(None, "timeout")`),
/// or in its `breaker` or `retry` table under the short name
/// (`(Some("breaker"), "failure_rate")`, `(Some("retry"), "base")`).
pub(crate) fn file_key(field: &'static str) -> (Option<&'static str>, &'static str) {
    match field {
        "breaker" => (Some("breaker"), "enabled"),
        "retries" | "backoff" => (Some("retry"), field),
        "backoff_base" => (Some("retry"), "base"),
        "backoff_max" => (Some("retry"), "max"),
        _ => match field.strip_prefix("breaker_") {
            Some(short) => (Some("breaker"), short),
            None => (None, field),
        },
    }
}

/// "unknown field `x`; did you mean `y`?" with the list of fields.
pub(crate) fn unknown_field(name: &str) -> String {
    let hint = closest(name, FIELDS)
        .map(|c| format!(" did you mean `{c}`?"))
        .unwrap_or_default();
    format!(
        "unknown field `{name}`;{hint} expected one of: {}",
        FIELDS.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_settable() {
        let samples = [
            ("kind", "database"),
            ("enabled", "true"),
            ("timeout", "1s"),
            ("rate", "10/s"),
            ("rate_per_key", "1/s"),
            ("burst", "3"),
            ("algorithm", "sliding_window"),
            ("backend", "redis"),
            ("degradation", "fail_open"),
            ("mode", "lease"),
            ("concurrency", "shared"),
            ("instances", "3"),
            ("max_concurrent", "2"),
            ("max_concurrent_per_key", "1"),
            ("queue", "0"),
            ("queue_per_key", "0"),
            ("queue_timeout", "1s"),
            ("drain_timeout", "2s"),
            ("overload", "block"),
            ("retry_after", "2s"),
            ("retries", "2"),
            ("backoff", "constant"),
            ("backoff_base", "10ms"),
            ("backoff_max", "1s"),
            ("breaker", "on"),
            ("breaker_failure_rate", "0.25"),
            ("breaker_min_calls", "2"),
            ("breaker_window", "4"),
            ("breaker_slow_call", "1s"),
            ("breaker_recovery", "5s"),
            ("breaker_half_open_calls", "2"),
            ("breaker_success_threshold", "2"),
            ("breaker_consecutive_failures", "3"),
            ("slow_poll", "5ms"),
            ("max_keys", "10"),
            ("adaptive", "true"),
            ("adaptive_min", "2"),
            ("adaptive_target", "250ms"),
        ];
        assert_eq!(samples.len(), FIELDS.len());
        let mut cfg = OpConfig::default();
        for (f, v) in samples {
            set_field(&mut cfg, f, v).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
        // Every field reads back from the text it is written as.
        let mut again = OpConfig::default();
        for f in FIELDS {
            let value = get_field(&cfg, f).unwrap_or_else(|| panic!("{f} unset"));
            set_field(&mut again, f, &value.text()).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
        assert_eq!(again, cfg);
        assert_eq!(cfg.breaker.consecutive_failures, Some(3));
        assert_eq!(cfg.max_keys, Some(10));
        assert_eq!(cfg.backend, Some(crate::settings::Backend::Redis));
        assert_eq!(
            cfg.degradation,
            Some(crate::settings::Degradation::FailOpen)
        );
        assert!(set_field(&mut cfg, "backend", "memcached")
            .unwrap_err()
            .contains("expected one of: local, redis"));
    }

    #[test]
    fn unknown_fields_get_a_hint() {
        let e = set_field(&mut OpConfig::default(), "max_concurent", "1").unwrap_err();
        assert!(
            e.starts_with("unknown field `max_concurent`; did you mean `max_concurrent`?"),
            "{e}"
        );
        assert!(
            set_field(&mut OpConfig::default(), "overload", "drop_everything")
                .unwrap_err()
                .contains("expected one of: drop_newest, drop_oldest, block")
        );
        assert_eq!(
            set_field(&mut OpConfig::default(), "max_concurrent", "0").unwrap_err(),
            "must be at least 1"
        );
    }
}
