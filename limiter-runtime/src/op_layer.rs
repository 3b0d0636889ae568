//! [`OpLayer`]: an op's policy applied to every request of any tower
//! service (HTTP, gRPC, a database client behind `tower::Service`).
//!
//! Each request is one limited call of the op: breaker, rate (per key when
//! the layer has a key function), bulkhead, timeout and metrics, on the
//! same call path as `#[limit_blocking]`. The service's future is the
//! call's body, so the response future is a [`CallFuture`] (no boxing); a
//! refusal is the service's error, converted from [`LimitError`].

use std::hash::Hash;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use crate::call::{CallFuture, Once};
use crate::error::LimitError;
use crate::op::Op;
use crate::timeout::strategy::Cancel;

/// A tower layer applying the policy of an op to every request.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use limiter_runtime::{LimitError, OpConfig, OpLayer, Registry};
/// use tower::{service_fn, Layer, Service, ServiceExt};
///
/// let reg = Registry::new();
/// reg.configure("echo", OpConfig::default().with_rate_per_key("1/min").unwrap())
///     .unwrap();
/// let layer = OpLayer::new(reg.op("echo")).key(|user: &String| Some(user.clone()));
/// let mut svc = layer.layer(service_fn(|user: String| async move {
///     Ok::<_, LimitError>(format!("hello {user}"))
/// }));
/// assert!(svc.ready().await.unwrap().call("ann".into()).await.is_ok());
/// let refused = svc.ready().await.unwrap().call("ann".into()).await;
/// assert!(matches!(refused, Err(LimitError::RateLimited { .. })));
/// assert!(svc.ready().await.unwrap().call("bob".into()).await.is_ok(), "another key");
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct OpLayer<K = NoKey, R = AsError> {
    op: &'static Op,
    key: K,
    refusal: R,
}

/// A refusal is the service's error, converted with `From<LimitError>`
/// (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct AsError;

/// A refusal is a response made by a function: for services whose error
/// cannot hold one (a gRPC server answers a refusal with a status, not an
/// error). See [`OpLayer::refusal_response`].
#[derive(Debug, Clone, Copy)]
pub struct AsResponse<F>(F);

/// No key: the op's per-key limits do not apply.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoKey;

/// The key of a request for the op's per-key limits.
pub trait RequestKey<Req> {
    /// The key type (any `Hash` value: a user id, a tenant, an address).
    type Key: Hash;
    /// The key of `req`, if it has one.
    fn key(&self, req: &Req) -> Option<Self::Key>;
}

impl<Req> RequestKey<Req> for NoKey {
    type Key = ();
    fn key(&self, _: &Req) -> Option<()> {
        None
    }
}

impl<Req, F, T> RequestKey<Req> for F
where
    F: Fn(&Req) -> Option<T>,
    T: Hash,
{
    type Key = T;
    fn key(&self, req: &Req) -> Option<T> {
        self(req)
    }
}

impl OpLayer {
    /// A layer applying `op`'s policy. The layer keeps the op for the life
    /// of the process (its calls' futures borrow it, so responses need no
    /// reference count): build layers once, at start-up, as tower layers
    /// usually are.
    pub fn new(op: Op) -> Self {
        Self {
            op: Box::leak(Box::new(op)),
            key: NoKey,
            refusal: AsError,
        }
    }
}

impl<K, R> OpLayer<K, R> {
    /// Applies the op's per-key limits to the key `key` finds in each
    /// request (a request without one is limited by the op-wide limits
    /// only).
    pub fn key<F>(self, key: F) -> OpLayer<F, R> {
        OpLayer {
            op: self.op,
            key,
            refusal: self.refusal,
        }
    }

    /// Answers a refused request with `response(refusal)` instead of an
    /// error, for a service whose error type cannot hold a refusal (a
    /// tonic server's is `Infallible`; a refused gRPC call is a response
    /// whose status says so). With feature `tonic`, [`OpLayer::grpc`] sets
    /// it up.
    pub fn refusal_response<F>(self, response: F) -> OpLayer<K, AsResponse<F>> {
        OpLayer {
            op: self.op,
            key: self.key,
            refusal: AsResponse(response),
        }
    }

    /// The op whose policy the layer applies.
    pub fn op(&self) -> &Op {
        self.op
    }
}

impl<S, K: Clone, R: Clone> Layer<S> for OpLayer<K, R> {
    type Service = OpService<S, K, R>;

    fn layer(&self, inner: S) -> Self::Service {
        OpService {
            inner,
            op: self.op,
            key: self.key.clone(),
            refusal: self.refusal.clone(),
        }
    }
}

/// The service of [`OpLayer`].
#[derive(Debug, Clone)]
pub struct OpService<S, K = NoKey, R = AsError> {
    inner: S,
    op: &'static Op,
    key: K,
    refusal: R,
}

impl<S, K, Req> Service<Req> for OpService<S, K, AsError>
where
    S: Service<Req> + Clone,
    S::Error: From<LimitError>,
    K: RequestKey<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = CallFuture<'static, Once<CallLater<S, Req>>, Cancel>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.limited(req, |call| call)
    }
}

impl<S: Clone, K, R> OpService<S, K, R> {
    /// The op's call of `req`: keyed by the layer's key function, its body
    /// the inner service's call made once admitted (`wrap`ped).
    fn limited<Req, B, T, E>(
        &mut self,
        req: Req,
        wrap: impl FnOnce(CallLater<S, Req>) -> B,
    ) -> CallFuture<'static, Once<B>, Cancel>
    where
        S: Service<Req>,
        K: RequestKey<Req>,
        B: std::future::Future<Output = Result<T, E>>,
        E: From<LimitError>,
    {
        let key = self.key.key(&req);
        let body = wrap(CallLater::new(take_ready(&mut self.inner), req));
        let call = self.op.call();
        match &key {
            Some(k) => call.key(k).run_once(body),
            None => call.run_once(body),
        }
    }
}

/// The service that was polled ready, leaving a clone for the next
/// request (tower's usual hand-over when a call outlives `call`).
fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

pin_project_lite::pin_project! {
    /// The inner service's call, made at its first poll: only once the op
    /// admitted it, so a refused or waiting request never reaches the
    /// service (a tonic `Channel` sends a request as soon as it is
    /// called).
    pub struct CallLater<S, Req>
    where
        S: Service<Req>,
    {
        pending: Option<(S, Req)>,
        #[pin]
        fut: Option<S::Future>,
    }
}

impl<S: Service<Req>, Req> CallLater<S, Req> {
    fn new(service: S, req: Req) -> Self {
        Self {
            pending: Some((service, req)),
            fut: None,
        }
    }
}

impl<S: Service<Req>, Req> std::future::Future for CallLater<S, Req> {
    type Output = Result<S::Response, S::Error>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some((mut service, req)) = this.pending.take() {
            this.fut.set(Some(service.call(req)));
        }
        match this.fut.as_pin_mut() {
            Some(fut) => fut.poll(cx),
            None => unreachable!("the call was made above"),
        }
    }
}

/// The error of a body under [`AsResponse`]: a refusal, or the service's.
#[derive(Debug)]
pub enum Refused<E> {
    /// A limit of the op refused (or timed out) the call.
    Limit(LimitError),
    /// The service's own error.
    Inner(E),
}

impl<E> From<LimitError> for Refused<E> {
    fn from(e: LimitError) -> Self {
        Refused::Limit(e)
    }
}

pin_project_lite::pin_project! {
    /// The service's future with its error wrapped in [`Refused::Inner`].
    #[derive(Debug)]
    pub struct InnerErr<F> {
        #[pin]
        fut: F,
    }
}

impl<F, T, E> std::future::Future for InnerErr<F>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    type Output = Result<T, Refused<E>>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project()
            .fut
            .poll(cx)
            .map(|r| r.map_err(Refused::Inner))
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`OpService`] under [`AsResponse`]: the op's
    /// call, with a refusal turned into a response.
    #[must_use = "futures do nothing unless polled"]
    pub struct RefusalResponse<F, M> {
        #[pin]
        call: F,
        response: M,
    }
}

impl<F, M, T, E> std::future::Future for RefusalResponse<F, M>
where
    F: std::future::Future<Output = Result<T, Refused<E>>>,
    M: Fn(LimitError) -> T,
{
    type Output = Result<T, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match std::task::ready!(this.call.poll(cx)) {
            Ok(resp) => Poll::Ready(Ok(resp)),
            Err(Refused::Limit(e)) => Poll::Ready(Ok((this.response)(e))),
            Err(Refused::Inner(e)) => Poll::Ready(Err(e)),
        }
    }
}

impl<S, K, M, Req> Service<Req> for OpService<S, K, AsResponse<M>>
where
    S: Service<Req> + Clone,
    K: RequestKey<Req>,
    M: Fn(LimitError) -> S::Response + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        RefusalResponse<CallFuture<'static, Once<InnerErr<CallLater<S, Req>>>, Cancel>, M>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        RefusalResponse {
            call: self.limited(req, |fut| InnerErr { fut }),
            response: self.refusal.0.clone(),
        }
    }
}
