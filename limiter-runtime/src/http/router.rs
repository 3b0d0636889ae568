//! The monitoring router: JSON endpoints, Prometheus exposition and the
//! dashboard, with an optional admin token.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::monitor::{AlertError, AlertState};
use crate::registry::{registry, Registry};
use crate::registry_ref::RegistryRef;

use super::identity::{bearer_token, secret_matches};

const DASHBOARD: &str = include_str!("dashboard.html");

/// The dashboard's content security policy: the page may run only its own
/// inline script and style (named by their SHA-256 digests), talk only to
/// the router, and no other site may frame it.
fn dashboard_csp() -> &'static str {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        let script = inline_digest(DASHBOARD, "<script>", "</script>");
        let style = inline_digest(DASHBOARD, "<style>", "</style>");
        format!(
            "default-src 'none'; script-src '{script}'; style-src '{style}'; \
             connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
             form-action 'none'; frame-ancestors 'none'"
        )
    })
}

/// The CSP source (`sha256-…`) of the text between the first `open` and
/// the following `close` in `page`.
fn inline_digest(page: &str, open: &str, close: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let start = page
        .find(open)
        .map(|i| i + open.len())
        .unwrap_or_else(|| unreachable!("the dashboard has a {open} element"));
    let len = page[start..]
        .find(close)
        .unwrap_or_else(|| unreachable!("the dashboard closes its {open} element"));
    let digest = sha2::Sha256::digest(&page.as_bytes()[start..start + len]);
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// Builds the monitoring router.
///
/// ```
/// use limiter_runtime::http::Monitoring;
/// let admin: axum::Router = Monitoring::new()
///     .admin_token("s3cret")
///     .protect_reads(true)
///     .router()
///     .unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Monitoring {
    registry: RegistryRef,
    token: Option<String>,
    protect_reads: bool,
    open_writes: bool,
}

impl Default for Monitoring {
    fn default() -> Self {
        Self::new()
    }
}

/// The monitoring router of the global registry without an admin token:
/// reads of aggregates are open, and the endpoints that show or change one
/// client's data (`/monitoring/limits/…`) and the other mutating endpoints
/// answer 403 (see [`Monitoring`] to configure a token):
///
/// | endpoint | what |
/// | --- | --- |
/// | `GET /monitoring/summary` | totals, breakers, alerts, recommendations |
/// | `GET /monitoring/routes` | per-route counts, latency and history |
/// | `GET /monitoring/ops`, `GET /monitoring/ops/{op}` | op snapshots |
/// | `GET /monitoring/alerts?state=open\|active\|acknowledged\|resolved\|all` | alerts |
/// | `POST /monitoring/alerts/{id}/acknowledge`, `…/resolve` | alert lifecycle |
/// | `GET /monitoring/breakers`, `POST /monitoring/breakers/{op}/reset` | breakers |
/// | `GET /monitoring/limits/{key}`, `POST /monitoring/limits/{key}/reset` | one client's limits |
/// | `GET /monitoring/background`, `GET /monitoring/background/{id}` | background tasks |
/// | `GET /monitoring/backpressure` | stream handlers: buffers, drops, waits |
/// | `GET /metrics` | Prometheus text exposition |
/// | `GET /monitoring/dashboard` | live HTML dashboard |
pub fn monitoring_router() -> Router {
    Monitoring::new()
        .router()
        .unwrap_or_else(|e| unreachable!("the default monitoring settings are valid: {e}"))
}

#[derive(Clone)]
struct AppState {
    registry: RegistryRef,
}

struct Auth {
    token: Option<String>,
    protect_reads: bool,
    open_writes: bool,
}

impl Monitoring {
    /// Monitoring of the global registry, no token.
    pub fn new() -> Self {
        Self {
            registry: registry().into(),
            token: None,
            protect_reads: false,
            open_writes: false,
        }
    }

    /// Monitors `registry` instead of the global one: `&'static Registry`
    /// or `Arc<Registry>`.
    pub fn registry(mut self, registry: impl Into<RegistryRef>) -> Self {
        self.registry = registry.into();
        self
    }

    /// Requires `Authorization: Bearer <token>` on every mutating endpoint
    /// and on the reads of one client's data (`/monitoring/limits/{key}`,
    /// which stays off without a token): 401 without a token, 403 with a
    /// wrong one. Compared in constant time.
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Without an admin token the mutating endpoints (acknowledge, resolve,
    /// breaker and limit resets) answer 403, since any client that reaches
    /// the router could otherwise reset its own limits. This opens them
    /// without a token, for a router reachable only by operators.
    pub fn allow_unauthenticated_writes(mut self, on: bool) -> Self {
        self.open_writes = on;
        self
    }

    /// Requires the token on the read endpoints, the dashboard page aside
    /// (it holds no data and asks for the token).
    pub fn protect_reads(mut self, on: bool) -> Self {
        self.protect_reads = on;
        self
    }

    /// The router. Fails on an empty token, or on protected reads without
    /// a token.
    pub fn router(self) -> Result<Router, ConfigError> {
        let invalid = |field: &'static str, value: &str, reason: &str| ConfigError::Invalid {
            op: "<monitoring>".into(),
            field,
            value: value.into(),
            reason: reason.into(),
        };
        if self.token.as_deref() == Some("") {
            return Err(invalid(
                "admin_token",
                "\"\"",
                "an empty token would let anyone in",
            ));
        }
        if self.protect_reads && self.token.is_none() {
            return Err(invalid(
                "protect_reads",
                "true",
                "needs an admin_token to check",
            ));
        }
        self.registry.start_monitor();
        let auth = Arc::new(Auth {
            token: self.token,
            protect_reads: self.protect_reads,
            open_writes: self.open_writes,
        });
        let state = AppState {
            registry: self.registry,
        };
        let reads = Router::new()
            .route("/monitoring/summary", get(summary))
            .route("/monitoring/routes", get(routes))
            .route("/monitoring/ops", get(ops))
            .route("/monitoring/ops/{op}", get(op))
            .route("/monitoring/alerts", get(alerts))
            .route("/monitoring/breakers", get(breakers))
            .route("/monitoring/background", get(background))
            .route("/monitoring/background/{id}", get(task))
            .route("/monitoring/backpressure", get(backpressure))
            .route("/metrics", get(metrics))
            .route_layer(middleware::from_fn_with_state(
                Arc::clone(&auth),
                require_for_reads,
            ));
        let writes = Router::new()
            .route("/monitoring/alerts/{id}/acknowledge", post(acknowledge))
            .route("/monitoring/alerts/{id}/resolve", post(resolve))
            .route("/monitoring/breakers/{op}/reset", post(reset_breaker))
            .route("/monitoring/limits/{key}/reset", post(reset_limits))
            .route_layer(middleware::from_fn_with_state(
                Arc::clone(&auth),
                require_for_writes,
            ));
        // One client's data (whether a key or token was used, how much of
        // its budget is left) is an oracle for credentials: never open.
        let client = Router::new()
            .route("/monitoring/limits/{key}", get(limits))
            .route_layer(middleware::from_fn_with_state(auth, require_for_client));
        // What load balancers and probes read: never behind the token.
        Ok(Router::new()
            .route("/monitoring/dashboard", get(dashboard))
            .route("/monitoring/health", get(health))
            .route("/monitoring/health/live", get(live))
            .merge(reads)
            .merge(writes)
            .merge(client)
            .with_state(state))
    }
}

/// A JSON error answer: `{"error", "message"}`.
#[derive(Debug)]
struct Problem {
    status: StatusCode,
    error: &'static str,
    message: String,
}

fn problem(status: StatusCode, error: &'static str, message: impl Into<String>) -> Problem {
    Problem {
        status,
        error,
        message: message.into(),
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
            message: String,
        }
        let mut r = (
            self.status,
            Json(Body {
                error: self.error,
                message: self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"limiter\""),
            );
        }
        r
    }
}

fn check_token(auth: &Auth, headers: &HeaderMap) -> Result<(), Problem> {
    let Some(expected) = &auth.token else {
        return Ok(());
    };
    match bearer_token(headers) {
        None => Err(problem(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this endpoint needs `Authorization: Bearer <admin token>`",
        )),
        Some(t) if secret_matches(t.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(problem(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the admin token is wrong",
        )),
    }
}

async fn require_for_reads(State(auth): State<Arc<Auth>>, req: Request, next: Next) -> Response {
    if auth.protect_reads {
        if let Err(r) = check_token(&auth, req.headers()) {
            return r.into_response();
        }
    }
    next.run(req).await
}

async fn require_for_writes(State(auth): State<Arc<Auth>>, req: Request, next: Next) -> Response {
    if auth.token.is_none() && !auth.open_writes {
        return problem(
            StatusCode::FORBIDDEN,
            "forbidden",
            "mutating endpoints are off: configure an admin token (Monitoring::admin_token), \
             or allow_unauthenticated_writes(true) for a router only operators reach",
        )
        .into_response();
    }
    if let Err(r) = check_token(&auth, req.headers()) {
        return r.into_response();
    }
    next.run(req).await
}

/// Reads of one client's data: always behind the admin token (403 while
/// none is configured, whatever `protect_reads` and
/// `allow_unauthenticated_writes` say).
async fn require_for_client(State(auth): State<Arc<Auth>>, req: Request, next: Next) -> Response {
    if auth.token.is_none() {
        return problem(
            StatusCode::FORBIDDEN,
            "forbidden",
            "per-client endpoints are off: configure an admin token (Monitoring::admin_token)",
        )
        .into_response();
    }
    if let Err(r) = check_token(&auth, req.headers()) {
        return r.into_response();
    }
    next.run(req).await
}

/// The dashboard page, with its content security policy and the headers
/// that keep it from being framed or sniffed.
async fn dashboard() -> Response {
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CONTENT_SECURITY_POLICY, dashboard_csp()),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    (headers, DASHBOARD).into_response()
}

/// Readiness: 200 with `{"status": "ok", "reasons": []}`, or 503 with the
/// reasons (critical alerts, open breakers, a down Redis), never cached.
async fn health(State(s): State<AppState>) -> Response {
    s.registry.refresh_shared_breakers().await;
    let report = s.registry.health();
    let status = if report.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut resp = (status, Json(report)).into_response();
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    resp
}

/// Liveness: 200 while the process answers, whatever its dependencies do.
async fn live() -> Response {
    Json(serde_json::json!({ "status": "alive" })).into_response()
}

async fn summary(State(s): State<AppState>) -> Response {
    Json(s.registry.monitoring_summary()).into_response()
}

async fn routes(State(s): State<AppState>) -> Response {
    #[derive(Serialize)]
    struct Body {
        sample_interval_ms: u128,
        routes: Vec<crate::monitor::RouteSnapshot>,
    }
    s.registry.refresh_monitor();
    let m = s.registry.monitor();
    Json(Body {
        sample_interval_ms: m.config().sample_interval.as_millis(),
        routes: m.routes(),
    })
    .into_response()
}

async fn ops(State(s): State<AppState>) -> Response {
    s.registry.refresh_shared_breakers().await;
    #[derive(Serialize)]
    struct Body {
        ops: Vec<crate::OpSnapshot>,
    }
    Json(Body {
        ops: s.registry.ops().iter().map(crate::Op::snapshot).collect(),
    })
    .into_response()
}

fn find_op(reg: &Registry, name: &str) -> Result<crate::Op, Problem> {
    reg.ops()
        .into_iter()
        .find(|o| o.name() == name)
        .ok_or_else(|| {
            problem(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no op named `{name}`"),
            )
        })
}

async fn op(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    match find_op(&s.registry, &name) {
        Ok(op) => {
            op.core.refresh_shared_breaker().await;
            Json(op.snapshot()).into_response()
        }
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
struct AlertQuery {
    state: Option<String>,
}

async fn alerts(State(s): State<AppState>, Query(q): Query<AlertQuery>) -> Response {
    #[derive(Serialize)]
    struct Body {
        alerts: Vec<crate::monitor::Alert>,
    }
    let keep: fn(AlertState) -> bool = match q.state.as_deref().unwrap_or("open") {
        "open" => |s| s != AlertState::Resolved,
        "active" => |s| s == AlertState::Active,
        "acknowledged" => |s| s == AlertState::Acknowledged,
        "resolved" => |s| s == AlertState::Resolved,
        "all" => |_| true,
        other => {
            return problem(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!(
                    "unknown alert state `{other}`; expected one of: open, active, acknowledged, resolved, all"
                ),
            )
            .into_response()
        }
    };
    s.registry.refresh_monitor();
    let alerts = s
        .registry
        .monitor()
        .alerts()
        .into_iter()
        .filter(|a| keep(a.state))
        .collect();
    Json(Body { alerts }).into_response()
}

fn alert_answer(r: Result<crate::monitor::Alert, AlertError>) -> Response {
    match r {
        Ok(a) => Json(a).into_response(),
        Err(e @ AlertError::NotFound(_)) => {
            problem(StatusCode::NOT_FOUND, "not_found", e.to_string()).into_response()
        }
        Err(e @ AlertError::Resolved(_)) => {
            problem(StatusCode::CONFLICT, "conflict", e.to_string()).into_response()
        }
    }
}

fn parse_id(raw: &str) -> Result<u64, Problem> {
    raw.parse().map_err(|_| {
        problem(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("`{raw}` is not an id (a positive integer)"),
        )
    })
}

async fn acknowledge(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match parse_id(&id) {
        Ok(id) => alert_answer(s.registry.monitor().acknowledge(id)),
        Err(r) => r.into_response(),
    }
}

async fn resolve(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match parse_id(&id) {
        Ok(id) => alert_answer(s.registry.monitor().resolve(id)),
        Err(r) => r.into_response(),
    }
}

#[derive(Serialize)]
struct BreakerView {
    op: std::sync::Arc<str>,
    #[serde(flatten)]
    breaker: crate::BreakerSnapshot,
}

async fn breakers(State(s): State<AppState>) -> Response {
    s.registry.refresh_shared_breakers().await;
    #[derive(Serialize)]
    struct Body {
        breakers: Vec<BreakerView>,
    }
    let breakers = s
        .registry
        .ops()
        .iter()
        .map(|o| o.snapshot())
        .filter(|o| o.breaker.state != crate::BreakerState::Disabled)
        .map(|o| BreakerView {
            op: o.name,
            breaker: o.breaker,
        })
        .collect();
    Json(Body { breakers }).into_response()
}

async fn reset_breaker(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    match find_op(&s.registry, &name) {
        Ok(op) => {
            op.reset_breaker();
            let snap = op.snapshot();
            tracing::info!(op = %name, "breaker reset over the monitoring API");
            Json(BreakerView {
                op: snap.name,
                breaker: snap.breaker,
            })
            .into_response()
        }
        Err(r) => r.into_response(),
    }
}

async fn limits(State(s): State<AppState>, Path(key): Path<String>) -> Response {
    #[derive(Serialize)]
    struct Body {
        key: String,
        limits: Vec<crate::monitor::KeyLimitView>,
    }
    let limits = s.registry.key_limits(&key);
    Json(Body { key, limits }).into_response()
}

async fn reset_limits(State(s): State<AppState>, Path(key): Path<String>) -> Response {
    #[derive(Serialize)]
    struct Body {
        key: String,
        reset: usize,
    }
    let reset = s.registry.reset_key_everywhere(&key);
    tracing::info!(key = %key, reset, "client key reset over the monitoring API");
    Json(Body { key, reset }).into_response()
}

async fn background(State(s): State<AppState>) -> Response {
    Json(s.registry.tasks().snapshot()).into_response()
}

async fn task(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    match s.registry.tasks().get(id) {
        Some(info) => Json(info).into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no background task {id} (finished tasks are kept for a while)"),
        )
        .into_response(),
    }
}

async fn backpressure(State(s): State<AppState>) -> Response {
    #[derive(Serialize)]
    struct Body {
        streams: Vec<crate::stream::StreamSnapshot>,
    }
    Json(Body {
        streams: s.registry.backpressure(),
    })
    .into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    s.registry.refresh_shared_breakers().await;
    s.registry.refresh_monitor();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.registry.prometheus(),
    )
        .into_response()
}
