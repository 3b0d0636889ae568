//! The synchronisation primitives of the runtime's lock-free structures:
//! std's, or loom's models when the crate is built with `--cfg limiter_loom`.
//!
//! The GCRA and fixed-window cells, the bulkhead's gate and hand-over
//! mutex, the breaker, the key table and the background tasks' admission
//! word and records take their atomics and mutexes from here, so the loom
//! tests (`RUSTFLAGS="--cfg limiter_loom" cargo test --release -p limiter-runtime
//! loom`) explore every interleaving of their operations. `Arc` stays std's
//! everywhere: the key table hands its `Arc`s to the rest of the runtime,
//! and the reference count is std's own, already checked; what the models
//! check is the table's use of it under its (modelled) lock.
//!
//! Under `--cfg limiter_loom` these types work only inside `loom::model`, so that
//! build runs the loom tests and nothing else.

#[cfg(limiter_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(limiter_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

#[cfg(not(limiter_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(limiter_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};
