//! Stage 2's output: the checked models that the expansion reads. Every
//! value here is valid, so the expansion decides nothing that can fail.
//! Each model also has a `recovery` form: the default settings, used to
//! expand a function whose attribute has errors (tokio-macros'
//! `DEFAULT_ERROR_CONFIG`), so that its callers still type-check and the
//! only errors are the attribute's.

use std::time::Duration;

use limiter_spec::{
    Algorithm, Backend, Backoff, Degradation, OpKind, OverloadPolicy, TimeoutStrategy,
};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::{Ident, Path};

use crate::attr::Hints;
use crate::item::Func;
use crate::types;

/// Where the facade is: `::limiter`, or `crate = "path"` for a renamed
/// dependency. Generated code names the runtime only through it.
#[derive(Debug, Clone)]
pub(crate) struct Facade(Path);

impl Facade {
    /// The facade at `path`.
    pub(crate) fn new(path: Path) -> Self {
        Facade(path)
    }

    /// `::limiter`.
    pub(crate) fn limiter() -> Self {
        Facade(syn::parse_quote!(::limiter))
    }

    /// The facade's root, for its public items (`LimitError`, `TaskHandle`),
    /// which appear in rewritten signatures.
    pub(crate) fn root(&self) -> &Path {
        &self.0
    }

    /// `<facade>::__private_<version>`, for everything else. The facade's
    /// build script names that module after the crate version (as thiserror
    /// does), so a macro crate of another version than the facade fails at
    /// once, naming the missing module, instead of expanding against
    /// internals that changed.
    pub(crate) fn private(&self) -> TokenStream {
        let root = &self.0;
        let module = private_module();
        quote!(#root::#module)
    }
}

/// `__private_0_1_0` for version `0.1.0`: every character of the version
/// that cannot be in an identifier becomes `_` (the facade's `build.rs`
/// does the same with its own version, which the workspace keeps equal).
pub(crate) fn private_module() -> Ident {
    let version: String = env!("CARGO_PKG_VERSION")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format_ident!("__private_{}", version)
}

/// One window of a rate: `count` calls per `period`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Window {
    pub(crate) count: u32,
    pub(crate) period: Duration,
}

/// Retry settings (`OpConfig::retry`).
#[derive(Debug, Clone, Default)]
pub(crate) struct RetrySettings {
    pub(crate) retries: Option<u32>,
    pub(crate) backoff: Option<Backoff>,
    pub(crate) base: Option<Duration>,
}

/// Breaker settings (`OpConfig::breaker`).
#[derive(Debug, Clone, Default)]
pub(crate) struct BreakerSettings {
    pub(crate) enabled: Option<bool>,
    pub(crate) failure_rate: Option<f64>,
    pub(crate) min_calls: Option<u32>,
    pub(crate) window: Option<u32>,
    pub(crate) slow_call: Option<Duration>,
    pub(crate) recovery: Option<Duration>,
    pub(crate) half_open_calls: Option<u32>,
    pub(crate) success_threshold: Option<u32>,
    pub(crate) consecutive_failures: Option<u32>,
}

/// The op's configuration as the attribute declares it, field by field of
/// the runtime's `OpConfig` (`None`: not declared, the preset or the
/// defaults decide).
#[derive(Debug, Clone, Default)]
pub(crate) struct Settings {
    pub(crate) kind: Option<OpKind>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) rate: Option<Vec<Window>>,
    pub(crate) rate_per_key: Option<Vec<Window>>,
    pub(crate) burst: Option<u32>,
    pub(crate) algorithm: Option<Algorithm>,
    /// With the argument's span: `redis` checks the facade's feature there.
    pub(crate) backend: Option<(Backend, Span)>,
    pub(crate) degradation: Option<Degradation>,
    pub(crate) max_concurrent: Option<u32>,
    pub(crate) max_concurrent_per_key: Option<u32>,
    pub(crate) queue: Option<u32>,
    pub(crate) queue_per_key: Option<u32>,
    pub(crate) queue_timeout: Option<Duration>,
    pub(crate) overload: Option<OverloadPolicy>,
    pub(crate) retry: RetrySettings,
    pub(crate) breaker: BreakerSettings,
    pub(crate) adaptive: Option<bool>,
}

impl Settings {
    /// No argument: only the rule that the body runs once unless
    /// `retries = N` asks for more (re-running it needs `Clone` arguments,
    /// which only that argument promises), whatever a preset says.
    pub(crate) fn once() -> Self {
        let mut settings = Settings::default();
        settings.retry.retries = Some(0);
        settings
    }
}

/// How the body runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exec {
    /// An `async fn`: its future, in place.
    Async,
    /// A plain `fn`: on the blocking pool of its kind.
    Blocking,
    /// A plain `fn` whose arguments cannot go to the blocking pool, run in
    /// place (only after errors: validation rejects such arguments).
    InPlace,
}

/// What answers when a limit refuses or cuts the call.
#[derive(Debug, Clone)]
pub(crate) enum Fallback {
    /// The limit's error: `LimitError`, in the (rewritten) return type.
    None,
    /// `fallback = path`, called with the same arguments; the return type
    /// stays as written.
    Call(Path),
    /// The return type stays as written but nothing answers: only after
    /// errors (a `fallback` that did not check, or an `#[async_trait]`
    /// method that cannot change its return type), whose build fails.
    Recovery,
}

/// The checked `#[limit_blocking]` (or the limit part of a route).
#[derive(Debug)]
pub(crate) struct LimitSpec {
    pub(crate) facade: Facade,
    /// The op's name; `None`: the function's path.
    pub(crate) op: Option<String>,
    pub(crate) settings: Settings,
    pub(crate) strategy: TimeoutStrategy,
    /// A parameter keying per-key limits.
    pub(crate) key: Option<Ident>,
    /// An integer parameter ordering waiters.
    pub(crate) priority: Option<Ident>,
    /// `cost = expr`: what one call takes from the rate limits.
    pub(crate) cost: Option<syn::Expr>,
    /// `on_timeout = path`: the cleanup run, place held, at a timeout.
    pub(crate) on_timeout: Option<Path>,
    /// `registry = path`: the function whose registry the op lives in
    /// (default: the global one).
    pub(crate) registry: Option<Path>,
    /// The body runs once per attempt, on clones of the arguments.
    pub(crate) retries: bool,
    pub(crate) fallback: Fallback,
    /// `breaker(failure = path)`: `fn(&E) -> bool` deciding which errors
    /// of the body count against the breaker.
    pub(crate) failure: Option<Path>,
    pub(crate) exec: Exec,
    /// Blocking calls in the body and advice on the arguments, reported
    /// as compiler warnings.
    pub(crate) warnings: Vec<Warning>,
}

impl LimitSpec {
    /// The expansion's settings after errors: defaults, with the function's
    /// shape kept (its return type when a `fallback` was asked for).
    pub(crate) fn recovery(hints: &Hints, func: &Func) -> Self {
        let keeps_output =
            hints.fallback || (func.async_trait.is_some() && !types::returns_result(&func.sig));
        LimitSpec {
            facade: hints
                .krate
                .clone()
                .map_or_else(Facade::limiter, Facade::new),
            op: None,
            settings: Settings::once(),
            strategy: TimeoutStrategy::Cancel,
            key: None,
            priority: None,
            cost: None,
            on_timeout: None,
            registry: None,
            retries: false,
            fallback: if keeps_output {
                Fallback::Recovery
            } else {
                Fallback::None
            },
            failure: None,
            exec: match (&func.sig.asyncness, types::borrows_any(&func.sig)) {
                (Some(_), _) => Exec::Async,
                (None, false) => Exec::Blocking,
                (None, true) => Exec::InPlace,
            },
            warnings: Vec::new(),
        }
    }
}

/// A compiler warning the expansion emits at `span`.
#[derive(Debug, Clone)]
pub(crate) struct Warning {
    /// Names the `#[deprecated]` constant the warning quotes
    /// (`__limiter_{what}_{n}`), so it says what it is about.
    pub(crate) what: &'static str,
    pub(crate) span: Span,
    pub(crate) text: String,
}

/// How far a route is optimised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Basic,
    Advanced,
    Ultra,
}

impl Level {
    /// Fills what `settings` leaves open with the level's preset; the
    /// attribute's own arguments win.
    pub(crate) fn preset(self, settings: &mut Settings) {
        match self {
            Level::Basic => {
                settings.max_concurrent.get_or_insert(u32::MAX);
                settings.max_concurrent_per_key.get_or_insert(u32::MAX);
            }
            Level::Advanced | Level::Ultra => {
                settings.timeout.get_or_insert(Duration::from_secs(30));
                settings.breaker.enabled.get_or_insert(true);
                settings.rate.get_or_insert_with(|| {
                    vec![Window {
                        count: 1000,
                        period: Duration::from_secs(1),
                    }]
                });
                if self == Level::Ultra {
                    settings.adaptive = Some(true);
                }
            }
        }
    }
}

/// The route part of a checked `#[optimize_route]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteSpec {
    pub(crate) level: Level,
    /// Time to live of Ultra's response cache.
    pub(crate) ttl: Duration,
}

impl RouteSpec {
    /// After errors: the `Basic` level.
    pub(crate) fn recovery() -> Self {
        RouteSpec {
            level: Level::Basic,
            ttl: Duration::from_secs(1),
        }
    }
}

/// The checked `#[background_task]`.
#[derive(Debug)]
pub(crate) struct TaskSpec {
    pub(crate) facade: Facade,
    /// The task group's name; `None`: the function's path.
    pub(crate) name: Option<String>,
    pub(crate) max_concurrent: Option<u32>,
    pub(crate) queue: Option<u32>,
    pub(crate) retries: u32,
    pub(crate) timeout: Option<Duration>,
    /// The body can be spawned (it borrows nothing); `false` only after
    /// errors, when the body is type-checked but not spawned.
    pub(crate) spawn: bool,
}

impl TaskSpec {
    /// The expansion's settings after errors: defaults.
    pub(crate) fn recovery(hints: &Hints, func: &Func) -> Self {
        TaskSpec {
            facade: hints
                .krate
                .clone()
                .map_or_else(Facade::limiter, Facade::new),
            name: None,
            max_concurrent: None,
            queue: None,
            retries: 0,
            timeout: None,
            spawn: !types::borrows_any(&func.sig),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_module_is_named_after_the_version() {
        let expected = format!(
            "__private_{}_{}_{}",
            env!("CARGO_PKG_VERSION_MAJOR"),
            env!("CARGO_PKG_VERSION_MINOR"),
            env!("CARGO_PKG_VERSION_PATCH")
        );
        if !env!("CARGO_PKG_VERSION_PRE").is_empty() {
            return; // `0.2.0-rc.1` becomes `__private_0_2_0_rc_1`
        }
        assert_eq!(private_module(), expected);
        let private = Facade::new(syn::parse_quote!(crate::lim)).private();
        assert_eq!(private.to_string(), format!("crate :: lim :: {expected}"));
    }

    #[test]
    fn presets_leave_declared_values() {
        let mut settings = Settings::once();
        settings.timeout = Some(Duration::from_secs(2));
        settings.breaker.enabled = Some(false);
        Level::Ultra.preset(&mut settings);
        assert_eq!(settings.timeout, Some(Duration::from_secs(2)));
        assert_eq!(settings.breaker.enabled, Some(false));
        assert_eq!(settings.adaptive, Some(true));
        assert_eq!(settings.rate.as_ref().map(Vec::len), Some(1));
        let mut basic = Settings::once();
        basic.max_concurrent = Some(4);
        Level::Basic.preset(&mut basic);
        assert_eq!(basic.max_concurrent, Some(4));
        assert_eq!(basic.max_concurrent_per_key, Some(u32::MAX));
    }
}
