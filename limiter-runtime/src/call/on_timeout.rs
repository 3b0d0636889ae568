//! What each timeout [`strategy`](crate::strategy) does with a call of an
//! op: answer `Timeout`, answer from the fallback cache, or move the body
//! to a background task that keeps its place.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::LimitError;
use crate::metrics::OpMetrics;
use crate::op::Op;
use crate::timeout::strategy::{Background, CacheFallback, Cancel, Drain};

use super::attempts::Detachable;
use super::cleanup::HookFuture;
use super::Place;

/// What a call does with a body that ran out of time. Implemented by the
/// markers of [`strategy`](crate::strategy); sealed.
pub trait Strategy<B: Future>: sealed::Sealed {
    /// A body ended with `out` (before retries are considered).
    fn succeeded(&mut self, op: &Op, key: Option<u64>, out: &B::Output) {
        let _ = (op, key, out);
    }

    /// The timeout of `body`, which holds `place`, passed. Returns the
    /// caller's answer and the place when it is to be released once the
    /// body is dropped (`None`: the body went on elsewhere and took it).
    /// `keep` is how a body that ends early leaves its place (see
    /// [`Attempts::keep`](super::Attempts::keep)).
    ///
    /// `hook` is the call's timeout hook, ready to run: a strategy that
    /// takes it runs it (before the body goes on); one left in place is
    /// run beside, holding a share of the place.
    fn timed_out(
        &mut self,
        op: &Op,
        body: Pin<&mut B>,
        place: Place,
        key: Option<u64>,
        keep: Keep<B>,
        hook: &mut Option<HookFuture>,
    ) -> (Result<B::Output, LimitError>, Option<Place>);
}

/// How an abandoned body leaves its place: given back to be released after
/// the body, or kept by work that cannot be stopped until it ends.
pub type Keep<B> = fn(Pin<&mut B>, Place) -> Option<Place>;

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Cancel {}
    impl Sealed for super::Background {}
    impl Sealed for super::CacheFallback {}
    impl Sealed for super::Drain {}
}

/// The `Timeout` error of `op`.
fn timed_out(op: &Op) -> LimitError {
    tracing::debug!(op = op.name(), "call timed out");
    LimitError::Timeout {
        op: op.core.name.clone(),
    }
}

impl<B: Future> Strategy<B> for Cancel {
    fn timed_out(
        &mut self,
        op: &Op,
        _: Pin<&mut B>,
        place: Place,
        _: Option<u64>,
        _: Keep<B>,
        _: &mut Option<HookFuture>,
    ) -> (Result<B::Output, LimitError>, Option<Place>) {
        (Err(timed_out(op)), Some(place))
    }
}

impl<B, T, E> Strategy<B> for CacheFallback
where
    B: Future<Output = Result<T, E>>,
    T: Clone + Send + Sync + 'static,
{
    fn succeeded(&mut self, op: &Op, key: Option<u64>, out: &Result<T, E>) {
        if let Ok(value) = out {
            op.core.cache.store(key, value.clone());
        }
    }

    fn timed_out(
        &mut self,
        op: &Op,
        _: Pin<&mut B>,
        place: Place,
        key: Option<u64>,
        _: Keep<B>,
        _: &mut Option<HookFuture>,
    ) -> (Result<Result<T, E>, LimitError>, Option<Place>) {
        let answer = match op.core.cache.get::<T>(key, None) {
            Some(value) => {
                OpMetrics::inc(&op.core.metrics.counters.cache_fallbacks);
                tracing::debug!(
                    op = op.name(),
                    "timed out; answered from the fallback cache"
                );
                Ok(Ok(value))
            }
            None => Err(timed_out(op)),
        };
        (answer, Some(place))
    }
}

impl<F, T, E> Strategy<Detachable<F>> for Background
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Debug + Send + 'static,
{
    fn timed_out(
        &mut self,
        op: &Op,
        body: Pin<&mut Detachable<F>>,
        place: Place,
        _: Option<u64>,
        keep: Keep<Detachable<F>>,
        _: &mut Option<HookFuture>,
    ) -> (Result<Result<T, E>, LimitError>, Option<Place>) {
        let held = match Held::take(body, place, keep) {
            Ok(held) => held,
            Err(place) => return (Err(timed_out(op)), Some(place)),
        };
        let core = &op.core;
        let Some(task_id) = core.shared.tasks.adopt(core.name.clone(), held) else {
            // Shutting down: nothing may start in the background any more
            // (the refused task was dropped: see `Held`'s drop).
            return (Err(timed_out(op)), None);
        };
        OpMetrics::inc(&core.metrics.counters.moved_to_background);
        tracing::info!(op = op.name(), task_id, "timed out; moved to background");
        let moved = LimitError::MovedToBackground {
            op: core.name.clone(),
            task_id,
        };
        (Err(moved), None)
    }
}

impl<F, T, E> Strategy<Detachable<F>> for Drain
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    fn timed_out(
        &mut self,
        op: &Op,
        body: Pin<&mut Detachable<F>>,
        place: Place,
        _: Option<u64>,
        keep: Keep<Detachable<F>>,
        hook: &mut Option<HookFuture>,
    ) -> (Result<Result<T, E>, LimitError>, Option<Place>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return (Err(timed_out(op)), Some(place)); // nowhere to drain: cancel
        };
        let held = match Held::take(body, place, keep) {
            Ok(held) => held,
            Err(place) => return (Err(timed_out(op)), Some(place)),
        };
        let core = std::sync::Arc::clone(&op.core);
        let limit = core.policy().cfg.drain_timeout;
        OpMetrics::inc(&core.metrics.counters.draining);
        // The hook first, the body polled again only after it: what the
        // body holds (a pooled connection) stays with it until the hook
        // (a server-side cancel) is done.
        let hook = hook.take();
        runtime.spawn(async move {
            // Dropped at the limit: the place goes as an abandoned body's.
            let drained = tokio::time::timeout(limit, async move {
                if let Some(hook) = hook {
                    hook.await;
                    // A server-side cancel may land after the hook returned
                    // (PostgreSQL confirms nothing: tokio-postgres's
                    // `cancel_query` returns once the request is written):
                    // the body, and the connection it holds, waits a little
                    // more, so that a late cancel finds its own query or an
                    // idle connection, never the next call's query.
                    tokio::time::sleep(CANCEL_GRACE).await;
                }
                held.await
            })
            .await
            .is_ok();
            let c = &core.metrics.counters;
            OpMetrics::inc(if drained {
                &c.drained
            } else {
                &c.drain_dropped
            });
            c.draining
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
        tracing::debug!(op = op.name(), "timed out; draining the body");
        (Err(timed_out(op)), None)
    }
}

/// How long a drained body stays unpolled after its timeout hook returned:
/// time for a server-side cancel sent by the hook to reach the server.
const CANCEL_GRACE: std::time::Duration = std::time::Duration::from_millis(50);

/// A body moved to the background with its place: the place is released
/// once the body has ended and been dropped. Dropped before that (the task
/// cancelled at shutdown, or refused), the body leaves its place as any
/// abandoned body does: released after it, or kept by work that cannot be
/// stopped until that work ends.
struct Held<F> {
    body: Detachable<F>,
    place: Option<Place>,
    keep: Keep<Detachable<F>>,
}

impl<F> Held<F> {
    /// Takes the body out of the call with its place, to go on elsewhere;
    /// the place back when the body is gone already.
    fn take(
        body: Pin<&mut Detachable<F>>,
        place: Place,
        keep: Keep<Detachable<F>>,
    ) -> Result<Self, Place> {
        match body.get_mut().0.take() {
            Some(inner) => Ok(Held {
                body: Detachable(Some(inner)),
                place: Some(place),
                keep,
            }),
            None => Err(place),
        }
    }
}

impl<F: Future> Future for Held<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let Some(body) = self.body.0.as_mut() else {
            return Poll::Pending; // polled after its end: never again ready
        };
        let out = std::task::ready!(body.as_mut().poll(cx));
        self.body.0 = None;
        self.place = None;
        Poll::Ready(out)
    }
}

impl<F> Drop for Held<F> {
    fn drop(&mut self) {
        let Some(place) = self.place.take() else {
            return;
        };
        let place = (self.keep)(Pin::new(&mut self.body), place);
        self.body.0 = None;
        drop(place);
    }
}
