//! What a call may be told it costs: [`IntoCost`], taken by
//! [`Call::cost`](crate::Call::cost), [`Call::charge`](crate::Call::charge)
//! and [`Op::charge`](crate::Op::charge).

/// A cost: what a call takes from its op's rate limits. Implemented for
/// the unsigned integers; a value above `u32::MAX` counts as `u32::MAX`,
/// which every smaller limit refuses with
/// [`CostExceedsLimit`](crate::LimitError::CostExceedsLimit) (never
/// admitted for less).
#[diagnostic::on_unimplemented(
    message = "a cost must be an unsigned integer (`u8`, `u16`, `u32`, `u64` or `usize`), not `{Self}`",
    label = "not an unsigned integer"
)]
pub trait IntoCost {
    /// The cost as tokens.
    fn into_cost(self) -> u32;
}

macro_rules! into_cost {
    ($($t:ty),*) => {$(
        impl IntoCost for $t {
            #[inline]
            fn into_cost(self) -> u32 {
                u32::try_from(self).unwrap_or(u32::MAX)
            }
        }
    )*};
}

into_cost!(u8, u16, u32, u64, usize);
