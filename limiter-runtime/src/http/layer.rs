//! `LimiterLayer`: per-client, per-endpoint limits for an axum/tower
//! service, and per-route metrics keyed by axum's matched path template.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::MatchedPath;
use axum::http::{header, HeaderName, HeaderValue, Request};
use axum::response::{IntoResponse, Response};
use axum::BoxError;
use ipnet::IpNet;
use tower::{Layer, Service};

use crate::backend::Check;
use crate::clock::Clock;
use crate::error::{ConfigError, LimitError};
use crate::keys::KeySeed;
use crate::metrics::CallOutcome;
use crate::monitor::{RouteRecorder, RuleDecision, UNMATCHED_ROUTE};
use crate::op::{KeyedTerms, Op};
use crate::rate::{KeyedOutcome, Refusal};
use crate::registry::registry;
use crate::registry_ref::RegistryRef;
use crate::settings::{Backend, Degradation};
use crate::timeout::PollWatch;

use super::identity::{Client, ClientClass, ForwardedHeader, IdentityConfig, IdentitySource};
use super::response::{ceil_secs, Refused, RATELIMIT, RATELIMIT_POLICY};
use super::rules::{CompiledRule, Rule, RuleHeaders};
use super::verify::Verifier;

/// A tower layer that applies per-client limits by rule and records every
/// request in the registry's monitor (by method and matched route
/// template).
///
/// Every clone of the layer, and of the services it makes, shares one set
/// of limits: a client's budget is the same whichever connection or worker
/// its requests land on.
///
/// ```
/// use axum::{routing::get, Router};
/// use limiter_runtime::http::{ClientClass, LimiterLayer, Rule};
///
/// let layer = LimiterLayer::builder()
///     .rule(Rule::new("/auth/login").per_minute(5).per_hour(20))
///     .rule(Rule::new("/api/{*rest}").classes([ClientClass::Api]).per_minute(1000))
///     .rule(Rule::new("*").per_minute(100))
///     .trust_proxies(["10.0.0.0/8"])
///     .internal_secret("x-internal-secret", "change me")
///     .build()
///     .expect("valid rules");
/// let app: Router = Router::new()
///     .route("/api/users/{id}", get(|| async { "ok" }))
///     .layer(layer);
/// ```
///
/// Apply it with `Router::layer` so it sees the matched route (requests
/// matching no route reach it only when the router has a `fallback`, and
/// are counted as `<unmatched>`), and serve with
/// `into_make_service_with_connect_info::<SocketAddr>()` so it knows peer
/// addresses.
#[derive(Clone)]
pub struct LimiterLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LimiterLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.shared.rules.iter().map(|r| &*r.name).collect();
        f.debug_struct("LimiterLayer")
            .field("rules", &names)
            .finish()
    }
}

struct Shared {
    registry: RegistryRef,
    rules: Vec<CompiledRule>,
    identity: IdentityConfig,
    hasher: KeySeed,
    clock: Clock,
    slow_poll_ns: u64,
    success_headers: bool,
}

/// Builds a [`LimiterLayer`]; every setting is checked by
/// [`LimiterLayerBuilder::build`].
#[derive(Debug)]
pub struct LimiterLayerBuilder {
    registry: RegistryRef,
    rules: Vec<Rule>,
    identity: IdentityConfig,
    proxies: Vec<String>,
    secret: Option<(String, Vec<u8>)>,
    slow_poll: Duration,
    max_keys: usize,
    success_headers: bool,
}

impl LimiterLayer {
    /// A builder with no rules, the default identity sources, and the
    /// global registry.
    pub fn builder() -> LimiterLayerBuilder {
        LimiterLayerBuilder {
            registry: registry().into(),
            rules: Vec::new(),
            identity: IdentityConfig::default(),
            proxies: Vec::new(),
            secret: None,
            slow_poll: Duration::from_millis(1),
            max_keys: 100_000,
            success_headers: true,
        }
    }
}

impl LimiterLayerBuilder {
    /// The registry whose rules' ops take the requests and whose monitor
    /// records them (default: the global one): `&'static Registry` or
    /// `Arc<Registry>`.
    pub fn registry(mut self, registry: impl Into<RegistryRef>) -> Self {
        self.registry = registry.into();
        self
    }

    /// Adds a rule; rules are tried in the order added.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Where callers' identities come from, tried in order (default: a
    /// [`Client`] the application put in the request's extensions, then
    /// the peer address). A credential is tried only with a verifier:
    /// see [`api_keys`](Self::api_keys) and [`bearer`](Self::bearer).
    pub fn identity(mut self, sources: impl IntoIterator<Item = IdentitySource>) -> Self {
        self.identity.sources = sources.into_iter().collect();
        self
    }

    /// API keys in `header` are identities (class `api`, id
    /// `key:<identity>`) once `verifier` accepts them; tried before the
    /// peer address. A key the verifier refuses is no identity: its sender
    /// is an anonymous client.
    ///
    /// ```
    /// use limiter_runtime::http::{KeySet, LimiterLayer, Rule};
    /// use limiter_runtime::http::ClientClass::{Anonymous, Api};
    /// let layer = LimiterLayer::builder()
    ///     .api_keys("x-api-key", KeySet::new().key("k-123", "acme"))
    ///     .rule(Rule::new("*").name("anonymous").classes([Anonymous]).per_minute(10))
    ///     .rule(Rule::new("*").name("api keys").classes([Api]).per_minute(600))
    ///     .build()
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn api_keys(self, header: &'static str, verifier: impl Into<Verifier>) -> Self {
        self.credential_source(IdentitySource::api_key(header, verifier))
    }

    /// Bearer tokens are identities (class `authenticated` unless the
    /// verifier says otherwise, id `bearer:<identity>`) once `verifier`
    /// accepts them; tried before the peer address.
    pub fn bearer(self, verifier: impl Into<Verifier>) -> Self {
        self.credential_source(IdentitySource::bearer(verifier))
    }

    /// Adds `source` before the peer address (at the end if there is none).
    fn credential_source(mut self, source: IdentitySource) -> Self {
        let sources = &mut self.identity.sources;
        let at = sources
            .iter()
            .position(|s| matches!(s, IdentitySource::PeerAddress))
            .unwrap_or(sources.len());
        sources.insert(at, source);
        self
    }

    /// Proxies (addresses or CIDR networks) whose forwarded chain is
    /// believed. From any other peer, forwarded headers are ignored.
    pub fn trust_proxies<S: AsRef<str>>(mut self, proxies: impl IntoIterator<Item = S>) -> Self {
        self.proxies
            .extend(proxies.into_iter().map(|p| p.as_ref().to_owned()));
        self
    }

    /// Which header trusted proxies write (default `X-Forwarded-For`).
    pub fn forwarded_header(mut self, header: ForwardedHeader) -> Self {
        self.identity.forwarded = header;
        self
    }

    /// Internal callers send `secret` in `header` and bypass every rule.
    /// The comparison takes the same time wherever the values differ.
    pub fn internal_secret(mut self, header: &str, secret: impl Into<Vec<u8>>) -> Self {
        self.secret = Some((header.to_owned(), secret.into()));
        self
    }

    /// Polls of a handler longer than this count as slow polls of its route
    /// (default 1 ms).
    pub fn slow_poll(mut self, threshold: Duration) -> Self {
        self.slow_poll = threshold;
        self
    }

    /// Most clients tracked per rule (default 100 000); idle ones are
    /// dropped first when it fills.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Whether admitted responses carry `RateLimit`/`RateLimit-Policy` with
    /// the client's remaining budget (default `true`).
    pub fn success_headers(mut self, on: bool) -> Self {
        self.success_headers = on;
        self
    }

    /// Checks every rule and setting and builds the layer.
    pub fn build(self) -> Result<LimiterLayer, ConfigError> {
        let invalid = |field: &'static str, value: String, reason: &str| ConfigError::Invalid {
            op: "<limiter layer>".into(),
            field,
            value,
            reason: reason.into(),
        };
        let mut identity = self.identity;
        for p in &self.proxies {
            let net = p
                .parse::<IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    invalid(
                        "trust_proxies",
                        p.clone(),
                        "not an IP address or CIDR network (e.g. 10.0.0.0/8)",
                    )
                })?;
            identity.trusted_proxies.push(net);
        }
        if let Some((header, secret)) = self.secret {
            let name = HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                invalid("internal_secret", header.clone(), "not a valid header name")
            })?;
            if secret.is_empty() {
                return Err(invalid(
                    "internal_secret",
                    "\"\"".into(),
                    "an empty secret would let anyone bypass the limits",
                ));
            }
            identity.internal = Some((name, secret));
        }
        if identity.sources.is_empty() {
            return Err(invalid(
                "identity",
                "[]".into(),
                "needs at least one source",
            ));
        }
        if self.max_keys == 0 {
            return Err(invalid("max_keys", "0".into(), "must be at least 1"));
        }
        let monitor = self.registry.monitor();
        let mut rules = Vec::with_capacity(self.rules.len());
        for rule in self.rules {
            let compiled = CompiledRule::compile(rule, &self.registry, self.max_keys, |n, s| {
                monitor.rule(n, s)
            })?;
            if rules.iter().any(|r: &CompiledRule| r.name == compiled.name) {
                return Err(invalid(
                    "rule",
                    compiled.name.to_string(),
                    "two rules have this name; give one a `.name(...)`",
                ));
            }
            rules.push(compiled);
        }
        self.registry.start_monitor();
        let shared = Arc::new(Shared {
            clock: self.registry.clock(),
            registry: self.registry,
            rules,
            identity,
            hasher: KeySeed::default(),
            slow_poll_ns: crate::clock::duration_ns(self.slow_poll),
            success_headers: self.success_headers,
        });
        Ok(LimiterLayer { shared })
    }
}

impl<S> Layer<S> for LimiterLayer {
    type Service = LimiterService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LimiterService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service of [`LimiterLayer`].
#[derive(Clone)]
pub struct LimiterService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for LimiterService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimiterService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// What the rules decided for a request.
enum Verdict {
    /// Let it through, with these `RateLimit-Policy`/`RateLimit` values;
    /// the op of the rule that admitted it records how it ends.
    Pass(Option<(String, String)>, Option<Op>),
    /// Refuse it, with these `RateLimit-Policy`/`RateLimit` values instead
    /// of the error's own (a rule tells every window).
    Refuse(LimitError, Option<(String, String)>),
}

impl Shared {
    /// What the rules decide for `req`, from `client`, its caller: a
    /// verdict now, or the rule whose limit is to be checked.
    fn decide<B>(&self, req: &Request<B>, client: &Client) -> Result<Verdict, &CompiledRule> {
        let path = req.uri().path();
        let method = req.method();
        let mut candidates = self
            .rules
            .iter()
            .filter(|r| r.matches_request(method, path))
            .peekable();
        if candidates.peek().is_none() {
            return Ok(Verdict::Pass(None, None));
        }
        if client.class == ClientClass::Internal {
            if let Some(r) = candidates.next() {
                r.stats.count(RuleDecision::Bypassed);
            }
            return Ok(Verdict::Pass(None, None));
        }
        match candidates.find(|r| r.matches_class(client.class)) {
            None => Ok(Verdict::Pass(None, None)),
            Some(rule) => Err(rule),
        }
    }

    /// Takes one request of `client` from `rule`'s limit, its op's per-key
    /// rate in force: in the shared store for a rule kept there (every
    /// instance shares the client's budget), else in process; when the
    /// store cannot answer, the op's degradation decides.
    async fn check(&self, rule: &CompiledRule, client: &Client) -> Verdict {
        let Some(terms) = rule.op.keyed_terms() else {
            rule.stats.count(RuleDecision::Allowed);
            return Verdict::Pass(None, None);
        };
        let headers = rule.headers(&terms.keyed);
        let key = rule.op.key_hash(&client.id.as_str());
        let shared = match (terms.backend, self.registry.store()) {
            (Backend::Local, _) => None,
            (Backend::Redis, None) => Some(Err(NO_STORE.to_owned())),
            (Backend::Redis, Some(store)) => {
                let shared_key = store.key_name(&client.id.as_str());
                Some(match rule.op.take_leased(shared_key).await {
                    Some(Ok(held)) => Ok(Taken::Admitted {
                        window: 0,
                        left: held,
                    }),
                    Some(Err(Ok(refusal))) => Ok(Taken::Limited(refusal)),
                    Some(Err(Err(failure))) => Err(failure),
                    None => take_shared(rule, &terms, shared_key, &**store).await,
                })
            }
        };
        let taken = match shared {
            None => Taken::local(&terms, key, rule.op.now_ns(), 1),
            Some(Ok(taken)) => taken,
            Some(Err(failure)) => {
                rule.op.count_fallback();
                tracing::debug!(rule = &*rule.name, reason = %failure, degradation = %terms.degradation, "the shared store did not answer");
                match terms.degradation {
                    Degradation::FailOpen => Taken::Admitted {
                        window: 0,
                        left: u64::MAX,
                    },
                    Degradation::FailClosed => Taken::Overloaded(terms.retry_after),
                    // This instance's share of the shared limit.
                    Degradation::Local => {
                        Taken::local(&terms, key, rule.op.now_ns(), rule.op.degraded_share())
                    }
                }
            }
        };
        self.verdict(rule, &headers, client, taken)
    }

    /// The verdict of `rule` for `client` once its limit decided.
    fn verdict(
        &self,
        rule: &CompiledRule,
        headers: &RuleHeaders,
        client: &Client,
        taken: Taken,
    ) -> Verdict {
        let op = &rule.op;
        let (refusal, values) = match taken {
            Taken::Admitted { window, left } => {
                rule.stats.count(RuleDecision::Allowed);
                op.count_admitted();
                let values = self
                    .success_headers
                    .then(|| (headers.policy.clone(), headers.limit(window, left, None)));
                return Verdict::Pass(values, Some(op.clone()));
            }
            Taken::Limited(r) => {
                let err = LimitError::RateLimited {
                    op: rule.name.clone(),
                    retry_after: r.wait,
                    quota: r.quota(&headers.keyed.spec, true),
                };
                let reset = Duration::from_secs(ceil_secs(r.wait).max(1));
                let limit = headers.limit(r.window, 0, Some(reset));
                (err, Some((headers.policy.clone(), limit)))
            }
            Taken::Overloaded(retry_after) => {
                let err = LimitError::Overloaded {
                    op: rule.name.clone(),
                    retry_after,
                };
                (err, None)
            }
        };
        op.count_refused(&refusal);
        if rule.shadow {
            rule.stats.count(RuleDecision::ShadowRejected);
            tracing::info!(
                rule = &*rule.name,
                client = %self.log_id(client),
                class = %client.class,
                reason = refusal.code(),
                "shadow mode: the rule would have refused this request"
            );
            Verdict::Pass(None, None)
        } else {
            rule.stats.count(RuleDecision::Rejected);
            tracing::debug!(rule = &*rule.name, client = %self.log_id(client), "request refused");
            Verdict::Refuse(refusal, values)
        }
    }
}

/// What a rule's limit decided for one request.
enum Taken {
    /// Let through; `left` calls are left in window `window`.
    Admitted { window: usize, left: u64 },
    /// Over the limit.
    Limited(Refusal),
    /// Refused without a verdict of the limit (a full key table, or a
    /// shared store that cannot answer under `fail_closed`).
    Overloaded(Duration),
}

impl Taken {
    /// The decision of the in-process per-key rate, a request taking `n`
    /// tokens (more than one: this instance's share while the shared
    /// store cannot answer).
    fn local(terms: &KeyedTerms, key: u64, now: u64, n: u64) -> Self {
        match terms.keyed.try_acquire_remaining(key, now, n) {
            (KeyedOutcome::Admitted, (window, left)) => Taken::Admitted { window, left },
            (KeyedOutcome::Limited(r), _) => Taken::Limited(r),
            (KeyedOutcome::TableFull, _) => Taken::Overloaded(Duration::from_secs(1)),
        }
    }
}

/// The rule's check in the shared store, or why it could not answer.
async fn take_shared(
    rule: &CompiledRule,
    terms: &KeyedTerms,
    key: u64,
    store: &dyn crate::backend::SharedState,
) -> Result<Taken, String> {
    match store
        .check(
            &rule.store_name,
            Some(key),
            &terms.keyed.spec,
            crate::backend::Take::Tokens(1),
        )
        .await
    {
        Ok(Check::Admitted { remaining }) => Ok(Taken::Admitted {
            window: 0,
            left: remaining,
        }),
        Ok(Check::Limited { wait, window }) => Ok(Taken::Limited(Refusal { wait, window })),
        Err(e) => Err(e.to_string()),
    }
}

/// Why a rule kept in the store was decided without it.
const NO_STORE: &str = "no shared store is set (Registry::set_redis)";

impl Shared {
    /// How a client appears in logs: addresses as they are, API keys and
    /// bearer tokens only as a fingerprint (they are credentials).
    fn log_id(&self, client: &Client) -> String {
        match client.id.split_once(':') {
            Some(("ip", _)) | None => client.id.clone(),
            Some((kind, _)) => format!("{kind}:#{:016x}", self.hasher.hash(&client.id.as_str())),
        }
    }
}

/// Any inner service answering `http::Response`s with any body (axum's,
/// hyper's, tonic's, `tower-http`'s) and any error: its responses come out
/// with axum's [`Body`](axum::body::Body) (not boxed again when they have
/// it already), its errors as they are.
impl<S, B, ResBody> Service<Request<B>> for LimiterService<S>
where
    S: Service<Request<B>, Response = axum::http::Response<ResBody>> + Clone + Send + 'static,
    S::Error: Send + 'static,
    S::Future: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let start = Instant::now();
        let template = req
            .extensions()
            .get::<MatchedPath>()
            .map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
        let recorder = self
            .shared
            .registry
            .monitor()
            .route(req.method().as_str(), template);
        recorder.start();
        let mut flight = InFlight {
            recorder,
            op: None,
            start,
            done: false,
        };
        // The service that was polled ready goes with this request (a
        // verifier may make it wait); a clone stays for the next one.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let client = shared
                .identity
                .identify(req.headers(), req.extensions())
                .await;
            let verdict = match shared.decide(&req, &client) {
                Ok(v) => v,
                Err(rule) => shared.check(rule, &client).await,
            };
            req.extensions_mut().insert(client);
            let headers = match verdict {
                Verdict::Refuse(err, headers) => {
                    let mut resp = err.into_response();
                    if let Some((policy, limit)) = headers {
                        set_rate_limit(resp.headers_mut(), &policy, &limit);
                    }
                    if has_body(&req) {
                        // The body is left unread: the connection cannot
                        // carry another request, and a client reusing it
                        // would see it closed mid-request. Say so.
                        resp.headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    flight.finish(&resp);
                    return Ok(resp);
                }
                Verdict::Pass(headers, op) => {
                    flight.op = op;
                    headers
                }
            };
            let fut = TimedPolls {
                fut: inner.call(req),
                shared: Arc::clone(&shared),
                recorder: flight.recorder.clone(),
            };
            let mut resp = match fut.await {
                Ok(resp) => resp.map(Body::new),
                Err(e) => {
                    // The server answers the error (hyper: the connection
                    // is closed): a failure of the service.
                    flight.end(500, false);
                    return Err(e);
                }
            };
            if let Some((policy, limit)) = headers {
                // An op inside the handler that refused has its own say.
                if !resp.headers().contains_key(RATELIMIT) {
                    set_rate_limit(resp.headers_mut(), &policy, &limit);
                }
            }
            flight.finish(&resp);
            Ok(resp)
        })
    }
}

/// Sets `RateLimit-Policy` and `RateLimit` (values built here are
/// printable ASCII).
fn set_rate_limit(h: &mut axum::http::HeaderMap, policy: &str, limit: &str) {
    if let (Ok(p), Ok(l)) = (HeaderValue::from_str(policy), HeaderValue::from_str(limit)) {
        h.insert(RATELIMIT_POLICY, p);
        h.insert(RATELIMIT, l);
    }
}

/// Whether the request announces a body (which a refusal leaves unread).
fn has_body<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// A request being handled: counted as abandoned if its future is dropped
/// before the response (the client went away).
struct InFlight {
    recorder: RouteRecorder,
    /// The op of the rule that let the request through.
    op: Option<Op>,
    start: Instant,
    done: bool,
}

impl InFlight {
    /// Counts the response: a limit's refusal (marked [`Refused`]) as
    /// rejected, any other 5xx as a failure.
    fn finish(&mut self, resp: &Response) {
        let refused = resp.extensions().get::<Refused>().is_some();
        self.end(resp.status().as_u16(), refused);
    }

    fn end(&mut self, status: u16, refused: bool) {
        self.done = true;
        let took = self.start.elapsed();
        if refused {
            self.recorder.refused(status, took);
        } else {
            self.recorder.finish(status, took);
        }
        if let Some(op) = &self.op {
            let outcome = if refused {
                CallOutcome::Excused
            } else if status >= 500 {
                CallOutcome::Failure
            } else {
                CallOutcome::Success
            };
            op.count_finished(outcome, took);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.done {
            self.recorder.abandon();
            if let Some(op) = &self.op {
                op.count_finished(CallOutcome::Cancelled, self.start.elapsed());
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// Counts polls of the handler longer than the slow-poll threshold. The
    /// handler's future is pinned in place (inside the request's future).
    struct TimedPolls<F> {
        #[pin]
        fut: F,
        // The layer's clock and slow-poll threshold.
        shared: Arc<Shared>,
        recorder: RouteRecorder,
    }
}

impl<F: Future> Future for TimedPolls<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let clock = &this.shared.clock;
        // The same poll timing as a limited call's (`timeout::PollWatch`).
        let poll_start = clock.now_ns();
        let watch = PollWatch::start(clock);
        let out = this.fut.poll(cx);
        let (_, took) = watch.stop(clock, poll_start);
        if took > this.shared.slow_poll_ns {
            this.recorder.slow_poll();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_appear_in_logs_only_as_fingerprints() {
        let layer = LimiterLayer::builder()
            .registry(Arc::new(crate::Registry::new()))
            .build()
            .unwrap();
        let id = |class, id: &str| {
            layer.shared.log_id(&Client {
                class,
                id: id.to_owned(),
            })
        };
        assert_eq!(
            id(ClientClass::Anonymous, "ip:198.51.100.7"),
            "ip:198.51.100.7"
        );
        let token = id(ClientClass::Authenticated, "bearer:eyJhbGciOi.SECRET.sig");
        assert!(
            token.starts_with("bearer:#") && !token.contains("SECRET"),
            "{token}"
        );
        let key = id(ClientClass::Api, "key:k-123");
        assert!(key.starts_with("key:#") && !key.contains("k-123"), "{key}");
        assert_eq!(
            key,
            id(ClientClass::Api, "key:k-123"),
            "stable within the process"
        );
    }
}
