//! Items the attribute macros expand to. Not a public API: names here may
//! change in any release. Generated code reaches them through
//! `__private_<version>`, the re-export that `build.rs` names after the
//! crate version (see `lib.rs`).

pub use limiter_runtime::__deps::tracing;
pub use limiter_runtime::__deps::tracing::Instrument;
pub use limiter_runtime::*;

/// Implemented only when the `redis` feature is on: `backend = "redis"`
/// expands to a use of it, so without the feature the attribute fails
/// to compile at its argument, saying why.
#[diagnostic::on_unimplemented(
    message = "`backend = \"redis\"` needs the `redis` feature of limiter",
    label = "add `features = [\"redis\"]` to the `limiter` dependency"
)]
pub trait RedisFeature {
    /// Evaluated in a constant by the expansion.
    const ON: ();
}

#[cfg(feature = "redis")]
impl RedisFeature for () {
    const ON: () = ();
}

/// The error type `E` of a `Result<T, E>`.
pub trait ResultError {
    /// `E`.
    type Error;
}

impl<T, E> ResultError for Result<T, E> {
    type Error = E;
}

/// `breaker(failure = path)`: the path as a function of the error of
/// the annotated function's return type `R`, so that a function taking
/// anything else is a type error at the path.
pub fn failure_fn<R: ResultError>(f: fn(&R::Error) -> bool) -> fn(&R::Error) -> bool {
    f
}

/// An error of a route's handler, for the route breaker's default
/// classification: by its status when its type has one
/// ([`http::ErrorStatus`]: only 5xx count), else every error counts.
/// (The choice is made by method resolution at the expansion site:
/// `RouteError<E>` has the status method only where `E: ErrorStatus`;
/// otherwise the `&RouteError<E>` fallback answers.)
pub struct RouteError<'a, E>(pub &'a E);

impl<E> std::fmt::Debug for RouteError<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouteError")
    }
}

/// See [`RouteError`].
pub trait RouteStatusFailure {
    /// Whether the error is a server failure (5xx).
    fn route_failure(&self) -> bool;
}

#[cfg(feature = "axum")]
impl<E: crate::http::ErrorStatus> RouteStatusFailure for RouteError<'_, E> {
    fn route_failure(&self) -> bool {
        self.0.status().is_server_error()
    }
}

/// See [`RouteError`].
pub trait RouteAnyFailure {
    /// Every error of a type without a status is a failure.
    fn route_failure(&self) -> bool {
        true
    }
}

impl<E> RouteAnyFailure for &RouteError<'_, E> {}

/// `breaker(failure = path)` on a function returning `Result<impl
/// Trait, E>`: the path as a function of `E`, written out.
pub fn failure_fn_of<E>(f: fn(&E) -> bool) -> fn(&E) -> bool {
    f
}

/// The error of a call with a `fallback`: a limit refused or cut the
/// call (the fallback answers), or the body itself failed (passed on).
#[derive(Debug)]
pub enum FallbackError<E> {
    /// A limit: rate, queue, breaker, timeout.
    Limit(LimitError),
    /// The body's own error.
    Body(E),
}

impl<E> From<LimitError> for FallbackError<E> {
    fn from(e: LimitError) -> Self {
        FallbackError::Limit(e)
    }
}

/// A `priority = param` value as the runtime's `i64`, saturating, for
/// every integer type and references to them.
pub trait Priority {
    /// The priority, saturated into `i64`.
    fn priority(&self) -> i64;
}

macro_rules! priority_ints {
    ($($t:ty),*) => {$(
        impl Priority for $t {
            fn priority(&self) -> i64 {
                i64::try_from(*self).unwrap_or(if *self > 0 as $t { i64::MAX } else { i64::MIN })
            }
        }
    )*};
}
priority_ints!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize);

impl<T: Priority + ?Sized> Priority for &T {
    fn priority(&self) -> i64 {
        (**self).priority()
    }
}

/// Rate windows from `(count, period in nanoseconds)` pairs the macro
/// has already checked (non-zero).
pub fn rates(windows: &[(u32, u64)]) -> Vec<Rate> {
    windows
        .iter()
        .filter_map(|&(count, nanos)| {
            Rate::new(count, core::time::Duration::from_nanos(nanos)).ok()
        })
        .collect()
}
