//! `#[optimize_route]`: its own arguments, then the `limit_blocking` ones
//! over the level's preset.

use std::time::Duration;

use limiter_spec::TimeoutStrategy;

use crate::attr::{IdentArg, RouteArgs};
use crate::error::Errors;
use crate::item::Func;
use crate::spec::{Level, LimitSpec, RouteSpec};

/// Checks `#[optimize_route]`'s arguments against `func`.
pub(crate) fn route(args: RouteArgs, func: &Func) -> syn::Result<(LimitSpec, RouteSpec)> {
    let RouteArgs {
        level: level_arg,
        name,
        cache_ttl,
        mut limit,
    } = args;
    let mut errors = Errors::default();
    let level = self::level(&level_arg, &mut errors);
    let level_ident = level_arg.0;
    if func.sig.asyncness.is_none() {
        errors.spanned(
            func.sig.fn_token,
            "#[optimize_route] goes on an `async fn` request handler",
        );
    }
    if let (Some(_), Some(op)) = (&name, &limit.op) {
        errors.at(
            op.span(),
            "`name` and `op` both name the route; keep `name`",
        );
    }
    limit.op = name.or(limit.op);
    let ttl = ttl(&cache_ttl, level, &mut errors);
    if level == Some(Level::Ultra) && limit.key.is_none() && !func.sig.inputs.is_empty() {
        errors.at(
            level_ident.span(),
            "`level = Ultra` shares responses between identical calls: name the parameter that identifies a call with `key = ...`",
        );
    }
    let default_strategy = match level {
        Some(Level::Advanced | Level::Ultra) => TimeoutStrategy::Background,
        _ => TimeoutStrategy::Cancel,
    };
    // A handler is an `async fn`: a plain one was reported above, once.
    let spec = errors.handle(super::limit_with(limit, &as_async(func), default_strategy));
    errors.finish()?;
    let (Some(mut spec), Some(level)) = (spec, level) else {
        // Either one missing pushed an error, which `finish` returned.
        return Err(syn::Error::new(
            level_ident.span(),
            "invalid #[optimize_route] arguments",
        ));
    };
    level.preset(&mut spec.settings);
    Ok((spec, RouteSpec { level, ttl }))
}

/// `level = Basic | Advanced | Ultra`.
fn level(level: &IdentArg, errors: &mut Errors) -> Option<Level> {
    match level.0.to_string().as_str() {
        "Basic" => Some(Level::Basic),
        "Advanced" => Some(Level::Advanced),
        "Ultra" => Some(Level::Ultra),
        other => {
            errors.at(
                level.0.span(),
                format!("unknown level `{other}`; expected one of: Basic, Advanced, Ultra"),
            );
            None
        }
    }
}

/// `cache_ttl`, which only Ultra's cache has (default 1 s).
fn ttl(
    cache_ttl: &Option<darling::util::SpannedValue<String>>,
    level: Option<Level>,
    errors: &mut Errors,
) -> Duration {
    let default = Duration::from_secs(1);
    match cache_ttl {
        Some(ttl) if level != Some(Level::Ultra) => {
            errors.at(
                ttl.span(),
                "`cache_ttl` applies to `level = Ultra`, whose response cache it sets",
            );
            default
        }
        Some(_) => super::settings::duration(cache_ttl, errors).unwrap_or(default),
        None => default,
    }
}

/// `func` as the `async fn` a handler is.
fn as_async(func: &Func) -> Func {
    let mut func = func.clone();
    func.sig
        .asyncness
        .get_or_insert(syn::Token![async](func.sig.fn_token.span));
    func
}
