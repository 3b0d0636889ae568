//! `#[limit_blocking]`'s arguments against the function's signature: what
//! each strategy, `retries` and `fallback` need of the parameters, and
//! what cannot be limited at all.

use limiter_spec::TimeoutStrategy;
use syn::{FnArg, Pat, ReturnType, Signature, Type};

use crate::attr::LimitArgs;
use crate::error::Errors;
use crate::item::Func;
use crate::types;

/// Every check of the signature against the arguments.
pub(super) fn check(args: &LimitArgs, strategy: TimeoutStrategy, func: &Func, errors: &mut Errors) {
    let sig = &func.sig;
    failure_needs_result(args, sig, errors);
    if matches!(
        strategy,
        TimeoutStrategy::Background | TimeoutStrategy::Drain
    ) {
        background_owned(args, sig, strategy, errors);
    }
    if sig.asyncness.is_none() {
        plain_fn_owned(sig, errors);
    }
    if args.fallback.is_some() {
        fallback_params(sig, errors);
    }
    if let Some(c) = &sig.constness {
        errors.spanned(
            c,
            "a `const fn` cannot be limited: limits act at run time; drop `const`",
        );
    }
    if let (None, Some(FnArg::Receiver(r))) = (&args.op, sig.inputs.first()) {
        errors.spanned(
            r.self_token,
            "a method needs `op = \"...\"`: by default the op is named after the module and the function, which two impls in one module would share",
        );
    }
    if args.retries.as_ref().is_some_and(|r| **r > 0) {
        retried_params(sig, errors);
    }
    if func.async_trait.is_some() && args.fallback.is_none() {
        async_trait_output(sig, errors);
    }
}

/// `breaker(failure = path)` classifies the errors of a `Result`.
fn failure_needs_result(args: &LimitArgs, sig: &Signature, errors: &mut Errors) {
    let failure = args
        .breaker
        .as_ref()
        .and_then(|b| b.fields.failure.as_ref());
    if let (Some(failure), false) = (failure, types::returns_result(sig)) {
        errors.spanned(
            &failure.0,
            "`breaker(failure = …)` decides which errors of the body are failures: the function must return `Result<T, E>`",
        );
    }
}

/// `strategy = "background"` and `"drain"` keep the call running after its
/// caller left.
fn background_owned(
    args: &LimitArgs,
    sig: &Signature,
    strategy: TimeoutStrategy,
    errors: &mut Errors,
) {
    for arg in sig.inputs.iter().filter(|a| types::borrows(a)) {
        errors.spanned(
            arg,
            format!("`strategy = \"{strategy}\"` keeps the call running after the caller left, so its arguments must be owned; this one is a reference"),
        );
        if let Some(chosen) = &args.strategy {
            errors.at(chosen.span(), format!("{strategy} strategy chosen here"));
        }
    }
}

/// A plain `fn` runs on the blocking pool, which needs `'static` arguments.
fn plain_fn_owned(sig: &Signature, errors: &mut Errors) {
    for arg in sig.inputs.iter().filter(|a| types::borrows(a)) {
        errors.spanned(
            arg,
            "a plain `fn` under #[limit_blocking] runs on the blocking pool, so its arguments must be owned (`'static`); this one is a reference — take it by value or make the fn `async`",
        );
    }
}

/// `fallback` is called with the same arguments after the body took them.
fn fallback_params(sig: &Signature, errors: &mut Errors) {
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(r) if !types::receiver_is_shared_ref(r) => errors.spanned(
                r,
                "`fallback` is called with the same arguments after the body took them, so the receiver must be `&self`",
            ),
            FnArg::Typed(t) if !matches!(&*t.pat, Pat::Ident(_)) => errors.spanned(
                &t.pat,
                "`fallback` passes the arguments on by name; bind this one to a name",
            ),
            _ => {}
        }
    }
}

/// `retries` runs the body once per attempt, on clones of the arguments.
fn retried_params(sig: &Signature, errors: &mut Errors) {
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(r) if !types::receiver_is_shared_ref(r) => errors.spanned(
                r,
                "`retries` runs the body again for each attempt, which needs `&self`; this receiver can only be used once",
            ),
            FnArg::Typed(t) => match (&*t.pat, &*t.ty) {
                (_, Type::Reference(r)) if r.mutability.is_some() => errors.spanned(
                    t,
                    "`retries` runs the body again for each attempt, so it cannot take a `&mut` argument; take it by value (it is cloned per attempt) or drop `retries`",
                ),
                (_, Type::Reference(_)) | (Pat::Ident(_), _) => {}
                (pat, _) => errors.spanned(
                    pat,
                    "`retries` clones each argument per attempt by name; bind this one to a name and destructure it in the body",
                ),
            },
            FnArg::Receiver(_) => {}
        }
    }
}

/// An `#[async_trait]` method's signature cannot change, so its output
/// must already carry limit errors.
fn async_trait_output(sig: &Signature, errors: &mut Errors) {
    if let ReturnType::Type(_, ty) = &sig.output {
        if !types::is_result(ty) {
            errors.spanned(
                ty,
                "under #[async_trait] the return type cannot change: return `Result<T, E>` with `E: From<LimitError>`, or add a `fallback`",
            );
        }
    }
}
