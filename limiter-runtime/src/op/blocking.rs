//! Limits for plain threads (rayon, `std::thread`): the same breaker, rate
//! and bulkhead as async calls, taken by blocking the calling thread.
//!
//! Admission is polled once on the caller's thread (the usual case, a free
//! place, costs no thread hop); when it has to wait (a queue place, a
//! Redis round trip), the wait is finished by a small runtime of the
//! limiter's own on one thread (`limiter-sync`), whose timers bound it by
//! the op's `queue_timeout`, while the caller blocks on a channel. So it
//! works outside any tokio runtime. Inside one it blocks that worker
//! thread for the wait: async code should use [`Op::acquire`].

use std::future::Future;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::runtime::Handle;

use crate::error::LimitError;
use crate::keys::LimitKey;
use crate::metrics::CallOutcome;

use super::{Op, Permit};

/// The handle of the runtime that finishes waits for blocked threads
/// (`None` if it could not be started: no thread, no timer).
pub(super) fn driver() -> Option<&'static Handle> {
    static DRIVER: OnceLock<Option<Handle>> = OnceLock::new();
    DRIVER
        .get_or_init(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .ok()?;
            let handle = rt.handle().clone();
            std::thread::Builder::new()
                .name("limiter-sync".into())
                .spawn(move || rt.block_on(std::future::pending::<()>()))
                .ok()?;
            Some(handle)
        })
        .as_ref()
}

/// Runs `fut` to its end, blocking this thread: one poll here, the rest
/// (if it waits) on the driver. `None` when the driver could not start.
fn block_on<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> Option<T> {
    let handle = driver()?;
    let mut fut = Box::pin(fut);
    {
        // Timers made by this poll belong to the driver, which goes on.
        let _ctx = handle.enter();
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        // The caller blocks in `recv` until this is sent.
        let _ = tx.send(fut.await);
    });
    rx.recv().ok()
}

impl Op {
    /// Waits for a place under every limit of this op, blocking the calling
    /// thread, and returns it as a guard: for plain threads (rayon,
    /// `std::thread`), inside or outside a tokio runtime. The queue wait is
    /// bounded by the op's `queue_timeout` as for [`Op::acquire`].
    ///
    /// ```
    /// use limiter_runtime::{OpConfig, Registry};
    /// let reg = Registry::new();
    /// reg.configure("render", OpConfig { max_concurrent: Some(2), ..OpConfig::default() }).unwrap();
    /// let op = reg.op("render");
    /// std::thread::scope(|s| {
    ///     for _ in 0..4 {
    ///         s.spawn(|| {
    ///             let _place = op.acquire_blocking(None).unwrap();
    ///             // at most two threads here at once
    ///         });
    ///     }
    /// });
    /// ```
    pub fn acquire_blocking(&self, key: Option<&dyn LimitKey>) -> Result<Permit, LimitError> {
        let fut = self.call().key_opt(key).acquire_owned();
        block_on(fut).unwrap_or_else(|| {
            tracing::error!(
                op = self.name(),
                "the limiter's sync driver could not start"
            );
            Err(LimitError::Overloaded {
                op: self.core.name.clone(),
                retry_after: Duration::from_secs(1),
            })
        })
    }

    /// Runs the synchronous `f` on this thread under every limit of this
    /// op ([`acquire_blocking`](Self::acquire_blocking), then `f`). An `Err`
    /// of `f` counts as a failure and a panic as a panic (the place is
    /// released either way). `f` cannot be interrupted: if it runs past the
    /// op's timeout, its result is discarded, the call counts as a timeout
    /// and the caller gets `Timeout`, as an async caller would have at the
    /// deadline.
    ///
    /// ```
    /// use limiter_runtime::{LimitError, Registry};
    /// let reg = Registry::new();
    /// let user = 42u64;
    /// let rows = reg.op("db").run_sync(Some(&user), || Ok::<_, LimitError>(3))?;
    /// assert_eq!(rows, 3);
    /// # Ok::<(), LimitError>(())
    /// ```
    pub fn run_sync<T, E, F>(&self, key: Option<&dyn LimitKey>, f: F) -> Result<T, E>
    where
        F: FnOnce() -> Result<T, E>,
        E: From<LimitError>,
    {
        let mut permit = self.acquire_blocking(key)?;
        let out = f();
        if permit.overran() {
            permit.set_outcome(CallOutcome::Timeout);
            drop(permit);
            return Err(E::from(LimitError::Timeout {
                op: self.core.name.clone(),
            }));
        }
        if out.is_err() {
            permit.mark_failed();
        }
        out
    }
}
