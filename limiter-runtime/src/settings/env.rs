//! Configuration from environment variables.
//!
//! | variable | sets |
//! | --- | --- |
//! | `LIMITS_ENABLED` | limits on/off (`true`/`false`) |
//! | `LIMITS_MAX_CONCURRENT_PER_USER` | default `max_concurrent_per_key` |
//! | `LIMITS_MAX_QUEUE_SIZE_PER_USER` | default `queue_per_key` |
//! | `LIMITS_MAX_CONCURRENT_GLOBAL` | default `max_concurrent` |
//! | `LIMITS_MAX_QUEUE_SIZE_GLOBAL` | default `queue` |
//! | `LIMITS_RETRY_AFTER_SECONDS` | default `retry_after` (seconds) |
//! | `LIMITS_QUEUE_TIMEOUT_SECONDS` | default `queue_timeout` (seconds) |
//! | `LIMITS_OVERLOAD_POLICY` | default `overload` |
//! | `RATE_LIMIT_REQUESTS_PER_MINUTE` | default per-key rate, minute window |
//! | `RATE_LIMIT_REQUESTS_PER_HOUR` | default per-key rate, hour window |
//! | `RATE_LIMIT_BURST_LIMIT` | default `burst` |
//! | `CIRCUIT_BREAKER_FAILURE_THRESHOLD` | default `breaker.consecutive_failures` |
//! | `CIRCUIT_BREAKER_RECOVERY_TIMEOUT` | default `breaker.recovery` (seconds) |
//! | `LIMITER_OP_<NAME>_<FIELD>` | field of op `<name>` (lower-cased), e.g. `LIMITER_OP_DB_TIMEOUT=2s` |
//! | `LIMITER_REDIS_URL` | the Redis of ops with `backend = redis` (feature `redis`) |
//! | `LIMITER_REDIS_PREFIX` | prefix of their keys (default `limiter`) |
//! | `LIMITER_REDIS_TIMEOUT` | longest wait for one check, e.g. `50ms` |
//! | `LIMITER_REDIS_LEASE_TTL` | how long an instance and its shared bulkhead places last unrenewed (default `3s`) |
//! | `LIMITER_CONFIG` | a TOML file read first (the variables win over it) |
//! | `LIMITER_PROFILE` | the file profile to apply |
//!
//! Any other variable starting with `LIMITS_` or `LIMITER_` is an error, so
//! a typo is reported instead of silently ignored.

use super::fields::{closest, parse_bool, parse_count, set_field, FIELDS};
use super::types::{OpConfig, OverloadPolicy};
use super::Settings;
use crate::error::ConfigError;
use crate::spec::{parse_seconds, Rate};

const KNOWN: &[&str] = &[
    "LIMITS_ENABLED",
    "LIMITS_MAX_CONCURRENT_PER_USER",
    "LIMITS_MAX_QUEUE_SIZE_PER_USER",
    "LIMITS_MAX_CONCURRENT_GLOBAL",
    "LIMITS_MAX_QUEUE_SIZE_GLOBAL",
    "LIMITS_RETRY_AFTER_SECONDS",
    "LIMITS_QUEUE_TIMEOUT_SECONDS",
    "LIMITS_OVERLOAD_POLICY",
    "RATE_LIMIT_REQUESTS_PER_MINUTE",
    "RATE_LIMIT_REQUESTS_PER_HOUR",
    "RATE_LIMIT_BURST_LIMIT",
    "CIRCUIT_BREAKER_FAILURE_THRESHOLD",
    "CIRCUIT_BREAKER_RECOVERY_TIMEOUT",
    "LIMITER_REDIS_URL",
    "LIMITER_REDIS_PREFIX",
    "LIMITER_REDIS_TIMEOUT",
    "LIMITER_REDIS_LEASE_TTL",
    "LIMITER_CONFIG",
    "LIMITER_PROFILE",
];

const OP_PREFIX: &str = "LIMITER_OP_";

/// Reads the settings in the process environment.
pub fn settings_from_env() -> Result<Settings, ConfigError> {
    settings_from_vars(
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
    )
}

/// Reads settings from `(name, value)` pairs; names this crate does not own
/// are ignored.
///
/// ```
/// use limiter_runtime::config::settings_from_vars;
/// let s = settings_from_vars([
///     ("LIMITS_MAX_CONCURRENT_GLOBAL".to_string(), "200".to_string()),
///     ("LIMITER_OP_DB_TIMEOUT".to_string(), "2s".to_string()),
/// ]).unwrap();
/// assert_eq!(s.defaults.max_concurrent, Some(200));
/// assert!(s.ops["db"].timeout.is_some());
///
/// let err = settings_from_vars([
///     ("LIMITS_MAX_CONCURRENT_GLOBAL".to_string(), "lots".to_string()),
/// ]).unwrap_err();
/// assert!(err.to_string().starts_with("environment variable LIMITS_MAX_CONCURRENT_GLOBAL=\"lots\""));
/// ```
pub fn settings_from_vars<I>(vars: I) -> Result<Settings, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| {
            k.starts_with("LIMITS_")
                || k.starts_with("LIMITER_")
                || k.starts_with("RATE_LIMIT_")
                || k.starts_with("CIRCUIT_BREAKER_")
        })
        .collect();
    vars.sort();
    let mut s = Settings::default();
    let mut per_minute = None;
    let mut per_hour = None;
    for (var, value) in &vars {
        let fail = |reason: String| ConfigError::Env {
            var: var.clone(),
            value: value.clone(),
            reason,
        };
        let d = &mut s.defaults;
        match var.as_str() {
            "LIMITS_ENABLED" => s.enabled = Some(parse_bool(value).map_err(fail)?),
            "LIMITS_MAX_CONCURRENT_PER_USER" => {
                d.max_concurrent_per_key = Some(parse_count(value, 1).map_err(fail)?)
            }
            "LIMITS_MAX_QUEUE_SIZE_PER_USER" => {
                d.queue_per_key = Some(parse_count(value, 0).map_err(fail)?)
            }
            "LIMITS_MAX_CONCURRENT_GLOBAL" => {
                d.max_concurrent = Some(parse_count(value, 1).map_err(fail)?)
            }
            "LIMITS_MAX_QUEUE_SIZE_GLOBAL" => d.queue = Some(parse_count(value, 0).map_err(fail)?),
            "LIMITS_RETRY_AFTER_SECONDS" => d.retry_after = Some(seconds(value).map_err(fail)?),
            "LIMITS_QUEUE_TIMEOUT_SECONDS" => d.queue_timeout = Some(seconds(value).map_err(fail)?),
            "LIMITS_OVERLOAD_POLICY" => {
                d.overload = Some(value.parse::<OverloadPolicy>().map_err(fail)?)
            }
            "RATE_LIMIT_REQUESTS_PER_MINUTE" => {
                per_minute = Some(
                    Rate::per_minute(parse_count(value, 1).map_err(fail)?)
                        .map_err(|e| fail(e.to_string()))?,
                )
            }
            "RATE_LIMIT_REQUESTS_PER_HOUR" => {
                per_hour = Some(
                    Rate::per_hour(parse_count(value, 1).map_err(fail)?)
                        .map_err(|e| fail(e.to_string()))?,
                )
            }
            "RATE_LIMIT_BURST_LIMIT" => d.burst = Some(parse_count(value, 1).map_err(fail)?),
            "CIRCUIT_BREAKER_FAILURE_THRESHOLD" => {
                d.breaker.consecutive_failures = Some(parse_count(value, 1).map_err(fail)?)
            }
            "CIRCUIT_BREAKER_RECOVERY_TIMEOUT" => {
                d.breaker.recovery = Some(seconds(value).map_err(fail)?)
            }
            "LIMITER_REDIS_URL" => s.redis.url = Some(value.clone()),
            "LIMITER_REDIS_PREFIX" => s.redis.prefix = Some(value.clone()),
            "LIMITER_REDIS_TIMEOUT" => {
                s.redis.timeout =
                    Some(crate::spec::parse_duration(value).map_err(|e| fail(e.to_string()))?)
            }
            "LIMITER_REDIS_LEASE_TTL" => {
                s.redis.lease_ttl =
                    Some(crate::spec::parse_duration(value).map_err(|e| fail(e.to_string()))?)
            }
            "LIMITER_CONFIG" | "LIMITER_PROFILE" => {}
            name if name.starts_with(OP_PREFIX) => {
                let (op, field) = split_op_var(&name[OP_PREFIX.len()..]).map_err(fail)?;
                let cfg: &mut OpConfig = s.ops.entry(op).or_default();
                set_field(cfg, &field, value).map_err(fail)?;
            }
            name if name.starts_with("LIMITS_") || name.starts_with("LIMITER_") => {
                let hint = closest(name, KNOWN)
                    .map(|c| format!(" did you mean {c}?"))
                    .unwrap_or_default();
                return Err(fail(format!(
                    "unknown variable;{hint} known: {}, and {OP_PREFIX}<NAME>_<FIELD>",
                    KNOWN.join(", ")
                )));
            }
            _ => {} // another crate's RATE_LIMIT_* / CIRCUIT_BREAKER_* variable
        }
    }
    let windows: Vec<Rate> = per_minute.into_iter().chain(per_hour).collect();
    if !windows.is_empty() {
        s.defaults.rate_per_key = Some(windows);
    }
    Ok(s)
}

fn seconds(text: &str) -> Result<std::time::Duration, String> {
    parse_seconds(text).map_err(|e| format!("expected a number of seconds greater than zero ({e})"))
}

/// Splits `DB_MAX_CONCURRENT` into (`db`, `max_concurrent`), matching the
/// longest field name at the end.
fn split_op_var(rest: &str) -> Result<(String, String), String> {
    let mut fields: Vec<&str> = FIELDS.to_vec();
    fields.sort_by_key(|f| std::cmp::Reverse(f.len()));
    for field in fields {
        let suffix = format!("_{}", field.to_ascii_uppercase());
        if let Some(op) = rest.strip_suffix(&suffix) {
            if op.is_empty() {
                return Err(format!(
                    "missing op name: write {OP_PREFIX}<NAME>_{}",
                    field.to_ascii_uppercase()
                ));
            }
            return Ok((op.to_ascii_lowercase(), field.to_owned()));
        }
    }
    Err(format!(
        "no known field at the end of the name; fields: {}",
        FIELDS
            .iter()
            .map(|f| f.to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn vars(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        settings_from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn seed_variables() {
        let s = vars(&[
            ("LIMITS_ENABLED", "true"),
            ("LIMITS_MAX_CONCURRENT_PER_USER", "5"),
            ("LIMITS_MAX_QUEUE_SIZE_PER_USER", "20"),
            ("LIMITS_MAX_CONCURRENT_GLOBAL", "200"),
            ("LIMITS_MAX_QUEUE_SIZE_GLOBAL", "1000"),
            ("LIMITS_RETRY_AFTER_SECONDS", "10"),
            ("LIMITS_QUEUE_TIMEOUT_SECONDS", "30.0"),
            ("LIMITS_OVERLOAD_POLICY", "drop_oldest"),
            ("RATE_LIMIT_REQUESTS_PER_MINUTE", "60"),
            ("RATE_LIMIT_REQUESTS_PER_HOUR", "1000"),
            ("RATE_LIMIT_BURST_LIMIT", "10"),
            ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "5"),
            ("CIRCUIT_BREAKER_RECOVERY_TIMEOUT", "60"),
            ("PATH", "/usr/bin"),
        ])
        .unwrap();
        let d = &s.defaults;
        assert_eq!(s.enabled, Some(true));
        assert_eq!(d.max_concurrent_per_key, Some(5));
        assert_eq!(d.queue_per_key, Some(20));
        assert_eq!(d.max_concurrent, Some(200));
        assert_eq!(d.queue, Some(1000));
        assert_eq!(d.retry_after, Some(Duration::from_secs(10)));
        assert_eq!(d.queue_timeout, Some(Duration::from_secs(30)));
        assert_eq!(d.overload, Some(OverloadPolicy::DropOldest));
        assert_eq!(d.rate_per_key.as_ref().unwrap().len(), 2);
        assert_eq!(d.burst, Some(10));
        assert_eq!(d.breaker.consecutive_failures, Some(5));
        assert_eq!(d.breaker.recovery, Some(Duration::from_secs(60)));
    }

    #[test]
    fn per_op_variables() {
        let s = vars(&[
            ("LIMITER_OP_USER_DB_MAX_CONCURRENT_PER_KEY", "2"),
            ("LIMITER_OP_USER_DB_BREAKER_FAILURE_RATE", "0.3"),
            ("LIMITER_OP_USER_DB_TIMEOUT", "250ms"),
        ])
        .unwrap();
        let op = &s.ops["user_db"];
        assert_eq!(op.max_concurrent_per_key, Some(2));
        assert_eq!(op.breaker.failure_rate, Some(0.3));
        assert_eq!(op.timeout, Some(Duration::from_millis(250)));
    }

    #[test]
    fn bad_values_name_the_variable_and_value() {
        let cases = [
            (
                "LIMITS_MAX_CONCURRENT_GLOBAL",
                "abc",
                "expected a whole number",
            ),
            ("LIMITS_MAX_CONCURRENT_GLOBAL", "0", "must be at least 1"),
            (
                "LIMITS_RETRY_AFTER_SECONDS",
                "-3",
                "expected a number of seconds",
            ),
            ("LIMITS_QUEUE_TIMEOUT_SECONDS", "0", "greater than zero"),
            (
                "LIMITS_OVERLOAD_POLICY",
                "drop_all",
                "unknown overload policy `drop_all`",
            ),
            ("LIMITS_ENABLED", "maybe", "expected true or false"),
            ("RATE_LIMIT_REQUESTS_PER_MINUTE", "0", "must be at least 1"),
            ("LIMITER_OP_DB_TIMEOUT", "10", "missing unit"),
            ("LIMITER_OP_DB_TIMEOUT", "0s", "must be greater than zero"),
            ("LIMITER_OP_DB_RATE", "0/s", "must be greater than zero"),
            ("LIMITER_OP_DB_FLAVOUR", "x", "no known field"),
            ("LIMITER_OP__TIMEOUT", "1s", "missing op name"),
            (
                "LIMITS_MAX_CONCURENT_GLOBAL",
                "5",
                "did you mean LIMITS_MAX_CONCURRENT_GLOBAL?",
            ),
        ];
        for (var, value, reason) in cases {
            let err = vars(&[(var, value)]).unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("environment variable {var}={value:?}: ")),
                "{text}"
            );
            assert!(text.contains(reason), "{var}={value}: {text}");
        }
    }
}
