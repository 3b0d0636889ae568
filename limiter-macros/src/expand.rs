//! Generating the code of `#[limit_blocking]`.
//!
//! The function keeps its attributes, doc comments, visibility, generics,
//! where clause and parameters. Its body moves into its own block (an
//! `async move` block, or a closure for a plain `fn`) so that `return` and
//! `?` keep their meaning and the user's imports cannot shadow ours; the
//! generated code names the runtime only through `<crate>::__private`.

use limiter_spec::TimeoutStrategy;
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::Ident;
use syn::{AttrStyle, FnArg, ItemFn, Pat, ReturnType, Type};

use crate::attr::{LimitSpec, ScanMode};
use crate::route::{Level, RouteSpec};
use crate::scan::scan;

/// Whether `ty` is written as a `Result<..>` (any path ending in `Result`
/// with two type arguments, or an alias like `io::Result<T>`).
fn is_result(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Result"),
        _ => false,
    }
}

/// The error type `E` written in `Result<T, E>`, if the type is written so.
fn written_error_type(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.iter().nth(1)? {
        syn::GenericArgument::Type(e) => Some(e),
        _ => None,
    }
}

/// The function-pointer type check of a classifier `f` against the
/// function's return type `ret`: by the error type when `ret` hides its
/// value type (`Result<impl Trait, E>`), else by `ret` itself (so that
/// aliases such as `io::Result<T>` work). `None` when neither can be named.
fn typed_classifier(k: &syn::Path, ret: &Type, f: TokenStream) -> Option<TokenStream> {
    if !contains_impl_trait(ret) {
        return Some(quote!(#k::__private::failure_fn::<#ret>(#f)));
    }
    let e = written_error_type(ret)?;
    if contains_impl_trait(e) {
        return None;
    }
    Some(quote!(#k::__private::failure_fn_of::<#e>(#f)))
}

/// `name`, or by default the function's path (`my_crate::db::load_user`).
pub(crate) fn name_or_path(name: Option<&str>, ident: &Ident) -> TokenStream {
    match name {
        Some(name) => quote!(#name),
        None => quote!(::core::concat!(
            ::core::module_path!(),
            "::",
            ::core::stringify!(#ident)
        )),
    }
}

/// `let [mut] name = Clone::clone(&name);` for one attempt of a retried
/// body, keeping the parameter's attributes (`#[cfg]`); a missing `Clone`
/// is reported at the parameter's type.
pub(crate) fn clone_for_attempt(t: &syn::PatType, p: &syn::PatIdent) -> TokenStream {
    let name = &p.ident;
    let attrs = &t.attrs;
    let mutability = &p.mutability;
    quote_spanned!(t.ty.span()=>
        #(#attrs)*
        #[allow(unused_mut)]
        let #mutability #name = ::core::clone::Clone::clone(&#name);
    )
}

/// Drops `mut` from the parameters of `sig` (their clones are the mutable ones).
pub(crate) fn strip_mut(sig: &mut syn::Signature) {
    for arg in &mut sig.inputs {
        if let FnArg::Typed(t) = arg {
            if let Pat::Ident(p) = &mut *t.pat {
                p.mutability = None;
            }
        }
    }
}

/// Whether a receiver is `&self` (or `self: &Self`, `self: &Arc<Self>`…).
pub(crate) fn receiver_is_shared_ref(r: &syn::Receiver) -> bool {
    match &*r.ty {
        Type::Reference(re) => re.mutability.is_none(),
        _ => false,
    }
}

/// Whether a receiver borrows (`&self`, `&mut self`, `self: &Self`…).
pub(crate) fn receiver_borrows(r: &syn::Receiver) -> bool {
    matches!(&*r.ty, Type::Reference(_))
}

/// Whether `ty` mentions `impl Trait` anywhere.
fn contains_impl_trait(ty: &Type) -> bool {
    struct Find(bool);
    impl<'ast> syn::visit::Visit<'ast> for Find {
        fn visit_type_impl_trait(&mut self, _: &'ast syn::TypeImplTrait) {
            self.0 = true;
        }
    }
    let mut f = Find(false);
    syn::visit::Visit::visit_type(&mut f, ty);
    f.0
}

/// `ty` with every `impl Trait` replaced by `_`, for the places (bindings,
/// turbofish) where `impl Trait` may not be written.
fn erase_impl_trait(ty: &Type) -> Type {
    struct Erase;
    impl syn::visit_mut::VisitMut for Erase {
        fn visit_type_mut(&mut self, ty: &mut Type) {
            if matches!(ty, Type::ImplTrait(_)) {
                *ty = Type::Infer(syn::TypeInfer {
                    underscore_token: Default::default(),
                });
            } else {
                syn::visit_mut::visit_type_mut(self, ty);
            }
        }
    }
    let mut ty = ty.clone();
    syn::visit_mut::VisitMut::visit_type_mut(&mut Erase, &mut ty);
    ty
}

/// The `Output` of the future type `ty` (`Pin<Box<dyn Future<Output = T>
/// + Send + 'a>>`, as `#[async_trait]` writes it).
fn future_output(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Path(p) => output_in_path(&p.path),
        Type::TraitObject(o) => o.bounds.iter().find_map(|b| match b {
            syn::TypeParamBound::Trait(t) => output_in_path(&t.path),
            _ => None,
        }),
        Type::Paren(p) => future_output(&p.elem),
        Type::Group(g) => future_output(&g.elem),
        _ => None,
    }
}

fn output_in_path(path: &syn::Path) -> Option<&Type> {
    path.segments.iter().find_map(|seg| match &seg.arguments {
        syn::PathArguments::AngleBracketed(args) => args.args.iter().find_map(|a| match a {
            syn::GenericArgument::AssocType(at) if at.ident == "Output" => Some(&at.ty),
            syn::GenericArgument::Type(t) => future_output(t),
            _ => None,
        }),
        _ => None,
    })
}

/// The inner `async move { .. }` block and its output type when `func` is
/// an `#[async_trait]` method already desugared into
/// `fn f(..) -> Pin<Box<dyn Future<Output = T> + ..>> { Box::pin(async move { .. }) }`.
pub(crate) fn async_trait_parts(func: &ItemFn) -> Option<(syn::Block, Type)> {
    if func.sig.asyncness.is_some() || func.block.stmts.len() != 1 {
        return None;
    }
    let syn::Stmt::Expr(syn::Expr::Call(call), None) = &func.block.stmts[0] else {
        return None;
    };
    let syn::Expr::Path(callee) = &*call.func else {
        return None;
    };
    let segs: Vec<String> = callee
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    if !segs.ends_with(&["Box".to_owned(), "pin".to_owned()]) || call.args.len() != 1 {
        return None;
    }
    let syn::Expr::Async(inner) = &call.args[0] else {
        return None;
    };
    let ReturnType::Type(_, ty) = &func.sig.output else {
        return None;
    };
    // `#[async_trait]` always introduces this lifetime; a hand-written
    // boxed future does not, and is left alone (limited as a plain fn).
    let has_async_trait_lifetime = func
        .sig
        .generics
        .lifetimes()
        .any(|l| l.lifetime.ident == "async_trait");
    if !has_async_trait_lifetime {
        return None;
    }
    Some((inner.block.clone(), future_output(ty)?.clone()))
}

pub(crate) fn limit_blocking(spec: &LimitSpec, item: ItemFn) -> TokenStream {
    expand(spec, item, None)
}

/// The expansion of `#[limit_blocking]`, or of `#[optimize_route]` when
/// `route` is given.
pub(crate) fn expand(spec: &LimitSpec, item: ItemFn, route: Option<&RouteSpec>) -> TokenStream {
    // An `#[async_trait]` method: limit the inner future, not its boxing
    // (the signature cannot change, so the output must already be a
    // `Result` whose error takes `LimitError`, or a fallback must answer).
    if let Some((inner, output)) = async_trait_parts(&item) {
        if !is_result(&output) && spec.fallback.is_none() {
            let err = syn::Error::new(
                output.span(),
                "under #[async_trait] the return type cannot change: return `Result<T, E>` with `E: From<LimitError>`, or add a `fallback`",
            )
            .to_compile_error();
            return quote!(#err #item);
        }
        let mut sig = item.sig.clone();
        sig.asyncness = Some(Default::default());
        sig.output = syn::parse_quote!(-> #output);
        let virtual_fn = ItemFn {
            attrs: Vec::new(),
            vis: syn::Visibility::Inherited,
            sig,
            block: Box::new(inner),
        };
        let expanded = expand(spec, virtual_fn, route);
        let body = match syn::parse2::<ItemFn>(expanded) {
            Ok(f) => f.block,
            Err(e) => return e.to_compile_error(),
        };
        let ItemFn {
            attrs, vis, sig, ..
        } = item;
        return quote! {
            #(#attrs)*
            #vis #sig {
                ::std::boxed::Box::pin(async move #body)
            }
        };
    }
    let k = &spec.krate;
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = item;
    let (inner_attrs, outer_attrs): (Vec<_>, Vec<_>) = attrs
        .into_iter()
        .partition(|a| matches!(a.style, AttrStyle::Inner(_)));
    let is_async = sig.asyncness.is_some();

    // Blocking calls in an async body: warnings, or errors under deny.
    let mut diagnostics = TokenStream::new();
    if is_async && spec.scan != ScanMode::Allow {
        for (i, f) in scan(&block).into_iter().enumerate() {
            let text = format!(
                "blocking call `{}` ({}) inside an async fn blocks the executor thread; move it to a plain `fn` under #[limit_blocking] (it then runs on the blocking pool), use its async equivalent, or add `allow_blocking`",
                f.call, f.category
            );
            if spec.scan == ScanMode::Deny {
                diagnostics.extend(syn::Error::new(f.span, text).to_compile_error());
            } else {
                let name = format_ident!("__limiter_blocking_call_{}", i);
                // The use carries the call's span, so the warning points at it.
                let used_name = Ident::new(&name.to_string(), f.span);
                let used = quote_spanned!(f.span=> let _ = #used_name;);
                diagnostics.extend(quote! {
                    {
                        #[deprecated(note = #text)]
                        #[allow(non_upper_case_globals)]
                        const #name: () = ();
                        #used
                    }
                });
            }
        }
    }

    // The return type: `Result` stays; anything else gains `LimitError`.
    let (output, wrap_ok) = match &sig.output {
        ReturnType::Default => (
            quote!(::core::result::Result<(), #k::LimitError>),
            Some(quote!(())),
        ),
        ReturnType::Type(_, ty) if is_result(ty) => (quote!(#ty), None),
        ReturnType::Type(_, ty) => {
            let bound = erase_impl_trait(ty);
            (
                quote!(::core::result::Result<#ty, #k::LimitError>),
                Some(quote!(#bound)),
            )
        }
    };
    let mut new_sig = sig.clone();
    new_sig.asyncness = Some(Default::default());
    new_sig.output = syn::parse_quote_spanned!(sig.output.span()=> -> #output);

    // Under retries each attempt rebinds its own (mutable) clone, so the
    // outer parameters need no `mut`.
    if spec.retries {
        strip_mut(&mut new_sig);
    }

    // Per-attempt clones of the by-value arguments, for retries.
    let mut clones = TokenStream::new();
    let mut clone_errors = TokenStream::new();
    if spec.retries {
        for arg in &sig.inputs {
            match arg {
                FnArg::Receiver(r) if !receiver_is_shared_ref(r) => {
                    clone_errors.extend(
                        syn::Error::new(r.span(), "`retries` runs the body again for each attempt, which needs `&self`; this receiver can only be used once")
                            .to_compile_error(),
                    );
                }
                FnArg::Typed(t) => match (&*t.pat, &*t.ty) {
                    (_, Type::Reference(r)) if r.mutability.is_some() => clone_errors.extend(
                        syn::Error::new(t.span(), "`retries` runs the body again for each attempt, so it cannot take a `&mut` argument; take it by value (it is cloned per attempt) or drop `retries`")
                            .to_compile_error(),
                    ),
                    (_, Type::Reference(_)) => {}
                    (Pat::Ident(p), _) => clones.extend(clone_for_attempt(t, p)),
                    (other, _) => clone_errors.extend(
                        syn::Error::new(other.span(), "`retries` clones each argument per attempt by name; bind this one to a name and destructure it in the body")
                            .to_compile_error(),
                    ),
                },
                _ => {}
            }
        }
    }

    let op_name = name_or_path(spec.op.as_deref(), &sig.ident);
    let config = &spec.config;
    let mut call = quote! {
        __LIMITER_SITE
            .get(#op_name, || {
                let mut __limiter_cfg = #k::__private::OpConfig::default();
                #config
                __limiter_cfg
            })
            .call()
    };
    if let Some(key) = &spec.key {
        call.extend(quote_spanned!(key.span()=> .key(&#key)));
    }
    if let Some(priority) = &spec.priority {
        call.extend(quote_spanned!(priority.span()=> .priority(#k::__private::Priority::priority(&#priority))));
    }
    match spec.strategy {
        TimeoutStrategy::Cancel => {}
        TimeoutStrategy::Background => call.extend(quote!(.background())),
        TimeoutStrategy::CacheFallback => call.extend(quote!(.cache_fallback())),
    }

    // Type errors about the return type (an error type without
    // `From<LimitError>`) point at the return type.
    let ret_span = match &sig.output {
        ReturnType::Default => sig.ident.span(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    let await_ = quote_spanned!(ret_span=> .await);
    let run_m = Ident::new("run", ret_span);
    let run_once_m = Ident::new("run_once", ret_span);
    let run_blocking_m = Ident::new("run_blocking", ret_span);
    let run_blocking_once_m = Ident::new("run_blocking_once", ret_span);
    // What the body's value becomes inside the limited call: `Ok(value)`
    // for a plain `T`; with a `fallback`, errors are split into limit
    // errors (the fallback answers) and the body's own (passed on).
    let fallback_err = quote!(#k::__private::FallbackError);
    let wrap = |value: TokenStream| -> TokenStream {
        match (&wrap_ok, &spec.fallback) {
            (Some(ty), None) => quote!(::core::result::Result::Ok::<#ty, #k::LimitError>(#value)),
            (Some(ty), Some(_)) => {
                quote!(::core::result::Result::Ok::<#ty, #fallback_err<::core::convert::Infallible>>(#value))
            }
            (None, None) => value,
            (None, Some(_)) => quote!(::core::result::Result::map_err(#value, #fallback_err::Body)),
        }
    };
    // `breaker(failure = path)`: the function is typed against the body's
    // `Result<T, E>` at the path, so a wrong signature is an error there.
    // A route without its own classifier counts server failures only:
    // errors whose type has a status (`http::ErrorStatus`) count when it is
    // a 5xx, errors of other types always.
    let route_default = match (&spec.failure, &spec.fallback, route, &sig.output) {
        (None, None, Some(_), ReturnType::Type(_, ret)) if wrap_ok.is_none() => {
            let classify = quote! {
                |__limiter_e| {
                    #[allow(unused_imports)]
                    use #k::__private::{RouteAnyFailure as _, RouteStatusFailure as _};
                    (&#k::__private::RouteError(__limiter_e)).route_failure()
                }
            };
            typed_classifier(k, ret, classify).map(|typed| quote!(.failure(#typed)))
        }
        _ => None,
    };
    call.extend(route_default);
    if let (Some(path), ReturnType::Type(_, ret)) = (&spec.failure, &sig.output) {
        // Spanned at the path: a function of the wrong error type is an
        // error there.
        let typed = typed_classifier(k, ret, quote_spanned!(path.span()=> #path))
            .map(|t| quote_spanned!(path.span()=> #t))
            .unwrap_or_else(|| quote_spanned!(path.span()=> #path));
        call.extend(match &spec.fallback {
            None => quote!(.failure(#typed)),
            Some(_) => quote! {
                .failure(|__limiter_e: &#fallback_err<_>| match __limiter_e {
                    #fallback_err::Body(__limiter_b) => (#typed)(__limiter_b),
                    #fallback_err::Limit(_) => true,
                })
            },
        });
    }
    let run = if is_async {
        // A fake return edge, spanned at the return type, fixes the body's
        // type up front, so a type error in the body points at the body
        // (the technique of tracing-attributes). Skipped for `impl Trait`,
        // which cannot annotate a binding.
        let body_ty = match &sig.output {
            ReturnType::Default => Some(quote!(())),
            ReturnType::Type(_, ty) if !contains_impl_trait(ty) => Some(quote!(#ty)),
            ReturnType::Type(..) => None,
        };
        let stmts = &block.stmts;
        let user_future = match body_ty {
            Some(ty) => quote_spanned! {ret_span=>
                async move {
                    #[allow(unreachable_code, clippy::diverging_sub_expression, clippy::needless_return, clippy::empty_loop, clippy::let_unit_value)]
                    if false {
                        let __limiter_fake_return: #ty = loop {};
                        return __limiter_fake_return;
                    }
                    #(#stmts)*
                }
            },
            None => quote!(async move #block),
        };
        let value = match &wrap_ok {
            Some(ty) => {
                quote!({ let __limiter_value: #ty = #user_future.await; __limiter_value })
            }
            None => quote!(#user_future.await),
        };
        let wrapped = wrap(value);
        let body = quote!(async move { #wrapped });
        if spec.retries {
            quote!(#call.#run_m(move || { #clones #body }) #await_)
        } else {
            quote!(#call.#run_once_m(#body) #await_)
        }
    } else {
        let value = match &wrap_ok {
            Some(ty) => {
                quote!({ let __limiter_value: #ty = (move || -> #ty #block)(); __limiter_value })
            }
            None => {
                let output = erase_impl_trait(&syn::parse_quote!(#output));
                quote!((move || -> #output #block)())
            }
        };
        let wrapped = wrap(value);
        let body = quote!(move || { #wrapped });
        if spec.retries {
            quote!(#call.#run_blocking_m(move || { #clones (#body)() }) #await_)
        } else {
            quote!(#call.#run_blocking_once_m(#body) #await_)
        }
    };

    let run = match &spec.fallback {
        None => run,
        Some(fallback) => {
            new_sig.output = sig.output.clone();
            // The same arguments, kept for the fallback: clones of by-value
            // arguments, copies of references.
            let mut kept = Vec::new();
            let mut passed = Vec::new();
            let mut bad = TokenStream::new();
            for arg in &sig.inputs {
                match arg {
                    FnArg::Receiver(_) => passed.push(quote!(self)),
                    FnArg::Typed(t) => match &*t.pat {
                        Pat::Ident(p) => {
                            let name = &p.ident;
                            let kept_name = format_ident!("__limiter_kept_{}", name);
                            if matches!(&*t.ty, Type::Reference(_)) {
                                kept.push(quote!(let #kept_name = #name;));
                            } else {
                                kept.push(quote_spanned!(t.ty.span()=> let #kept_name = ::core::clone::Clone::clone(&#name);));
                            }
                            passed.push(quote!(#kept_name));
                        }
                        other => bad.extend(
                            syn::Error::new(other.span(), "`fallback` passes the arguments on by name; bind this one to a name")
                                .to_compile_error(),
                        ),
                    },
                }
            }
            let call_fallback = if is_async {
                quote_spanned!(fallback.span()=> #fallback(#(#passed),*).await)
            } else {
                quote_spanned!(fallback.span()=> #fallback(#(#passed),*))
            };
            let on_ok = if wrap_ok.is_some() {
                quote!(__limiter_value)
            } else {
                quote!(::core::result::Result::Ok(__limiter_value))
            };
            let on_body = if wrap_ok.is_some() {
                quote!(match __limiter_never {})
            } else {
                quote!(::core::result::Result::Err(__limiter_never))
            };
            quote! {
                #bad
                #(#kept)*
                match #run {
                    ::core::result::Result::Ok(__limiter_value) => #on_ok,
                    ::core::result::Result::Err(#fallback_err::Body(__limiter_never)) => #on_body,
                    ::core::result::Result::Err(#fallback_err::Limit(_)) => #call_fallback,
                }
            }
        }
    };

    let run = match route {
        None => run,
        Some(route) => {
            let run = if route.level == Level::Ultra {
                let key = match &spec.key {
                    Some(key) => {
                        quote!(::core::option::Option::Some(&#key as &dyn #k::__private::LimitKey))
                    }
                    None => quote!(::core::option::Option::None),
                };
                let ttl = route.ttl_nanos;
                quote! {{
                    let __limiter_op = __LIMITER_SITE.get(#op_name, || {
                        let mut __limiter_cfg = #k::__private::OpConfig::default();
                        #config
                        __limiter_cfg
                    });
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
                #k::__private::Instrument::instrument(
                    async move { #run },
                    #k::__private::tracing::info_span!("limiter.route", route = #op_name),
                )
                .await
            }
        }
    };

    quote! {
        #(#outer_attrs)*
        #vis #new_sig {
            #(#inner_attrs)*
            #diagnostics
            #clone_errors
            static __LIMITER_SITE: #k::__private::OpSite = #k::__private::OpSite::new();
            #run
        }
    }
}
