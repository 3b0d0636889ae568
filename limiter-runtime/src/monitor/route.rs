//! Per-route HTTP metrics: requests by status, latency, slow polls, keyed by
//! method and route template (never by the raw URL, so ids in paths do not
//! make a series each).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::Serialize;

use crate::metrics::{Counts, Histogram, LatencySnapshot};

/// The template that requests matching no route are counted under.
pub const UNMATCHED_ROUTE: &str = "<unmatched>";
/// The template that routes beyond [`MAX_ROUTES`] are counted under.
pub const OTHER_ROUTE: &str = "<other>";
/// Most distinct (method, template) pairs tracked; more are folded into
/// [`OTHER_ROUTE`] so a misconfigured key (raw URLs) cannot grow memory
/// without bound.
pub const MAX_ROUTES: usize = 1000;

/// HTTP methods kept as themselves; any other is counted as `OTHER`.
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

/// Counters of one route.
pub(crate) struct RouteStats {
    pub(crate) method: &'static str,
    pub(crate) route: Arc<str>,
    pub(crate) requests: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    /// Responses by status code, 100..=599 (index = code - 100).
    by_code: Box<[AtomicU64]>,
    pub(crate) slow_polls: AtomicU64,
    /// 5xx responses that were a limit's refusal (a full queue, an open
    /// breaker): rejected by design, not counted as errors.
    refused_5xx: AtomicU64,
    pub(crate) latency: Histogram,
}

impl RouteStats {
    fn new(method: &'static str, route: Arc<str>) -> Self {
        Self {
            method,
            route,
            requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            by_code: (100..600).map(|_| AtomicU64::new(0)).collect(),
            slow_polls: AtomicU64::new(0),
            refused_5xx: AtomicU64::new(0),
            latency: Histogram::default(),
        }
    }

    /// Records a finished response; `refused`: it was a limit's refusal.
    pub(crate) fn finish(&self, status: u16, latency_ns: u64, refused: bool) {
        let status = status.clamp(100, 599);
        self.by_code[usize::from(status - 100)].fetch_add(1, Ordering::Relaxed);
        if refused && status >= 500 {
            self.refused_5xx.fetch_add(1, Ordering::Relaxed);
        }
        self.latency.record(latency_ns);
    }

    /// Responses with a 5xx status that were no limit's refusal: what the
    /// error rate counts.
    pub(crate) fn errors(&self) -> u64 {
        self.class(5)
            .saturating_sub(self.refused_5xx.load(Ordering::Relaxed))
    }

    /// Responses with status `class`xx.
    fn class(&self, class: usize) -> u64 {
        self.by_code[(class - 1) * 100..class * 100]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Responses that are limit refusals (408, 429, 503).
    pub(crate) fn rejected(&self) -> u64 {
        [408u16, 429, 503]
            .iter()
            .map(|&c| self.by_code[usize::from(c - 100)].load(Ordering::Relaxed))
            .sum()
    }

    /// Responses per status code that occurred.
    pub(crate) fn codes(&self) -> Vec<(u16, u64)> {
        self.by_code
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let n = c.load(Ordering::Relaxed);
                (n > 0).then_some((i as u16 + 100, n))
            })
            .collect()
    }

    pub(crate) fn counts(&self) -> Counts {
        self.latency.counts()
    }

    /// `GET /api/users/{id}`: how alerts and recommendations name it.
    pub(crate) fn label(&self) -> String {
        format!("{} {}", self.method, self.route)
    }

    pub(crate) fn snapshot(&self, history: Vec<RoutePoint>) -> RouteSnapshot {
        let requests = self.requests.load(Ordering::Relaxed);
        let errors = self.errors();
        RouteSnapshot {
            method: self.method,
            route: self.route.clone(),
            requests,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            status: StatusClasses {
                c2xx: self.class(2),
                c3xx: self.class(3),
                c4xx: self.class(4),
                c5xx: self.class(5),
            },
            by_code: self
                .codes()
                .into_iter()
                .map(|(c, n)| (c.to_string(), n))
                .collect(),
            errors,
            error_rate: ratio(errors, self.latency.counts().count()),
            slow_polls: self.slow_polls.load(Ordering::Relaxed),
            latency: self.latency.snapshot(),
            history,
        }
    }
}

pub(crate) fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Responses of a route by status class.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct StatusClasses {
    /// 2xx responses.
    #[serde(rename = "2xx")]
    pub c2xx: u64,
    /// 3xx responses.
    #[serde(rename = "3xx")]
    pub c3xx: u64,
    /// 4xx responses.
    #[serde(rename = "4xx")]
    pub c4xx: u64,
    /// 5xx responses.
    #[serde(rename = "5xx")]
    pub c5xx: u64,
}

/// Latency of a route over one sampling interval.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RoutePoint {
    /// End of the interval, unix milliseconds.
    pub t_ms: u64,
    /// Responses in the interval.
    pub requests: u64,
    /// Median latency in the interval.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
}

/// What the monitor knows about one route.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RouteSnapshot {
    /// HTTP method (`OTHER` for extension methods).
    pub method: &'static str,
    /// Route template, e.g. `/api/users/{id}`.
    pub route: Arc<str>,
    /// Requests received.
    pub requests: u64,
    /// Requests being handled now.
    pub in_flight: u64,
    /// Responses by status class.
    pub status: StatusClasses,
    /// Responses by status code.
    pub by_code: std::collections::BTreeMap<String, u64>,
    /// 5xx responses, less those that were a limit's refusal (a full
    /// queue, an open breaker: counted in `by_code`, not as errors).
    pub errors: u64,
    /// `errors` over all responses.
    pub error_rate: f64,
    /// Polls of the handler longer than the slow-poll threshold.
    pub slow_polls: u64,
    /// Latency since start.
    pub latency: LatencySnapshot,
    /// Latency per sampling interval, oldest first; the last point is the
    /// interval in progress.
    pub history: Vec<RoutePoint>,
}

/// A route's key: method and template.
type RouteKey = (&'static str, Arc<str>);

/// Every route seen, by method and template.
#[derive(Default)]
pub(crate) struct RouteTable {
    routes: RwLock<HashMap<RouteKey, Arc<RouteStats>>>,
}

/// The method as one of the standard names, or `OTHER`.
pub(crate) fn method_name(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|m| m.eq_ignore_ascii_case(method))
        .copied()
        .unwrap_or("OTHER")
}

impl RouteTable {
    /// The stats of `method` + `route`, created on first use.
    pub(crate) fn get(&self, method: &str, route: &str) -> Arc<RouteStats> {
        let method = method_name(method);
        {
            let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = routes.get(&(method, Arc::from(route))) {
                return Arc::clone(s);
            }
        }
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        let route: Arc<str> = if routes.len() >= MAX_ROUTES {
            OTHER_ROUTE.into()
        } else {
            route.into()
        };
        Arc::clone(
            routes
                .entry((method, route.clone()))
                .or_insert_with(|| Arc::new(RouteStats::new(method, route))),
        )
    }

    /// Every route, sorted by template then method.
    pub(crate) fn all(&self) -> Vec<Arc<RouteStats>> {
        let mut all: Vec<_> = self
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| (&a.route, a.method).cmp(&(&b.route, b.method)));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_keyed_by_template_and_method_and_capped() {
        let t = RouteTable::default();
        let a = t.get("get", "/users/{id}");
        a.requests.fetch_add(1, Ordering::Relaxed);
        assert!(Arc::ptr_eq(&a, &t.get("GET", "/users/{id}")));
        assert_eq!(t.get("BREW", "/pot").method, "OTHER");
        for i in 0..MAX_ROUTES + 10 {
            t.get("GET", &format!("/raw/{i}"));
        }
        assert_eq!(t.all().len(), MAX_ROUTES + 1);
        assert_eq!(&*t.get("GET", "/raw/99999").route, OTHER_ROUTE);
    }

    #[test]
    fn status_classes_and_rejections() {
        let s = RouteStats::new("GET", "/x".into());
        for code in [200, 200, 202, 404, 429, 503, 504, 999] {
            s.finish(code, 1_000_000, false);
        }
        let snap = s.snapshot(Vec::new());
        assert_eq!(snap.status.c2xx, 3);
        assert_eq!(snap.status.c4xx, 2);
        assert_eq!(snap.status.c5xx, 3, "999 is clamped into 599");
        assert_eq!(s.rejected(), 2);
        assert!((snap.error_rate - 3.0 / 8.0).abs() < 1e-12);
        assert_eq!(snap.by_code["200"], 2);
    }

    /// A 503 that a limit answered (a full queue, an open breaker) is a
    /// rejection by design: in the 5xx class, never in the error rate.
    #[test]
    fn refusals_are_rejected_not_errors() {
        let s = RouteStats::new("GET", "/x".into());
        for (code, refused) in [
            (200, false),
            (503, true),
            (503, true),
            (429, true),
            (502, false),
        ] {
            s.finish(code, 1_000_000, refused);
        }
        let snap = s.snapshot(Vec::new());
        assert_eq!(snap.status.c5xx, 3);
        assert_eq!(snap.errors, 1, "only the 502");
        assert!((snap.error_rate - 1.0 / 5.0).abs() < 1e-12);
        assert_eq!(s.rejected(), 3);
    }
}
