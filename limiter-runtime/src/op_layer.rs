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
pub struct OpLayer<K = NoKey> {
    op: &'static Op,
    key: K,
}

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
        }
    }
}

impl<K> OpLayer<K> {
    /// Applies the op's per-key limits to the key `key` finds in each
    /// request (a request without one is limited by the op-wide limits
    /// only).
    pub fn key<F>(self, key: F) -> OpLayer<F> {
        OpLayer { op: self.op, key }
    }

    /// The op whose policy the layer applies.
    pub fn op(&self) -> &Op {
        self.op
    }
}

impl<S, K: Clone> Layer<S> for OpLayer<K> {
    type Service = OpService<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        OpService {
            inner,
            op: self.op,
            key: self.key.clone(),
        }
    }
}

/// The service of [`OpLayer`].
#[derive(Debug, Clone)]
pub struct OpService<S, K = NoKey> {
    inner: S,
    op: &'static Op,
    key: K,
}

impl<S, K, Req> Service<Req> for OpService<S, K>
where
    S: Service<Req>,
    S::Error: From<LimitError>,
    K: RequestKey<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = CallFuture<'static, Once<S::Future>, Cancel>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = self.key.key(&req);
        // The inner future is made now (the service was polled ready) and
        // polled only once the call is admitted.
        let body = self.inner.call(req);
        let call = self.op.call();
        match &key {
            Some(k) => call.key(k).run_once(body),
            None => call.run_once(body),
        }
    }
}
