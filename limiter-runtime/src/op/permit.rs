//! [`Permit`]: a place in an operation held by a guard (RAII).

use std::sync::Arc;
use std::time::Duration;

use crate::breaker::Ticket;
use crate::bulkhead::{BulkPermit, Bulkhead};
use crate::metrics::{CallOutcome, Entry};

use super::{Admitted, OpCore, Terms};

/// A place in an operation, held while the guarded work runs (RAII).
///
/// Dropping it records a success, unless [`mark_failed`](Self::mark_failed)
/// was called or the thread is panicking; either way the place is released.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), limiter_runtime::LimitError> {
/// let reg = limiter_runtime::Registry::new();
/// let user = 7u64;
/// let permit = reg.op("chat").acquire(Some(&user)).await?;
/// // ... the guarded work ...
/// drop(permit);
/// # Ok(()) }
/// ```
pub struct Permit {
    core: Arc<OpCore>,
    ticket: Ticket,
    bulk: Option<BulkPermit<Arc<Bulkhead>>>,
    terms: Terms,
    start: u64,
    failed: bool,
    /// How the work ended, when set by the runtime (a sync body that ran
    /// past its timeout).
    outcome: Option<CallOutcome>,
}

impl Permit {
    pub(crate) fn new(core: Arc<OpCore>, mut a: Admitted<'_, Arc<Bulkhead>>) -> Self {
        core.metrics.count(&mut a.entry);
        Self {
            core,
            ticket: a.ticket,
            bulk: a.bulk,
            terms: *a.terms,
            start: a.start,
            failed: false,
            outcome: None,
        }
    }

    /// Records the work as ending with `outcome` when the permit is dropped.
    pub(crate) fn set_outcome(&mut self, outcome: CallOutcome) {
        self.outcome = Some(outcome);
    }

    /// Whether the work has run past the op's timeout.
    pub(crate) fn overran(&self) -> bool {
        let elapsed = self.core.clock.now_ns().saturating_sub(self.start);
        self.terms
            .timeout()
            .is_some_and(|t| u128::from(elapsed) > t.as_nanos())
    }

    /// Records the guarded work as failed when the permit is dropped.
    pub fn mark_failed(&mut self) {
        self.failed = true;
    }

    /// The operation this permit belongs to.
    pub fn op(&self) -> &str {
        &self.core.name
    }

    /// The deadline configured for the operation, if any (a permit does not
    /// enforce it: the holder decides what to do with it).
    pub fn timeout(&self) -> Option<Duration> {
        self.terms.timeout()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let outcome = if std::thread::panicking() {
            CallOutcome::Panic
        } else if let Some(outcome) = self.outcome {
            outcome
        } else if self.failed {
            CallOutcome::Failure
        } else {
            CallOutcome::Success
        };
        let end = self.core.clock.now_ns();
        self.core.complete(
            self.ticket,
            &self.terms,
            (self.start, end),
            outcome,
            0,
            Entry::Counted,
        );
        drop(self.bulk.take());
    }
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("op", &self.core.name)
            .finish()
    }
}
