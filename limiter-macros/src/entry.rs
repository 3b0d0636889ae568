//! The three pipelines: parse the arguments and the function (stage 1),
//! validate them into a checked model (stage 2), expand it (stage 3).
//!
//! When the arguments have errors the function is still expanded, with
//! the default settings, next to the errors (tokio-macros' approach): a
//! plain `fn` still becomes `async`, a return type still gains
//! `LimitError`, so its callers type-check and the only errors are the
//! attribute's, at their tokens. Only an item that is not a function with
//! a body is emitted unchanged, with the error at it.

use proc_macro2::TokenStream;
use quote::quote;

use crate::spec::{LimitSpec, RouteSpec, TaskSpec};
use crate::{attr, expand, item, valid};

/// `#[limit_blocking(args)] item`.
pub(crate) fn limit_blocking(args: TokenStream, item: TokenStream) -> TokenStream {
    let func = match item::parse(
        item,
        "#[limit_blocking] goes on a function with a body (a free fn, or a method in an impl block)",
    ) {
        Ok(func) => func,
        Err(tokens) => return tokens,
    };
    match attr::limit(args.clone()).and_then(|a| valid::limit(a, &func)) {
        Ok(spec) => expand::limit_blocking(&spec, &func, None),
        Err(errors) => {
            let spec = LimitSpec::recovery(&attr::hints(&args), &func);
            with_errors(errors, expand::limit_blocking(&spec, &func, None))
        }
    }
}

/// `#[optimize_route(args)] item`.
pub(crate) fn optimize_route(args: TokenStream, item: TokenStream) -> TokenStream {
    let func = match item::parse(
        item,
        "#[optimize_route] goes on an `async fn` request handler",
    ) {
        Ok(func) => func,
        Err(tokens) => return tokens,
    };
    match attr::route(args.clone()).and_then(|a| valid::route(a, &func)) {
        Ok((spec, route)) => expand::limit_blocking(&spec, &func, Some(&route)),
        Err(errors) => {
            let mut spec = LimitSpec::recovery(&attr::hints(&args), &func);
            let route = RouteSpec::recovery();
            route.level.preset(&mut spec.settings);
            with_errors(errors, expand::limit_blocking(&spec, &func, Some(&route)))
        }
    }
}

/// `#[background_task(args)] item`.
pub(crate) fn background_task(args: TokenStream, item: TokenStream) -> TokenStream {
    let func = match item::parse(item, "#[background_task] goes on an `async fn` with a body") {
        Ok(func) => func,
        Err(tokens) => return tokens,
    };
    match attr::task(args.clone()).and_then(|a| valid::task(a, &func)) {
        Ok(spec) => expand::background_task(&spec, &func),
        Err(errors) => {
            let spec = TaskSpec::recovery(&attr::hints(&args), &func);
            with_errors(errors, expand::background_task(&spec, &func))
        }
    }
}

/// The errors, each a `compile_error!` at its span, then the expansion.
fn with_errors(errors: syn::Error, expansion: TokenStream) -> TokenStream {
    let errors = errors.into_compile_error();
    quote!(#errors #expansion)
}
