//! `limiter` keeps async Rust services fast under load by limiting and
//! watching their blocking and slow operations: rate limiters, circuit
//! breakers, bulkheads with queues, timeouts, retries, offloading of
//! blocking work, background tasks and metrics, all in one registry of named
//! operations.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use limiter::{registry, LimitError, OpConfig, OpKind};
//!
//! registry().configure("db", OpConfig {
//!     kind: Some(OpKind::Database),
//!     timeout: Some(Duration::from_secs(2)),
//!     ..OpConfig::default()
//! })?;
//! let user = String::from("alice");
//! let rows = registry()
//!     .op("db")
//!     .run(Some(&user), || async { Ok::<_, LimitError>(vec![1, 2, 3]) })
//!     .await?;
//! assert_eq!(rows.len(), 3);
//! # Ok(()) }
//! ```
//!
//! See the runtime crate, [`limiter_runtime`], for every mechanism.

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub use limiter_macros::{background_task, limit_blocking, optimize_route};
pub use limiter_runtime::*;

mod private;

// `pub mod __private_<version> { pub use crate::private::*; }`, written by
// `build.rs` with this crate's version (as thiserror does): the macros of
// the same version name it, so a `limiter-macros` of another version fails
// to resolve it at once instead of expanding against changed internals.
include!(concat!(env!("OUT_DIR"), "/private.rs"));

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
