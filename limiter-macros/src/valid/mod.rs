//! Stage 2: validation. Every check of an attribute's arguments, against
//! each other and against the function, happens here; each error lands on
//! the offending token and all errors of one attribute are reported
//! together. The result is a checked model ([`crate::spec`]) from which
//! the expansion generates code without checking anything.
//!
//! Values are checked with the parsers the runtime uses for the
//! environment and `limiter.toml` (`limiter-spec`), so the three accept
//! the same spellings with the same messages.

mod database;
mod route;
mod settings;
mod signature;
mod task;

use darling::util::SpannedValue;
use limiter_spec::TimeoutStrategy;
use syn::{Ident, Path, Signature};

use crate::attr::{IdentArg, LimitArgs};
use crate::error::Errors;
use crate::item::Func;
use crate::scan::{scan, Finding};
use crate::spec::{Exec, Facade, Fallback, LimitSpec, Warning};
use crate::types;

pub(crate) use route::route;
pub(crate) use task::task;

/// Checks `#[limit_blocking]`'s arguments against `func`.
pub(crate) fn limit(args: LimitArgs, func: &Func) -> syn::Result<LimitSpec> {
    limit_with(args, func, TimeoutStrategy::Cancel)
}

/// [`limit`], with the strategy used when the arguments name none.
pub(crate) fn limit_with(
    args: LimitArgs,
    func: &Func,
    default_strategy: TimeoutStrategy,
) -> syn::Result<LimitSpec> {
    let mut errors = Errors::default();
    let facade = facade(&args.krate, &mut errors);
    let settings = settings::settings(&args, &mut errors);
    let strategy =
        settings::named::<TimeoutStrategy>(&args.strategy, &mut errors).unwrap_or(default_strategy);
    let key = param(&args.key, "key", &func.sig, &mut errors);
    let priority = param(&args.priority, "priority", &func.sig, &mut errors);
    signature::check(&args, strategy, func, &mut errors);
    let op = op(&args.op, &mut errors);
    let mut warnings = blocking_calls(&args, func, &mut errors);
    if default_strategy == TimeoutStrategy::Cancel {
        warnings.extend(database::implicit_cancel(&args, func));
    }
    errors.finish()?;
    Ok(LimitSpec {
        facade,
        op,
        settings,
        strategy,
        key,
        priority,
        cost: args.cost.map(|c| c.0),
        on_timeout: args.on_timeout.map(|p| p.0),
        registry: args.registry.map(|p| p.0),
        retries: args.retries.is_some_and(|r| *r > 0),
        fallback: args
            .fallback
            .map_or(Fallback::None, |path| Fallback::Call(path.0)),
        failure: args
            .breaker
            .and_then(|b| b.fields.failure.clone())
            .map(|f| f.0),
        exec: match func.sig.asyncness {
            Some(_) => Exec::Async,
            None => Exec::Blocking,
        },
        warnings,
    })
}

/// `crate = "path"`, or `::limiter`.
fn facade(krate: &Option<SpannedValue<String>>, errors: &mut Errors) -> Facade {
    let Some(text) = krate else {
        return Facade::limiter();
    };
    match syn::parse_str::<Path>(text) {
        Ok(path) => Facade::new(path),
        Err(_) => {
            errors.at(
                text.span(),
                format!(
                    "`{}` is not a path; write e.g. `crate = \"::my_limiter\"`",
                    **text
                ),
            );
            Facade::limiter()
        }
    }
}

/// `op = "name"`, which must not be blank.
fn op(op: &Option<SpannedValue<String>>, errors: &mut Errors) -> Option<String> {
    let op = op.as_ref()?;
    if op.trim().is_empty() {
        errors.at(op.span(), "`op` must not be empty");
    }
    Some((**op).clone())
}

/// `key = param` / `priority = param`: the parameter must exist.
fn param(
    arg: &Option<IdentArg>,
    what: &str,
    sig: &Signature,
    errors: &mut Errors,
) -> Option<Ident> {
    let ident = &arg.as_ref()?.0;
    let names = types::param_names(sig);
    if names.iter().any(|n| n == ident) {
        return Some(ident.clone());
    }
    let list: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    let list = if list.is_empty() {
        "none".to_owned()
    } else {
        list.join(", ")
    };
    errors.at(
        ident.span(),
        format!("`{what} = {ident}` names no parameter of this function; parameters: {list}"),
    );
    None
}

/// The blocking scan of an `async fn`'s body: errors under
/// `deny_blocking`, nothing under `allow_blocking`, else the findings,
/// which the expansion turns into warnings.
fn blocking_calls(args: &LimitArgs, func: &Func, errors: &mut Errors) -> Vec<Warning> {
    let (deny, allow) = (
        args.deny_blocking.is_present(),
        args.allow_blocking.is_present(),
    );
    if deny && allow {
        errors.at(
            args.allow_blocking.span(),
            "`deny_blocking` and `allow_blocking` contradict each other; keep one",
        );
    }
    let block = match (func.body.block(), &func.sig.asyncness) {
        (Some(block), Some(_)) if !allow || deny => block,
        _ => return Vec::new(),
    };
    let found = scan(&func.sig.inputs, block);
    if !deny {
        return found.iter().map(Finding::warning).collect();
    }
    for finding in found {
        errors.at(finding.span, finding.message());
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item;

    fn check(args: &str, func: &str) -> Result<LimitSpec, String> {
        let func = item::parse(func.parse().unwrap(), "").ok().unwrap();
        let args = crate::attr::limit(args.parse().unwrap()).map_err(|e| e.to_string())?;
        limit(args, &func).map_err(|e| {
            e.into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    #[test]
    fn accepts_every_argument() {
        let spec = check(
            r#"op = "db", kind = database, timeout = "10s", strategy = "cache_fallback", rate = "100/s",
               burst = 10, algorithm = "token_bucket", key = user, max_concurrent = 20,
               max_concurrent_per_key = 3, queue = 10, queue_timeout = "30s", overload = "drop_oldest",
               priority = level, retries = 3, backoff = "exponential", backoff_base = "100ms",
               breaker(failure_rate = 0.5, min_calls = 10, window = 20, slow_call = "2s", recovery = "60s",
               half_open_calls = 1, success_threshold = 1), backend = "local", deny_blocking"#,
            "async fn f(user: String, level: u8) -> Result<(), E> { Ok(()) }",
        )
        .unwrap();
        assert_eq!(spec.op.as_deref(), Some("db"));
        assert!(spec.retries);
        assert_eq!(spec.key.unwrap(), "user");
        assert_eq!(spec.settings.queue_per_key, Some(10));
        assert!(spec.settings.rate.is_none() && spec.settings.rate_per_key.is_some());
    }

    #[test]
    fn collects_every_error() {
        let err = check(
            r#"timeout = "10x", rate = "0/s", strategy = "later", key = nobody, burst = 0"#,
            "async fn f(user: String) {}",
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

    #[test]
    fn checks_once_done_at_expansion_are_collected_too() {
        let err = check(
            r#"op = "m", retries = 2, fallback = other"#,
            "async fn f(&mut self, buf: &mut Vec<u8>, (a, b): (u8, u8)) -> u8 { a }",
        )
        .unwrap_err();
        for part in [
            "which needs `&self`",
            "cannot take a `&mut` argument",
            "`retries` clones each argument per attempt by name",
            "`fallback` passes the arguments on by name",
            "the receiver must be `&self`",
        ] {
            assert!(err.contains(part), "missing `{part}` in {err}");
        }
    }

    #[test]
    fn deny_blocking_reports_each_call() {
        let err = check(
            "deny_blocking",
            "async fn f() { std::thread::sleep(d); let t = sleep(d); sleep(d); }",
        )
        .unwrap_err();
        assert_eq!(err.matches("blocking call").count(), 2, "{err}");
        let spec = check("", "async fn f() { std::thread::sleep(d); }").unwrap();
        assert_eq!(spec.warnings.len(), 1);
        let spec = check("allow_blocking", "async fn f() { std::thread::sleep(d); }").unwrap();
        assert!(spec.warnings.is_empty());
    }
}
