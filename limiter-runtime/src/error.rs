//! The errors a limited call can end with, and the configuration errors.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

/// Which queue was full when a call was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueScope {
    /// The queue of one key (one user, one tenant): the caller is sending too
    /// much (HTTP 429).
    Key,
    /// The op-wide queue: the service is saturated (HTTP 503).
    Global,
}

impl fmt::Display for QueueScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QueueScope::Key => "per-key",
            QueueScope::Global => "global",
        })
    }
}

/// What a quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaUnit {
    /// Requests per window (a rate limit).
    Requests,
    /// Requests at the same time (a bulkhead).
    ConcurrentRequests,
}

/// The limit a call ran into: what the IETF `RateLimit-Policy` header field
/// advertises (`q` = `limit`, `w` = `window`, `qu` = `unit`).
///
/// ```
/// use std::time::Duration;
/// use limiter_runtime::{Quota, QuotaUnit};
/// let q = Quota::rate(100, Duration::from_secs(60), false);
/// assert_eq!((q.limit, q.window, q.unit), (100, Some(Duration::from_secs(60)), QuotaUnit::Requests));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Quota {
    /// Calls the limit allows (per `window` for rates, at once for
    /// concurrency).
    pub limit: u64,
    /// The window of a rate limit; `None` for concurrency.
    pub window: Option<Duration>,
    /// What `limit` counts.
    pub unit: QuotaUnit,
    /// Whether the limit applies to each key (client) on its own rather than
    /// to the op as a whole.
    pub per_key: bool,
}

impl Quota {
    /// A rate quota of `limit` calls per `window`.
    pub fn rate(limit: u64, window: Duration, per_key: bool) -> Self {
        Self {
            limit,
            window: Some(window),
            unit: QuotaUnit::Requests,
            per_key,
        }
    }

    /// A concurrency quota of `limit` calls at once.
    pub fn concurrency(limit: u64, per_key: bool) -> Self {
        Self {
            limit,
            window: None,
            unit: QuotaUnit::ConcurrentRequests,
            per_key,
        }
    }
}

/// A wait as people read it: whole milliseconds rounded up below a second
/// (`57ms`), tenths of seconds above (`2.5s`).
fn wait(d: &Duration) -> String {
    if d.as_secs() >= 1 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_nanos().div_ceil(1_000_000))
    }
}

/// Why a limited call did not produce its own result.
///
/// Every variant carries the name of the operation it happened in; variants
/// that have a meaningful "try again later" carry `retry_after`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// The rate limit of the op (or of the caller's key) is used up.
    #[error("op `{op}`: rate limit exceeded, retry after {}", wait(retry_after))]
    RateLimited {
        /// Operation name.
        op: Arc<str>,
        /// When the next call would be admitted.
        retry_after: Duration,
        /// The window that refused the call.
        quota: Quota,
    },
    /// Every in-flight place and every queue place is taken.
    #[error("op `{op}`: {scope} queue full, retry after {}", wait(retry_after))]
    QueueFull {
        /// Operation name.
        op: Arc<str>,
        /// The queue that was full.
        scope: QueueScope,
        /// Suggested wait before retrying (the configured `retry_after`).
        retry_after: Duration,
        /// The concurrency bound that was reached.
        quota: Quota,
    },
    /// The call waited in the queue for longer than `queue_timeout`.
    #[error("op `{op}`: waited longer than the queue timeout")]
    QueueTimeout {
        /// Operation name.
        op: Arc<str>,
    },
    /// The circuit breaker is open (or half-open with every probe taken).
    #[error("op `{op}`: circuit open, retry after {}", wait(retry_after))]
    CircuitOpen {
        /// Operation name.
        op: Arc<str>,
        /// Time until the breaker lets a probe through.
        retry_after: Duration,
    },
    /// The call did not finish within its timeout and was cancelled.
    #[error("op `{op}`: timed out")]
    Timeout {
        /// Operation name.
        op: Arc<str>,
    },
    /// The call did not finish within its timeout and goes on as a tracked
    /// background task (`strategy = "background"`).
    #[error("op `{op}`: timed out, moved to background task {task_id}")]
    MovedToBackground {
        /// Operation name.
        op: Arc<str>,
        /// Id of the background task, see [`crate::TaskManager::get`].
        task_id: u64,
    },
    /// The call costs more than a window of the rate limit can ever hold
    /// (a batch of 500 under `"100/min"`): it is never admitted, whatever
    /// the wait. Split the work, or raise the limit (or its burst).
    #[error(
        "op `{op}`: a call of cost {cost} can never be admitted: the limit holds {} per window",
        quota.limit
    )]
    CostExceedsLimit {
        /// Operation name.
        op: Arc<str>,
        /// What the call would take.
        cost: u64,
        /// The window it does not fit in.
        quota: Quota,
    },
    /// The service sheds load as a whole: the key table is full of busy keys,
    /// the background manager is shutting down, or limits refuse new work.
    #[error("op `{op}`: overloaded, retry after {}", wait(retry_after))]
    Overloaded {
        /// Operation name.
        op: Arc<str>,
        /// Suggested wait before retrying.
        retry_after: Duration,
    },
}

impl LimitError {
    /// The operation the error happened in.
    pub fn op(&self) -> &str {
        match self {
            LimitError::RateLimited { op, .. }
            | LimitError::QueueFull { op, .. }
            | LimitError::QueueTimeout { op }
            | LimitError::CircuitOpen { op, .. }
            | LimitError::Timeout { op }
            | LimitError::MovedToBackground { op, .. }
            | LimitError::CostExceedsLimit { op, .. }
            | LimitError::Overloaded { op, .. } => op,
        }
    }

    /// When to try again, for the variants where that is known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LimitError::RateLimited { retry_after, .. }
            | LimitError::QueueFull { retry_after, .. }
            | LimitError::CircuitOpen { retry_after, .. }
            | LimitError::Overloaded { retry_after, .. } => Some(*retry_after),
            LimitError::QueueTimeout { .. }
            | LimitError::Timeout { .. }
            | LimitError::CostExceedsLimit { .. }
            | LimitError::MovedToBackground { .. } => None,
        }
    }

    /// The quota that refused the call, for the variants that have one
    /// (`RateLimited`, `QueueFull`, `CostExceedsLimit`).
    pub fn quota(&self) -> Option<Quota> {
        match self {
            LimitError::RateLimited { quota, .. }
            | LimitError::QueueFull { quota, .. }
            | LimitError::CostExceedsLimit { quota, .. } => Some(*quota),
            _ => None,
        }
    }

    /// Whether a limit refused the call before its body ran (rate limit,
    /// full queue, queue timeout, open breaker, overload): load shedding by
    /// design, which monitoring counts as rejected, never as a failure.
    /// A timeout and a move to the background are not refusals: the body
    /// ran.
    pub fn is_refusal(&self) -> bool {
        match self {
            LimitError::RateLimited { .. }
            | LimitError::CostExceedsLimit { .. }
            | LimitError::QueueFull { .. }
            | LimitError::QueueTimeout { .. }
            | LimitError::CircuitOpen { .. }
            | LimitError::Overloaded { .. } => true,
            LimitError::Timeout { .. } | LimitError::MovedToBackground { .. } => false,
        }
    }

    /// A short machine-readable name of the variant (`rate_limited`, …), as
    /// used in metrics labels and JSON bodies.
    pub fn code(&self) -> &'static str {
        match self {
            LimitError::RateLimited { .. } => "rate_limited",
            LimitError::QueueFull { .. } => "queue_full",
            LimitError::QueueTimeout { .. } => "queue_timeout",
            LimitError::CircuitOpen { .. } => "circuit_open",
            LimitError::Timeout { .. } => "timeout",
            LimitError::MovedToBackground { .. } => "moved_to_background",
            LimitError::CostExceedsLimit { .. } => "cost_exceeds_limit",
            LimitError::Overloaded { .. } => "overloaded",
        }
    }
}

/// Lets functions returning `std::io::Result` be limited: timeouts become
/// `TimedOut`, every other refusal `Other`, with the `LimitError` inside.
impl From<LimitError> for std::io::Error {
    fn from(e: LimitError) -> Self {
        let kind = match e {
            LimitError::Timeout { .. } | LimitError::QueueTimeout { .. } => {
                std::io::ErrorKind::TimedOut
            }
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}

/// A configuration value that was rejected. The message always names where
/// the value came from (variable, file key or op field) and the value itself.
///
/// A [`Syntax`](ConfigError::Syntax) error keeps the parser's or the
/// operating system's error as its [`source`](std::error::Error::source):
///
/// ```
/// use std::error::Error;
/// use limiter_runtime::config::settings_from_toml;
/// let err = settings_from_toml("[ops.db\n", "limiter.toml", None).unwrap_err();
/// assert!(err.to_string().starts_with("limiter.toml: "));
/// assert!(err.source().is_some());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConfigError {
    /// An environment variable holds an invalid value or is unknown.
    Env {
        /// Variable name.
        var: String,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A key of a configuration file holds an invalid value or is unknown.
    File {
        /// File name (or `<string>`).
        file: String,
        /// Dotted key path, e.g. `ops.db.timeout`.
        key: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The file is not valid TOML or could not be read.
    Syntax {
        /// File name (or `<string>`).
        file: String,
        /// The parser's or the OS's message, with line and column.
        message: String,
        /// The parser's or the OS's error itself (a `toml::de::Error`, an
        /// `std::io::Error`), returned by
        /// [`source`](std::error::Error::source).
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
    /// A field of an [`crate::OpConfig`] given in code is invalid, or the
    /// merged layers give an invalid combination.
    Invalid {
        /// Operation name (`<defaults>` for the registry defaults).
        op: String,
        /// Field name.
        field: &'static str,
        /// The value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Env { var, value, reason } => {
                write!(f, "environment variable {var}={value:?}: {reason}")
            }
            ConfigError::File {
                file,
                key,
                value,
                reason,
            } => write!(f, "{file}: `{key}` = {value}: {reason}"),
            ConfigError::Syntax { file, message, .. } => write!(f, "{file}: {message}"),
            ConfigError::Invalid {
                op,
                field,
                value,
                reason,
            } => write!(f, "op `{op}`: {field} = {value}: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Syntax {
                source: Some(source),
                ..
            } => Some(&**source),
            _ => None,
        }
    }
}

/// Two errors are equal when they say the same thing: a `Syntax` error's
/// source is compared by its message.
impl PartialEq for ConfigError {
    fn eq(&self, other: &Self) -> bool {
        use ConfigError::*;
        match (self, other) {
            (
                Env { var, value, reason },
                Env {
                    var: v,
                    value: val,
                    reason: r,
                },
            ) => (var, value, reason) == (v, val, r),
            (
                File {
                    file,
                    key,
                    value,
                    reason,
                },
                File {
                    file: fl,
                    key: k,
                    value: val,
                    reason: r,
                },
            ) => (file, key, value, reason) == (fl, k, val, r),
            (
                Syntax {
                    file,
                    message,
                    source,
                },
                Syntax {
                    file: fl,
                    message: m,
                    source: s,
                },
            ) => {
                let text = |s: &Option<Arc<dyn std::error::Error + Send + Sync>>| {
                    s.as_ref().map(|e| e.to_string())
                };
                (file, message) == (fl, m) && text(source) == text(s)
            }
            (
                Invalid {
                    op,
                    field,
                    value,
                    reason,
                },
                Invalid {
                    op: o,
                    field: fd,
                    value: val,
                    reason: r,
                },
            ) => (op, field, value, reason) == (o, fd, val, r),
            _ => false,
        }
    }
}

impl Eq for ConfigError {}
