//! Parsing and checking the arguments of `#[limit_blocking(...)]`.
//!
//! darling reads the arguments (unknown and duplicate names are reported by
//! it, with a "did you mean"); every value is then checked with the same
//! parsers the runtime uses for the environment and `limiter.toml`
//! (`limiter-spec`), and each error lands on the offending token. All errors
//! of one attribute are reported together.

use darling::ast::NestedMeta;
use darling::util::{Flag, SpannedValue};
use darling::{Error, FromMeta};
use limiter_spec::{
    parse_duration, parse_rates, Algorithm, Backend, Backoff, Degradation, OpKind, OverloadPolicy,
    TimeoutStrategy,
};
use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::{Expr, FnArg, Ident, Pat, Path, Signature};

/// An identifier argument: `key = user_id`, `kind = database`.
#[derive(Debug, Clone)]
pub(crate) struct IdentArg(pub(crate) Ident);

impl FromMeta for IdentArg {
    fn from_expr(expr: &Expr) -> darling::Result<Self> {
        match expr {
            Expr::Path(p) if p.qself.is_none() && p.path.segments.len() == 1 => {
                Ok(IdentArg(p.path.segments[0].ident.clone()))
            }
            Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => s
                .parse::<Ident>()
                .map(IdentArg)
                .map_err(|_| Error::custom("expected an identifier").with_span(s)),
            other => {
                Err(Error::custom("expected an identifier, e.g. `key = user_id`").with_span(other))
            }
        }
    }
}

/// A path argument: `fallback = cache::lookup`.
#[derive(Debug, Clone)]
pub(crate) struct PathArg(pub(crate) Path);

impl FromMeta for PathArg {
    fn from_expr(expr: &Expr) -> darling::Result<Self> {
        match expr {
            Expr::Path(p) if p.qself.is_none() => Ok(PathArg(p.path.clone())),
            Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => s
                .parse::<Path>()
                .map(PathArg)
                .map_err(|_| Error::custom("expected a path to a function").with_span(s)),
            other => Err(Error::custom(
                "expected a path to a function, e.g. `fallback = cached_user`",
            )
            .with_span(other)),
        }
    }
}

/// `breaker`, `breaker = true|false`, or `breaker(failure_rate = 0.5, ...)`.
#[derive(Debug, Clone, Default)]
pub(crate) struct BreakerArg {
    pub(crate) enabled: bool,
    pub(crate) fields: BreakerFields,
}

#[derive(Debug, Clone, Default, FromMeta)]
#[darling(default)]
pub(crate) struct BreakerFields {
    pub(crate) failure_rate: Option<SpannedValue<f64>>,
    pub(crate) min_calls: Option<SpannedValue<u32>>,
    pub(crate) window: Option<SpannedValue<u32>>,
    pub(crate) slow_call: Option<SpannedValue<String>>,
    pub(crate) recovery: Option<SpannedValue<String>>,
    pub(crate) half_open_calls: Option<SpannedValue<u32>>,
    pub(crate) success_threshold: Option<SpannedValue<u32>>,
    pub(crate) consecutive_failures: Option<SpannedValue<u32>>,
    /// `failure = path`: the errors of the body that count as failures.
    pub(crate) failure: Option<PathArg>,
}

impl FromMeta for BreakerArg {
    fn from_word() -> darling::Result<Self> {
        Ok(Self {
            enabled: true,
            fields: BreakerFields::default(),
        })
    }

    fn from_bool(value: bool) -> darling::Result<Self> {
        Ok(Self {
            enabled: value,
            fields: BreakerFields::default(),
        })
    }

    fn from_list(items: &[NestedMeta]) -> darling::Result<Self> {
        Ok(Self {
            enabled: true,
            fields: BreakerFields::from_list(items)?,
        })
    }
}

/// The arguments as written.
#[derive(Debug, Default, FromMeta)]
#[darling(default)]
pub(crate) struct LimitArgs {
    pub(crate) op: Option<SpannedValue<String>>,
    pub(crate) kind: Option<IdentArg>,
    pub(crate) timeout: Option<SpannedValue<String>>,
    pub(crate) strategy: Option<SpannedValue<String>>,
    pub(crate) fallback: Option<PathArg>,
    pub(crate) rate: Option<SpannedValue<String>>,
    pub(crate) burst: Option<SpannedValue<u32>>,
    pub(crate) algorithm: Option<SpannedValue<String>>,
    pub(crate) key: Option<IdentArg>,
    pub(crate) max_concurrent: Option<SpannedValue<u32>>,
    pub(crate) max_concurrent_per_key: Option<SpannedValue<u32>>,
    pub(crate) queue: Option<SpannedValue<u32>>,
    pub(crate) queue_timeout: Option<SpannedValue<String>>,
    pub(crate) overload: Option<SpannedValue<String>>,
    pub(crate) priority: Option<IdentArg>,
    pub(crate) retries: Option<SpannedValue<u32>>,
    pub(crate) backoff: Option<SpannedValue<String>>,
    pub(crate) backoff_base: Option<SpannedValue<String>>,
    pub(crate) breaker: Option<SpannedValue<BreakerArg>>,
    pub(crate) backend: Option<SpannedValue<String>>,
    pub(crate) degradation: Option<SpannedValue<String>>,
    pub(crate) deny_blocking: Flag,
    pub(crate) allow_blocking: Flag,
    #[darling(rename = "crate")]
    pub(crate) krate: Option<SpannedValue<String>>,
}

/// What the blocking scan does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanMode {
    Warn,
    Deny,
    Allow,
}

/// The checked arguments, ready to expand.
#[derive(Debug)]
pub(crate) struct LimitSpec {
    pub(crate) op: Option<String>,
    pub(crate) krate: Path,
    pub(crate) strategy: TimeoutStrategy,
    pub(crate) key: Option<Ident>,
    pub(crate) priority: Option<Ident>,
    pub(crate) retries: bool,
    pub(crate) fallback: Option<Path>,
    /// `breaker(failure = path)`: `fn(&E) -> bool` deciding which errors
    /// of the body count against the breaker.
    pub(crate) failure: Option<Path>,
    pub(crate) scan: ScanMode,
    /// Statements that fill `__limiter_cfg: OpConfig`.
    pub(crate) config: TokenStream,
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Every argument name of `#[limit_blocking]`.
pub(crate) const ARGUMENTS: &[&str] = &[
    "op",
    "kind",
    "timeout",
    "strategy",
    "fallback",
    "rate",
    "burst",
    "algorithm",
    "key",
    "max_concurrent",
    "max_concurrent_per_key",
    "queue",
    "queue_timeout",
    "overload",
    "priority",
    "retries",
    "backoff",
    "backoff_base",
    "breaker",
    "backend",
    "degradation",
    "deny_blocking",
    "allow_blocking",
    "crate",
];

/// Reports every argument whose name is not in `known`, with a "did you
/// mean" and the list of valid names, and returns the others.
pub(crate) fn known_only(
    items: Vec<NestedMeta>,
    known: &[&str],
    errors: &mut darling::error::Accumulator,
) -> Vec<NestedMeta> {
    items
        .into_iter()
        .filter(|item| {
            let NestedMeta::Meta(meta) = item else {
                return true; // darling reports literals itself
            };
            let path = meta.path();
            let name = path
                .get_ident()
                .map(ToString::to_string)
                .unwrap_or_else(|| quote!(#path).to_string());
            if known.contains(&name.as_str()) {
                return true;
            }
            let hint = limiter_spec::closest(&name, known)
                .map(|c| format!(" did you mean `{c}`?"))
                .unwrap_or_default();
            errors.push(
                Error::custom(format!(
                    "unknown argument `{name}`;{hint} expected one of: {}",
                    known.join(", ")
                ))
                .with_span(path),
            );
            false
        })
        .collect()
}

/// Parses the attribute's tokens.
pub(crate) fn parse(args: TokenStream) -> darling::Result<LimitArgs> {
    let mut errors = Error::accumulator();
    let items = NestedMeta::parse_meta_list(args).map_err(Error::from)?;
    let items = known_only(items, ARGUMENTS, &mut errors);
    let args = errors.handle(LimitArgs::from_list(&items));
    errors.finish_with(args).map(|a| a.unwrap_or_default())
}

/// The by-name parameters of `sig` (`self` included as `self`).
pub(crate) fn param_names(sig: &Signature) -> Vec<Ident> {
    sig.inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Receiver(r) => Some(Ident::new("self", r.self_token.span)),
            FnArg::Typed(t) => match &*t.pat {
                Pat::Ident(p) => Some(p.ident.clone()),
                _ => None,
            },
        })
        .collect()
}

/// Checks every value; returns the spec or all errors at once.
pub(crate) fn check(args: LimitArgs, sig: &Signature) -> darling::Result<LimitSpec> {
    check_with(args, sig, TimeoutStrategy::Cancel)
}

/// [`check`] with the strategy used when the arguments name none.
/// Whether `sig` declares a `Result` return type (by its last path
/// segment, so `io::Result<T>` too).
fn returns_result(sig: &Signature) -> bool {
    match &sig.output {
        syn::ReturnType::Type(_, ty) => {
            matches!(&**ty, syn::Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Result"))
        }
        syn::ReturnType::Default => false,
    }
}

pub(crate) fn check_with(
    args: LimitArgs,
    sig: &Signature,
    default_strategy: TimeoutStrategy,
) -> darling::Result<LimitSpec> {
    let mut errors = Error::accumulator();
    let krate: Path = match &args.krate {
        Some(text) => errors
            .handle(syn::parse_str::<Path>(text).map_err(|_| {
                Error::custom(format!(
                    "`{}` is not a path; write e.g. `crate = \"::my_limiter\"`",
                    **text
                ))
                .with_span(&text.span())
            }))
            .unwrap_or_else(|| syn::parse_quote!(::limiter)),
        None => syn::parse_quote!(::limiter),
    };
    let k = &krate;
    let mut cfg = TokenStream::new();
    if let Some(failure) = args
        .breaker
        .as_ref()
        .and_then(|b| b.fields.failure.as_ref())
    {
        if !returns_result(sig) {
            errors.push(
                Error::custom(
                    "`breaker(failure = …)` decides which errors of the body are failures: \
                     the function must return `Result<T, E>`",
                )
                .with_span(&failure.0),
            );
        }
    }

    let mut duration = |value: &Option<SpannedValue<String>>,
                        field: TokenStream,
                        errors: &mut darling::error::Accumulator| {
        if let Some(v) = value {
            match parse_duration(v) {
                Ok(d) => {
                    let n = nanos(d);
                    cfg.extend(quote! { __limiter_cfg.#field = ::core::option::Option::Some(::core::time::Duration::from_nanos(#n)); });
                }
                Err(e) => errors.push(
                    Error::custom(format!("invalid duration `{}`: {e}", **v)).with_span(&v.span()),
                ),
            }
        }
    };
    duration(&args.timeout, quote!(timeout), &mut errors);
    duration(&args.queue_timeout, quote!(queue_timeout), &mut errors);
    duration(&args.backoff_base, quote!(retry.base), &mut errors);
    if let Some(b) = &args.breaker {
        duration(&b.fields.slow_call, quote!(breaker.slow_call), &mut errors);
        duration(&b.fields.recovery, quote!(breaker.recovery), &mut errors);
    }

    fn named<T: std::str::FromStr<Err = String>>(
        v: &Option<SpannedValue<String>>,
        errors: &mut darling::error::Accumulator,
    ) -> Option<T> {
        let v = v.as_ref()?;
        errors.handle(
            v.parse::<T>()
                .map_err(|e| Error::custom(e).with_span(&v.span())),
        )
    }
    let strategy =
        named::<TimeoutStrategy>(&args.strategy, &mut errors).unwrap_or(default_strategy);
    if let Some(a) = named::<Algorithm>(&args.algorithm, &mut errors) {
        let v = enum_tokens(k, "Algorithm", a.as_str());
        cfg.extend(quote! { __limiter_cfg.algorithm = ::core::option::Option::Some(#v); });
    }
    if let Some(o) = named::<OverloadPolicy>(&args.overload, &mut errors) {
        let v = enum_tokens(k, "OverloadPolicy", o.as_str());
        cfg.extend(quote! { __limiter_cfg.overload = ::core::option::Option::Some(#v); });
    }
    if let Some(b) = named::<Backoff>(&args.backoff, &mut errors) {
        let v = enum_tokens(k, "Backoff", b.as_str());
        cfg.extend(quote! { __limiter_cfg.retry.backoff = ::core::option::Option::Some(#v); });
    }
    if let Some(kind) = &args.kind {
        match kind.0.to_string().parse::<OpKind>() {
            Ok(kv) => {
                let v = enum_tokens(k, "OpKind", kv.as_str());
                cfg.extend(quote! { __limiter_cfg.kind = ::core::option::Option::Some(#v); });
            }
            Err(e) => errors.push(Error::custom(e).with_span(&kind.0)),
        }
    }

    let mut count = |value: &Option<SpannedValue<u32>>,
                     field: TokenStream,
                     min: u32,
                     errors: &mut darling::error::Accumulator| {
        if let Some(v) = value {
            if **v < min {
                errors.push(Error::custom(format!("must be at least {min}")).with_span(&v.span()));
            } else {
                let n = **v;
                cfg.extend(quote! { __limiter_cfg.#field = ::core::option::Option::Some(#n); });
            }
        }
    };
    count(&args.burst, quote!(burst), 1, &mut errors);
    count(&args.max_concurrent, quote!(max_concurrent), 1, &mut errors);
    count(
        &args.max_concurrent_per_key,
        quote!(max_concurrent_per_key),
        1,
        &mut errors,
    );
    count(&args.retries, quote!(retry.retries), 0, &mut errors);
    if let Some(b) = &args.breaker {
        let f = &b.fields;
        count(&f.min_calls, quote!(breaker.min_calls), 1, &mut errors);
        count(&f.window, quote!(breaker.window), 1, &mut errors);
        count(
            &f.half_open_calls,
            quote!(breaker.half_open_calls),
            1,
            &mut errors,
        );
        count(
            &f.success_threshold,
            quote!(breaker.success_threshold),
            1,
            &mut errors,
        );
        count(
            &f.consecutive_failures,
            quote!(breaker.consecutive_failures),
            1,
            &mut errors,
        );
        if let Some(rate) = &f.failure_rate {
            if !(**rate > 0.0 && **rate <= 1.0) {
                errors
                    .push(Error::custom("failure_rate must be in (0, 1]").with_span(&rate.span()));
            } else {
                let r = **rate;
                cfg.extend(quote! { __limiter_cfg.breaker.failure_rate = ::core::option::Option::Some(#r); });
            }
        }
        let on = b.enabled;
        cfg.extend(quote! { __limiter_cfg.breaker.enabled = ::core::option::Option::Some(#on); });
    }
    // Re-running the body needs `Clone` arguments, which only `retries = N`
    // asks for; without it the call runs once, whatever a `kind` preset says.
    if args.retries.is_none() {
        cfg.extend(quote! { __limiter_cfg.retry.retries = ::core::option::Option::Some(0); });
    }
    if let Some(q) = &args.queue {
        let n = **q;
        // One `queue` bounds the op-wide queue and, with `key`, each key's.
        cfg.extend(quote! { __limiter_cfg.queue = ::core::option::Option::Some(#n); });
        if args.key.is_some() {
            cfg.extend(quote! { __limiter_cfg.queue_per_key = ::core::option::Option::Some(#n); });
        }
    }

    match (&args.rate, &args.burst) {
        (Some(rate), _) => match parse_rates(rate) {
            Ok(windows) => {
                let pairs = windows.iter().map(|w| {
                    let (c, p) = (w.count(), nanos(w.period()));
                    quote!((#c, #p))
                });
                let field = if args.key.is_some() {
                    quote!(rate_per_key)
                } else {
                    quote!(rate)
                };
                cfg.extend(quote! {
                    __limiter_cfg.#field = ::core::option::Option::Some(#k::__private::rates(&[#(#pairs),*]));
                });
            }
            Err(e) => errors.push(
                Error::custom(format!("invalid rate `{}`: {e}", **rate)).with_span(&rate.span()),
            ),
        },
        (None, Some(burst)) => errors.push(
            Error::custom("`burst` needs `rate`: add e.g. `rate = \"100/s\"`")
                .with_span(&burst.span()),
        ),
        (None, None) => {}
    }
    if args.burst.is_some()
        && args
            .algorithm
            .as_ref()
            .is_some_and(|a| a.as_str() != "token_bucket")
    {
        if let Some(a) = &args.algorithm {
            errors.push(
                Error::custom("`burst` applies only to `algorithm = \"token_bucket\"`")
                    .with_span(&a.span()),
            );
        }
    }

    if let Some(b) = named::<Backend>(&args.backend, &mut errors) {
        let v = enum_tokens(k, "Backend", b.as_str());
        cfg.extend(quote! { __limiter_cfg.backend = ::core::option::Option::Some(#v); });
        if b == Backend::Redis {
            let span = args
                .backend
                .as_ref()
                .map_or_else(Span::call_site, |b| b.span());
            if args.rate.is_none() {
                errors.push(
                    Error::custom("`backend = \"redis\"` keeps the op's `rate` in Redis: add e.g. `rate = \"100/s\"`")
                        .with_span(&span),
                );
            }
            // A compile error at the argument when the facade lacks the
            // `redis` feature (the trait is implemented only with it).
            cfg.extend(quote_spanned! {span=>
                const _: () = <() as #k::__private::RedisFeature>::ON;
            });
        }
    }
    if let Some(d) = named::<Degradation>(&args.degradation, &mut errors) {
        let v = enum_tokens(k, "Degradation", d.as_str());
        cfg.extend(quote! { __limiter_cfg.degradation = ::core::option::Option::Some(#v); });
        let redis = args
            .backend
            .as_ref()
            .and_then(|b| b.parse::<Backend>().ok())
            == Some(Backend::Redis);
        if !redis {
            if let Some(d) = &args.degradation {
                errors.push(
                    Error::custom("`degradation` says what a Redis-backed limit does when Redis is down: it needs `backend = \"redis\"`")
                        .with_span(&d.span()),
                );
            }
        }
    }

    let names = param_names(sig);
    let param = |arg: &Option<IdentArg>,
                 what: &str,
                 errors: &mut darling::error::Accumulator|
     -> Option<Ident> {
        let ident = &arg.as_ref()?.0;
        if names.iter().any(|n| n == ident) {
            Some(ident.clone())
        } else {
            let list: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            errors.push(
                Error::custom(format!(
                    "`{what} = {ident}` names no parameter of this function; parameters: {}",
                    if list.is_empty() {
                        "none".to_owned()
                    } else {
                        list.join(", ")
                    }
                ))
                .with_span(ident),
            );
            None
        }
    };
    let key = param(&args.key, "key", &mut errors);
    let priority = param(&args.priority, "priority", &mut errors);

    if strategy == TimeoutStrategy::Background {
        for arg in &sig.inputs {
            let borrowed = match arg {
                FnArg::Receiver(r) => crate::expand::receiver_borrows(r),
                FnArg::Typed(t) => matches!(&*t.ty, syn::Type::Reference(_)),
            };
            if borrowed {
                let strategy_span = args
                    .strategy
                    .as_ref()
                    .map_or(Span::call_site(), |s| s.span());
                errors.push(
                    Error::custom("`strategy = \"background\"` keeps the call running after the caller left, so its arguments must be owned; this one is a reference")
                        .with_span(arg),
                );
                errors.push(
                    Error::custom("background strategy chosen here").with_span(&strategy_span),
                );
            }
        }
    }
    if sig.asyncness.is_none() {
        for arg in &sig.inputs {
            let borrowed = match arg {
                FnArg::Receiver(r) => crate::expand::receiver_borrows(r),
                FnArg::Typed(t) => matches!(&*t.ty, syn::Type::Reference(_)),
            };
            if borrowed {
                errors.push(
                    Error::custom("a plain `fn` under #[limit_blocking] runs on the blocking pool, so its arguments must be owned (`'static`); this one is a reference — take it by value or make the fn `async`")
                        .with_span(arg),
                );
            }
        }
    }

    if args.fallback.is_some() {
        for arg in &sig.inputs {
            if let FnArg::Receiver(r) = arg {
                if !crate::expand::receiver_is_shared_ref(r) {
                    errors.push(
                        Error::custom("`fallback` is called with the same arguments after the body took them, so the receiver must be `&self`")
                            .with_span(r),
                    );
                }
            }
        }
    }

    let scan = match (
        args.deny_blocking.is_present(),
        args.allow_blocking.is_present(),
    ) {
        (true, true) => {
            errors.push(
                Error::custom(
                    "`deny_blocking` and `allow_blocking` contradict each other; keep one",
                )
                .with_span(&args.allow_blocking.span()),
            );
            ScanMode::Deny
        }
        (true, false) => ScanMode::Deny,
        (false, true) => ScanMode::Allow,
        (false, false) => ScanMode::Warn,
    };

    if let Some(c) = &sig.constness {
        errors.push(
            Error::custom("a `const fn` cannot be limited: limits act at run time; drop `const`")
                .with_span(c),
        );
    }
    if args.op.is_none() {
        if let Some(FnArg::Receiver(r)) = sig.inputs.first() {
            errors.push(
                Error::custom("a method needs `op = \"...\"`: by default the op is named after the module and the function, which two impls in one module would share")
                    .with_span(&r.self_token),
            );
        }
    }
    if let Some(op) = &args.op {
        if op.trim().is_empty() {
            errors.push(Error::custom("`op` must not be empty").with_span(&op.span()));
        }
    }

    errors.finish()?;
    Ok(LimitSpec {
        op: args.op.map(|o| (*o).clone()),
        krate,
        strategy,
        key,
        priority,
        retries: args.retries.is_some_and(|r| *r > 0),
        fallback: args.fallback.map(|f| f.0),
        failure: args
            .breaker
            .as_ref()
            .and_then(|b| b.fields.failure.as_ref())
            .map(|f| f.0.clone()),
        scan,
        config: cfg,
    })
}

fn enum_tokens(krate: &Path, ty: &str, variant_text: &str) -> TokenStream {
    let ty = Ident::new(ty, Span::call_site());
    let variant: String = variant_text
        .split('_')
        .map(|part| {
            let mut c = part.chars();
            c.next().map_or_else(String::new, |f| {
                f.to_ascii_uppercase().to_string() + c.as_str()
            })
        })
        .collect();
    let variant = Ident::new(&variant, Span::call_site());
    quote_spanned! { Span::call_site() => #krate::__private::#ty::#variant }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_str(args: &str, sig: &str) -> Result<LimitSpec, String> {
        let sig: Signature = syn::parse_str(sig).unwrap();
        let args = parse(args.parse().unwrap()).map_err(|e| e.to_string())?;
        check(args, &sig).map_err(|e| e.to_string())
    }

    #[test]
    fn accepts_every_argument() {
        let spec = check_str(
            r#"op = "db", kind = database, timeout = "10s", strategy = "cache_fallback", rate = "100/s",
               burst = 10, algorithm = "token_bucket", key = user, max_concurrent = 20,
               max_concurrent_per_key = 3, queue = 10, queue_timeout = "30s", overload = "drop_oldest",
               priority = level, retries = 3, backoff = "exponential", backoff_base = "100ms",
               breaker(failure_rate = 0.5, min_calls = 10, window = 20, slow_call = "2s", recovery = "60s",
               half_open_calls = 1, success_threshold = 1), backend = "local", deny_blocking"#,
            "async fn f(user: String, level: u8) -> Result<(), E>",
        )
        .unwrap();
        assert_eq!(spec.op.as_deref(), Some("db"));
        assert!(spec.retries);
        assert_eq!(spec.scan, ScanMode::Deny);
        assert_eq!(spec.key.unwrap(), "user");
    }

    #[test]
    fn collects_every_error() {
        let err = check_str(
            r#"timeout = "10x", rate = "0/s", strategy = "later", key = nobody, burst = 0"#,
            "async fn f(user: String)",
        )
        .unwrap_err();
        for part in [
            "invalid duration `10x`",
            "invalid rate `0/s`",
            "unknown strategy `later`",
            "names no parameter",
            "must be at least 1",
        ] {
            assert!(err.contains(part), "missing `{part}` in {err}");
        }
    }
}
