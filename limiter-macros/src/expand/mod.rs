//! Stage 3: generating code from the checked models. Nothing is checked
//! here.
//!
//! The function keeps its attributes, doc comments, visibility, generics,
//! where clause and parameters. Its statements go into their own block,
//! after a fake return edge that fixes the body's type up front (so type
//! errors point at the user's code) and that the user's imports cannot
//! shadow (tracing-attributes' technique); that block runs in an `async
//! move` block (a closure for a plain `fn`), so `return` and `?` keep
//! their meaning. Generated code names the runtime only by absolute paths
//! through the facade (`<crate>::__private_<version>`), and its locals are
//! named `__limiter_*`.

mod config;
mod task;

use limiter_spec::TimeoutStrategy;
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, Pat, ReturnType, Signature, Type};

use crate::item::Func;
use crate::spec::{Exec, Fallback, Level, LimitSpec, RouteSpec, Warning};
use crate::types;

pub(crate) use task::background_task;

/// The expansion of `#[limit_blocking]`, or of `#[optimize_route]` when
/// `route` is given.
pub(crate) fn limit_blocking(
    spec: &LimitSpec,
    func: &Func,
    route: Option<&RouteSpec>,
) -> TokenStream {
    let body = body(spec, func, route);
    let inner_attrs = &func.inner_attrs;
    match &func.async_trait {
        // The signature `#[async_trait]` wrote stays; the limit wraps the
        // inner future.
        Some(boxed) => function(
            func,
            boxed,
            quote! {
                #(#inner_attrs)*
                ::std::boxed::Box::pin(async move { #body })
            },
        ),
        None => function(
            func,
            &signature(spec, &func.sig),
            quote!(#(#inner_attrs)* #body),
        ),
    }
}

/// `<attributes> <visibility> <sig> { <body> }`, the braces keeping their
/// original span.
fn function(func: &Func, sig: &Signature, body: TokenStream) -> TokenStream {
    let Func {
        outer_attrs, vis, ..
    } = func;
    let mut out = quote!(#(#outer_attrs)* #vis #sig);
    func.body.brace().surround(&mut out, |t| t.extend(body));
    out
}

/// The function's return type as the expansion uses it.
struct Output {
    /// The body's type (`()` when none is written), `impl Trait` erased to
    /// `_`: for the fake return edge and the typed bindings of the value.
    body: Type,
    /// The value is wrapped in `Ok`: the return type is not a `Result`.
    wraps: bool,
    /// The return type's span (the name's when none is written): type
    /// errors about it point there.
    span: Span,
}

impl Output {
    /// The return type of `sig`.
    fn of(sig: &Signature) -> Self {
        match &sig.output {
            ReturnType::Default => Output {
                body: syn::parse_quote!(()),
                wraps: true,
                span: sig.ident.span(),
            },
            ReturnType::Type(_, ty) => Output {
                body: types::erase_impl_trait(ty),
                wraps: !types::is_result(ty),
                span: ty.span(),
            },
        }
    }
}

/// The rewritten signature: `async` (never `const`); a return type `T`
/// that is not a `Result` becomes `Result<T, LimitError>` unless a
/// fallback answers for the limits; under retries no parameter is `mut`
/// (each attempt binds its own mutable clone).
fn signature(spec: &LimitSpec, sig: &Signature) -> Signature {
    let mut new = sig.clone();
    new.asyncness
        .get_or_insert(syn::Token![async](sig.fn_token.span));
    new.constness = None;
    let root = spec.facade.root();
    if matches!(spec.fallback, Fallback::None) {
        let span = sig.output.span();
        new.output = match &sig.output {
            ReturnType::Type(_, ty) if types::is_result(ty) => sig.output.clone(),
            ReturnType::Type(_, ty) => {
                syn::parse_quote_spanned!(span=> -> ::core::result::Result<#ty, #root::LimitError>)
            }
            ReturnType::Default => {
                syn::parse_quote_spanned!(span=> -> ::core::result::Result<(), #root::LimitError>)
            }
        };
    }
    if spec.retries {
        strip_mut(&mut new);
    }
    new
}

/// Drops `mut` from the parameters of `sig` (their clones are the mutable
/// ones).
fn strip_mut(sig: &mut Signature) {
    for arg in &mut sig.inputs {
        if let FnArg::Typed(t) = arg {
            if let Pat::Ident(p) = &mut *t.pat {
                p.mutability = None;
            }
        }
    }
}

/// The new body: warnings, the op (declared on first use), the limited
/// call.
fn body(spec: &LimitSpec, func: &Func, route: Option<&RouteSpec>) -> TokenStream {
    let private = spec.facade.private();
    let warnings = warnings(&spec.warnings);
    let op_name = name_or_path(spec.op.as_deref(), &func.sig.ident);
    let config = config::statements(&spec.settings, &spec.facade);
    let out = Output::of(&func.sig);
    let call = call(spec, &func.sig, &out, route.is_some());
    let run = with_fallback(spec, func, &out, run(spec, func, &out, call));
    let run = match route {
        Some(route) => in_route(spec, route, run, &op_name),
        None => run,
    };
    let declared = quote! {
        || {
            let mut __limiter_cfg = #private::OpConfig::default();
            #config
            __limiter_cfg
        }
    };
    // `registry = path`: the op lives in the registry the function at the
    // path returns (anything that derefs to a `Registry`: `&'static
    // Registry`, `Arc<Registry>`), checked at the path; else in the global
    // one.
    let op = match &spec.registry {
        Some(path) => quote_spanned! {path.span()=>
            __LIMITER_SITE.get_in(&*#path(), #op_name, #declared)
        },
        None => quote!(__LIMITER_SITE.get(#op_name, #declared)),
    };
    quote! {
        #warnings
        static __LIMITER_SITE: #private::OpSite = #private::OpSite::new();
        let __limiter_op = #op;
        #run
    }
}

/// `name`, or by default the function's path (`my_crate::db::load_user`).
fn name_or_path(name: Option<&str>, ident: &Ident) -> TokenStream {
    match name {
        Some(name) => quote!(#name),
        None => quote!(::core::concat!(
            ::core::module_path!(),
            "::",
            ::core::stringify!(#ident)
        )),
    }
}

/// Warnings (blocking calls, advice): a use of a `#[deprecated]` constant
/// spanned at each place (stable Rust has no warning API for proc macros;
/// the technique of the `proc-macro-warning` crate).
fn warnings(warnings: &[Warning]) -> TokenStream {
    let mut out = TokenStream::new();
    for (i, warning) in warnings.iter().enumerate() {
        let name = format_ident!("__limiter_{}_{}", warning.what, i);
        let text = &warning.text;
        // The use carries the place's span, so the warning points at it.
        let used = Ident::new(&name.to_string(), warning.span);
        let used = quote_spanned!(warning.span=> let _ = #used;);
        out.extend(quote! {
            {
                #[deprecated(note = #text)]
                #[allow(non_upper_case_globals)]
                const #name: () = ();
                #used
            }
        });
    }
    out
}

/// `__limiter_op.call()` with the per-call settings: key, priority,
/// strategy, failure classifier.
fn call(spec: &LimitSpec, sig: &Signature, out: &Output, route: bool) -> TokenStream {
    let private = spec.facade.private();
    let mut call = quote!(__limiter_op.call());
    if let Some(key) = &spec.key {
        call.extend(quote_spanned!(key.span()=> .key(&#key)));
    }
    if let Some(priority) = &spec.priority {
        call.extend(
            quote_spanned!(priority.span()=> .priority(#private::Priority::priority(&#priority))),
        );
    }
    if let Some(hook) = &spec.on_timeout {
        // `Fn(T) -> impl Future<Output = ()>`, checked at the path.
        call.extend(quote_spanned!(hook.span()=> .on_timeout(#hook)));
    }
    if let Some(cost) = &spec.cost {
        // Evaluated before the body takes the parameters; its type is
        // checked by `IntoCost` at the expression.
        call.extend(quote_spanned!(cost.span()=> .cost(#cost)));
    }
    match spec.strategy {
        TimeoutStrategy::Cancel => {}
        TimeoutStrategy::Background => call.extend(quote!(.background())),
        TimeoutStrategy::CacheFallback => call.extend(quote!(.cache_fallback())),
        TimeoutStrategy::Drain => call.extend(quote!(.drain())),
    }
    if let ReturnType::Type(_, ret) = &sig.output {
        call.extend(classifier(spec, ret, out, route));
    }
    call
}

/// `.failure(f)`: `breaker(failure = path)`, typed against the body's
/// `Result<T, E>` at the path (a wrong signature is an error there); or,
/// for a route without one, its default: errors whose type has a status
/// (`http::ErrorStatus`) count when it is a 5xx, errors of other types
/// always.
fn classifier(spec: &LimitSpec, ret: &Type, out: &Output, route: bool) -> Option<TokenStream> {
    let private = spec.facade.private();
    let fallback_err = quote!(#private::FallbackError);
    match (&spec.failure, &spec.fallback) {
        (Some(path), fallback) => {
            let typed = typed_classifier(&private, ret, quote_spanned!(path.span()=> #path))
                .map(|t| quote_spanned!(path.span()=> #t))
                .unwrap_or_else(|| quote_spanned!(path.span()=> #path));
            Some(match fallback {
                Fallback::None => quote!(.failure(#typed)),
                Fallback::Call(_) | Fallback::Recovery => quote! {
                    .failure(|__limiter_e: &#fallback_err<_>| match __limiter_e {
                        #fallback_err::Body(__limiter_b) => (#typed)(__limiter_b),
                        #fallback_err::Limit(_) => true,
                    })
                },
            })
        }
        (None, Fallback::None) if route && !out.wraps => {
            let classify = quote! {
                |__limiter_e| {
                    #[allow(unused_imports)]
                    use #private::{RouteAnyFailure as _, RouteStatusFailure as _};
                    (&#private::RouteError(__limiter_e)).route_failure()
                }
            };
            typed_classifier(&private, ret, classify).map(|typed| quote!(.failure(#typed)))
        }
        (None, _) => None,
    }
}

/// The function-pointer type check of a classifier `f` against the
/// function's return type `ret`: by the error type when `ret` hides its
/// value type (`Result<impl Trait, E>`), else by `ret` itself (so that
/// aliases such as `io::Result<T>` work). `None` when neither can be named.
fn typed_classifier(private: &TokenStream, ret: &Type, f: TokenStream) -> Option<TokenStream> {
    if !types::contains_impl_trait(ret) {
        return Some(quote!(#private::failure_fn::<#ret>(#f)));
    }
    let e = types::written_error_type(ret)?;
    if types::contains_impl_trait(e) {
        return None;
    }
    Some(quote!(#private::failure_fn_of::<#e>(#f)))
}

/// The limited call: `call.run_once(future).await`, `call.run(|| future)`
/// per attempt under retries, or their `run_blocking*` forms with a
/// closure for the pool. Spanned at the return type, so that a bound it
/// misses (an error type without `From<LimitError>`) is reported there.
fn run(spec: &LimitSpec, func: &Func, out: &Output, call: TokenStream) -> TokenStream {
    let clones = retry_clones(spec, &func.sig);
    let (method, task) = match (spec.exec, spec.retries) {
        (Exec::Blocking, false) => {
            let value = wrap(spec, out, value(spec, func, out));
            ("run_blocking_once", quote!(move || { #value }))
        }
        (Exec::Blocking, true) => {
            let value = wrap(spec, out, value(spec, func, out));
            ("run_blocking", quote!(move || { #clones #value }))
        }
        (Exec::Async | Exec::InPlace, false) => ("run_once", future(spec, func, out)),
        (Exec::Async | Exec::InPlace, true) => {
            let future = future(spec, func, out);
            ("run", quote!(move || { #clones #future }))
        }
    };
    let method = Ident::new(method, out.span);
    let await_ = quote_spanned!(out.span=> .await);
    quote!(#call.#method(#task) #await_)
}

/// The future the limited call runs: the user's own when its value needs
/// no wrapping, else an `async move` block wrapping it.
fn future(spec: &LimitSpec, func: &Func, out: &Output) -> TokenStream {
    if spec.exec == Exec::Async && !out.wraps && matches!(spec.fallback, Fallback::None) {
        return user_future(func, out);
    }
    let value = wrap(spec, out, value(spec, func, out));
    quote!(async move { #value })
}

/// The body's value, typed by the return type.
fn value(spec: &LimitSpec, func: &Func, out: &Output) -> TokenStream {
    let ty = &out.body;
    let value = match spec.exec {
        Exec::Async => {
            let future = user_future(func, out);
            quote!(#future.await)
        }
        Exec::Blocking | Exec::InPlace => {
            let body = &func.body;
            quote!((move || -> #ty #body)())
        }
    };
    if out.wraps {
        quote!({ let __limiter_value: #ty = #value; __limiter_value })
    } else {
        value
    }
}

/// `async move { <fake return edge> { <the user's statements> } }`. The
/// edge, spanned at the return type, fixes the block's type before the
/// statements, so a type error in them points at them; being outside
/// their block, it names the return type where their imports cannot
/// shadow it.
fn user_future(func: &Func, out: &Output) -> TokenStream {
    let ty = &out.body;
    let body = &func.body;
    quote_spanned! {out.span=>
        async move {
            #[allow(
                unknown_lints,
                unreachable_code,
                clippy::diverging_sub_expression,
                clippy::empty_loop,
                clippy::let_unit_value,
                clippy::let_with_type_underscore,
                clippy::needless_return,
                clippy::unreachable
            )]
            if false {
                let __limiter_fake_return: #ty = loop {};
                return __limiter_fake_return;
            }
            #body
        }
    }
}

/// What the body's value becomes inside the limited call: `Ok(value)` for
/// a plain `T`; with a fallback, errors are split into limit errors (the
/// fallback answers) and the body's own (passed on).
fn wrap(spec: &LimitSpec, out: &Output, value: TokenStream) -> TokenStream {
    let private = spec.facade.private();
    let root = spec.facade.root();
    let ty = &out.body;
    let fallback = !matches!(spec.fallback, Fallback::None);
    match (out.wraps, fallback) {
        (true, false) => quote!(::core::result::Result::Ok::<#ty, #root::LimitError>(#value)),
        (true, true) => quote! {
            ::core::result::Result::Ok::<#ty, #private::FallbackError<::core::convert::Infallible>>(#value)
        },
        (false, false) => value,
        (false, true) => {
            quote!(::core::result::Result::map_err(#value, #private::FallbackError::Body))
        }
    }
}

/// Under retries, `let [mut] name = Clone::clone(&name);` for each
/// by-value parameter, at the start of each attempt.
fn retry_clones(spec: &LimitSpec, sig: &Signature) -> TokenStream {
    if !spec.retries {
        return TokenStream::new();
    }
    types::named_params(sig)
        .filter(|(t, _)| !matches!(&*t.ty, Type::Reference(_)))
        .map(|(t, p)| clone_for_attempt(t, p))
        .collect()
}

/// `let [mut] name = Clone::clone(&name);` for one attempt of a retried
/// body, keeping the parameter's attributes (`#[cfg]`); a missing `Clone`
/// is reported at the parameter's type.
fn clone_for_attempt(t: &syn::PatType, p: &syn::PatIdent) -> TokenStream {
    let name = &p.ident;
    let attrs = &t.attrs;
    let mutability = &p.mutability;
    quote_spanned!(t.ty.span()=>
        #(#attrs)*
        #[allow(unused_mut)]
        let #mutability #name = ::core::clone::Clone::clone(&#name);
    )
}

/// With a fallback: the arguments kept for it, and the limited call's
/// result split into the value, the body's error and the fallback's
/// answer to a limit.
fn with_fallback(spec: &LimitSpec, func: &Func, out: &Output, run: TokenStream) -> TokenStream {
    let (kept, answer) = match &spec.fallback {
        Fallback::None => return run,
        Fallback::Call(path) => {
            let (kept, passed) = kept_arguments(&func.sig);
            let await_ = (spec.exec == Exec::Async).then(|| quote!(.await));
            (
                kept,
                quote_spanned!(path.span()=> #path(#(#passed),*) #await_),
            )
        }
        Fallback::Recovery => (
            TokenStream::new(),
            quote!(::core::unreachable!(
                "expanded after errors in the attribute"
            )),
        ),
    };
    let private = spec.facade.private();
    let (on_ok, on_body) = if out.wraps {
        (quote!(__limiter_value), quote!(match __limiter_error {}))
    } else {
        (
            quote!(::core::result::Result::Ok(__limiter_value)),
            quote!(::core::result::Result::Err(__limiter_error)),
        )
    };
    quote! {
        #kept
        match #run {
            ::core::result::Result::Ok(__limiter_value) => #on_ok,
            ::core::result::Result::Err(#private::FallbackError::Body(__limiter_error)) => #on_body,
            ::core::result::Result::Err(#private::FallbackError::Limit(_)) => #answer,
        }
    }
}

/// The arguments kept for the fallback (clones of by-value arguments,
/// copies of references) and how they are passed to it.
fn kept_arguments(sig: &Signature) -> (TokenStream, Vec<TokenStream>) {
    let mut kept = TokenStream::new();
    let mut passed = Vec::new();
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(_) => passed.push(quote!(self)),
            FnArg::Typed(t) => {
                let Pat::Ident(p) = &*t.pat else { continue };
                let name = &p.ident;
                let kept_name = format_ident!("__limiter_kept_{}", name);
                kept.extend(if matches!(&*t.ty, Type::Reference(_)) {
                    quote!(let #kept_name = #name;)
                } else {
                    quote_spanned!(t.ty.span()=> let #kept_name = ::core::clone::Clone::clone(&#name);)
                });
                passed.push(quote!(#kept_name));
            }
        }
    }
    (kept, passed)
}

/// A route: the call in a tracing span and, for Ultra, coalesced with
/// identical concurrent calls and cached for the TTL.
fn in_route(
    spec: &LimitSpec,
    route: &RouteSpec,
    run: TokenStream,
    op_name: &TokenStream,
) -> TokenStream {
    let private = spec.facade.private();
    let run = if route.level == Level::Ultra {
        let key = match &spec.key {
            Some(key) => {
                quote!(::core::option::Option::Some(&#key as &dyn #private::LimitKey))
            }
            None => quote!(::core::option::Option::None),
        };
        let ttl = u64::try_from(route.ttl.as_nanos()).unwrap_or(u64::MAX);
        quote! {{
            let __limiter_call_key = __limiter_op.call_key(#key);
            __limiter_op
                .coalesced_by(
                    __limiter_call_key,
                    ::core::option::Option::Some(::core::time::Duration::from_nanos(#ttl)),
                    move || async move { #run },
                )
                .await
        }}
    } else {
        run
    };
    quote! {
        #private::Instrument::instrument(
            async move { #run },
            #private::tracing::info_span!("limiter.route", route = #op_name),
        )
        .await
    }
}
