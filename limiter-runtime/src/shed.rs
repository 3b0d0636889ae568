//! Refusals by limits seen on this thread.
//!
//! An error a body returns because an op it called refused (rate limited,
//! queue full, circuit open, overloaded) is load shedding, not a failing
//! dependency: the outer op's breaker must not count it, or an inner op's
//! limits would open every breaker above it. Every refusal bumps a counter
//! of the thread it happens on; a call reads it before polling its body and
//! compares after. An inner call refused during that poll (the usual `?` on
//! its error) ran on the same thread, inside the poll.
//!
//! What this does not see: a refusal in an earlier poll whose error the
//! body returns in a later one, or one on another task (a spawned call
//! whose error comes back through a join handle). Those count as failures,
//! as every error did before.

use std::cell::Cell;

thread_local! {
    static REFUSALS: Cell<u64> = const { Cell::new(0) };
}

/// Records a refusal on this thread.
#[inline]
pub(crate) fn note() {
    REFUSALS.with(|c| c.set(c.get().wrapping_add(1)));
}

/// Refusals seen on this thread so far (compare two readings).
#[inline]
pub(crate) fn seen() -> u64 {
    REFUSALS.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_thread() {
        let before = seen();
        note();
        assert_eq!(seen(), before.wrapping_add(1));
        let other = std::thread::spawn(seen).join().unwrap();
        assert_eq!(other, 0, "another thread saw none");
    }
}
