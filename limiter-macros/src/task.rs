//! `#[background_task(...)]`: calling the function spawns its body on the
//! runtime's background manager and returns `Result<TaskHandle, LimitError>`
//! at once.

use darling::ast::NestedMeta;
use darling::util::SpannedValue;
use darling::{Error, FromMeta};
use limiter_spec::parse_duration;
use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, Pat, Path, ReturnType, Type};

#[derive(Debug, Default, FromMeta)]
#[darling(default)]
struct TaskArgs {
    name: Option<SpannedValue<String>>,
    max_concurrent: Option<SpannedValue<u32>>,
    queue: Option<SpannedValue<u32>>,
    retries: Option<SpannedValue<u32>>,
    timeout: Option<SpannedValue<String>>,
    #[darling(rename = "crate")]
    krate: Option<SpannedValue<String>>,
}

/// Parses, checks and expands; on error, the errors and the original item.
pub(crate) fn background_task(args: TokenStream, func: ItemFn) -> Result<TokenStream, Error> {
    let mut errors = Error::accumulator();
    let items = NestedMeta::parse_meta_list(args).map_err(Error::from)?;
    let items = crate::attr::known_only(
        items,
        &[
            "name",
            "max_concurrent",
            "queue",
            "retries",
            "timeout",
            "crate",
        ],
        &mut errors,
    );
    let Some(args) = errors.handle(TaskArgs::from_list(&items)) else {
        return Err(errors
            .finish()
            .err()
            .unwrap_or_else(|| Error::custom("invalid arguments")));
    };

    let krate: Path = match &args.krate {
        Some(text) => errors
            .handle(syn::parse_str::<Path>(text).map_err(|_| {
                Error::custom(format!("`{}` is not a path", **text)).with_span(&text.span())
            }))
            .unwrap_or_else(|| syn::parse_quote!(::limiter)),
        None => syn::parse_quote!(::limiter),
    };
    let k = &krate;
    if func.sig.asyncness.is_none() {
        errors.push(
            Error::custom("#[background_task] goes on an `async fn`: its body becomes the task")
                .with_span(&func.sig.fn_token),
        );
    }
    let mut count = |v: &Option<SpannedValue<u32>>, min: u32| -> Option<u32> {
        let v = v.as_ref()?;
        if **v < min {
            errors.push(Error::custom(format!("must be at least {min}")).with_span(&v.span()));
            None
        } else {
            Some(**v)
        }
    };
    let max_concurrent = count(&args.max_concurrent, 1);
    let queue = count(&args.queue, 0);
    let retries = count(&args.retries, 0).unwrap_or(0);
    let timeout = args.timeout.as_ref().and_then(|t| match parse_duration(t) {
        Ok(d) => Some(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        Err(e) => {
            errors.push(
                Error::custom(format!("invalid duration `{}`: {e}", **t)).with_span(&t.span()),
            );
            None
        }
    });
    if let Some(name) = &args.name {
        if name.trim().is_empty() {
            errors.push(Error::custom("`name` must not be empty").with_span(&name.span()));
        }
    }
    let mut clones = TokenStream::new();
    for arg in &func.sig.inputs {
        match arg {
            FnArg::Receiver(r) if crate::expand::receiver_borrows(r) => errors.push(
                Error::custom("a background task outlives its caller, so it cannot borrow `self`; take `self` by value (e.g. an `Arc`)").with_span(r),
            ),
            FnArg::Typed(t) if matches!(&*t.ty, Type::Reference(_)) => errors.push(
                Error::custom("a background task outlives its caller, so its arguments must be owned; this one is a reference").with_span(arg),
            ),
            FnArg::Typed(t) if retries > 0 => {
                if let Pat::Ident(p) = &*t.pat {
                    clones.extend(crate::expand::clone_for_attempt(t, p));
                } else {
                    errors.push(Error::custom("`retries` clones each argument per attempt by name; bind this one to a name").with_span(&t.pat));
                }
            }
            FnArg::Receiver(r) if retries > 0 => errors.push(
                Error::custom("`retries` runs the body again for each attempt, which cannot consume `self`").with_span(r),
            ),
            _ => {}
        }
    }
    errors.finish()?;

    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let name = crate::expand::name_or_path(args.name.as_deref().map(String::as_str), &sig.ident);
    let (ret_ty, ret_span) = match &sig.output {
        ReturnType::Default => (quote!(()), sig.ident.span()),
        ReturnType::Type(_, ty) => (quote!(#ty), ty.span()),
    };
    let mut new_sig = sig.clone();
    new_sig.asyncness = None;
    if retries > 0 {
        crate::expand::strip_mut(&mut new_sig);
    }
    new_sig.output = syn::parse_quote!(-> ::core::result::Result<#k::TaskHandle, #k::LimitError>);
    let opt_u32 = |v: Option<u32>| match v {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let (max_concurrent, queue) = (opt_u32(max_concurrent), opt_u32(queue));
    let timeout = match timeout {
        Some(n) => quote!(::core::option::Option::Some(::core::time::Duration::from_nanos(#n))),
        None => quote!(::core::option::Option::None),
    };
    let body = quote! {
        async move {
            let __limiter_out: #ret_ty = async move #block.await;
            __limiter_out
        }
    };
    let spawn = Ident::new(if retries > 0 { "spawn" } else { "spawn_once" }, ret_span);
    let task = if retries > 0 {
        quote!(move || { #clones #body })
    } else {
        body
    };
    Ok(quote! {
        #(#attrs)*
        #vis #new_sig {
            let __limiter_spec = #k::__private::TaskSpec {
                name: ::core::convert::From::from(#name),
                max_concurrent: #max_concurrent,
                queue: #queue,
                retries: #retries,
                timeout: #timeout,
            };
            #k::__private::registry().tasks().#spawn(__limiter_spec, #task)
        }
    })
}
