//! Running blocking work off the async executor: tokio's blocking pool for
//! I/O kinds, a separate bounded rayon pool for CPU-bound kinds, each behind
//! a semaphore so that a burst of blocking calls cannot spawn without bound.
//!
//! Blocking work cannot be aborted once it runs. When its caller gives up (a
//! timeout, or the caller dropped the future), the work is *abandoned*: it is
//! counted in the op's `orphans` and `orphans_running` metrics until it ends,
//! and its result is dropped.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use once_cell::sync::OnceCell;
use tokio::sync::{oneshot, Semaphore};

use crate::metrics::OpMetrics;

const RUNNING: u8 = 0;
const DONE: u8 = 1;
const ABANDONED: u8 = 2;

/// The two offload pools.
pub(crate) struct Offload {
    io_slots: Arc<Semaphore>,
    cpu_slots: Arc<Semaphore>,
    cpu_threads: usize,
    cpu_pool: OnceCell<rayon::ThreadPool>,
}

/// The outcome of offloaded work: its value, or the payload of its panic.
pub(crate) type Offloaded<T> = Result<T, Box<dyn Any + Send + 'static>>;

impl Offload {
    /// `io_threads` blocking calls at once on tokio's blocking pool;
    /// `cpu_threads` threads for CPU-bound work.
    pub(crate) fn new(io_threads: usize, cpu_threads: usize) -> Self {
        Self {
            io_slots: Arc::new(Semaphore::new(io_threads.max(1))),
            cpu_slots: Arc::new(Semaphore::new(cpu_threads.max(1))),
            cpu_threads: cpu_threads.max(1),
            cpu_pool: OnceCell::new(),
        }
    }

    fn cpu_pool(&self) -> Result<&rayon::ThreadPool, rayon::ThreadPoolBuildError> {
        self.cpu_pool.get_or_try_init(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(self.cpu_threads)
                .thread_name(|i| format!("limiter-cpu-{i}"))
                .build()
        })
    }

    /// Runs `f` on the pool for its kind and waits for it. Dropping the
    /// returned future while `f` runs abandons `f` (see the module docs).
    pub(crate) async fn run<T, F>(
        self: Arc<Self>,
        cpu: bool,
        metrics: Arc<OpMetrics>,
        f: F,
    ) -> Offloaded<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let slots = if cpu { &self.cpu_slots } else { &self.io_slots };
        let permit = Arc::clone(slots)
            .acquire_owned()
            .await
            .expect("offload semaphores are never closed");
        let status = Arc::new(AtomicU8::new(RUNNING));
        let (tx, rx) = oneshot::channel();
        let job = {
            let ended = JobEnd {
                status: Arc::clone(&status),
                metrics: Arc::clone(&metrics),
            };
            move || {
                let out = catch_unwind(AssertUnwindSafe(f));
                drop(permit);
                drop(ended);
                let _ = tx.send(out);
            }
        };
        let mut guard = AbandonGuard {
            status,
            metrics,
            armed: true,
        };
        if cpu {
            match self.cpu_pool() {
                Ok(pool) => pool.spawn(job),
                Err(e) => {
                    tracing::error!(error = %e, "CPU pool could not start; running on the blocking pool");
                    tokio::task::spawn_blocking(job);
                }
            }
        } else {
            tokio::task::spawn_blocking(job);
        }
        let out = rx.await;
        guard.armed = false;
        out.unwrap_or_else(|_| {
            Err(Box::new(
                "offloaded work was dropped by its pool (runtime shutting down)",
            ))
        })
    }
}

/// Marks the work ended when the job finishes, or when its pool drops it
/// without running it (runtime teardown), so an orphan is never counted as
/// running forever.
struct JobEnd {
    status: Arc<AtomicU8>,
    metrics: Arc<OpMetrics>,
}

impl Drop for JobEnd {
    fn drop(&mut self) {
        if self
            .status
            .compare_exchange(RUNNING, DONE, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            let running = &self.metrics.counters.orphans_running;
            running.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Counts the work as an orphan if its caller stops waiting while it runs.
struct AbandonGuard {
    status: Arc<AtomicU8>,
    metrics: Arc<OpMetrics>,
    armed: bool,
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let c = &self.metrics.counters;
        // Count it running first, so the job's decrement can never come first.
        c.orphans_running.fetch_add(1, Ordering::AcqRel);
        if self
            .status
            .compare_exchange(RUNNING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            c.orphans.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("blocking work abandoned while running: it cannot be aborted and goes on as an orphan");
        } else {
            c.orphans_running.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
