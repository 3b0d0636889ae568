//! Questions about the annotated function's signature and types, shared by
//! validation and expansion.

use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{FnArg, Ident, Pat, PatIdent, PatType, ReturnType, Signature, Type};

/// Whether `ty` is written as a `Result<..>` (any path ending in `Result`,
/// so aliases like `io::Result<T>` too).
pub(crate) fn is_result(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Result"),
        _ => false,
    }
}

/// Whether `sig` declares a `Result` return type.
pub(crate) fn returns_result(sig: &Signature) -> bool {
    match &sig.output {
        ReturnType::Type(_, ty) => is_result(ty),
        ReturnType::Default => false,
    }
}

/// The error type `E` written in `Result<T, E>`, if the type is written so.
pub(crate) fn written_error_type(ty: &Type) -> Option<&Type> {
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

/// Whether `ty` mentions `impl Trait` anywhere.
pub(crate) fn contains_impl_trait(ty: &Type) -> bool {
    struct Find(bool);
    impl<'ast> Visit<'ast> for Find {
        fn visit_type_impl_trait(&mut self, _: &'ast syn::TypeImplTrait) {
            self.0 = true;
        }
    }
    let mut find = Find(false);
    find.visit_type(ty);
    find.0
}

/// `ty` with every `impl Trait` replaced by `_`, for the places (bindings,
/// closure return types, turbofish) where `impl Trait` may not be written.
pub(crate) fn erase_impl_trait(ty: &Type) -> Type {
    struct Erase;
    impl VisitMut for Erase {
        fn visit_type_mut(&mut self, ty: &mut Type) {
            if let Type::ImplTrait(t) = ty {
                let underscore_token = syn::Token![_](syn::spanned::Spanned::span(t));
                *ty = Type::Infer(syn::TypeInfer { underscore_token });
            } else {
                syn::visit_mut::visit_type_mut(self, ty);
            }
        }
    }
    let mut ty = ty.clone();
    Erase.visit_type_mut(&mut ty);
    ty
}

/// The `Output` of the future type `ty` (`Pin<Box<dyn Future<Output = T>
/// + Send + 'a>>`, as `#[async_trait]` writes it).
pub(crate) fn future_output(ty: &Type) -> Option<&Type> {
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

/// The `Output = T` in the generic arguments of `path`, at any depth.
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

/// Whether a receiver is `&self` (or `self: &Self`, `self: &Arc<Self>`…).
pub(crate) fn receiver_is_shared_ref(r: &syn::Receiver) -> bool {
    match &*r.ty {
        Type::Reference(re) => re.mutability.is_none(),
        _ => false,
    }
}

/// Whether a parameter borrows (`&self`, `&mut self`, `name: &str`…).
pub(crate) fn borrows(arg: &FnArg) -> bool {
    match arg {
        FnArg::Receiver(r) => matches!(&*r.ty, Type::Reference(_)),
        FnArg::Typed(t) => matches!(&*t.ty, Type::Reference(_)),
    }
}

/// Whether any parameter of `sig` borrows.
pub(crate) fn borrows_any(sig: &Signature) -> bool {
    sig.inputs.iter().any(borrows)
}

/// The parameters bound to a plain name (`name: T`, `mut name: T`), with
/// that name.
pub(crate) fn named_params(sig: &Signature) -> impl Iterator<Item = (&PatType, &PatIdent)> {
    sig.inputs.iter().filter_map(|arg| match arg {
        FnArg::Typed(t) => match &*t.pat {
            Pat::Ident(p) => Some((t, p)),
            _ => None,
        },
        FnArg::Receiver(_) => None,
    })
}

/// The names a parameter can be referred to by (`self` included as `self`).
pub(crate) fn param_names(sig: &Signature) -> Vec<Ident> {
    sig.inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Receiver(r) => Some(Ident::new("self", r.self_token.span)),
            FnArg::Typed(t) => match &*t.pat {
                Pat::Ident(p) => Some(p.ident.clone()),
                _ => None,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn ty(text: &str) -> Type {
        syn::parse_str(text).unwrap()
    }

    #[test]
    fn impl_trait_is_erased_at_any_depth() {
        let erased = erase_impl_trait(&ty("Result<impl Iterator<Item = u8>, (impl Display, E)>"));
        assert_eq!(quote!(#erased).to_string(), "Result < _ , (_ , E) >");
        assert!(!contains_impl_trait(&erased));
    }

    #[test]
    fn results_and_their_errors() {
        assert!(is_result(&ty("std::io::Result<u8>")));
        assert!(!is_result(&ty("Option<u8>")));
        let result = ty("Result<u8, MyError>");
        let e = written_error_type(&result).unwrap();
        assert_eq!(quote!(#e).to_string(), "MyError");
        let out = ty("Pin<Box<dyn Future<Output = Result<u8, E>> + Send + 'async_trait>>");
        let t = future_output(&out).unwrap();
        assert_eq!(quote!(#t).to_string(), "Result < u8 , E >");
    }
}
