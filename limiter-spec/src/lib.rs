//! The textual forms shared by `limiter`'s attributes (checked at compile
//! time), its environment variables and its `limiter.toml`: durations, rates
//! and the named choices (kinds, algorithms, overload policies, backoffs,
//! strategies). One parser for all three, so a value the attribute accepts
//! is accepted by the file and the environment, with the same message when
//! it is not.
//!
//! This crate has no dependencies (serde only behind the `serde` feature),
//! so the proc-macro crate can use it without pulling in the runtime.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod duration_rate;
mod names;
mod suggest;

pub use duration_rate::{
    parse_duration, parse_rate, parse_rates, parse_seconds, DisplayDuration, Rate, SpecError,
};
pub use names::{
    Algorithm, Backend, Backoff, ConcurrencyScope, Degradation, OpKind, OverloadPolicy, SharedMode,
    TimeoutStrategy,
};
pub use suggest::closest;
