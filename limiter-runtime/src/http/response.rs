//! `LimitError` as an HTTP response: status, `Retry-After`, the IETF
//! `RateLimit` / `RateLimit-Policy` header fields and a JSON body.
//!
//! | error | status |
//! | --- | --- |
//! | `RateLimited` | 429 |
//! | `QueueFull` of one key | 429 |
//! | `QueueFull` of the op, `Overloaded` | 503 |
//! | `CircuitOpen` | 503 |
//! | `QueueTimeout` | 408 |
//! | `Timeout` | 504 |
//! | `MovedToBackground` | 202 + `Location: /monitoring/background/{id}` |
//!
//! The header fields follow draft-ietf-httpapi-ratelimit-headers (structured
//! fields): `RateLimit-Policy: "db";q=100;w=60` names the limit and
//! `RateLimit: "db";r=0;t=18` says how much is left and when it resets.

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{LimitError, QueueScope, Quota, QuotaUnit};

/// The `RateLimit-Policy` header field name.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The `RateLimit` header field name.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Where the task a `MovedToBackground` answer points at can be read: the
/// monitoring router serves `GET /monitoring/background/{id}`.
pub const TASK_LOCATION_PREFIX: &str = "/monitoring/background/";

/// A response extension marking a limit's refusal (see
/// [`LimitError::is_refusal`]): the limiter layer counts such a response as
/// rejected, not as a server error, even when its status is 503. A
/// `LimitError` answered through its `IntoResponse` carries it; a handler
/// that builds its own response for a refusal can insert it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// The refusal's [`LimitError::code`], e.g. `queue_full`.
    pub code: &'static str,
}

/// The status an error answers with, so that a route breaker
/// (`#[optimize_route]`) counts only server failures (5xx), not a client's
/// mistakes (4xx). Implement it for a handler's error type:
///
/// ```
/// use axum::http::StatusCode;
/// use limiter_runtime::http::ErrorStatus;
/// enum AppError { NotFound, Db }
/// impl ErrorStatus for AppError {
///     fn status(&self) -> StatusCode {
///         match self {
///             AppError::NotFound => StatusCode::NOT_FOUND,
///             AppError::Db => StatusCode::INTERNAL_SERVER_ERROR,
///         }
///     }
/// }
/// ```
///
/// A route whose error type has no status counts every `Err` as a failure.
pub trait ErrorStatus {
    /// The status of the response this error becomes.
    fn status(&self) -> StatusCode;
}

impl ErrorStatus for StatusCode {
    fn status(&self) -> StatusCode {
        *self
    }
}

impl<T> ErrorStatus for (StatusCode, T) {
    fn status(&self) -> StatusCode {
        self.0
    }
}

impl ErrorStatus for axum::response::Response {
    fn status(&self) -> StatusCode {
        axum::response::Response::status(self)
    }
}

impl ErrorStatus for LimitError {
    fn status(&self) -> StatusCode {
        status_of(self)
    }
}

/// The HTTP status a refusal maps to.
pub fn status_of(err: &LimitError) -> StatusCode {
    match err {
        LimitError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        LimitError::QueueFull {
            scope: QueueScope::Key,
            ..
        } => StatusCode::TOO_MANY_REQUESTS,
        LimitError::QueueFull { .. }
        | LimitError::Overloaded { .. }
        | LimitError::CircuitOpen { .. } => StatusCode::SERVICE_UNAVAILABLE,
        LimitError::QueueTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
        LimitError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        LimitError::MovedToBackground { .. } => StatusCode::ACCEPTED,
        // Too large for the quota, ever: the request must be split.
        LimitError::CostExceedsLimit { .. } => StatusCode::PAYLOAD_TOO_LARGE,
    }
}

/// Whole seconds, rounded up: a client told `0` would retry at once.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    let s = d.as_secs();
    if d.subsec_nanos() > 0 {
        s + 1
    } else {
        s
    }
}

/// The policy name of a refusal: the op (or rule), with `.concurrency` for
/// a bulkhead.
fn policy_name(op: &str, quota: Option<&Quota>) -> String {
    match quota {
        Some(q) if q.unit == QuotaUnit::ConcurrentRequests => format!("{op}.concurrency"),
        _ => op.to_owned(),
    }
}

/// An sf-string: printable ASCII with `"` and `\` escaped; anything else
/// becomes `?` (policy names come from op and rule names).
pub(crate) fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

/// `"name";q=100;w=60` (plus `;qu="concurrent-requests"` for bulkheads).
pub(crate) fn policy_item(
    name: &str,
    limit: u64,
    window: Option<Duration>,
    unit: QuotaUnit,
) -> String {
    let mut s = format!("{};q={limit}", sf_string(name));
    if let Some(w) = window {
        s.push_str(&format!(";w={}", ceil_secs(w).max(1)));
    }
    if unit == QuotaUnit::ConcurrentRequests {
        s.push_str(";qu=\"concurrent-requests\"");
    }
    s
}

/// `"name";r=42;t=18` (`t` left out when unknown).
pub(crate) fn limit_item(name: &str, remaining: u64, reset: Option<Duration>) -> String {
    let mut s = format!("{};r={remaining}", sf_string(name));
    if let Some(t) = reset {
        s.push_str(&format!(";t={}", ceil_secs(t)));
    }
    s
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: String) {
    // Every value built here is printable ASCII.
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(name, v);
    }
}

/// Adds `Retry-After`, `RateLimit-Policy` and `RateLimit` for a refusal
/// (nothing for errors that have no retry hint). An open breaker or a shed
/// service has no quota to tell: its answer carries `Retry-After` alone.
pub fn rate_limit_headers(err: &LimitError, headers: &mut HeaderMap) {
    let Some(retry_after) = err.retry_after() else {
        return;
    };
    let secs = ceil_secs(retry_after).max(1);
    insert(headers, header::RETRY_AFTER, secs.to_string());
    let Some(quota) = err.quota() else {
        return;
    };
    let name = policy_name(err.op(), Some(&quota));
    insert(
        headers,
        RATELIMIT_POLICY,
        policy_item(&name, quota.limit, quota.window, quota.unit),
    );
    insert(
        headers,
        RATELIMIT,
        limit_item(&name, 0, Some(Duration::from_secs(secs))),
    );
}

/// The JSON body of a refusal.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ErrorBody {
    /// Machine-readable reason (`rate_limited`, `queue_full`, …).
    pub error: &'static str,
    /// A sentence for people.
    pub message: String,
    /// Seconds to wait before retrying, when known.
    pub retry_after: Option<u64>,
    /// The op (or limiter rule) that refused.
    pub op: String,
    /// The background task, for `moved_to_background`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<u64>,
}

impl ErrorBody {
    /// The body for `err`.
    pub fn of(err: &LimitError) -> Self {
        Self {
            error: err.code(),
            message: err.to_string(),
            retry_after: err.retry_after().map(|d| ceil_secs(d).max(1)),
            op: err.op().to_owned(),
            task_id: match err {
                LimitError::MovedToBackground { task_id, .. } => Some(*task_id),
                _ => None,
            },
        }
    }
}

impl IntoResponse for LimitError {
    fn into_response(self) -> Response {
        let status = status_of(&self);
        let mut resp = (status, axum::Json(ErrorBody::of(&self))).into_response();
        if self.is_refusal() {
            resp.extensions_mut().insert(Refused { code: self.code() });
        }
        let headers = resp.headers_mut();
        rate_limit_headers(&self, headers);
        if let LimitError::MovedToBackground { task_id, .. } = self {
            insert(
                headers,
                header::LOCATION,
                format!("{TASK_LOCATION_PREFIX}{task_id}"),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_field_items() {
        assert_eq!(
            policy_item(
                "burst",
                100,
                Some(Duration::from_secs(60)),
                QuotaUnit::Requests
            ),
            r#""burst";q=100;w=60"#
        );
        assert_eq!(
            limit_item("burst", 42, Some(Duration::from_millis(17_200))),
            r#""burst";r=42;t=18"#
        );
        assert_eq!(
            policy_item("db", 4, None, QuotaUnit::ConcurrentRequests),
            r#""db";q=4;qu="concurrent-requests""#
        );
        assert_eq!(sf_string("a\"b\\é"), r#""a\"b\\?""#);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(3)), 3);
    }
}
