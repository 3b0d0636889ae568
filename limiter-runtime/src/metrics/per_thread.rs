//! Per-thread slots for hot-path metrics.
//!
//! Every call bumps a few counters and a histogram bucket. Shared atomics
//! make each bump a locked read-modify-write whose cache line bounces
//! between the threads that run calls. Here each thread leases a slot index
//! for its lifetime (given back when it exits) and writes only its own slot
//! with a plain load and store: no locked instruction, no shared line.
//! Readers add the slots up. Threads beyond the leasable slots share one
//! overflow slot and bump it with `fetch_add`, so counts stay exact whatever
//! the number of threads.
//!
//! Written here rather than taken from a crate: `thread_local::ThreadLocal`
//! gives per-thread values but not writes without atomics that a reader can
//! still sum; sharded counter crates use `fetch_add` on every bump.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Slots per [`PerThread`]; the last one is the shared overflow slot.
pub(crate) const SLOTS: usize = 64;
const OVERFLOW: usize = SLOTS - 1;

/// Slot indices given back by threads that exited, and the next unused one.
static FREE: Mutex<(Vec<usize>, usize)> = Mutex::new((Vec::new(), 0));

/// A thread's slot index, given back when the thread exits.
struct Lease(Cell<usize>);

impl Lease {
    fn take() -> Self {
        let mut free = FREE.lock().unwrap_or_else(|e| e.into_inner());
        let index = match free.0.pop() {
            Some(i) => i,
            None if free.1 < OVERFLOW => {
                free.1 += 1;
                free.1 - 1
            }
            None => OVERFLOW,
        };
        Lease(Cell::new(index))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let index = self.0.replace(OVERFLOW);
        if index != OVERFLOW {
            // Every write this thread made to its slots happens before this
            // unlock, and so before the next owner's first write.
            FREE.lock().unwrap_or_else(|e| e.into_inner()).0.push(index);
        }
    }
}

thread_local! {
    static LEASE: Lease = Lease::take();
}

/// The current thread's slot: its index, and whether it owns it alone.
#[inline]
fn current() -> (usize, bool) {
    // During thread exit, after the lease was dropped, write to the overflow.
    let index = LEASE.try_with(|l| l.0.get()).unwrap_or(OVERFLOW);
    (index, index != OVERFLOW)
}

/// One `T` per thread slot, made on a thread's first use.
pub(crate) struct PerThread<T> {
    slots: Box<[OnceLock<Box<T>>]>,
}

impl<T: Default> Default for PerThread<T> {
    fn default() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| OnceLock::new()).collect(),
        }
    }
}

/// The current thread's value, and how to bump counters in it.
pub(crate) struct Local<'a, T> {
    pub(crate) value: &'a T,
    exclusive: bool,
}

impl<T> Local<'_, T> {
    /// Adds `n` to `c`, a counter of this slot.
    #[inline]
    pub(crate) fn add(&self, c: &AtomicU64, n: u64) {
        if self.exclusive {
            c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
        } else {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Raises `c`, a maximum of this slot, to `v`.
    #[inline]
    pub(crate) fn max(&self, c: &AtomicU64, v: u64) {
        if v > c.load(Ordering::Relaxed) {
            if self.exclusive {
                c.store(v, Ordering::Relaxed);
            } else {
                c.fetch_max(v, Ordering::Relaxed);
            }
        }
    }
}

impl<T: Default> PerThread<T> {
    /// The current thread's value.
    #[inline]
    pub(crate) fn local(&self) -> Local<'_, T> {
        let (index, exclusive) = current();
        Local {
            value: self.slots[index].get_or_init(Box::default),
            exclusive,
        }
    }

    /// Every value made so far.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|s| s.get().map(|b| &**b))
    }

    /// The sum of `f` over every value.
    pub(crate) fn sum(&self, f: impl Fn(&T) -> &AtomicU64) -> u64 {
        self.iter()
            .map(|v| f(v).load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Default)]
    struct C(AtomicU64);

    #[test]
    fn counts_stay_exact_across_many_threads() {
        // More threads alive at once than slots: the overflow slot is shared.
        let p = Arc::new(PerThread::<C>::default());
        let barrier = Arc::new(std::sync::Barrier::new(SLOTS + 8));
        let threads: Vec<_> = (0..SLOTS + 8)
            .map(|_| {
                let (p, barrier) = (Arc::clone(&p), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..10_000 {
                        let l = p.local();
                        l.add(&l.value.0, 1);
                    }
                    barrier.wait(); // hold the lease until all are done
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(p.sum(|c| &c.0), (SLOTS as u64 + 8) * 10_000);
        // Leases were given back: a new thread gets an exclusive slot.
        let exclusive = std::thread::spawn(|| current().1).join().unwrap();
        assert!(exclusive);
    }
}
