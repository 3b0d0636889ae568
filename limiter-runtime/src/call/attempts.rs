//! Where a call's bodies come from: one future, or a maker called once per
//! attempt; run on the executor, offloaded to a blocking pool, or boxed so
//! that the `background` strategy can move them to a task.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::offload::{Handoff, Offloaded as Outcome};

use super::{Offloader, Place};

/// Makes the body of each attempt of a call. Implemented by [`Repeat`],
/// [`Once`], [`Offloaded`] and [`Detached`]; sealed.
pub trait Attempts: sealed::Sealed {
    /// The future of one attempt.
    type Body: Future;
    /// Whether the call runs its body at most once (no retry possible).
    const ONCE: bool;
    /// The next attempt's body; `None` once a one-shot body was taken.
    fn next(&mut self) -> Option<Self::Body>;
    /// A body abandoned while it holds `place` (timed out, or its caller
    /// went away) keeps the place until it really ends, when it cannot be
    /// stopped (offloaded blocking work); otherwise the place is given
    /// back, to be released once the body is dropped.
    fn keep(_body: Pin<&mut Self::Body>, place: Place) -> Option<Place> {
        Some(place)
    }
}

mod sealed {
    pub trait Sealed {}
    impl<F> Sealed for super::Repeat<F> {}
    impl<F> Sealed for super::Once<F> {}
    impl<M> Sealed for super::Offloaded<M> {}
    impl<M> Sealed for super::Detached<M> {}
    impl<F> Sealed for super::Jobs<F> {}
}

/// The bodies of `run_blocking`: `f` offloaded once per attempt.
pub type Blocking<F> = Offloaded<Jobs<F>>;

/// The body of `run_blocking_once`: work offloaded once.
pub type BlockingOnce<T, E> = Offloaded<Once<BlockingBody<T, E>>>;

/// Blocking work started on an offload pool for each attempt.
pub struct Jobs<F> {
    pub(crate) f: Arc<F>,
    pub(crate) offloader: Offloader,
}

impl<F> std::fmt::Debug for Jobs<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").finish_non_exhaustive()
    }
}

impl<F, T, E> Attempts for Jobs<F>
where
    F: Fn() -> Result<T, E> + Send + Sync + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    type Body = BlockingBody<T, E>;
    const ONCE: bool = false;

    fn next(&mut self) -> Option<Self::Body> {
        let f = Arc::clone(&self.f);
        Some(self.offloader.start(move || f()))
    }
}

/// A body made anew for each attempt by a closure (retries are possible).
#[derive(Debug)]
pub struct Repeat<F>(pub(crate) F);

impl<F, Fut> Attempts for Repeat<F>
where
    F: FnMut() -> Fut,
    Fut: Future,
{
    type Body = Fut;
    const ONCE: bool = false;

    #[inline]
    fn next(&mut self) -> Option<Fut> {
        Some((self.0)())
    }
}

/// One future, run once (a future cannot be made again: no retry).
#[derive(Debug)]
pub struct Once<Fut>(pub(crate) Option<Fut>);

impl<Fut: Future> Attempts for Once<Fut> {
    type Body = Fut;
    const ONCE: bool = true;

    #[inline]
    fn next(&mut self) -> Option<Fut> {
        self.0.take()
    }
}

/// Bodies that run blocking work on an offload pool: abandoned, the work
/// goes on to its end and keeps the call's place until then.
#[derive(Debug)]
pub struct Offloaded<M>(pub(crate) M);

impl<M, T, E> Attempts for Offloaded<M>
where
    M: Attempts<Body = BlockingBody<T, E>>,
{
    type Body = BlockingBody<T, E>;
    const ONCE: bool = M::ONCE;

    fn next(&mut self) -> Option<Self::Body> {
        self.0.next()
    }

    fn keep(body: Pin<&mut Self::Body>, place: Place) -> Option<Place> {
        if body.ended {
            return Some(place); // its work is over: nothing holds the place
        }
        body.handoff.keep(place)
    }
}

/// Bodies boxed, so that the `background` strategy can move one that timed
/// out to a task of its own.
#[derive(Debug)]
pub struct Detached<M>(pub(crate) M);

impl<M: Attempts> Attempts for Detached<M> {
    type Body = Detachable<M::Body>;
    const ONCE: bool = M::ONCE;

    fn next(&mut self) -> Option<Self::Body> {
        self.0.next().map(|b| Detachable(Some(Box::pin(b))))
    }

    fn keep(body: Pin<&mut Self::Body>, place: Place) -> Option<Place> {
        match body.get_mut().0.as_mut() {
            Some(inner) => M::keep(inner.as_mut(), place),
            None => Some(place),
        }
    }
}

/// A boxed body that can be taken out of its pinned place and moved to a
/// task.
pub struct Detachable<F>(pub(crate) Option<Pin<Box<F>>>);

impl<F> std::fmt::Debug for Detachable<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detachable")
            .field("detached", &self.0.is_none())
            .finish()
    }
}

impl<F: Future> Future for Detachable<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.0.as_mut() {
            Some(f) => f.as_mut().poll(cx),
            None => Poll::Pending, // detached: never polled again by its caller
        }
    }
}

/// The wait for offloaded work: its outcome, or its panic.
type Waiting<T, E> = Pin<Box<dyn Future<Output = Outcome<Result<T, E>>> + Send>>;

/// The future of one offloaded attempt: waits for the work on its pool; a
/// panic of the work is resumed in the caller.
pub struct BlockingBody<T, E> {
    pub(crate) fut: Waiting<T, E>,
    /// Where an abandoning caller leaves its place.
    pub(crate) handoff: Arc<Handoff>,
    /// The work's result (or panic) came back: it has ended.
    pub(crate) ended: bool,
}

impl<T, E> std::fmt::Debug for BlockingBody<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingBody")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl<T, E> Future for BlockingBody<T, E> {
    type Output = Result<T, E>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let out = std::task::ready!(self.fut.as_mut().poll(cx));
        self.ended = true;
        match out {
            Ok(out) => Poll::Ready(out),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}
