//! The ops and the body the per-call benchmarks measure, shared by
//! `overhead.rs` (criterion, wall time) and `instructions.rs` (callgrind),
//! so both count exactly the same cases.
//!
//! Included from a bench as `#[path = "cases/mod.rs"] mod cases;`.
#![allow(dead_code)]

use std::hint::black_box;
use std::time::Duration;

use limiter::{BreakerConfig, LimitError, OpConfig};

/// Keys of the keyed cases.
pub const KEYS: u64 = 100_000;

/// The op of `limiter_stack`: rate + breaker + bulkhead + metrics, and a
/// timeout if given; limits high enough that no call is ever refused.
pub fn stack(timeout: Option<Duration>) -> OpConfig {
    OpConfig {
        timeout,
        max_concurrent: Some(1024),
        breaker: BreakerConfig {
            enabled: Some(true),
            ..BreakerConfig::default()
        },
        ..OpConfig::default()
    }
    .with_rate("1000000000/s")
    .expect("valid rate")
}

/// The per-key op of the keyed cases: only the per-key rate, over room
/// for every key.
pub fn keyed() -> OpConfig {
    OpConfig {
        max_keys: Some(2 * KEYS as usize),
        // Only the per-key rate: no per-key concurrency bound.
        max_concurrent_per_key: Some(u32::MAX),
        ..OpConfig::default()
    }
    .with_rate_per_key("1000000000/s")
    .expect("valid rate")
}

/// The protected body: returns its argument.
pub async fn work(x: u64) -> Result<u64, LimitError> {
    Ok(black_box(x))
}
