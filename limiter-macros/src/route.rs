//! `#[optimize_route(level = Basic|Advanced|Ultra, ...)]`: a preset of
//! `limit_blocking` for request handlers, plus a tracing span per call.
//!
//! | level | turns on |
//! | --- | --- |
//! | `Basic` | metrics (latency, outcomes, slow polls), tracing span; no limit |
//! | `Advanced` | Basic + 30 s timeout moving to the background, circuit breaker, a 1000/s op-wide rate cap, the default bulkhead |
//! | `Ultra` | Advanced + adaptive concurrency (AIMD), coalescing of identical concurrent calls and a response cache (`cache_ttl`, default 1 s), keyed by `key` |
//!
//! Any `limit_blocking` argument overrides the preset.

use darling::ast::NestedMeta;
use darling::util::SpannedValue;
use darling::{Error, FromMeta};
use limiter_spec::{parse_duration, TimeoutStrategy};
use proc_macro2::TokenStream;
use quote::quote;
use syn::ItemFn;

use crate::attr::{self, IdentArg, LimitArgs};

#[derive(Debug, FromMeta)]
struct RouteArgs {
    level: IdentArg,
    name: Option<SpannedValue<String>>,
    cache_ttl: Option<SpannedValue<String>>,
    #[darling(flatten)]
    limit: LimitArgs,
}

/// How far a route is optimised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Basic,
    Advanced,
    Ultra,
}

/// The route-specific part of the expansion.
pub(crate) struct RouteSpec {
    pub(crate) level: Level,
    /// Response cache time to live, nanoseconds (Ultra).
    pub(crate) ttl_nanos: u64,
}

pub(crate) fn optimize_route(args: TokenStream, func: ItemFn) -> Result<TokenStream, Error> {
    let mut errors = Error::accumulator();
    let items = NestedMeta::parse_meta_list(args).map_err(Error::from)?;
    let mut known = vec!["level", "name", "cache_ttl"];
    known.extend(crate::attr::ARGUMENTS);
    let items = crate::attr::known_only(items, &known, &mut errors);
    let Some(args) = errors.handle(RouteArgs::from_list(&items)) else {
        return Err(errors
            .finish()
            .err()
            .unwrap_or_else(|| Error::custom("invalid arguments")));
    };
    let level = match args.level.0.to_string().as_str() {
        "Basic" => Some(Level::Basic),
        "Advanced" => Some(Level::Advanced),
        "Ultra" => Some(Level::Ultra),
        other => {
            errors.push(
                Error::custom(format!(
                    "unknown level `{other}`; expected one of: Basic, Advanced, Ultra"
                ))
                .with_span(&args.level.0),
            );
            None
        }
    };
    if func.sig.asyncness.is_none() {
        errors.push(
            Error::custom("#[optimize_route] goes on an `async fn` request handler")
                .with_span(&func.sig.fn_token),
        );
    }
    let mut limit = args.limit;
    if let (Some(name), Some(op)) = (&args.name, &limit.op) {
        errors.push(
            Error::custom("`name` and `op` both name the route; keep `name`").with_span(&op.span()),
        );
        let _ = name;
    }
    if let Some(name) = args.name {
        limit.op = Some(name);
    }
    let ttl_nanos = match &args.cache_ttl {
        Some(ttl) if level != Some(Level::Ultra) => {
            errors.push(
                Error::custom(
                    "`cache_ttl` applies to `level = Ultra`, whose response cache it sets",
                )
                .with_span(&ttl.span()),
            );
            0
        }
        Some(ttl) => match parse_duration(ttl) {
            Ok(d) => u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Err(e) => {
                errors.push(
                    Error::custom(format!("invalid duration `{}`: {e}", **ttl))
                        .with_span(&ttl.span()),
                );
                0
            }
        },
        None => 1_000_000_000,
    };
    if level == Some(Level::Ultra) && limit.key.is_none() && !func.sig.inputs.is_empty() {
        errors.push(
            Error::custom("`level = Ultra` shares responses between identical calls: name the parameter that identifies a call with `key = ...`")
                .with_span(&args.level.0),
        );
    }
    let default_strategy = match level {
        Some(Level::Advanced | Level::Ultra) => TimeoutStrategy::Background,
        _ => TimeoutStrategy::Cancel,
    };
    let spec = errors.handle(attr::check_with(limit, &func.sig, default_strategy));
    errors.finish()?;
    let (Some(mut spec), Some(level)) = (spec, level) else {
        // Either one being missing pushed an error, so `finish` returned it.
        return Err(Error::custom("invalid #[optimize_route] arguments"));
    };

    let k = &spec.krate;
    let preset = match level {
        Level::Basic => quote! {
            __limiter_cfg.max_concurrent = ::core::option::Option::Some(u32::MAX);
            __limiter_cfg.max_concurrent_per_key = ::core::option::Option::Some(u32::MAX);
        },
        Level::Advanced | Level::Ultra => {
            let adaptive = (level == Level::Ultra)
                .then(|| quote!(__limiter_cfg.adaptive = ::core::option::Option::Some(true);));
            quote! {
                __limiter_cfg.timeout = ::core::option::Option::Some(::core::time::Duration::from_secs(30));
                __limiter_cfg.breaker.enabled = ::core::option::Option::Some(true);
                __limiter_cfg.rate = ::core::option::Option::Some(#k::__private::rates(&[(1000, 1_000_000_000)]));
                #adaptive
            }
        }
    };
    let user = std::mem::take(&mut spec.config);
    spec.config = quote!(#preset #user);
    Ok(crate::expand::expand(
        &spec,
        func,
        Some(&RouteSpec { level, ttl_nanos }),
    ))
}
