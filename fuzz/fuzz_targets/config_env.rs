//! The environment reader, `config::settings_from_vars`, over arbitrary
//! (name, value) lists whose names mostly follow its scheme: the seed
//! variables (`LIMITS_*`, `RATE_LIMIT_*`, `CIRCUIT_BREAKER_*`), the
//! `LIMITER_REDIS_*` ones, `LIMITER_OP_<NAME>_<FIELD>`, near misses with
//! the same prefixes, and foreign names.
//!
//! Checks:
//! - no panic;
//! - an error is `ConfigError::Env` naming one of the variables given, with
//!   its value, and its message starts with `environment variable
//!   NAME="value": `;
//! - the order of the variables does not matter, and variables without the
//!   crate's prefixes change nothing;
//! - a list of known variables with valid values is accepted, and every
//!   `LIMITER_OP_<NAME>_…` gives op `<name>` in lower case.

#![no_main]

use std::collections::BTreeSet;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use limiter_fuzz::{valid_duration, valid_text, FIELDS};
use limiter_runtime::config::settings_from_vars;
use limiter_runtime::{ConfigError, Settings};

/// The fixed variables of `config/env.rs` and the field of the value each
/// takes (`None`: any text; `seconds`: a plain number of seconds).
const KNOWN: &[(&str, Option<&str>)] = &[
    ("LIMITS_ENABLED", Some("enabled")),
    ("LIMITS_MAX_CONCURRENT_PER_USER", Some("max_concurrent")),
    ("LIMITS_MAX_QUEUE_SIZE_PER_USER", Some("queue")),
    ("LIMITS_MAX_CONCURRENT_GLOBAL", Some("max_concurrent")),
    ("LIMITS_MAX_QUEUE_SIZE_GLOBAL", Some("queue")),
    ("LIMITS_RETRY_AFTER_SECONDS", Some("seconds")),
    ("LIMITS_QUEUE_TIMEOUT_SECONDS", Some("seconds")),
    ("LIMITS_OVERLOAD_POLICY", Some("overload")),
    ("RATE_LIMIT_REQUESTS_PER_MINUTE", Some("burst")),
    ("RATE_LIMIT_REQUESTS_PER_HOUR", Some("burst")),
    ("RATE_LIMIT_BURST_LIMIT", Some("burst")),
    ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", Some("burst")),
    ("CIRCUIT_BREAKER_RECOVERY_TIMEOUT", Some("seconds")),
    ("LIMITER_REDIS_URL", None),
    ("LIMITER_REDIS_PREFIX", None),
    ("LIMITER_REDIS_TIMEOUT", Some("timeout")),
    ("LIMITER_REDIS_LEASE_TTL", Some("timeout")),
    ("LIMITER_CONFIG", None),
    ("LIMITER_PROFILE", None),
];

/// Op names whose end is no field name, so `<NAME>_<FIELD>` splits back
/// into the same two parts.
const OPS: &[&str] = &["DB", "USER_DB", "API", "CACHE_2", "X"];

const PREFIXES: &[&str] = &[
    "LIMITS_",
    "LIMITER_",
    "LIMITER_OP_",
    "RATE_LIMIT_",
    "CIRCUIT_BREAKER_",
    "LIMITER_REDIS_",
];

#[derive(Arbitrary, Debug)]
enum Name {
    Known(u8),
    Op {
        op: u8,
        field: u8,
    },
    /// `LIMITER_OP_` + any op name + a field.
    OpRaw {
        op: String,
        field: u8,
    },
    /// A crate prefix + anything.
    Prefixed {
        prefix: u8,
        rest: String,
    },
    /// Any name at all.
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Value {
    /// Valid for the variable, chosen by the seed.
    Valid(u32),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct Var {
    name: Name,
    value: Value,
}

fn pick<T: Copy>(items: &[T], i: u8) -> T {
    items[usize::from(i) % items.len()]
}

/// The variable's name and value, whether the reader must accept it (a
/// known name with a valid value, or a foreign name), and the op it names
/// (lower case) if it is a valid `LIMITER_OP_` variable.
fn render(var: &Var) -> ((String, String), bool, Option<String>) {
    let (name, value_field, op) = match &var.name {
        Name::Known(i) => {
            let (name, field) = pick(KNOWN, *i);
            (name.to_owned(), Some(field), None)
        }
        Name::Op { op, field } => {
            let (op, field) = (pick(OPS, *op), pick(FIELDS, *field));
            let name = format!("LIMITER_OP_{op}_{}", field.to_ascii_uppercase());
            (name, Some(Some(field)), Some(op.to_ascii_lowercase()))
        }
        Name::OpRaw { op, field } => {
            let field = pick(FIELDS, *field).to_ascii_uppercase();
            (format!("LIMITER_OP_{op}_{field}"), None, None)
        }
        Name::Prefixed { prefix, rest } => {
            (format!("{}{rest}", pick(PREFIXES, *prefix)), None, None)
        }
        Name::Raw(name) => (name.clone(), None, None),
    };
    let (value, valid) = match (&var.value, value_field) {
        (Value::Valid(seed), Some(field)) => (valid_value(field, *seed), true),
        (Value::Valid(seed), None) => (seed.to_string(), false),
        (Value::Raw(text), _) => (text.clone(), false),
    };
    let valid = valid || !owned(&name);
    ((name, value), valid, op)
}

fn valid_value(field: Option<&str>, seed: u32) -> String {
    match field {
        None => format!("text{seed}"),
        Some("seconds") => format!("{}.{}", seed % 100_000 + 1, seed % 10),
        Some("timeout") => valid_duration(seed),
        Some(field) => valid_text(field, seed),
    }
}

fn owned(name: &str) -> bool {
    ["LIMITS_", "LIMITER_", "RATE_LIMIT_", "CIRCUIT_BREAKER_"]
        .iter()
        .any(|p| name.starts_with(p))
}

fn same(a: &Result<Settings, ConfigError>, b: &Result<Settings, ConfigError>) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => a == b,
        _ => false,
    }
}

fuzz_target!(|vars: Vec<Var>| {
    let rendered: Vec<_> = vars.iter().map(render).collect();
    let pairs: Vec<(String, String)> = rendered.iter().map(|(p, _, _)| p.clone()).collect();
    let result = settings_from_vars(pairs.clone());

    if let Err(e) = &result {
        let ConfigError::Env { var, value, .. } = e else {
            panic!("not an environment error: {e:?}");
        };
        assert!(
            pairs.iter().any(|(k, v)| k == var && v == value),
            "{e:?} names no variable given: {pairs:?}"
        );
        assert!(owned(var), "{var:?} is not the crate's");
        let shown = e.to_string();
        let head = format!("environment variable {var}={value:?}: ");
        assert!(shown.starts_with(&head), "{shown:?}");
        assert!(shown.len() > head.len(), "no reason: {shown:?}");
    }

    let reversed: Vec<_> = pairs.iter().rev().cloned().collect();
    assert!(
        same(&result, &settings_from_vars(reversed)),
        "order matters: {pairs:?}"
    );
    let ours: Vec<_> = pairs.iter().filter(|(k, _)| owned(k)).cloned().collect();
    assert!(
        same(&result, &settings_from_vars(ours)),
        "foreign variables changed the result: {pairs:?}"
    );

    if rendered.iter().all(|(_, valid, _)| *valid) {
        let settings = result.unwrap_or_else(|e| panic!("valid variables refused: {e}\n{pairs:?}"));
        let expected: BTreeSet<&String> = rendered
            .iter()
            .filter_map(|(_, _, op)| op.as_ref())
            .collect();
        let got: BTreeSet<&String> = settings.ops.keys().collect();
        assert_eq!(got, expected, "{pairs:?}");
    }
});
