//! `LimiterLayer`: per-client, per-endpoint limits for an axum/tower
//! service, and per-route metrics keyed by axum's matched path template.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::MatchedPath;
use axum::http::{header, HeaderName, HeaderValue, Request};
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use tower::{Layer, Service};

use crate::clock::Clock;
use crate::error::{ConfigError, LimitError};
use crate::keys::KeySeed;
use crate::monitor::{KeyLimitView, KeyLimits, RouteRecorder, RuleDecision, UNMATCHED_ROUTE};
use crate::rate::KeyedOutcome;
use crate::registry::{registry, Registry};
use crate::timeout::PollWatch;

use super::identity::{
    normalize_id, Client, ClientClass, ForwardedHeader, IdentityConfig, IdentitySource,
};
use super::response::{ceil_secs, RATELIMIT, RATELIMIT_POLICY};
use super::rules::{CompiledRule, Rule};
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
    registry: &'static Registry,
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
    registry: &'static Registry,
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
            registry: registry(),
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
    /// The registry whose monitor records the requests (default: the
    /// global one).
    pub fn registry(mut self, registry: &'static Registry) -> Self {
        self.registry = registry;
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
            let compiled = CompiledRule::compile(rule, self.max_keys, |n, s| monitor.rule(n, s))?;
            if rules.iter().any(|r: &CompiledRule| r.name == compiled.name) {
                return Err(invalid(
                    "rule",
                    compiled.name.to_string(),
                    "two rules have this name; give one a `.name(...)`",
                ));
            }
            rules.push(compiled);
        }
        let shared = Arc::new(Shared {
            registry: self.registry,
            rules,
            identity,
            hasher: KeySeed::default(),
            clock: Clock::new(),
            slow_poll_ns: crate::clock::duration_ns(self.slow_poll),
            success_headers: self.success_headers,
        });
        let weak: Weak<dyn KeyLimits> = Arc::downgrade(&shared) as Weak<dyn KeyLimits>;
        monitor.register_limits(weak);
        self.registry.start_monitor();
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

/// What the rules decided for a request.
enum Verdict {
    /// Let it through, with these `RateLimit-Policy`/`RateLimit` values.
    Pass(Option<(String, String)>),
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
            return Ok(Verdict::Pass(None));
        }
        if client.class == ClientClass::Internal {
            if let Some(r) = candidates.next() {
                r.stats.count(RuleDecision::Bypassed);
            }
            return Ok(Verdict::Pass(None));
        }
        match candidates.find(|r| r.matches_class(client.class)) {
            None => Ok(Verdict::Pass(None)),
            Some(rule) => Err(rule),
        }
    }

    /// Takes one request of `client` from `rule`'s limit: in the shared
    /// store for a rule kept there (every instance shares the client's
    /// budget), else, or when the store cannot answer, in process.
    async fn check(&self, rule: &CompiledRule, client: &Client) -> Verdict {
        let taken = match (rule.backend, self.registry.store()) {
            (crate::Backend::Redis, Some(store)) => self.take_shared(rule, client, &**store).await,
            _ => None,
        };
        let (outcome, (window, left)) = match taken {
            Some(t) => t,
            None => {
                let key = self.hasher.hash(&client.id.as_str());
                rule.limiter.try_acquire_remaining(key, self.clock.now_ns())
            }
        };
        self.verdict(rule, client, outcome, window, left)
    }

    /// The rule's check in the shared store; `None` when it cannot answer
    /// (the in-process limit decides then).
    async fn take_shared(
        &self,
        rule: &CompiledRule,
        client: &Client,
        store: &dyn crate::backend::SharedState,
    ) -> Option<(KeyedOutcome, (usize, u64))> {
        let key = store.key_name(&client.id.as_str());
        match store
            .check(&rule.store_name, Some(key), &rule.limiter.spec)
            .await
        {
            Ok(crate::backend::Check::Admitted { remaining }) => {
                Some((KeyedOutcome::Admitted, (0, remaining)))
            }
            Ok(crate::backend::Check::Limited { wait, window }) => Some((
                KeyedOutcome::Limited(crate::rate::Refusal { wait, window }),
                (window, 0),
            )),
            Err(e) => {
                tracing::warn!(rule = &*rule.name, error = %e, "the shared store did not answer: the rule's in-process limit decides");
                None
            }
        }
    }

    /// The verdict of `rule` for `client` once its limit decided.
    fn verdict(
        &self,
        rule: &CompiledRule,
        client: &Client,
        outcome: KeyedOutcome,
        window: usize,
        left: u64,
    ) -> Verdict {
        let (refusal, headers) = match outcome {
            KeyedOutcome::Admitted => {
                rule.stats.count(RuleDecision::Allowed);
                if !self.success_headers {
                    return Verdict::Pass(None);
                }
                let limit = rule.limit(window, left, None);
                return Verdict::Pass(Some((rule.policy.clone(), limit)));
            }
            KeyedOutcome::Limited(r) => {
                let err = LimitError::RateLimited {
                    op: rule.name.clone(),
                    retry_after: r.wait,
                    quota: r.quota(&rule.limiter.spec, true),
                };
                let reset = Duration::from_secs(ceil_secs(r.wait).max(1));
                let limit = rule.limit(r.window, 0, Some(reset));
                (err, Some((rule.policy.clone(), limit)))
            }
            KeyedOutcome::TableFull => {
                let err = LimitError::Overloaded {
                    op: rule.name.clone(),
                    retry_after: Duration::from_secs(1),
                };
                (err, None)
            }
        };
        if rule.shadow {
            rule.stats.count(RuleDecision::ShadowRejected);
            tracing::info!(
                rule = &*rule.name,
                client = %self.log_id(client),
                class = %client.class,
                reason = refusal.code(),
                "shadow mode: the rule would have refused this request"
            );
            Verdict::Pass(None)
        } else {
            rule.stats.count(RuleDecision::Rejected);
            tracing::debug!(rule = &*rule.name, client = %self.log_id(client), "request refused");
            Verdict::Refuse(refusal, headers)
        }
    }
}

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

impl KeyLimits for Shared {
    fn usage(&self, key: &str) -> Vec<KeyLimitView> {
        let hash = self.hasher.hash(&&*normalize_id(key));
        let now = self.clock.now_ns();
        self.rules
            .iter()
            .filter_map(|r| {
                let available = r.limiter.available(hash, now)?;
                Some(KeyLimitView {
                    source: format!("rule {}", r.name),
                    limit: Some(
                        r.limiter
                            .spec
                            .windows
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                    ),
                    available: Some(available),
                    in_flight: 0,
                    queued: 0,
                })
            })
            .collect()
    }

    fn reset(&self, key: &str) -> usize {
        let hash = self.hasher.hash(&&*normalize_id(key));
        self.rules.iter().filter(|r| r.limiter.remove(hash)).count()
    }
}

impl<S, B> Service<Request<B>> for LimiterService<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
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
                    flight.finish(resp.status().as_u16());
                    return Ok(resp);
                }
                Verdict::Pass(headers) => headers,
            };
            let fut = TimedPolls {
                fut: inner.call(req),
                shared: Arc::clone(&shared),
                recorder: flight.recorder.clone(),
            };
            let Ok(mut resp) = fut.await;
            if let Some((policy, limit)) = headers {
                // An op inside the handler that refused has its own say.
                if !resp.headers().contains_key(RATELIMIT) {
                    set_rate_limit(resp.headers_mut(), &policy, &limit);
                }
            }
            flight.finish(resp.status().as_u16());
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
    start: Instant,
    done: bool,
}

impl InFlight {
    fn finish(&mut self, status: u16) {
        self.done = true;
        self.recorder.finish(status, self.start.elapsed());
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.done {
            self.recorder.abandon();
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
            .registry(Box::leak(Box::new(Registry::new())))
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
