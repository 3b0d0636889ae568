//! Behaviour of the runtime through the facade's plain Rust API. Time-based
//! tests run on tokio's paused clock.

mod adaptive;
mod background;
mod blocking;
mod breaker;
mod bulkhead;
mod coalesce;
mod config;
mod cost;
mod drop_order;
mod keys;
mod metrics;
mod op_layer;
mod rate;
mod regressions;
mod release;
mod retries;
mod strategies;
#[cfg(feature = "tracing-spans")]
mod trace;

use std::time::Duration;

use limiter::{LimitError, Op, OpConfig, Permit, Registry};

/// Lets spawned tasks run until they block.
pub async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// A registry with one op configured by `cfg`.
pub fn op_with(name: &str, cfg: OpConfig) -> (Registry, Op) {
    let reg = Registry::new();
    reg.configure(name, cfg).expect("valid test config");
    let op = reg.op(name);
    (reg, op)
}

/// Takes a place without a key, panicking on refusal.
pub async fn take(op: &Op) -> Permit {
    op.acquire(None).await.expect("admitted")
}

/// Counts how many of `n` immediate acquisitions are admitted.
pub async fn admitted_now(op: &Op, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        match op.acquire(None).await {
            Ok(_) => ok += 1,
            Err(LimitError::RateLimited { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    ok
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
