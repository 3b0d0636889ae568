//! Runtime of [`limiter`](https://docs.rs/limiter): one registry of named
//! operations, each with a rate limiter (GCRA, sliding or fixed window, op-wide
//! and per key), a circuit breaker, a bulkhead with a prioritised queue,
//! timeouts with three strategies, retries, offloading of blocking work, a
//! background task manager and metrics.
//!
//! The attributes of the `limiter` crate expand into calls to this API; it is
//! just as usable by hand:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use limiter_runtime::{registry, LimitError, OpConfig, OpKind};
//!
//! registry().configure("db", OpConfig {
//!     kind: Some(OpKind::Database),
//!     timeout: Some(Duration::from_secs(2)),
//!     ..OpConfig::default()
//! }.with_rate_per_key("10/s")?)?;
//!
//! let user_id = 42u64;
//! let name = registry()
//!     .op("db")
//!     .run(Some(&user_id), || async { Ok::<_, LimitError>("alice") })
//!     .await?;
//! assert_eq!(name, "alice");
//! assert_eq!(registry().op("db").snapshot().counters.succeeded, 1);
//! # Ok(()) }
//! ```
//!
//! Time is read from `tokio::time::Instant`, so tests can drive every limit
//! with `tokio::time::pause()`.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![cfg_attr(all(docsrs, limiter_doc_cfg), feature(doc_cfg))]

mod adaptive;
pub mod backend;
mod background;
mod breaker;
mod bulkhead;
mod cache;
pub mod call;
mod client_id;
mod clock;
mod coalesce;
mod cost;
mod health;
mod load;
mod settings;

/// Configuration: the [`OpConfig`] layer model, its resolution and checks,
/// and loading from the environment ([`load_env`](config::load_env)) and
/// from a TOML file ([`load_file`](config::load_file)).
///
/// Invalid values are errors naming the variable or key and the value —
/// never a panic, never a silent default.
pub mod config {
    pub use crate::load::{load_env, load_file};
    pub use crate::settings::*;
}
mod error;
mod export;
/// The registry's metrics through the `metrics` facade: a [`Publisher`]
/// sets every family of the `/metrics` text, same names and labels, on the
/// installed recorder (OpenTelemetry, StatsD, ...), on demand or every few
/// seconds ([`spawn_publisher`]).
///
/// [`Publisher`]: metrics_export::Publisher
/// [`spawn_publisher`]: metrics_export::spawn_publisher
#[cfg(feature = "metrics")]
#[cfg_attr(all(docsrs, limiter_doc_cfg), doc(cfg(feature = "metrics")))]
pub mod metrics_export {
    pub use crate::export_metrics::{spawn_publisher, Publisher};
}
#[cfg(feature = "metrics")]
mod export_metrics;
#[cfg(feature = "tonic")]
mod grpc;
#[cfg(feature = "axum")]
#[cfg_attr(all(docsrs, limiter_doc_cfg), doc(cfg(feature = "axum")))]
pub mod http;
mod keys;
mod metrics;
pub mod monitor;
mod offload;
mod op;
#[cfg(feature = "tower")]
mod op_layer;
mod rate;
#[cfg(feature = "redis")]
#[cfg_attr(all(docsrs, limiter_doc_cfg), doc(cfg(feature = "redis")))]
pub mod redis;
mod registry;
mod registry_ref;
mod retry;
mod shared;
mod shed;
mod site;
pub mod stream;
mod sync;
mod timeout;

/// Durations, rates and named choices (re-exported from `limiter-spec`).
pub use limiter_spec as spec;

pub use background::{
    BackgroundSnapshot, ShutdownReport, TaskHandle, TaskInfo, TaskManager, TaskOutput, TaskSpec,
    TaskState,
};
pub use breaker::{BreakerSnapshot, BreakerState};
pub use bulkhead::BulkheadSnapshot;
pub use call::cleanup as on_timeout;
pub use call::{strategy, AnyError, Call, CallFuture, Charged, Classify, FailureFn};
pub use clock::{ClockSource, ManualClock};
pub use config::{
    Algorithm, Backend, Backoff, BreakerConfig, ConcurrencyScope, Degradation, OpConfig, OpKind,
    OverloadPolicy, ResolvedConfig, RetryConfig, Settings, SharedMode, TimeoutStrategy,
};
pub use cost::IntoCost;
pub use error::{ConfigError, LimitError, QueueScope, Quota, QuotaUnit};
pub use health::{Health, HealthReason};
pub use keys::{KeySeed, LimitKey};
pub use metrics::{CountersSnapshot, LatencySnapshot};
pub use op::{CallKey, KeyUsage, Load, Op, OpSnapshot, Permit};
#[cfg(feature = "tower")]
#[cfg_attr(all(docsrs, limiter_doc_cfg), doc(cfg(feature = "tower")))]
pub use op_layer::{
    AsError, AsResponse, CallLater, InnerErr, NoKey, OpLayer, OpService, RefusalResponse, Refused,
    RequestKey,
};
pub use rate::RateSnapshot;
pub use registry::{registry, shutdown, Registry, RegistrySnapshot};
pub use registry_ref::RegistryRef;
pub use site::OpSite;
pub use spec::Rate;

/// Dependencies the attribute macros expand to. Not a public API.
#[doc(hidden)]
pub mod __deps {
    pub use tracing;
}
