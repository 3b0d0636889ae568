//! The attributes of [`limiter`](https://docs.rs/limiter). Use them through
//! the `limiter` crate, whose documentation describes them in full.

#![forbid(unsafe_code)]

mod attr;
mod expand;
mod scan;
mod task;

use proc_macro::TokenStream;
use quote::quote;

/// Limits and watches a function. See `limiter::limit_blocking`.
#[proc_macro_attribute]
pub fn limit_blocking(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            // Point at the item itself (`struct`, or the bodiless `fn`).
            let span = item.clone().into_iter().find_map(|t| match t {
                proc_macro2::TokenTree::Ident(i) if i != "pub" => Some(i.span()),
                _ => None,
            });
            let err = syn::Error::new(
                span.unwrap_or_else(proc_macro2::Span::call_site),
                "#[limit_blocking] goes on a function with a body (a free fn, or a method in an impl block)",
            )
            .to_compile_error();
            return quote!(#err #item).into();
        }
    };
    let spec = attr::parse(args.into()).and_then(|a| attr::check(a, &func.sig));
    match spec {
        Ok(spec) => expand::limit_blocking(&spec, func).into(),
        Err(errors) => {
            // The original function is still emitted, so the rest of the
            // crate (and the IDE) keeps working while the attribute is wrong.
            let errors = errors.write_errors();
            quote!(#errors #item).into()
        }
    }
}

/// Turns an `async fn` into a tracked background task. See
/// `limiter::background_task`.
#[proc_macro_attribute]
pub fn background_task(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let err = syn::Error::new(
                proc_macro2::Span::call_site(),
                "#[background_task] goes on an `async fn` with a body",
            )
            .to_compile_error();
            return quote!(#err #item).into();
        }
    };
    match task::background_task(args.into(), func) {
        Ok(tokens) => tokens.into(),
        Err(errors) => {
            let errors = errors.write_errors();
            quote!(#errors #item).into()
        }
    }
}
