//! Making a limited call: the [`Call`] builder, the timeout strategies and
//! the attempt/retry loop they share.
//!
//! One call goes: breaker → rate → bulkhead (queue) → timeout → body →
//! record (latency, outcome, slow polls) → breaker outcome, and again after
//! a backoff when retries are configured. Places are released on every
//! path: success, error, timeout, panic, and the caller dropping the future.

mod attempts;
pub mod cleanup;
mod cost;
mod future;
mod on_timeout;
mod trace;

use std::fmt::Debug;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::error::LimitError;
use crate::keys::LimitKey;
use crate::metrics::OpMetrics;
use crate::offload::Handoff;
pub use crate::op::Place;
use crate::op::{Op, OpCore, Permit};
pub use crate::timeout::strategy;

pub use attempts::{
    Attempts, Blocking, BlockingBody, BlockingOnce, Detachable, Detached, Jobs, Offloaded, Once,
    Repeat,
};
pub use cost::Charged;
pub use future::{AnyError, CallFuture, Classify, FailureFn};
pub use on_timeout::{Keep, Strategy};

use crate::timeout::strategy::{Background, CacheFallback, Cancel, Detaching, Drain};

/// A call being set up on an [`Op`]: key, priority and timeout strategy.
///
/// The strategy is part of the type because it changes what the call's
/// future must be: to go on in the background it must be `Send + 'static`,
/// to be answered from the cache its value must be `Clone`. The compiler
/// checks those where the call is made.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), limiter_runtime::LimitError> {
/// use limiter_runtime::{LimitError, OpConfig, Registry};
/// let reg = Registry::new();
/// reg.configure("report", OpConfig {
///     timeout: Some(std::time::Duration::from_secs(1)),
///     ..OpConfig::default()
/// }).unwrap();
/// let tenant = "acme";
/// let n = reg
///     .op("report")
///     .call()
///     .key(&tenant)
///     .priority(5)
///     .background()
///     .run(|| async { Ok::<u32, LimitError>(3) })
///     .await?;
/// assert_eq!(n, 3);
/// # Ok(()) }
/// ```
#[must_use = "a call does nothing until `run`, `run_blocking` or `acquire`"]
pub struct Call<'a, S = Cancel, C = AnyError> {
    op: &'a Op,
    /// The key's hash: taken at once, so the call's future holds no
    /// reference to the key.
    key: Option<u64>,
    /// The key's name in Redis, for ops keeping per-key rates there.
    shared_key: Option<u64>,
    priority: i64,
    /// What the call takes from the rate limits (see [`Call::cost`]).
    cost: u32,
    /// What runs when it times out (see [`Call::on_timeout`]).
    cleanup: Option<cleanup::Cleanup>,
    strategy: PhantomData<S>,
    /// Which errors of the body count as failures for the breaker.
    classify: C,
}

impl<S, C> std::fmt::Debug for Call<'_, S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("op", &self.op.name())
            .field("keyed", &self.key.is_some())
            .field("priority", &self.priority)
            .field("cost", &self.cost)
            .field("strategy", &std::any::type_name::<S>())
            .finish_non_exhaustive()
    }
}

impl<'a> Call<'a, Cancel> {
    pub(crate) fn new(op: &'a Op) -> Self {
        Self {
            op,
            key: None,
            shared_key: None,
            priority: 0,
            cost: 1,
            cleanup: None,
            strategy: PhantomData,
            classify: AnyError,
        }
    }
}

impl<'a, S, C> Call<'a, S, C> {
    /// The same call with strategy `S2` and its classifier mapped.
    fn rebuild<S2, C2>(self, classify: impl FnOnce(C) -> C2) -> Call<'a, S2, C2> {
        Call {
            op: self.op,
            key: self.key,
            shared_key: self.shared_key,
            priority: self.priority,
            cost: self.cost,
            cleanup: self.cleanup,
            strategy: PhantomData,
            classify: classify(self.classify),
        }
    }

    fn with<S2>(self) -> Call<'a, S2, C> {
        self.rebuild(|c| c)
    }

    /// Counts only the errors `failure` says are failures against the
    /// op's breaker (by default every `Err` is one). An error it excuses
    /// (a client's mistake such as "not found") still answers the caller
    /// and is counted in the op's `failed`, but neither opens the breaker
    /// nor lowers an adaptive limit. Timeouts and panics are failures
    /// whatever it says. The attributes' `breaker(failure = path)` calls
    /// this.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use limiter_runtime::{LimitError, Registry};
    /// #[derive(Debug)]
    /// enum DbError { NotFound, Down }
    /// impl From<LimitError> for DbError {
    ///     fn from(_: LimitError) -> Self { DbError::Down }
    /// }
    /// fn is_failure(e: &DbError) -> bool {
    ///     matches!(e, DbError::Down)
    /// }
    /// let reg = Registry::new();
    /// let r = reg
    ///     .op("db")
    ///     .call()
    ///     .failure(is_failure)
    ///     .run(|| async { Err::<u32, _>(DbError::NotFound) })
    ///     .await;
    /// assert!(matches!(r, Err(DbError::NotFound)));
    /// # }
    /// ```
    pub fn failure<E>(self, failure: fn(&E) -> bool) -> Call<'a, S, FailureFn<E>> {
        self.rebuild(|_| FailureFn::new(failure))
    }

    /// Applies per-key limits to `key` (any `Hash` value: user id, tenant…).
    pub fn key<K: LimitKey + ?Sized>(mut self, key: &K) -> Self {
        self.key = Some(self.op.core.shared.hasher.hash(&KeyRef(key)));
        self.shared_key = self.op.core.shared_key_name(&KeyRef(key));
        self
    }

    /// Applies per-key limits to `key` when it is `Some`.
    pub fn key_opt(mut self, key: Option<&dyn LimitKey>) -> Self {
        self.key = key.map(|k| self.op.core.shared.hasher.hash(k));
        self.shared_key = key.and_then(|k| self.op.core.shared_key_name(k));
        self
    }

    /// Orders this call among waiters: higher goes first (default 0).
    pub fn priority(mut self, priority: i64) -> Self {
        self.priority = priority;
        self
    }

    /// On timeout, keep running as a tracked background task.
    pub fn background(self) -> Call<'a, Background, C> {
        self.with()
    }

    /// On timeout, answer `Timeout` but let the body finish holding its
    /// place, for at most the op's `drain_timeout` (see
    /// [`strategy::Drain`]).
    pub fn drain(self) -> Call<'a, Drain, C> {
        self.with()
    }

    /// On timeout, answer with the last good value for the same key.
    pub fn cache_fallback(self) -> Call<'a, CacheFallback, C> {
        self.with()
    }

    /// On timeout, cancel (the default).
    pub fn cancel_on_timeout(self) -> Call<'a, Cancel, C> {
        self.with()
    }

    /// Waits for a place under every limit and returns it as a guard.
    pub async fn acquire(self) -> Result<Permit, LimitError> {
        // Not through `permit()`: one more future level costs every
        // acquire ~110 instructions (callgrind).
        let core = &self.op.core;
        let admitted = core
            .admit(
                Arc::clone(&core.bulkhead),
                self.key,
                self.shared_key,
                self.priority,
                self.cost,
            )
            .await?;
        Ok(Permit::new(Arc::clone(core), admitted))
    }

    /// [`acquire`](Self::acquire) as a future that owns what it needs
    /// (`'static`), so it can be finished on another thread.
    pub(crate) fn acquire_owned(
        self,
    ) -> impl Future<Output = Result<Permit, LimitError>> + Send + 'static {
        let core = Arc::clone(&self.op.core);
        let (key, shared_key) = (self.key, self.shared_key);
        let (priority, cost) = (self.priority, self.cost);
        async move { permit(&core, (key, shared_key), priority, cost).await }
    }

    /// The future of this call running the bodies `attempts` makes.
    fn future<M: Attempts, S2>(self, attempts: M, strategy: S2) -> CallFuture<'a, M, S2, C> {
        CallFuture::new(
            self.op,
            (self.key, self.shared_key),
            (self.priority, self.cost),
            attempts,
            strategy,
            self.classify,
        )
        .with_cleanup(self.cleanup)
    }

    /// Where this op's blocking work runs.
    fn offloader(&self) -> Offloader {
        let core = &self.op.core;
        Offloader {
            offload: Arc::clone(&core.shared.offload),
            metrics: Arc::clone(&core.metrics),
            cpu: core.policy().cfg.kind.is_some_and(|k| k.is_cpu_bound()),
        }
    }

    /// Bodies running `f` on the offload pool of the op's kind, one per
    /// attempt.
    fn blocking<F>(&self, f: F) -> Blocking<F> {
        Offloaded(Jobs {
            f: Arc::new(f),
            offloader: self.offloader(),
        })
    }

    /// One body running `f` on the offload pool of the op's kind.
    fn blocking_once<T, E, F>(&self, f: F) -> BlockingOnce<T, E>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        Offloaded(Once(Some(self.offloader().start(f))))
    }
}

/// A place under every limit of `core`, as a guard.
async fn permit(
    core: &Arc<OpCore>,
    (key, shared_key): (Option<u64>, Option<u64>),
    priority: i64,
    cost: u32,
) -> Result<Permit, LimitError> {
    let admitted = core
        .admit(Arc::clone(&core.bulkhead), key, shared_key, priority, cost)
        .await?;
    Ok(Permit::new(Arc::clone(core), admitted))
}

/// The offload pool of one op.
pub(crate) struct Offloader {
    offload: Arc<crate::offload::Offload>,
    metrics: Arc<OpMetrics>,
    cpu: bool,
}

impl Offloader {
    /// A body running `f` on the pool; a panic in `f` is resumed in the
    /// caller.
    pub(crate) fn start<T, E, F>(&self, f: F) -> BlockingBody<T, E>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        OpMetrics::inc(&self.metrics.counters.offloaded);
        let handoff = Arc::new(Handoff::default());
        let run = Arc::clone(&self.offload).run(
            self.cpu,
            Arc::clone(&self.metrics),
            Arc::clone(&handoff),
            f,
        );
        BlockingBody {
            fut: Box::pin(run),
            handoff,
            ended: false,
        }
    }
}

/// Lets an unsized key (`str`, `[u8]`) be hashed through `&dyn LimitKey`.
struct KeyRef<'k, K: ?Sized>(&'k K);

impl<K: LimitKey + ?Sized> LimitKey for KeyRef<'_, K> {
    fn hash_key(&self, state: &mut dyn std::hash::Hasher) {
        self.0.hash_key(state);
    }

    fn key_hash(&self, seed: &crate::keys::KeySeed) -> u64 {
        self.0.key_hash(seed)
    }
}

impl<'a, C> Call<'a, Cancel, C> {
    /// Runs `f` under every limit of the op; on timeout the future is dropped
    /// and the call fails with `Timeout`. `f` is called again for each retry.
    ///
    /// The body's `Err` counts as a failure for the breaker and is retried
    /// when retries are on; limit errors are converted with `E::from`.
    pub fn run<T, E, F, Fut>(self, f: F) -> CallFuture<'a, Repeat<F>, Cancel, C>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<LimitError>,
    {
        self.future(Repeat(f), Cancel)
    }

    /// Runs the blocking `f` on the op kind's offload pool (the CPU pool for
    /// `cpu_intensive` and `memory`, tokio's blocking pool otherwise). On
    /// timeout the call fails with `Timeout` at the deadline; `f` cannot be
    /// aborted and goes on as an orphan (counted in the op's metrics),
    /// keeping its bulkhead place until it ends.
    pub fn run_blocking<T, E, F>(self, f: F) -> CallFuture<'a, Blocking<F>, Cancel, C>
    where
        F: Fn() -> Result<T, E> + Send + Sync + 'static,
        T: Send + 'static,
        E: From<LimitError> + Send + 'static,
    {
        let attempts = self.blocking(f);
        self.future(attempts, Cancel)
    }

    /// Runs the future `fut` once under every limit of the op (no retry:
    /// a future cannot be made again); on timeout it is dropped.
    pub fn run_once<T, E, Fut>(self, fut: Fut) -> CallFuture<'a, Once<Fut>, Cancel, C>
    where
        Fut: Future<Output = Result<T, E>>,
        E: From<LimitError>,
    {
        self.future(Once(Some(fut)), Cancel)
    }

    /// Runs the blocking `f` once on the op kind's offload pool (no retry);
    /// on timeout it goes on as a counted orphan, keeping its place.
    pub fn run_blocking_once<T, E, F>(self, f: F) -> CallFuture<'a, BlockingOnce<T, E>, Cancel, C>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<LimitError> + Send + 'static,
    {
        let attempts = self.blocking_once(f);
        self.future(attempts, Cancel)
    }
}

/// The bodies of [`Call::background`] and [`Call::drain`] calls go on
/// after the deadline: they must be `Send + 'static`.
impl<'a, S: Detaching, C> Call<'a, S, C> {
    /// Like [`Call::run`], but on timeout the future goes on: as a tracked
    /// background task (`MovedToBackground { task_id }`), or drained
    /// (`Timeout`), holding its bulkhead place until it ends.
    pub fn run<T, E, F, Fut>(self, f: F) -> CallFuture<'a, Detached<Repeat<F>>, S, C>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<LimitError> + Debug + Send + 'static,
    {
        self.future(Detached(Repeat(f)), S::default())
    }

    /// Like [`Call::run_blocking`], but on timeout the work is tracked as a
    /// background task instead of being abandoned.
    pub fn run_blocking<T, E, F>(self, f: F) -> CallFuture<'a, Detached<Blocking<F>>, S, C>
    where
        F: Fn() -> Result<T, E> + Send + Sync + 'static,
        T: Send + 'static,
        E: From<LimitError> + Debug + Send + 'static,
    {
        let attempts = self.blocking(f);
        self.future(Detached(attempts), S::default())
    }

    /// Like [`Call::run_once`], but on timeout the future goes on as a
    /// tracked background task.
    pub fn run_once<T, E, Fut>(self, fut: Fut) -> CallFuture<'a, Detached<Once<Fut>>, S, C>
    where
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<LimitError> + Debug + Send + 'static,
    {
        self.future(Detached(Once(Some(fut))), S::default())
    }

    /// Like [`Call::run_blocking_once`], but on timeout the work is tracked
    /// as a background task.
    pub fn run_blocking_once<T, E, F>(
        self,
        f: F,
    ) -> CallFuture<'a, Detached<BlockingOnce<T, E>>, S, C>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<LimitError> + Debug + Send + 'static,
    {
        let attempts = self.blocking_once(f);
        self.future(Detached(attempts), S::default())
    }
}

impl<'a, C> Call<'a, CacheFallback, C> {
    /// Like [`Call::run`], but each success is remembered per key, and on
    /// timeout the last good value for the same key is returned (if there
    /// is none, the call fails with `Timeout`).
    pub fn run<T, E, F, Fut>(self, f: F) -> CallFuture<'a, Repeat<F>, CacheFallback, C>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: Clone + Send + Sync + 'static,
        E: From<LimitError>,
    {
        self.future(Repeat(f), CacheFallback)
    }

    /// Like [`Call::run_blocking`], with the cache fallback on timeout.
    pub fn run_blocking<T, E, F>(self, f: F) -> CallFuture<'a, Blocking<F>, CacheFallback, C>
    where
        F: Fn() -> Result<T, E> + Send + Sync + 'static,
        T: Clone + Send + Sync + 'static,
        E: From<LimitError> + Send + 'static,
    {
        let attempts = self.blocking(f);
        self.future(attempts, CacheFallback)
    }

    /// Like [`Call::run_once`], with the cache fallback on timeout.
    pub fn run_once<T, E, Fut>(self, fut: Fut) -> CallFuture<'a, Once<Fut>, CacheFallback, C>
    where
        Fut: Future<Output = Result<T, E>>,
        T: Clone + Send + Sync + 'static,
        E: From<LimitError>,
    {
        self.future(Once(Some(fut)), CacheFallback)
    }

    /// Like [`Call::run_blocking_once`], with the cache fallback on timeout.
    pub fn run_blocking_once<T, E, F>(
        self,
        f: F,
    ) -> CallFuture<'a, BlockingOnce<T, E>, CacheFallback, C>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Clone + Send + Sync + 'static,
        E: From<LimitError> + Send + 'static,
    {
        let attempts = self.blocking_once(f);
        self.future(attempts, CacheFallback)
    }
}

impl Op {
    /// Starts building a call: key, priority, timeout strategy.
    pub fn call(&self) -> Call<'_> {
        Call::new(self)
    }

    /// Runs `f` under every limit of this op, cancelling it on timeout.
    /// Shorthand for `self.call().key_opt(key).run(f)`; see [`Call::run`].
    /// The key is hashed at once: the returned future does not borrow it.
    pub fn run<'a, T, E, F, Fut>(
        &'a self,
        key: Option<&dyn LimitKey>,
        f: F,
    ) -> CallFuture<'a, Repeat<F>, Cancel>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<LimitError>,
    {
        self.call().key_opt(key).run(f)
    }

    /// Waits for a place under every limit of this op and returns it as a
    /// guard (breaker → rate → bulkhead; no timeout is applied).
    pub fn acquire<'a>(
        &'a self,
        key: Option<&dyn LimitKey>,
    ) -> impl Future<Output = Result<Permit, LimitError>> + use<'a> {
        self.call().key_opt(key).acquire()
    }
}
