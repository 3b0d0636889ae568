//! HTTP integration for axum (feature `axum`): `LimitError` as a response,
//! the [`LimiterLayer`] for per-client and per-endpoint limits with route
//! metrics, and the [`monitoring_router`] with its JSON API, Prometheus
//! exposition and live dashboard.
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use axum::{routing::get, Router};
//! use limiter_runtime::http::{monitoring_router, LimiterLayer, Rule};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Router::new()
//!     .route("/api/users/{id}", get(|| async { "ok" }))
//!     .layer(LimiterLayer::builder().rule(Rule::new("*").per_minute(100)).build()?)
//!     .merge(monitoring_router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(()) }
//! ```

mod identity;
#[cfg(feature = "jwt")]
mod jwt;
mod layer;
mod pattern;
mod response;
mod router;
mod rules;
mod verify;

pub use identity::{Client, ClientClass, ForwardedHeader, IdentitySource};
#[cfg(feature = "jwt")]
#[cfg_attr(all(docsrs, limiter_doc_cfg), doc(cfg(feature = "jwt")))]
pub use jwt::Jwt;
pub use layer::{LimiterLayer, LimiterLayerBuilder, LimiterService};
pub use pattern::{PathPattern, PatternError};
pub use response::{
    rate_limit_headers, status_of, ErrorBody, ErrorStatus, Refused, RATELIMIT, RATELIMIT_POLICY,
    TASK_LOCATION_PREFIX,
};
pub use router::{monitoring_router, Monitoring};
pub use rules::Rule;
pub use verify::{KeySet, Verified, Verifier, VerifyFuture};
