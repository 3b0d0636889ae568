//! `#[background_task]`: its arguments, and the owned parameters a task
//! that outlives its caller needs.

use syn::{FnArg, Pat, Signature};

use super::settings::{count, duration};
use crate::attr::TaskArgs;
use crate::error::Errors;
use crate::item::Func;
use crate::spec::TaskSpec;
use crate::types;

/// Checks `#[background_task]`'s arguments against `func`.
pub(crate) fn task(args: TaskArgs, func: &Func) -> syn::Result<TaskSpec> {
    let mut errors = Errors::default();
    let facade = super::facade(&args.krate, &mut errors);
    if func.sig.asyncness.is_none() {
        errors.spanned(
            func.sig.fn_token,
            "#[background_task] goes on an `async fn`: its body becomes the task",
        );
    }
    let max_concurrent = count(&args.max_concurrent, 1, &mut errors);
    let queue = count(&args.queue, 0, &mut errors);
    let retries = count(&args.retries, 0, &mut errors).unwrap_or(0);
    let timeout = duration(&args.timeout, &mut errors);
    if let Some(name) = &args.name {
        if name.trim().is_empty() {
            errors.at(name.span(), "`name` must not be empty");
        }
    }
    params(&func.sig, retries, &mut errors);
    errors.finish()?;
    Ok(TaskSpec {
        facade,
        name: args.name.map(|n| (*n).clone()),
        max_concurrent,
        queue,
        retries,
        timeout,
        spawn: true,
    })
}

/// A task outlives its caller (owned parameters); under `retries` each
/// attempt clones them by name.
fn params(sig: &Signature, retries: u32, errors: &mut Errors) {
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(r) if types::borrows(arg) => errors.spanned(
                r,
                "a background task outlives its caller, so it cannot borrow `self`; take `self` by value (e.g. an `Arc`)",
            ),
            FnArg::Typed(_) if types::borrows(arg) => errors.spanned(
                arg,
                "a background task outlives its caller, so its arguments must be owned; this one is a reference",
            ),
            FnArg::Typed(t) if retries > 0 && !matches!(&*t.pat, Pat::Ident(_)) => errors.spanned(
                &t.pat,
                "`retries` clones each argument per attempt by name; bind this one to a name",
            ),
            FnArg::Receiver(r) if retries > 0 => errors.spanned(
                r,
                "`retries` runs the body again for each attempt, which cannot consume `self`",
            ),
            _ => {}
        }
    }
}
