//! The errors of one attribute, collected so that the user sees all of
//! them in one build (the shape of serde's `Ctxt` and thiserror's
//! validation): every check pushes here and goes on.

use std::fmt::Display;

use proc_macro2::Span;
use quote::ToTokens;

/// Errors collected by the checks of one attribute, combined into one
/// [`syn::Error`] (one `compile_error!` per error, each at its span).
#[derive(Debug, Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    /// Adds an error.
    pub(crate) fn push(&mut self, error: impl Into<syn::Error>) {
        let error = error.into();
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// Adds an error at `span` (one token: an argument's value).
    pub(crate) fn at(&mut self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// Adds an error over all of `tokens` (a parameter, a receiver).
    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// The value of `result`, or `None` with its error kept.
    pub(crate) fn handle<T, E: Into<syn::Error>>(&mut self, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.push(error);
                None
            }
        }
    }

    /// `Err` with every collected error, if there is one.
    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}
