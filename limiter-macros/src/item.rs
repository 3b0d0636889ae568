//! Stage 1b: the annotated function. Its body is parsed when it can be; a
//! body that does not parse is kept as tokens (tracing's `MaybeItemFn`),
//! so the function still expands from its signature and the compiler
//! reports the syntax error where it is, once.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{quote, ToTokens};
use syn::parse::{Parse, ParseStream, Parser};
use syn::token::Brace;
use syn::{Attribute, Block, Expr, ReturnType, Signature, Stmt, Visibility};

use crate::types;

/// An annotated function with a body.
#[derive(Clone)]
pub(crate) struct Func {
    pub(crate) outer_attrs: Vec<Attribute>,
    /// `#![...]` at the top of the body; they stay at the top of the
    /// expanded body.
    pub(crate) inner_attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    /// The signature the attribute limits: for an `#[async_trait]` method,
    /// the `async fn` it was written as.
    pub(crate) sig: Signature,
    pub(crate) body: Body,
    /// For an `#[async_trait]` method, its signature as `#[async_trait]`
    /// wrote it (returning a boxed future), which the expansion keeps: the
    /// limit wraps the inner future, not its boxing (tracing issue 399).
    pub(crate) async_trait: Option<Signature>,
}

/// The body of a [`Func`].
#[derive(Clone)]
pub(crate) enum Body {
    /// The statements, parsed.
    Parsed(Block),
    /// Tokens that do not parse as statements, as written.
    Raw(Brace, TokenStream),
}

impl Body {
    /// The body's braces, with their span as written. An expanded body
    /// keeps them: with macro-made braces, rustc takes the function for
    /// macro output and no longer reports it unused (`dead_code`).
    pub(crate) fn brace(&self) -> Brace {
        match self {
            Body::Parsed(block) => block.brace_token,
            Body::Raw(brace, _) => *brace,
        }
    }

    /// The parsed block, if the body parsed.
    pub(crate) fn block(&self) -> Option<&Block> {
        match self {
            Body::Parsed(block) => Some(block),
            Body::Raw(..) => None,
        }
    }
}

impl ToTokens for Body {
    /// `{ ... }` with the braces' original span.
    fn to_tokens(&self, tokens: &mut TokenStream) {
        match self {
            Body::Parsed(block) => block.to_tokens(tokens),
            Body::Raw(brace, raw) => brace.surround(tokens, |t| t.extend(raw.clone())),
        }
    }
}

impl Parse for Func {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let outer_attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig = input.parse()?;
        let content;
        let brace = syn::braced!(content in input);
        let raw: TokenStream = content.parse()?;
        let (inner_attrs, body) = match parse_body.parse2(raw.clone()) {
            Ok((inner_attrs, stmts)) => (
                inner_attrs,
                Body::Parsed(Block {
                    brace_token: brace,
                    stmts,
                }),
            ),
            Err(_) => (Vec::new(), Body::Raw(brace, raw)),
        };
        Ok(Func {
            outer_attrs,
            inner_attrs,
            vis,
            sig,
            body,
            async_trait: None,
        })
    }
}

/// The inner attributes and statements of a body.
fn parse_body(input: ParseStream<'_>) -> syn::Result<(Vec<Attribute>, Vec<Stmt>)> {
    Ok((
        input.call(Attribute::parse_inner)?,
        input.call(Block::parse_within)?,
    ))
}

/// Parses the annotated item, or gives the tokens to emit instead: the
/// item unchanged, with the error `not_a_fn` at it when it is not a
/// function with a body (a `struct`, a bodiless trait method). A function
/// whose signature does not parse is emitted alone: the compiler reports
/// its syntax error.
pub(crate) fn parse(item: TokenStream, not_a_fn: &str) -> Result<Func, TokenStream> {
    match syn::parse2::<Func>(item.clone()) {
        Ok(func) => Ok(unbox_async_trait(func)),
        Err(_) if is_fn_with_body(&item) => Err(item),
        Err(_) => {
            let error = syn::Error::new(item_span(&item), not_a_fn).to_compile_error();
            Err(quote!(#error #item))
        }
    }
}

/// Whether `item` is written as a function with a body: the keyword `fn`
/// at its top level, and a `{ ... }` last.
fn is_fn_with_body(item: &TokenStream) -> bool {
    let tokens: Vec<TokenTree> = item.clone().into_iter().collect();
    let has_fn = tokens
        .iter()
        .any(|t| matches!(t, TokenTree::Ident(i) if i == "fn"));
    let has_body = matches!(
        tokens.last(),
        Some(TokenTree::Group(g)) if g.delimiter() == proc_macro2::Delimiter::Brace
    );
    has_fn && has_body
}

/// The item's keyword (`struct`, `fn`), past attributes and `pub`.
fn item_span(item: &TokenStream) -> Span {
    item.clone()
        .into_iter()
        .find_map(|t| match t {
            TokenTree::Ident(i) if i != "pub" => Some(i.span()),
            _ => None,
        })
        .unwrap_or_else(Span::call_site)
}

/// `func` as the `async fn` it was when it is an `#[async_trait]` method
/// already desugared into `fn f(..) -> Pin<Box<dyn Future<Output = T> +
/// ..>> { Box::pin(async move { .. }) }`; else `func` unchanged.
fn unbox_async_trait(mut func: Func) -> Func {
    let Some((inner, output)) = async_trait_parts(&func) else {
        return func;
    };
    let boxed = func.sig.clone();
    func.sig.asyncness = Some(syn::Token![async](boxed.fn_token.span));
    func.sig.output = syn::parse_quote!(-> #output);
    func.body = Body::Parsed(inner);
    func.async_trait = Some(boxed);
    func
}

/// The inner `async move` block and the future's output type of an
/// `#[async_trait]` method.
fn async_trait_parts(func: &Func) -> Option<(Block, syn::Type)> {
    let block = func.body.block()?;
    if func.sig.asyncness.is_some() || block.stmts.len() != 1 {
        return None;
    }
    let Stmt::Expr(Expr::Call(call), None) = &block.stmts[0] else {
        return None;
    };
    let Expr::Path(callee) = &*call.func else {
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
    let Expr::Async(inner) = &call.args[0] else {
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
    Some((inner.block.clone(), types::future_output(ty)?.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_that_does_not_parse_is_kept() {
        let func = parse(
            quote!(#[doc = "d"] pub fn f(x: u8) -> u8 { #![allow(unused)] let y = x +; y }),
            "",
        )
        .ok()
        .unwrap();
        assert!(func.body.block().is_none());
        assert_eq!(func.outer_attrs.len(), 1);
        assert_eq!(func.sig.ident, "f");
        let body = func.body.to_token_stream().to_string();
        assert!(body.contains("let y = x + ;"), "{body}");
    }

    #[test]
    fn inner_attributes_are_split_from_a_parsed_body() {
        let func = parse(
            quote!(
                fn f() {
                    #![allow(unused)]
                    1
                }
            ),
            "",
        )
        .ok()
        .unwrap();
        assert_eq!(func.inner_attrs.len(), 1);
        assert_eq!(func.body.block().map(|b| b.stmts.len()), Some(1));
    }

    #[test]
    fn items_without_a_body_are_refused_at_their_keyword() {
        let out = parse(
            quote!(
                pub struct S;
            ),
            "not a fn",
        )
        .err()
        .unwrap();
        let text = out.to_string();
        assert!(text.contains("compile_error") && text.contains("pub struct S"));
        assert!(parse(
            quote!(
                fn get(&self) -> u8;
            ),
            "x"
        )
        .is_err());
    }

    #[test]
    fn a_signature_that_does_not_parse_is_left_to_the_compiler() {
        let out = parse(quote!(fn f(x: ) -> u8 { 1 }), "not a fn")
            .err()
            .unwrap();
        assert!(!out.to_string().contains("compile_error"));
    }
}
