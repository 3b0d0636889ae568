//! The server side of the HTTP benchmark (`benches/http/run.sh`): one
//! handler served twice, bare and under `#[optimize_route(level =
//! Advanced)]` (timeout, breaker, rate limit, bulkhead, metrics), so that a
//! load generator can measure what the attribute costs per request.
//!
//! `cargo run --release -p limiter-benches --bin http_bench -- 127.0.0.1:8099`

use std::net::SocketAddr;

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use limiter::{optimize_route, LimitError};
use serde::Serialize;

#[derive(Serialize)]
struct User {
    id: u64,
    name: String,
    plan: &'static str,
}

/// The work both routes do: build a small JSON answer.
fn user(id: u64) -> User {
    User {
        id,
        name: format!("user-{id}"),
        plan: if id.is_multiple_of(3) { "pro" } else { "free" },
    }
}

async fn bare(Path(id): Path<u64>) -> Json<User> {
    Json(user(id))
}

/// The example server's Advanced route, with limits loose enough that the
/// benchmark measures their cost, not refusals.
#[optimize_route(
    level = Advanced,
    name = "GET /advanced/{id}",
    timeout = "1s",
    rate = "1000000/s",
    max_concurrent = 10000
)]
async fn advanced_route(id: u64) -> Result<User, LimitError> {
    Ok(user(id))
}

async fn advanced(Path(id): Path<u64>) -> Result<Json<User>, LimitError> {
    Ok(Json(advanced_route(id).await?))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8099".to_owned())
        .parse()
        .map_err(|e| format!("address: {e}"))?;
    let app = Router::new()
        .route("/bare/{id}", get(bare))
        .route("/advanced/{id}", get(advanced));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("http_bench listening on http://{addr}");
    axum::serve(listener, app).await?;
    let snap = limiter::registry().op("GET /advanced/{id}").snapshot();
    println!("advanced calls: {}", snap.counters.calls);
    Ok(())
}
