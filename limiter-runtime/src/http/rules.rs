//! Rules of the limiter layer: which requests (path pattern, methods,
//! client classes) get which per-client limits.

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;

use arc_swap::ArcSwapOption;

use crate::error::{ConfigError, QuotaUnit};
use crate::monitor::RuleStats;
use crate::op::Op;
use crate::rate::KeyedRate;
use crate::registry::Registry;
use crate::settings::{Algorithm, Backend, OpConfig};
use crate::spec::{parse_rate, Rate};

use super::identity::ClientClass;
use super::pattern::PathPattern;
use super::response::{limit_item, policy_item};

/// One rule: requests it applies to and the limits each client gets.
///
/// A rule is an op of the layer's registry, named by the rule, whose
/// per-key rate (`rate_per_key`) is the rule's windows, keyed by client id.
/// So a rule is configured, overridden at run time and monitored like any
/// op: `registry.configure("login", OpConfig { .. })`, `[ops.login]` in
/// `limiter.toml`, `LIMITER_OP_LOGIN_RATE_PER_KEY=10/min`, and its calls and
/// refusals in the op metric families (`/metrics`, `/monitoring/ops/login`).
/// Of the op's settings a rule uses its per-key rate, algorithm, burst,
/// backend, degradation, `max_keys` and `enabled`; a request a rule admits
/// is counted as one call of the op, a success unless answered with a 5xx.
/// (If an op of the rule's name is declared already in the registry, by
/// another layer or an attribute, the rule's op is named `<name>#2`, and so
/// on: layers never share in-process state or change each other's limits.)
///
/// Rules are tried in the order they were added; the first whose pattern,
/// methods and classes all match applies (so put specific rules before a
/// catch-all `*`). A request no rule matches is not limited.
///
/// ```
/// use axum::http::Method;
/// use limiter_runtime::http::{ClientClass, Rule};
///
/// let login = Rule::new("/auth/login")
///     .methods([Method::POST])
///     .per_minute(5)
///     .per_hour(20)
///     .per_day(100);
/// let anonymous = Rule::new("*")
///     .classes([ClientClass::Anonymous])
///     .per_minute(20)
///     .shadow(true); // count what it would refuse, refuse nothing
/// ```
#[derive(Debug, Clone)]
pub struct Rule {
    pub(crate) name: Option<String>,
    pub(crate) pattern: String,
    pub(crate) methods: Vec<Method>,
    pub(crate) classes: Vec<ClientClass>,
    pub(crate) limits: Vec<(&'static str, Result<Rate, String>)>,
    pub(crate) burst: Option<u32>,
    pub(crate) algorithm: Option<Algorithm>,
    pub(crate) backend: Backend,
    pub(crate) shadow: bool,
}

impl Rule {
    /// A rule for paths matching `pattern` (axum template syntax:
    /// `/users/{id}`, `/files/{*path}`, or `*` for every path). Checked when
    /// the layer is built.
    pub fn new(pattern: &str) -> Self {
        Self {
            name: None,
            pattern: pattern.to_owned(),
            methods: Vec::new(),
            classes: Vec::new(),
            limits: Vec::new(),
            burst: None,
            algorithm: None,
            backend: Backend::Local,
            shadow: false,
        }
    }

    /// Names the rule in metrics, logs and the `RateLimit-Policy` header
    /// (default: the methods and the pattern, e.g. `POST /auth/login`).
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Only requests with one of these methods (default: every method).
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods.extend(methods);
        self
    }

    /// Only callers of these classes (default: every class but internal
    /// callers, who bypass every rule).
    pub fn classes(mut self, classes: impl IntoIterator<Item = ClientClass>) -> Self {
        self.classes.extend(classes);
        self
    }

    fn count(mut self, field: &'static str, n: u32, period: Duration) -> Self {
        let rate = Rate::new(n, period).map_err(|_| format!("{field} = {n}: must be at least 1"));
        self.limits.push((field, rate));
        self
    }

    /// At most `n` requests per second per client.
    pub fn per_second(self, n: u32) -> Self {
        self.count("per_second", n, Duration::from_secs(1))
    }

    /// At most `n` requests per minute per client.
    pub fn per_minute(self, n: u32) -> Self {
        self.count("per_minute", n, Duration::from_secs(60))
    }

    /// At most `n` requests per hour per client.
    pub fn per_hour(self, n: u32) -> Self {
        self.count("per_hour", n, Duration::from_secs(3600))
    }

    /// At most `n` requests per day per client.
    pub fn per_day(self, n: u32) -> Self {
        self.count("per_day", n, Duration::from_secs(86_400))
    }

    /// A limit in the attribute syntax, e.g. `"5/10s"`.
    pub fn limit(mut self, rate: &str) -> Self {
        self.limits.push((
            "limit",
            parse_rate(rate).map_err(|e| format!("limit = {rate:?}: {e}")),
        ));
        self
    }

    /// Where the rule keeps each client's budget: in process (the
    /// default), or in the registry's shared store (`Backend::Redis`, set
    /// with `Registry::set_redis`), so that every instance of the service
    /// shares one budget per client. Like any op's, it can be set in
    /// configuration instead (`[ops.<rule name>] backend = "redis"`,
    /// `LIMITER_OP_<RULE NAME>_BACKEND=redis`); when the store cannot
    /// answer, the op's `degradation` decides (`local` by default: the
    /// in-process limit).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Requests a client may send at once before the first (shortest)
    /// limit's pace applies (token bucket only; default: that limit's count).
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// The algorithm. By default every window is an exact sliding window
    /// (`sliding_exact`): in any span of a window a client is admitted at
    /// most the quota its `RateLimit-Policy` names, which is what the
    /// headers promise. A rule with a [`burst`](Self::burst) is a token
    /// bucket instead (GCRA): its quota is its sustained rate, and a
    /// client with a full bucket may get the burst on top of it.
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = Some(algorithm);
        self
    }

    /// Shadow mode: count and log the requests the rule would refuse, but
    /// let them through. For trying a limit on live traffic.
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    fn default_name(&self) -> String {
        if self.methods.is_empty() {
            self.pattern.clone()
        } else {
            let methods: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
            format!("{} {}", methods.join(","), self.pattern)
        }
    }
}

/// A rule ready to apply: its matching terms, and the op that holds its
/// limits (named by the rule; see [`claim_op`]).
pub(crate) struct CompiledRule {
    pub(crate) name: Arc<str>,
    /// The op whose per-key rate is the rule's limit, keyed by client id.
    pub(crate) op: Op,
    /// The rule's name in the shared store: every instance's rule of this
    /// name shares one budget per client there.
    pub(crate) store_name: String,
    pub(crate) pattern: PathPattern,
    pub(crate) methods: Vec<Method>,
    pub(crate) classes: Vec<ClientClass>,
    pub(crate) shadow: bool,
    pub(crate) stats: Arc<RuleStats>,
    /// The headers of the limit last seen in force (rebuilt when the op's
    /// configuration changes its windows).
    headers: ArcSwapOption<RuleHeaders>,
}

/// What the `RateLimit-Policy` and `RateLimit` headers of a rule say, for
/// one per-key rate of its op.
pub(crate) struct RuleHeaders {
    pub(crate) keyed: Arc<KeyedRate>,
    /// The stable name of each window (in the spec's order): the rule's
    /// name for a rule of one window, else the name and the window
    /// (`"anonymous/60s"`).
    window_names: Vec<String>,
    /// The `RateLimit-Policy` value: every window, under its name.
    pub(crate) policy: String,
}

impl RuleHeaders {
    fn new(rule: &str, keyed: Arc<KeyedRate>) -> Self {
        let windows = &keyed.spec.windows;
        let window_names = window_names(rule, windows);
        let policy = windows
            .iter()
            .zip(&window_names)
            .map(|(w, n)| {
                policy_item(
                    n,
                    u64::from(w.count()),
                    Some(w.period()),
                    QuotaUnit::Requests,
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            keyed,
            window_names,
            policy,
        }
    }

    /// The `RateLimit` value telling that window `window` has `left` calls
    /// left (never more than its quota: a burst beyond it is not
    /// promised), and when it resets if known.
    pub(crate) fn limit(&self, window: usize, left: u64, reset: Option<Duration>) -> String {
        let windows = &self.keyed.spec.windows;
        let window = window.min(windows.len().saturating_sub(1));
        let q = windows.get(window).map_or(0, |w| u64::from(w.count()));
        let name = self.window_names.get(window).map_or("", |n| n);
        limit_item(name, left.min(q), reset)
    }
}

impl CompiledRule {
    /// Checks `rule` and declares its op in `registry`.
    pub(crate) fn compile(
        rule: Rule,
        registry: &Registry,
        max_keys: usize,
        stats: impl FnOnce(&str, bool) -> Arc<RuleStats>,
    ) -> Result<Self, ConfigError> {
        let name = rule.name.clone().unwrap_or_else(|| rule.default_name());
        let invalid = |field: &'static str, value: String, reason: String| ConfigError::Invalid {
            op: format!("rule {name}"),
            field,
            value,
            reason,
        };
        let pattern: PathPattern =
            rule.pattern
                .parse()
                .map_err(|e: super::pattern::PatternError| {
                    invalid("pattern", rule.pattern.clone(), e.reason)
                })?;
        if name.is_empty() {
            return Err(invalid("name", String::new(), "must not be empty".into()));
        }
        let declared = declared_layer(&rule, max_keys, &invalid)?;
        let op = claim_op(registry, &name, declared)?;
        Ok(Self {
            store_name: format!("rule {name}"),
            stats: stats(&name, rule.shadow),
            name: name.into(),
            op,
            pattern,
            methods: rule.methods,
            classes: rule.classes,
            shadow: rule.shadow,
            headers: ArcSwapOption::empty(),
        })
    }

    /// The headers of `keyed`, the op's per-key rate in force.
    pub(crate) fn headers(&self, keyed: &Arc<KeyedRate>) -> Arc<RuleHeaders> {
        if let Some(h) = &*self.headers.load() {
            if Arc::ptr_eq(&h.keyed, keyed) {
                return Arc::clone(h);
            }
        }
        let h = Arc::new(RuleHeaders::new(&self.name, Arc::clone(keyed)));
        self.headers.store(Some(Arc::clone(&h)));
        h
    }

    /// Whether the rule applies to a request of `method` on `path`.
    pub(crate) fn matches_request(&self, method: &Method, path: &str) -> bool {
        // axum answers HEAD with the GET handler: a GET rule covers it.
        let method_ok = self.methods.is_empty()
            || self.methods.contains(method)
            || (*method == Method::HEAD && self.methods.contains(&Method::GET));
        method_ok && self.pattern.matches(path)
    }

    /// Whether the rule applies to callers of `class`.
    pub(crate) fn matches_class(&self, class: ClientClass) -> bool {
        if self.classes.is_empty() {
            class != ClientClass::Internal
        } else {
            self.classes.contains(&class)
        }
    }
}

/// The stable policy name of each window of a rule named `rule`.
fn window_names(rule: &str, windows: &[Rate]) -> Vec<String> {
    if let [_] = windows {
        return vec![rule.to_owned()];
    }
    windows
        .iter()
        .map(|w| {
            let p = w.period();
            if p.subsec_nanos() == 0 {
                format!("{rule}/{}s", p.as_secs())
            } else {
                format!("{rule}/{}ms", p.as_millis())
            }
        })
        .collect()
}

/// The declared layer of a rule's op: its windows as the per-key rate,
/// with the algorithm that keeps its quota honest (see
/// [`Rule::algorithm`]).
fn declared_layer(
    rule: &Rule,
    max_keys: usize,
    invalid: &dyn Fn(&'static str, String, String) -> ConfigError,
) -> Result<OpConfig, ConfigError> {
    let mut windows = Vec::with_capacity(rule.limits.len());
    for (field, rate) in &rule.limits {
        let rate = rate
            .clone()
            .map_err(|reason| invalid(field, String::new(), reason))?;
        windows.push(rate);
    }
    if windows.is_empty() {
        return Err(invalid(
            "limits",
            "none".into(),
            "a rule needs at least one limit (per_second, per_minute, per_hour, per_day or limit)"
                .into(),
        ));
    }
    // The shortest window first: it takes the burst.
    windows.sort_by_key(|w| w.period());
    let algorithm = match (rule.algorithm, rule.burst) {
        (Some(a), _) => a,
        (None, Some(_)) => Algorithm::TokenBucket,
        (None, None) => Algorithm::SlidingExact,
    };
    if let Some(b) = rule.burst {
        if b == 0 {
            return Err(invalid("burst", "0".into(), "must be at least 1".into()));
        }
        if algorithm != Algorithm::TokenBucket {
            return Err(invalid(
                "burst",
                b.to_string(),
                format!("needs the token bucket algorithm, not {algorithm}"),
            ));
        }
    }
    let burst = (algorithm == Algorithm::TokenBucket)
        .then(|| rule.burst.unwrap_or_else(|| windows[0].count()));
    Ok(OpConfig {
        rate_per_key: Some(windows),
        algorithm: Some(algorithm),
        burst,
        backend: Some(rule.backend),
        max_keys: Some(max_keys),
        ..OpConfig::default()
    })
}

/// Declares the op of the rule `name` in `registry` with `declared` as its
/// declared layer. The op is named by the rule, so that it is configured
/// like any op (`Registry::configure("anonymous", ..)`, `[ops.anonymous]`
/// in `limiter.toml`, `LIMITER_OP_ANONYMOUS_BACKEND=redis`). When an op of
/// that name is declared already (by another layer built on the same
/// registry, or by an attribute), the rule takes the first free name of
/// `name#2`, `name#3`, ...: two layers never share in-process state, and
/// never change each other's limits.
fn claim_op(registry: &Registry, name: &str, declared: OpConfig) -> Result<Op, ConfigError> {
    let mut n = 1u32;
    loop {
        let op_name = match n {
            1 => name.to_owned(),
            n => format!("{name}#{n}"),
        };
        let (op, claimed) = registry.declare_first(&op_name, declared.clone());
        if claimed? {
            // Claimed by this call only: set once.
            let _ = op.core.rule.set(name.into());
            if n > 1 {
                tracing::warn!(
                    rule = name,
                    op = op_name,
                    "an op named like this rule is declared already: the rule's op is named {op_name}"
                );
            }
            return Ok(op);
        }
        n += 1;
    }
}
