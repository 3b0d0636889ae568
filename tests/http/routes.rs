//! What a route breaker counts, over real TCP: server failures (5xx from
//! the handler, timeouts, panics), not a client's mistakes (4xx) and not
//! refusals by an op the handler calls.

use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use limiter::http::{status_of, ErrorStatus};
use limiter::{registry, BreakerState, LimitError, OpConfig};

use super::{client, serve};

/// A handler's error: a status and a message.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl From<LimitError> for ApiError {
    fn from(e: LimitError) -> Self {
        ApiError(status_of(&e), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

/// What lets the route breaker tell a 404 from a 500.
impl ErrorStatus for ApiError {
    fn status(&self) -> StatusCode {
        self.0
    }
}

/// 404 for odd ids, 500 for ids from 1000 on, else 200.
#[limiter::optimize_route(
    level = Advanced,
    name = "test GET /items/{id}",
    breaker(failure_rate = 0.5, min_calls = 4, window = 4)
)]
async fn get_item(id: Path<u32>) -> Result<String, ApiError> {
    match id.0 {
        n if n >= 1000 => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "db down".into(),
        )),
        n if n % 2 == 1 => Err(ApiError(StatusCode::NOT_FOUND, format!("no item {n}"))),
        n => Ok(format!("item {n}")),
    }
}

/// A handler returning `impl IntoResponse` in its `Result` (the route's
/// default classifier must not name the hidden type).
#[limiter::optimize_route(level = Advanced, name = "test GET /opaque/{id}")]
async fn get_opaque(id: Path<u32>) -> Result<impl IntoResponse, ApiError> {
    match id.0 {
        0 => Err(ApiError(StatusCode::NOT_FOUND, "none".into())),
        n => Ok((StatusCode::OK, format!("opaque {n}"))),
    }
}

/// Calls the inner op `test.inner` (one place, no queue) around a slow
/// body: concurrent requests overflow it.
#[limiter::optimize_route(
    level = Advanced,
    name = "test GET /busy",
    breaker(failure_rate = 0.5, min_calls = 4, window = 4)
)]
async fn busy() -> Result<&'static str, LimitError> {
    registry()
        .op("test.inner")
        .run(None, || async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, LimitError>("done")
        })
        .await
}

fn state(op: &str) -> BreakerState {
    registry().op(op).snapshot().breaker.state
}

async fn status(base: &str, path: &str) -> u16 {
    client()
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn client_errors_leave_the_route_breaker_closed_and_server_errors_open_it() {
    let base = serve(Router::new().route("/items/{id}", get(get_item))).await;
    for i in 0..9 {
        assert_eq!(status(&base, &format!("/items/{}", 2 * i + 1)).await, 404);
    }
    assert_eq!(status(&base, "/items/2").await, 200);
    assert_eq!(state("test GET /items/{id}"), BreakerState::Closed);
    // The 404s were not recorded at all (neither failures nor successes):
    // the window holds one success, and three server errors fill it to
    // `min_calls` with a failure rate of 3/4.
    for i in 0..3 {
        assert_eq!(status(&base, &format!("/items/{}", 1000 + i)).await, 500);
    }
    assert_eq!(state("test GET /items/{id}"), BreakerState::Open);
    assert_eq!(
        status(&base, "/items/2").await,
        503,
        "the open breaker answers"
    );
}

#[tokio::test]
async fn a_handler_with_an_opaque_ok_type_is_classified_too() {
    let base = serve(Router::new().route("/opaque/{id}", get(get_opaque))).await;
    assert_eq!(status(&base, "/opaque/3").await, 200);
    for _ in 0..30 {
        assert_eq!(status(&base, "/opaque/0").await, 404);
    }
    assert_eq!(state("test GET /opaque/{id}"), BreakerState::Closed);
}

#[tokio::test]
async fn an_inner_ops_queue_full_does_not_open_the_route_breaker() {
    registry()
        .configure(
            "test.inner",
            OpConfig {
                max_concurrent: Some(1),
                queue: Some(0),
                ..OpConfig::default()
            },
        )
        .unwrap();
    let base = serve(Router::new().route("/busy", get(busy))).await;
    let calls: Vec<_> = (0..12)
        .map(|_| {
            let base = base.clone();
            tokio::spawn(async move { status(&base, "/busy").await })
        })
        .collect();
    let mut statuses = Vec::new();
    for c in calls {
        statuses.push(c.await.unwrap());
    }
    let refused = statuses.iter().filter(|s| **s == 503).count();
    assert!(refused >= 4, "the inner op refused: {statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
    assert_eq!(
        state("test GET /busy"),
        BreakerState::Closed,
        "{statuses:?}"
    );
}
