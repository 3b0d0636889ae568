//! The cleanup of a timed-out call that must run while its place is still
//! held ([`Call::on_timeout`], `#[limit_blocking(on_timeout = path)]`): a
//! server-side query cancel, say. The body registers what the hook needs
//! ([`register`], e.g. tokio-postgres's `CancelToken`); at the deadline
//! the hook is called with it and awaited on the runtime holding a share
//! of the call's bulkhead place, so the place is released only once both
//! the body and the hook are done. A cancel sent by the hook can then
//! only reach its own call's query: no other call of the op can have
//! taken the connection's place before it finished.

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use super::Call;
use crate::op::Place;

/// What a body registered for its hook, if anything.
type Slot = Arc<Mutex<Option<Box<dyn Any + Send>>>>;

/// A hook, type-erased: the registered value (downcast to what the hook
/// takes) to the future that cleans up.
type Hook = Arc<dyn Fn(Box<dyn Any + Send>) -> Option<HookFuture> + Send + Sync>;

thread_local! {
    /// The slot of the call whose body is being polled on this thread.
    static CURRENT: RefCell<Option<Slot>> = const { RefCell::new(None) };
}

/// Registers `value` for the timeout hook of the limited call whose body
/// is running (the innermost one, for nested calls): the hook set with
/// [`Call::on_timeout`] (or the attribute's `on_timeout = path`) is called
/// with it should the call time out. A later registration replaces an
/// earlier one. Returns `false` (and keeps nothing) outside the body of a
/// call with a hook, or in a plain `fn` body run on the blocking pool.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use limiter_runtime::{on_timeout, LimitError, OpConfig, Registry};
/// let reg = Registry::new();
/// reg.configure("db", OpConfig {
///     timeout: Some(std::time::Duration::from_millis(10)),
///     ..OpConfig::default()
/// }).unwrap();
/// let cancelled = Arc::new(AtomicU32::new(0));
/// let seen = Arc::clone(&cancelled);
/// let r = reg
///     .op("db")
///     .call()
///     .on_timeout(move |query_id: u32| {
///         let seen = Arc::clone(&seen);
///         async move { seen.store(query_id, Ordering::SeqCst) } // e.g. a server-side cancel
///     })
///     .run(|| async {
///         on_timeout::register(42u32); // e.g. client.cancel_token()
///         tokio::time::sleep(std::time::Duration::from_secs(1)).await;
///         Ok::<_, LimitError>(())
///     })
///     .await;
/// assert!(matches!(r, Err(LimitError::Timeout { .. })));
/// tokio::task::yield_now().await; // the hook runs on the runtime
/// assert_eq!(cancelled.load(Ordering::SeqCst), 42);
/// # }
/// ```
pub fn register<T: Send + 'static>(value: T) -> bool {
    CURRENT.with(|current| match &*current.borrow() {
        Some(slot) => {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(value));
            true
        }
        None => false,
    })
}

/// A call's timeout hook and what its body registered.
#[derive(Clone)]
pub(crate) struct Cleanup {
    slot: Slot,
    hook: Hook,
}

impl std::fmt::Debug for Cleanup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cleanup").finish_non_exhaustive()
    }
}

impl Cleanup {
    fn new<T, H, Fut>(hook: H) -> Self
    where
        T: Send + 'static,
        H: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let hook: Hook = Arc::new(
            move |value: Box<dyn Any + Send>| match value.downcast::<T>() {
                Ok(value) => Some(Box::pin(hook(*value)) as HookFuture),
                Err(_) => {
                    tracing::error!(
                        expected = std::any::type_name::<T>(),
                        "the body registered a value of another type than its timeout hook takes; the hook is not called"
                    );
                    None
                }
            },
        );
        Self {
            slot: Arc::default(),
            hook,
        }
    }

    /// Makes this call's slot the one [`register`] fills while the
    /// returned guard lives (around one poll of the body).
    #[inline]
    pub(crate) fn enter(&self) -> Scope {
        let previous = CURRENT.with(|c| c.replace(Some(Arc::clone(&self.slot))));
        Scope { previous }
    }

    /// Forgets what an attempt registered (a new attempt starts, or the
    /// body ended without timing out).
    pub(crate) fn clear(&self) {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// The call timed out: the hook's future, called with what the body
    /// registered (nothing registered, nothing to run).
    pub(crate) fn hook(&self) -> Option<HookFuture> {
        let value = self.slot.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        (self.hook)(value)
    }
}

/// A timeout hook's cleanup, ready to run.
pub(crate) type HookFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs `hook` on the runtime holding `place` (a share of the timed-out
/// call's place), which goes once the hook is done.
pub(crate) fn run_holding(op: &str, hook: HookFuture, place: Place) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(async move {
                hook.await;
                drop(place);
            });
        }
        Err(_) => tracing::warn!(op, "no tokio runtime to run the timeout hook on; not run"),
    }
}

/// Restores the enclosing call's slot when a body's poll ends.
pub(crate) struct Scope {
    previous: Option<Slot>,
}

impl Drop for Scope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

impl<'a, S, C> Call<'a, S, C> {
    /// Runs `hook` when this call times out, with what its body registered
    /// through [`register`] (nothing registered: not run), while the
    /// call's bulkhead place is still held: the place is released only
    /// once the body is gone and the hook has finished. It runs on the
    /// runtime, off the caller's path (answered at the deadline), at each
    /// timed-out attempt. The attribute's `on_timeout = path` calls this.
    ///
    /// With [`drain`](Self::drain) the hook runs first and the body is
    /// polled again only once it has finished (and 50 ms more, for a
    /// cancel that reaches the server after the hook returned): a body
    /// holding a pooled database connection keeps it until then, so a
    /// server-side cancel sent by the hook reaches its own query (never a
    /// query another call started on the same connection after it went
    /// back to the pool) — always when the hook returns once the cancel is
    /// done (PostgreSQL's `pg_cancel_backend`), and but for a rare late
    /// one otherwise (tokio-postgres's `CancelToken` confirms nothing). Under `cancel` (and `cache_fallback`) the body, and the
    /// connection it holds, is dropped at the deadline while the hook runs
    /// holding the place: pick `drain` for server-side cancels. Under
    /// `background` the hook runs beside the body, which goes on (a hook
    /// that cancels it ends the task too). See [`register`] for an
    /// example.
    pub fn on_timeout<T, H, Fut>(mut self, hook: H) -> Self
    where
        T: Send + 'static,
        H: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.cleanup = Some(Cleanup::new(hook));
        self
    }
}
