//! Making a limited call: the [`Call`] builder, the timeout strategies and
//! the attempt/retry loop they share.
//!
//! One call goes: breaker → rate → bulkhead (queue) → timeout → body →
//! record (latency, outcome, slow polls) → breaker outcome, and again after
//! a backoff when retries are configured. Places are released on every
//! path: success, error, timeout, panic, and the caller dropping the future.

use std::fmt::Debug;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::error::LimitError;
use crate::keys::LimitKey;
use crate::metrics::slow_poll::{Ended, Timed};
use crate::metrics::{CallOutcome, OpMetrics};
use crate::op::{Admission, Entered, Op, Permit};
use crate::retry::{backoff_delay, delay_after_limit};

/// Marker types naming what a call does when its timeout passes.
pub mod strategy {
    /// Drop the future and return `Timeout` (the default).
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Cancel;
    /// Keep the future running as a tracked background task and return
    /// `MovedToBackground { task_id }`.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Background;
    /// Return the last good value for the same key, else `Timeout`.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct CacheFallback;
}

use strategy::{Background, CacheFallback, Cancel};

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
pub struct Call<'a, S = Cancel> {
    op: &'a Op,
    /// The key's hash: taken at once, so the call's future holds no
    /// reference to the key.
    key: Option<u64>,
    /// The key's name in Redis, for ops keeping per-key rates there.
    shared_key: Option<u64>,
    priority: i64,
    strategy: PhantomData<S>,
}

impl<'a> Call<'a, Cancel> {
    pub(crate) fn new(op: &'a Op) -> Self {
        Self {
            op,
            key: None,
            shared_key: None,
            priority: 0,
            strategy: PhantomData,
        }
    }
}

impl<'a, S> Call<'a, S> {
    fn with<S2>(self) -> Call<'a, S2> {
        Call {
            op: self.op,
            key: self.key,
            shared_key: self.shared_key,
            priority: self.priority,
            strategy: PhantomData,
        }
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
    pub fn background(self) -> Call<'a, Background> {
        self.with()
    }

    /// On timeout, answer with the last good value for the same key.
    pub fn cache_fallback(self) -> Call<'a, CacheFallback> {
        self.with()
    }

    /// On timeout, cancel (the default).
    pub fn cancel_on_timeout(self) -> Call<'a, Cancel> {
        self.with()
    }

    /// Waits for a place under every limit and returns it as a guard.
    pub async fn acquire(self) -> Result<Permit, LimitError> {
        let core = &self.op.core;
        let admitted = core
            .admit(
                Arc::clone(&core.bulkhead),
                self.key,
                self.shared_key,
                self.priority,
            )
            .await?;
        Ok(Permit::new(Arc::clone(core), admitted))
    }

    /// The attempt/retry loop shared by every strategy.
    async fn execute<T, E, M, W, H>(self, mut make: M, hook: &mut H) -> Result<T, E>
    where
        M: FnMut() -> W,
        W: Future<Output = Result<T, E>>,
        E: From<LimitError>,
        H: TimeoutHook<W>,
    {
        let key = self.key;
        let mut attempt = 0u32;
        loop {
            let result = attempt_once(
                self.op,
                key,
                self.shared_key,
                self.priority,
                false,
                make(),
                hook,
            )
            .await;
            if let Ok(Ok(_)) = result {
                return flatten(result);
            }
            let retry = self.op.core.policy.load().cfg.retry.clone();
            let Some(policy) = retry.filter(|p| attempt < p.retries) else {
                return flatten(result);
            };
            let delay = match &result {
                Ok(Ok(_)) => return flatten(result),
                Ok(Err(_)) => backoff_delay(&policy, attempt),
                Err(e) => match delay_after_limit(&policy, attempt, e) {
                    Some(d) => d,
                    None => return flatten(result),
                },
            };
            OpMetrics::inc(&self.op.core.metrics.counters.retries);
            tracing::debug!(
                op = self.op.name(),
                attempt = attempt + 1,
                ?delay,
                "retrying"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Runs one attempt, with no retry whatever the op's configuration:
    /// for futures and closures that can only be made once.
    async fn execute_once<T, E, W, H>(self, fut: W, hook: &mut H) -> Result<T, E>
    where
        W: Future<Output = Result<T, E>>,
        E: From<LimitError>,
        H: TimeoutHook<W>,
    {
        flatten(
            attempt_once(
                self.op,
                self.key,
                self.shared_key,
                self.priority,
                true,
                fut,
                hook,
            )
            .await,
        )
    }

    /// Where this op's blocking work runs.
    fn offloader(&self) -> Offloader {
        let core = &self.op.core;
        Offloader {
            offload: Arc::clone(&core.shared.offload),
            metrics: Arc::clone(&core.metrics),
            cpu: core
                .policy
                .load()
                .cfg
                .kind
                .is_some_and(|k| k.is_cpu_bound()),
        }
    }

    /// Builds, for each attempt, a future running `f` on the offload pool of
    /// the op's kind.
    fn blocking<T, E, F>(&self, f: F) -> impl FnMut() -> BlockingCall<T, E> + 'static
    where
        F: Fn() -> Result<T, E> + Send + Sync + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let f = Arc::new(f);
        let offloader = self.offloader();
        move || {
            let f = Arc::clone(&f);
            offloader.start(move || f())
        }
    }
}

/// The offload pool of one op.
struct Offloader {
    offload: Arc<crate::offload::Offload>,
    metrics: Arc<OpMetrics>,
    cpu: bool,
}

impl Offloader {
    /// A future running `f` on the pool; a panic in `f` is resumed in the
    /// caller.
    fn start<T, E, F>(&self, f: F) -> BlockingCall<T, E>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let run = Arc::clone(&self.offload).run(self.cpu, Arc::clone(&self.metrics), f);
        BlockingCall(Box::pin(async move {
            match run.await {
                Ok(out) => out,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }))
    }
}

/// Lets an unsized key (`str`, `[u8]`) be hashed through `&dyn LimitKey`.
struct KeyRef<'k, K: ?Sized>(&'k K);

impl<K: LimitKey + ?Sized> LimitKey for KeyRef<'_, K> {
    fn hash_key(&self, state: &mut dyn std::hash::Hasher) {
        self.0.hash_key(state);
    }
}

/// The future of one offloaded attempt.
pub(crate) struct BlockingCall<T, E>(Pin<Box<dyn Future<Output = Result<T, E>> + Send>>);

impl<T, E> Future for BlockingCall<T, E> {
    type Output = Result<T, E>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

fn flatten<T, E: From<LimitError>>(r: Result<Result<T, E>, LimitError>) -> Result<T, E> {
    match r {
        Ok(inner) => inner,
        Err(e) => Err(E::from(e)),
    }
}

/// One attempt: admission, the timed body, and the outcome. `once` says
/// the call site cannot retry (a warning is given once if retries are
/// configured).
async fn attempt_once<T, E, W, H>(
    op: &Op,
    key: Option<u64>,
    shared_key: Option<u64>,
    priority: i64,
    once: bool,
    fut: W,
    hook: &mut H,
) -> Result<Result<T, E>, LimitError>
where
    W: Future<Output = Result<T, E>>,
    H: TimeoutHook<W>,
{
    let core = &*op.core;
    let admitted = match core.enter(&*core.bulkhead, key) {
        Entered::Admitted(a) => a,
        Entered::Refused(e) => return Err(e),
        Entered::Later(later) => {
            Box::pin(core.admit_later(later, key, shared_key, priority)).await?
        }
    };
    let admission = Admission::new(core, admitted);
    if once && admission.terms.retries {
        core.warn_once_retries_ignored();
    }
    let mut fut = pin!(fut);
    let mut sleep = pin!(None);
    let timed = Timed {
        fut: fut.as_mut(),
        sleep: sleep.as_mut(),
        core,
        start: admission.start,
        polled: false,
        timeout: admission.terms.timeout(),
        threshold_ns: admission.terms.slow_poll_ns,
    };
    match timed.await {
        Ended::Done(out, end) => {
            let outcome = if out.is_ok() {
                CallOutcome::Success
            } else {
                CallOutcome::Failure
            };
            admission.finish(outcome, end);
            hook.on_success(op, key, &out);
            Ok(out)
        }
        Ended::TimedOut => hook.on_timeout(op, fut, admission, key),
    }
}

/// What a strategy does at the end of an attempt.
pub(crate) trait TimeoutHook<W: Future> {
    fn on_success(&mut self, _op: &Op, _key: Option<u64>, _out: &W::Output) {}
    fn on_timeout(
        &mut self,
        op: &Op,
        fut: Pin<&mut W>,
        admission: Admission<'_>,
        key: Option<u64>,
    ) -> Result<W::Output, LimitError>;
}

fn timed_out(op: &Op) -> LimitError {
    tracing::debug!(op = op.name(), "call timed out");
    LimitError::Timeout {
        op: op.core.name.clone(),
    }
}

struct CancelHook;

impl<W: Future> TimeoutHook<W> for CancelHook {
    fn on_timeout(
        &mut self,
        op: &Op,
        _: Pin<&mut W>,
        admission: Admission<'_>,
        _: Option<u64>,
    ) -> Result<W::Output, LimitError> {
        admission.finish_now(CallOutcome::Timeout);
        Err(timed_out(op))
    }
}

struct CacheHook;

impl<W, T, E> TimeoutHook<W> for CacheHook
where
    W: Future<Output = Result<T, E>>,
    T: Clone + Send + Sync + 'static,
{
    fn on_success(&mut self, op: &Op, key: Option<u64>, out: &Result<T, E>) {
        if let Ok(value) = out {
            op.core.cache.store(key, value.clone());
        }
    }

    fn on_timeout(
        &mut self,
        op: &Op,
        _: Pin<&mut W>,
        admission: Admission<'_>,
        key: Option<u64>,
    ) -> Result<Result<T, E>, LimitError> {
        admission.finish_now(CallOutcome::Timeout);
        match op.core.cache.get::<T>(key, None) {
            Some(value) => {
                OpMetrics::inc(&op.core.metrics.counters.cache_fallbacks);
                tracing::debug!(
                    op = op.name(),
                    "timed out; answered from the fallback cache"
                );
                Ok(Ok(value))
            }
            None => Err(timed_out(op)),
        }
    }
}

/// A future that can be taken out of its pinned place and moved to a task.
pub(crate) struct Detachable<F>(Option<Pin<Box<F>>>);

impl<F: Future> Future for Detachable<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.0.as_mut() {
            Some(f) => f.as_mut().poll(cx),
            None => Poll::Pending, // detached: never polled again by its caller
        }
    }
}

struct BackgroundHook;

impl<F, T, E> TimeoutHook<Detachable<F>> for BackgroundHook
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Debug + Send + 'static,
{
    fn on_timeout(
        &mut self,
        op: &Op,
        mut fut: Pin<&mut Detachable<F>>,
        admission: Admission<'_>,
        _: Option<u64>,
    ) -> Result<Result<T, E>, LimitError> {
        let place = admission.detach();
        let Some(inner) = fut.0.take() else {
            return Err(timed_out(op));
        };
        let task_id = op
            .core
            .shared
            .tasks
            .adopt(op.core.name.clone(), async move {
                let out = inner.await;
                drop(place); // the place is held until the work really ends
                out
            });
        let Some(task_id) = task_id else {
            // Shutting down: nothing may start in the background any more.
            return Err(timed_out(op));
        };
        OpMetrics::inc(&op.core.metrics.counters.moved_to_background);
        tracing::info!(op = op.name(), task_id, "timed out; moved to background");
        Err(LimitError::MovedToBackground {
            op: op.core.name.clone(),
            task_id,
        })
    }
}

impl Call<'_, Cancel> {
    /// Runs `f` under every limit of the op; on timeout the future is dropped
    /// and the call fails with `Timeout`. `f` is called again for each retry.
    ///
    /// The body's `Err` counts as a failure for the breaker and is retried
    /// when retries are on; limit errors are converted with `E::from`.
    pub async fn run<T, E, F, Fut>(self, f: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<LimitError>,
    {
        self.execute(f, &mut CancelHook).await
    }

    /// Runs the blocking `f` on the op kind's offload pool (the CPU pool for
    /// `cpu_intensive` and `memory`, tokio's blocking pool otherwise). On
    /// timeout the call fails with `Timeout`; `f` cannot be aborted and goes
    /// on as an orphan, counted in the op's metrics.
    pub async fn run_blocking<T, E, F>(self, f: F) -> Result<T, E>
    where
        F: Fn() -> Result<T, E> + Send + Sync + 'static,
        T: Send + 'static,
        E: From<LimitError> + Send + 'static,
    {
        let make = self.blocking(f);
        self.execute(make, &mut CancelHook).await
    }
}

impl Call<'_, Cancel> {
    /// Runs the future `fut` once under every limit of the op (no retry:
    /// a future cannot be made again); on timeout it is dropped.
    pub async fn run_once<T, E, Fut>(self, fut: Fut) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
        E: From<LimitError>,
    {
        self.execute_once(fut, &mut CancelHook).await
    }

    /// Runs the blocking `f` once on the op kind's offload pool (no retry);
    /// on timeout it goes on as a counted orphan.
    pub async fn run_blocking_once<T, E, F>(self, f: F) -> Result<T, E>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<LimitError> + Send + 'static,
    {
        let fut = self.offloader().start(f);
        self.execute_once(fut, &mut CancelHook).await
    }
}

impl Call<'_, Background> {
    /// Like [`Call::run_once`], but on timeout the future goes on as a
    /// tracked background task.
    pub async fn run_once<T, E, Fut>(self, fut: Fut) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<LimitError> + Debug + Send + 'static,
    {
        self.execute_once(Detachable(Some(Box::pin(fut))), &mut BackgroundHook)
            .await
    }

    /// Like [`Call::run_blocking_once`], but on timeout the work is tracked
    /// as a background task.
    pub async fn run_blocking_once<T, E, F>(self, f: F) -> Result<T, E>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<LimitError> + Debug + Send + 'static,
    {
        let fut = self.offloader().start(f);
        self.execute_once(Detachable(Some(Box::pin(fut))), &mut BackgroundHook)
            .await
    }
}

impl Call<'_, CacheFallback> {
    /// Like [`Call::run_once`], with the cache fallback on timeout.
    pub async fn run_once<T, E, Fut>(self, fut: Fut) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
        T: Clone + Send + Sync + 'static,
        E: From<LimitError>,
    {
        self.execute_once(fut, &mut CacheHook).await
    }

    /// Like [`Call::run_blocking_once`], with the cache fallback on timeout.
    pub async fn run_blocking_once<T, E, F>(self, f: F) -> Result<T, E>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Clone + Send + Sync + 'static,
        E: From<LimitError> + Send + 'static,
    {
        let fut = self.offloader().start(f);
        self.execute_once(fut, &mut CacheHook).await
    }
}

impl Call<'_, Background> {
    /// Like [`Call::run`], but on timeout the future goes on as a tracked
    /// background task (holding its bulkhead place until it ends) and the
    /// call fails with `MovedToBackground { task_id }`.
    pub async fn run<T, E, F, Fut>(self, mut f: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<LimitError> + Debug + Send + 'static,
    {
        self.execute(move || Detachable(Some(Box::pin(f()))), &mut BackgroundHook)
            .await
    }

    /// Like [`Call::run_blocking`], but on timeout the work is tracked as a
    /// background task instead of being abandoned.
    pub async fn run_blocking<T, E, F>(self, f: F) -> Result<T, E>
    where
        F: Fn() -> Result<T, E> + Send + Sync + 'static,
        T: Send + 'static,
        E: From<LimitError> + Debug + Send + 'static,
    {
        let mut make = self.blocking(f);
        self.execute(
            move || Detachable(Some(Box::pin(make()))),
            &mut BackgroundHook,
        )
        .await
    }
}

impl Call<'_, CacheFallback> {
    /// Like [`Call::run`], but each success is remembered per key, and on
    /// timeout the last good value for the same key is returned (if there
    /// is none, the call fails with `Timeout`).
    pub async fn run<T, E, F, Fut>(self, f: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: Clone + Send + Sync + 'static,
        E: From<LimitError>,
    {
        self.execute(f, &mut CacheHook).await
    }

    /// Like [`Call::run_blocking`], with the cache fallback on timeout.
    pub async fn run_blocking<T, E, F>(self, f: F) -> Result<T, E>
    where
        F: Fn() -> Result<T, E> + Send + Sync + 'static,
        T: Clone + Send + Sync + 'static,
        E: From<LimitError> + Send + 'static,
    {
        let make = self.blocking(f);
        self.execute(make, &mut CacheHook).await
    }
}
