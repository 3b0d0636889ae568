//! [`CallFuture`]: one limited call as one hand-written future.
//!
//! It owns everything the call needs across polls: the admission (the
//! breaker's ticket and the bulkhead place), the pinned body with its
//! deadline timer, the retry state and the timeout strategy. Nothing is
//! moved between nested state machines after the first poll, and the fast
//! path (admitted at once, body ready at once) allocates nothing.
//!
//! Drop order is part of the contract: the body's future is dropped before
//! its place is released, on every path: success, error, timeout under each
//! strategy, panic, and the caller dropping the call. Blocking work that
//! cannot be dropped keeps the place until it really ends. So at most
//! `max_concurrent` bodies of an op, their destructors included, are ever
//! alive. (The shape is tower's `limit::concurrency::ResponseFuture`, whose
//! permit lives in the future and goes with its `Drop`.)

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::error::LimitError;
use crate::metrics::{CallOutcome, OpMetrics};
use crate::op::{Admission, Deferred, Op};
use crate::retry::{backoff_delay, delay_after_limit};
use crate::timeout::{PollWatch, Timer};

use super::attempts::Attempts;
use super::cleanup::{self, Cleanup};
use super::on_timeout::Strategy;
use super::trace::Trace;

/// An admission that had to wait (a queue place, a Redis round trip).
type Waiting<'a> = Pin<Box<dyn Future<Output = Result<Admission<'a>, LimitError>> + Send + 'a>>;

pin_project! {
    #[project = StageProj]
    enum Stage<'a, B> {
        /// Admission is next.
        Start,
        /// Admission is waiting.
        Admitting { wait: Waiting<'a> },
        /// The body runs under its deadline.
        Running { #[pin] body: B },
        /// Waiting out the backoff before the next attempt.
        Backoff,
        /// The call has answered.
        Done,
    }
}

pin_project! {
    /// The future of one limited call of an [`Op`]: returned by
    /// [`Op::run`], the [`Call`](super::Call) builder's `run*` methods and
    /// the attributes' expansion.
    ///
    /// Breaker → rate → bulkhead (queue) → timeout → body → record
    /// (latency, outcome, slow polls) → breaker outcome, and again after a
    /// backoff when retries are configured. Dropping it cancels the call:
    /// the body is dropped, then its place is released.
    #[must_use = "a call does nothing unless awaited"]
    pub struct CallFuture<'a, M: Attempts, S, C = AnyError> {
        // Field order is drop order: the body (in `stage`) goes before the
        // place (in `admission`).
        #[pin]
        stage: Stage<'a, M::Body>,
        admission: Option<Admission<'a>>,
        // The body's deadline, or the backoff's pause.
        #[pin]
        timer: Timer,
        attempts: M,
        strategy: S,
        // Which errors of the body count as failures for the breaker.
        classify: C,
        op: &'a Op,
        key: Option<u64>,
        shared_key: Option<u64>,
        priority: i64,
        // What each attempt takes from the rate limits.
        cost: u32,
        // The timeout hook and what the body registered for it.
        cleanup: Option<Cleanup>,
        attempt: u32,
        // Set when the body's poll unwound (it panicked).
        panicked: bool,
        // The call's DEBUG span (feature `tracing-spans`, see `trace.rs`).
        trace: Trace,
    }

    impl<'a, M: Attempts, S, C> PinnedDrop for CallFuture<'a, M, S, C> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let Some(admission) = this.admission.take() else {
                return;
            };
            // Dropped after its body panicked, or cancelled (by its caller,
            // or by a panic elsewhere unwinding through the caller).
            let outcome = if *this.panicked {
                CallOutcome::Panic
            } else {
                CallOutcome::Cancelled
            };
            this.trace
                .ended(if *this.panicked { "panic" } else { "cancelled" });
            let place = admission.end_detached(&this.op.core, outcome);
            let _ = abandon::<M>(this.stage, place);
        }
    }
}

impl<M: Attempts, S, C> std::fmt::Debug for CallFuture<'_, M, S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallFuture")
            .field("op", &self.op.name())
            .field("attempt", &self.attempt)
            .field("running", &self.admission.is_some())
            .finish()
    }
}

/// Drops an abandoned body, then its place, unless the body keeps the
/// place until it really ends (blocking work). Returns whether a running
/// body was dropped.
fn abandon<M: Attempts>(mut stage: Pin<&mut Stage<'_, M::Body>>, place: super::Place) -> bool {
    let (place, dropped) = match stage.as_mut().project() {
        StageProj::Running { body } => {
            let place = M::keep(body, place);
            let dropped = place.is_some();
            (place, dropped)
        }
        _ => (Some(place), false),
    };
    stage.set(Stage::Done);
    drop(place);
    dropped
}

impl<'a, M: Attempts, S, C> CallFuture<'a, M, S, C> {
    pub(crate) fn new(
        op: &'a Op,
        (key, shared_key): (Option<u64>, Option<u64>),
        (priority, cost): (i64, u32),
        attempts: M,
        strategy: S,
        classify: C,
    ) -> Self {
        Self {
            stage: Stage::Start,
            admission: None,
            timer: Timer::new(),
            attempts,
            strategy,
            classify,
            op,
            key,
            shared_key,
            priority,
            cost,
            cleanup: None,
            attempt: 0,
            panicked: false,
            trace: Trace::default(),
        }
    }

    /// The same future with a timeout hook (see
    /// [`Call::on_timeout`](super::Call::on_timeout)).
    pub(crate) fn with_cleanup(mut self, cleanup: Option<Cleanup>) -> Self {
        self.cleanup = cleanup;
        self
    }
}

/// What a call makes of its body's output: which outputs are failures
/// for the breaker, and what an output is charged after the fact (see
/// [`Call::charge`](super::Call::charge)).
pub trait Classify<O> {
    /// Whether `out` is a failure.
    fn is_failure(&self, out: &O) -> bool;

    /// What `out` takes from the op's rate limits after the call (0, the
    /// default: nothing beyond the call's cost).
    #[inline]
    fn charge(&self, out: &O) -> u32 {
        let _ = out;
        0
    }
}

/// Every `Err` is a failure (the default of a call).
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyError;

impl<T, E> Classify<Result<T, E>> for AnyError {
    #[inline]
    fn is_failure(&self, out: &Result<T, E>) -> bool {
        out.is_err()
    }
}

/// The errors a function says are failures (see
/// [`Call::failure`](super::Call::failure)).
pub struct FailureFn<E>(fn(&E) -> bool);

impl<E> FailureFn<E> {
    pub(crate) fn new(failure: fn(&E) -> bool) -> Self {
        Self(failure)
    }
}

impl<E> Clone for FailureFn<E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for FailureFn<E> {}

impl<E> std::fmt::Debug for FailureFn<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FailureFn")
    }
}

impl<T, E> Classify<Result<T, E>> for FailureFn<E> {
    #[inline]
    fn is_failure(&self, out: &Result<T, E>) -> bool {
        out.as_ref().err().is_some_and(self.0)
    }
}

/// What to do after an attempt that did not succeed.
enum Next<T> {
    Answer(T),
    Retry(std::time::Duration),
}

impl<'a, M, S, C, T, E> Future for CallFuture<'a, M, S, C>
where
    M: Attempts,
    M::Body: Future<Output = Result<T, E>>,
    S: Strategy<M::Body>,
    C: Classify<Result<T, E>>,
    E: From<LimitError>,
{
    type Output = Result<T, E>;

    // Each stage goes on to the next within the same poll by calling it:
    // the body's output is returned as the body's poll gave it (no copy
    // through intermediate enums); only the rare paths (a refusal, a retry)
    // come back here.
    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        match self.as_mut().project().stage.project() {
            StageProj::Running { .. } => self.poll_running(cx),
            StageProj::Start => self.start(cx),
            StageProj::Admitting { .. } => self.poll_admitting(cx),
            StageProj::Backoff => self.poll_backoff(cx),
            StageProj::Done => panic!("`CallFuture` polled after it answered"),
        }
    }
}

impl<'a, M, S, C, T, E> CallFuture<'a, M, S, C>
where
    M: Attempts,
    M::Body: Future<Output = Result<T, E>>,
    S: Strategy<M::Body>,
    C: Classify<Result<T, E>>,
    E: From<LimitError>,
{
    /// Admission without waiting: the body starts and is polled at once,
    /// or the call is refused, or admission goes on waiting.
    #[inline]
    fn start(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        let mut this = self.as_mut().project();
        let op = *this.op;
        let core = &*op.core;
        if *this.attempt == 0 {
            *this.trace = Trace::begin(op, *this.key);
        }
        match core.enter(&*core.bulkhead, *this.key, *this.cost, this.admission) {
            Ok(()) => {
                this.trace.admitted(op);
                start_body(
                    this.stage.as_mut(),
                    this.timer.as_mut(),
                    this.admission,
                    this.panicked,
                    this.attempts,
                    op,
                );
                self.poll_running(cx)
            }
            Err(Deferred::Refused(e)) => self.answer_or_retry(Err(e), cx),
            Err(Deferred::Later(later)) => {
                let wait = core.admit_later(later, *this.key, *this.shared_key, *this.priority);
                this.stage.set(Stage::Admitting {
                    wait: Box::pin(wait),
                });
                self.poll_admitting(cx)
            }
        }
    }

    /// Waits for an admission that could not be made at once.
    fn poll_admitting(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        let mut this = self.as_mut().project();
        let StageProj::Admitting { wait } = this.stage.as_mut().project() else {
            unreachable!("admitting")
        };
        match std::task::ready!(wait.as_mut().poll(cx)) {
            Ok(a) => {
                *this.admission = Some(a);
                this.trace.admitted(this.op);
                start_body(
                    this.stage.as_mut(),
                    this.timer.as_mut(),
                    this.admission,
                    this.panicked,
                    this.attempts,
                    this.op,
                );
                self.poll_running(cx)
            }
            Err(e) => self.answer_or_retry(Err(e), cx),
        }
    }

    /// Polls the body, timed, and records how it ended.
    #[inline(never)]
    fn poll_running(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        let mut this = self.as_mut().project();
        let op = *this.op;
        let core = &*op.core;
        let StageProj::Running { body } = this.stage.as_mut().project() else {
            unreachable!("running")
        };
        let Some(admission) = this.admission.as_mut() else {
            unreachable!("a running call is admitted")
        };
        let poll_start = this.timer.as_mut().poll_start(admission.start, &core.clock);
        let watch = PollWatch::start(&core.clock);
        // Should the body panic, the call is dropped while unwinding or
        // later (a task's panic is caught, then its future dropped): the
        // flag makes that drop end it as panicked, body first.
        let unwinding = Unwinding(this.panicked);
        let refusals = crate::shed::seen();
        let scope = this.cleanup.as_ref().map(Cleanup::enter);
        let out = {
            let _span = this.trace.enter();
            body.poll(cx)
        };
        drop(scope);
        std::mem::forget(unwinding);
        let (end, took) = watch.stop(&core.clock, poll_start);
        let Poll::Ready(result) = &out else {
            return self.pending(cx, took);
        };
        core.metrics
            .check_slow_poll(took, admission.terms.slow_poll_ns, &core.name);
        let ok = result.is_ok();
        let owed = this.classify.charge(result);
        let outcome = if ok {
            CallOutcome::Success
        } else if crate::shed::seen() != refusals || !this.classify.is_failure(result) {
            // An op the body called refused it during this poll, or the
            // call's classifier excuses the error.
            CallOutcome::Excused
        } else {
            CallOutcome::Failure
        };
        this.trace.ended(match outcome {
            CallOutcome::Success => "succeeded",
            CallOutcome::Excused => "excused",
            _ => "failed",
        });
        // The body goes first, then its place.
        this.stage.set(Stage::Done);
        if let Some(cleanup) = this.cleanup.as_ref() {
            cleanup.clear();
        }
        admission.finish(core, outcome, end, took);
        *this.admission = None;
        if owed > 0 {
            op.core.charge(*this.key, *this.shared_key, owed);
        }
        this.strategy.succeeded(op, *this.key, result);
        // An excused error (an inner op's refusal, a client's mistake) is
        // answered at once: retrying saturation below or a caller's error
        // only adds load.
        if ok || M::ONCE || outcome == CallOutcome::Excused {
            return out;
        }
        let Poll::Ready(result) = out else {
            unreachable!("the body is ready")
        };
        self.answer_or_retry(Ok(result), cx)
    }

    /// After a poll that left the body pending: the call is counted, the
    /// poll's length kept, and the deadline checked; when it has passed,
    /// the strategy decides the answer and where the body goes.
    fn pending(mut self: Pin<&mut Self>, cx: &mut Context<'_>, took: u64) -> Poll<Result<T, E>> {
        let mut this = self.as_mut().project();
        let op = *this.op;
        let core = &*op.core;
        let Some(admission) = this.admission.as_mut() else {
            unreachable!("a running call is admitted")
        };
        core.metrics.count(&mut admission.entry);
        let terms = admission.terms;
        core.metrics.poll_took(took, terms.slow_poll_ns, &core.name);
        let timer = this.timer.as_mut();
        if !timer.deadline_passed(cx, &core.clock, admission.start, terms.timeout_ns) {
            return Poll::Pending;
        }
        let Some(admission) = this.admission.take() else {
            unreachable!("a running call is admitted")
        };
        let place = admission.end_detached(core, CallOutcome::Timeout);
        let mut hook = this.cleanup.as_ref().and_then(Cleanup::hook);
        let share = hook.as_ref().map(|_| place.share());
        let mut stage = this.stage.as_mut();
        let StageProj::Running { body } = stage.as_mut().project() else {
            unreachable!("the timed-out body is running")
        };
        let (answer, place) =
            this.strategy
                .timed_out(op, body, place, *this.key, M::keep, &mut hook);
        if let (Some(hook), Some(share)) = (hook, share) {
            // Not taken by the strategy: run beside, holding the place.
            cleanup::run_holding(&core.name, hook, share);
        }
        match place {
            Some(place) => {
                if abandon::<M>(stage, place) {
                    OpMetrics::inc(&core.metrics.counters.dropped_at_timeout);
                }
            }
            None => stage.set(Stage::Done),
        }
        self.answer_or_retry(answer, cx)
    }

    /// Waits out the backoff before the next attempt, then starts it.
    fn poll_backoff(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        let mut this = self.as_mut().project();
        std::task::ready!(this.timer.as_mut().poll_pause(cx));
        *this.attempt += 1;
        this.stage.set(Stage::Start);
        self.start(cx)
    }

    /// After an attempt that did not succeed (`ended`: a limit's refusal,
    /// the body's error, or the strategy's answer to a timeout): the
    /// answer, or the next attempt after a backoff.
    #[cold]
    fn answer_or_retry(
        mut self: Pin<&mut Self>,
        ended: Result<Result<T, E>, LimitError>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<T, E>> {
        let mut this = self.as_mut().project();
        let op = *this.op;
        if let Err(e) = &ended {
            this.trace.ended(e.code());
        }
        match next_step::<M, T, E>(op, *this.attempt, ended) {
            Next::Answer(out) => {
                this.stage.set(Stage::Done);
                Poll::Ready(out)
            }
            Next::Retry(delay) => {
                OpMetrics::inc(&op.core.metrics.counters.retries);
                tracing::debug!(
                    op = op.name(),
                    attempt = *this.attempt + 1,
                    ?delay,
                    "retrying"
                );
                this.stage.set(Stage::Backoff);
                this.timer.pause(delay);
                self.poll_backoff(cx)
            }
        }
    }
}

/// The body of the call admitted in `slot` starts. The admission is stored
/// first: should making the body panic, the call's drop still ends it (as
/// panicked).
#[inline(always)]
fn start_body<'a, M: Attempts>(
    mut stage: Pin<&mut Stage<'a, M::Body>>,
    timer: Pin<&mut Timer>,
    slot: &Option<Admission<'a>>,
    panicked: &mut bool,
    attempts: &mut M,
    op: &'a Op,
) {
    if M::ONCE && slot.as_ref().is_some_and(|a| a.terms.retries) {
        op.core.warn_once_retries_ignored();
    }
    let unwinding = Unwinding(panicked);
    let body = attempts.next();
    std::mem::forget(unwinding);
    match body {
        Some(body) => {
            timer.reset();
            stage.set(Stage::Running { body });
        }
        // A one-shot body runs once: there is no second attempt to start.
        None => unreachable!("a one-shot call is never retried"),
    }
}

/// The answer to an attempt that ended with `ended` (a limit's refusal or
/// the body's output), or the backoff before retrying it.
fn next_step<M: Attempts, T, E: From<LimitError>>(
    op: &Op,
    attempt: u32,
    ended: Result<Result<T, E>, LimitError>,
) -> Next<Result<T, E>> {
    if matches!(ended, Ok(Ok(_))) || M::ONCE {
        return Next::Answer(flatten(ended));
    }
    let retry = op.core.policy().cfg.retry.clone();
    let Some(policy) = retry.filter(|p| attempt < p.retries) else {
        return Next::Answer(flatten(ended));
    };
    let delay = match &ended {
        Ok(_) => Some(backoff_delay(&policy, attempt)),
        Err(e) => delay_after_limit(&policy, attempt, e),
    };
    match delay {
        Some(d) => Next::Retry(d),
        None => Next::Answer(flatten(ended)),
    }
}

fn flatten<T, E: From<LimitError>>(r: Result<Result<T, E>, LimitError>) -> Result<T, E> {
    match r {
        Ok(inner) => inner,
        Err(e) => Err(E::from(e)),
    }
}

/// Marks the call panicked if dropped: it is forgotten once the body's
/// poll returns, so only an unwinding poll drops it.
struct Unwinding<'f>(&'f mut bool);

impl Drop for Unwinding<'_> {
    fn drop(&mut self) {
        *self.0 = true;
    }
}
