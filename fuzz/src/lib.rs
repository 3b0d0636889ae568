//! Helpers shared by the fuzz targets: generators of values that the
//! configuration readers must accept, so a target can assert "valid in,
//! `Ok` out" besides "no panic".

#![forbid(unsafe_code)]

/// Every per-op field name (`LIMITER_OP_<NAME>_<FIELD>`, `[ops.<name>]`
/// keys), as the runtime lists them.
pub use limiter_runtime::config::OP_FIELDS as FIELDS;

/// What kind of text a field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// `true`, `false`, `on`, …
    Bool,
    /// `250ms`, `1.5s`, …
    Duration,
    /// `100/s`, `60/min, 1000/h`, …
    Rates,
    /// A whole number of at least `min`.
    Count {
        /// Smallest accepted value.
        min: u32,
    },
    /// A number in (0, 1].
    Fraction,
    /// One of these names.
    Choice(&'static [&'static str]),
}

/// The kind of value `field` takes.
pub fn field_kind(field: &str) -> FieldKind {
    match field {
        "enabled" | "breaker" | "adaptive" => FieldKind::Bool,
        "timeout" | "queue_timeout" | "retry_after" | "backoff_base" | "backoff_max"
        | "breaker_slow_call" | "breaker_recovery" | "slow_poll" | "adaptive_target" => {
            FieldKind::Duration
        }
        "rate" | "rate_per_key" => FieldKind::Rates,
        "queue" | "queue_per_key" | "retries" => FieldKind::Count { min: 0 },
        "breaker_failure_rate" => FieldKind::Fraction,
        "kind" => FieldKind::Choice(&[
            "database",
            "file_io",
            "network_io",
            "cpu_intensive",
            "memory",
            "external_api",
            "sleep",
            "subprocess",
        ]),
        "algorithm" => FieldKind::Choice(&["token_bucket", "sliding_window", "fixed_window"]),
        "backend" => FieldKind::Choice(&["local", "redis"]),
        "degradation" => FieldKind::Choice(&["fail_open", "fail_closed", "local"]),
        "overload" => FieldKind::Choice(&["drop_newest", "drop_oldest", "block"]),
        "backoff" => FieldKind::Choice(&["exponential", "constant"]),
        _ => FieldKind::Count { min: 1 },
    }
}

const UNITS: &[&str] = &["us", "ms", "s", "sec", "m", "min", "h", "hours", "d"];
const BOOLS: &[&str] = &["true", "false", "1", "0", "yes", "no", "on", "OFF"];

/// A duration text `parse_duration` accepts, chosen by `seed`.
pub fn valid_duration(seed: u32) -> String {
    let unit = UNITS[(seed % UNITS.len() as u32) as usize];
    let n = seed / UNITS.len() as u32 % 10_000 + 1;
    if seed & (1 << 31) != 0 {
        format!("{n}.5{unit}")
    } else {
        format!("{n}{unit}")
    }
}

/// A rate text `parse_rate` accepts (`N/unit` or `N/Munit`).
pub fn valid_rate(seed: u32) -> String {
    let count = seed % 100_000 + 1;
    let unit = UNITS[(seed / 100_000 % UNITS.len() as u32) as usize];
    if seed & (1 << 30) != 0 {
        format!("{count}/{}{unit}", seed % 7 + 1)
    } else {
        format!("{count}/{unit}")
    }
}

/// The text form of a valid value of `field`, as the environment gives it.
pub fn valid_text(field: &str, seed: u32) -> String {
    match field_kind(field) {
        FieldKind::Bool => BOOLS[(seed % BOOLS.len() as u32) as usize].to_owned(),
        FieldKind::Duration => valid_duration(seed),
        FieldKind::Rates => (0..seed % 3 + 1)
            .map(|i| valid_rate(seed.rotate_left(i * 11)))
            .collect::<Vec<_>>()
            .join(", "),
        FieldKind::Count { min } => seed.max(min).to_string(),
        FieldKind::Fraction => format!("{}", f64::from(seed % 1000 + 1) / 1000.0),
        FieldKind::Choice(names) => names[(seed % names.len() as u32) as usize].to_owned(),
    }
}

/// A valid value of `field` as a TOML value, in the types a file writer
/// would use (booleans, integers, floats, strings, arrays of rates).
pub fn valid_toml(field: &str, seed: u32) -> toml::Value {
    use toml::Value;
    match field_kind(field) {
        FieldKind::Bool => Value::Boolean(seed.is_multiple_of(2)),
        FieldKind::Count { min } => Value::Integer(i64::from(seed.max(min))),
        FieldKind::Fraction => Value::Float(f64::from(seed % 1000 + 1) / 1000.0),
        FieldKind::Rates if seed % 2 == 1 => Value::Array(
            (0..seed % 3 + 1)
                .map(|i| Value::String(valid_rate(seed.rotate_left(i * 11))))
                .collect(),
        ),
        _ => Value::String(valid_text(field, seed)),
    }
}
