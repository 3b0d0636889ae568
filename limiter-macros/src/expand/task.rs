//! The code of `#[background_task]`: calling the function spawns its body
//! on the runtime's background manager and returns
//! `Result<TaskHandle, LimitError>` at once.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Ident, Signature};

use super::{clone_for_attempt, function, name_or_path, strip_mut, user_future, Output};
use crate::item::Func;
use crate::spec::TaskSpec;
use crate::types;

/// The expansion of `#[background_task]`.
pub(crate) fn background_task(spec: &TaskSpec, func: &Func) -> TokenStream {
    let Func {
        inner_attrs, sig, ..
    } = func;
    let sig_out = signature(spec, sig);
    let out = Output::of(sig);
    let ty = &out.body;
    let future = user_future(func, &out);
    let task = quote! {
        async move {
            let __limiter_out: #ty = #future.await;
            __limiter_out
        }
    };
    let body = if spec.spawn {
        spawn(spec, func, &out, task)
    } else {
        // After errors, for a body that borrows: checked, not spawned.
        quote! {
            let _ = #task;
            ::core::unreachable!("expanded after errors in the attribute")
        }
    };
    function(func, &sig_out, quote!(#(#inner_attrs)* #body))
}

/// The rewritten signature: a plain `fn` returning
/// `Result<TaskHandle, LimitError>`; under retries no parameter is `mut`.
fn signature(spec: &TaskSpec, sig: &Signature) -> Signature {
    let root = spec.facade.root();
    let mut new = sig.clone();
    new.asyncness = None;
    new.constness = None;
    if spec.retries > 0 {
        strip_mut(&mut new);
    }
    new.output = syn::parse_quote!(-> ::core::result::Result<#root::TaskHandle, #root::LimitError>);
    new
}

/// `registry().tasks().spawn_once(spec, task)`, or `spawn(spec, || task)`
/// with per-attempt clones under retries.
fn spawn(spec: &TaskSpec, func: &Func, out: &Output, task: TokenStream) -> TokenStream {
    let private = spec.facade.private();
    let name = name_or_path(spec.name.as_deref(), &func.sig.ident);
    let retries = spec.retries;
    let max_concurrent = option(spec.max_concurrent.map(|n| quote!(#n)));
    let queue = option(spec.queue.map(|n| quote!(#n)));
    let timeout = option(spec.timeout.map(super::config::duration));
    let (method, task) = if retries > 0 {
        let clones: TokenStream = types::named_params(&func.sig)
            .map(|(t, p)| clone_for_attempt(t, p))
            .collect();
        ("spawn", quote!(move || { #clones #task }))
    } else {
        ("spawn_once", task)
    };
    // Spanned at the return type: an output that is neither `()` nor a
    // `Result` is reported there.
    let method = Ident::new(method, out.span);
    quote! {
        let __limiter_spec = #private::TaskSpec {
            name: ::core::convert::From::from(#name),
            max_concurrent: #max_concurrent,
            queue: #queue,
            retries: #retries,
            timeout: #timeout,
        };
        #private::registry().tasks().#method(__limiter_spec, #task)
    }
}

/// `Some(value)` or `None`.
fn option(value: Option<TokenStream>) -> TokenStream {
    match value {
        Some(v) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    }
}
