//! [`Settings`] as the statements that fill the op's declared
//! `OpConfig` (`__limiter_cfg`) on its first call.

use std::fmt::Debug;
use std::time::Duration;

use limiter_spec::Backend;
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};

use crate::spec::{Facade, Settings, Window};

/// `__limiter_cfg.field = Some(value);` for each declared field, in
/// `OpConfig`'s order.
pub(super) fn statements(s: &Settings, facade: &Facade) -> TokenStream {
    let private = facade.private();
    let mut out = Fields(TokenStream::new());
    out.set("kind", s.kind.map(|v| variant(&private, "OpKind", v)));
    out.set("timeout", s.timeout.map(duration));
    out.set("rate", s.rate.as_deref().map(|w| rates(&private, w)));
    out.set(
        "rate_per_key",
        s.rate_per_key.as_deref().map(|w| rates(&private, w)),
    );
    out.set("burst", s.burst);
    out.set(
        "algorithm",
        s.algorithm.map(|v| variant(&private, "Algorithm", v)),
    );
    out.set(
        "backend",
        s.backend.map(|(v, _)| variant(&private, "Backend", v)),
    );
    out.set(
        "degradation",
        s.degradation.map(|v| variant(&private, "Degradation", v)),
    );
    out.set("max_concurrent", s.max_concurrent);
    out.set("max_concurrent_per_key", s.max_concurrent_per_key);
    out.set("queue", s.queue);
    out.set("queue_per_key", s.queue_per_key);
    out.set("queue_timeout", s.queue_timeout.map(duration));
    out.set(
        "overload",
        s.overload.map(|v| variant(&private, "OverloadPolicy", v)),
    );
    out.set("retry.retries", s.retry.retries);
    out.set(
        "retry.backoff",
        s.retry.backoff.map(|v| variant(&private, "Backoff", v)),
    );
    out.set("retry.base", s.retry.base.map(duration));
    let b = &s.breaker;
    out.set("breaker.enabled", b.enabled);
    out.set("breaker.failure_rate", b.failure_rate);
    out.set("breaker.min_calls", b.min_calls);
    out.set("breaker.window", b.window);
    out.set("breaker.slow_call", b.slow_call.map(duration));
    out.set("breaker.recovery", b.recovery.map(duration));
    out.set("breaker.half_open_calls", b.half_open_calls);
    out.set("breaker.success_threshold", b.success_threshold);
    out.set("breaker.consecutive_failures", b.consecutive_failures);
    out.set("adaptive", s.adaptive);
    let mut out = out.0;
    if let Some((Backend::Redis, span)) = s.backend {
        out.extend(redis_feature(&private, span));
    }
    out
}

/// The statements being built.
struct Fields(TokenStream);

impl Fields {
    /// `__limiter_cfg.<path> = Some(value);` when `value` is declared.
    fn set(&mut self, path: &str, value: Option<impl ToTokens>) {
        let Some(value) = value else { return };
        let path = path.split('.').map(|f| format_ident!("{}", f));
        self.0.extend(quote! {
            __limiter_cfg.#(#path).* = ::core::option::Option::Some(#value);
        });
    }
}

/// A compile error at the `backend = "redis"` argument when the facade
/// lacks the `redis` feature (the trait is implemented only with it).
fn redis_feature(private: &TokenStream, span: Span) -> TokenStream {
    quote_spanned! {span=>
        const _: () = <() as #private::RedisFeature>::ON;
    }
}

/// `<private>::Type::Variant` for a value of one of the named enums (their
/// `Debug` is the variant's name).
fn variant(private: &TokenStream, ty: &str, value: impl Debug) -> TokenStream {
    let ty = format_ident!("{}", ty);
    let variant = format_ident!("{}", format!("{value:?}"));
    quote!(#private::#ty::#variant)
}

/// A `Duration` in the largest whole unit that states it.
pub(super) fn duration(d: Duration) -> TokenStream {
    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    if nanos % 1_000_000_000 == 0 {
        let secs = nanos / 1_000_000_000;
        quote!(::core::time::Duration::from_secs(#secs))
    } else if nanos % 1_000_000 == 0 {
        let millis = nanos / 1_000_000;
        quote!(::core::time::Duration::from_millis(#millis))
    } else {
        quote!(::core::time::Duration::from_nanos(#nanos))
    }
}

/// `<private>::rates(&[(count, period in nanoseconds), ..])`.
fn rates(private: &TokenStream, windows: &[Window]) -> TokenStream {
    let pairs = windows.iter().map(|w| {
        let count = w.count;
        let nanos = u64::try_from(w.period.as_nanos()).unwrap_or(u64::MAX);
        quote!((#count, #nanos))
    });
    quote!(#private::rates(&[#(#pairs),*]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_the_largest_whole_unit() {
        let text = |d| duration(d).to_string();
        assert!(text(Duration::from_secs(30)).ends_with("from_secs (30u64)"));
        assert!(text(Duration::from_millis(1500)).ends_with("from_millis (1500u64)"));
        assert!(text(Duration::from_micros(3)).ends_with("from_nanos (3000u64)"));
    }

    #[test]
    fn only_declared_fields_are_set() {
        let mut s = Settings::once();
        s.breaker.enabled = Some(true);
        let text = statements(&s, &Facade::limiter()).to_string();
        assert_eq!(text.matches("__limiter_cfg").count(), 2, "{text}");
        assert!(text.contains("__limiter_cfg . breaker . enabled"), "{text}");
    }
}
