//! Running blocking work off the async executor: tokio's blocking pool for
//! I/O kinds, a separate bounded rayon pool for CPU-bound kinds, each behind
//! a semaphore so that a burst of blocking calls cannot spawn without bound.
//!
//! Blocking work cannot be aborted once it runs. When its caller gives up (a
//! timeout, or the caller dropped the future), the work is *abandoned*: it is
//! counted in the op's `orphans` and `orphans_running` metrics until it ends,
//! and its result is dropped. Whatever its caller hands to its [`Handoff`]
//! (the call's bulkhead place) is kept until then, so the bound on an op's
//! running calls counts the real work, not the callers still waiting.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

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
    cpu_pool: OnceLock<rayon::ThreadPool>,
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
            cpu_pool: OnceLock::new(),
        }
    }

    fn cpu_pool(&self) -> Result<&rayon::ThreadPool, rayon::ThreadPoolBuildError> {
        if let Some(pool) = self.cpu_pool.get() {
            return Ok(pool);
        }
        // `OnceLock::get_or_try_init` is unstable: build, then offer. Of two
        // first calls at once, the loser's pool is dropped (its threads end).
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.cpu_threads)
            .thread_name(|i| format!("limiter-cpu-{i}"))
            .build()?;
        Ok(self.cpu_pool.get_or_init(|| pool))
    }

    /// Runs `f` on the pool for its kind and waits for it. Dropping the
    /// returned future while `f` runs abandons `f` (see the module docs);
    /// what was given to `handoff` is dropped when `f` has ended.
    pub(crate) async fn run<T, F>(
        self: Arc<Self>,
        cpu: bool,
        metrics: Arc<OpMetrics>,
        handoff: Arc<Handoff>,
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
        handoff.start();
        let job = {
            let ended = JobEnd {
                status: Arc::clone(&status),
                metrics: Arc::clone(&metrics),
                handoff,
            };
            move || {
                let out = catch_unwind(AssertUnwindSafe(f));
                drop(permit);
                // An abandoned result is dropped here, before what was
                // handed over (the place) goes back.
                let _ = tx.send(out);
                drop(ended);
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

/// What a caller that stops waiting for offloaded work leaves with it, to
/// be dropped when the work has ended (see [`Handoff::keep`]).
#[derive(Default)]
pub(crate) struct Handoff(Mutex<HandoffState>);

#[derive(Default)]
struct HandoffState {
    /// The job was given to its pool.
    started: bool,
    /// The job has ended (or its pool dropped it).
    ended: bool,
    kept: Option<Box<dyn Any + Send>>,
}

impl Handoff {
    fn lock(&self) -> std::sync::MutexGuard<'_, HandoffState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `value` until the work ends, when it is running; gives it
    /// back when the work never started or has already ended (the caller
    /// then drops it itself).
    pub(crate) fn keep<V: Send + 'static>(&self, value: V) -> Option<V> {
        let mut st = self.lock();
        if st.started && !st.ended {
            st.kept = Some(Box::new(value));
            None
        } else {
            Some(value)
        }
    }

    /// The job is given to its pool: from now on what is handed over waits
    /// for its end.
    fn start(&self) {
        self.lock().started = true;
    }

    /// The work has ended: what was kept is dropped (outside the lock).
    fn end(&self) {
        let kept = {
            let mut st = self.lock();
            st.ended = true;
            st.kept.take()
        };
        drop(kept);
    }
}

/// Marks the work ended when the job finishes, or when its pool drops it
/// without running it (runtime teardown), so an orphan is never counted as
/// running forever and what it was handed is given back.
struct JobEnd {
    status: Arc<AtomicU8>,
    metrics: Arc<OpMetrics>,
    handoff: Arc<Handoff>,
}

impl Drop for JobEnd {
    fn drop(&mut self) {
        self.handoff.end();
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
