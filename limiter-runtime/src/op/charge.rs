//! Charges after the fact: work whose size is known only once it ran
//! (the tokens an LLM answer used, the rows a query returned) is taken
//! from the op's rate limits afterwards, whatever is left. A key charged
//! past its budget is in debt: its next calls are refused until the debt
//! is paid back at the limit's rate (see each algorithm's `charge` for how
//! far a debt is carried).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::OpCore;

impl OpCore {
    /// Charges `n` calls to the op-wide rate and to `key`'s rate (if the
    /// op has them): in process at once, in the shared store off the
    /// caller's path. A charge is never refused and counts no call.
    pub(crate) fn charge(self: &Arc<Self>, key: Option<u64>, shared_key: Option<u64>, n: u32) {
        if n == 0 {
            return;
        }
        let policy = self.policy();
        if !(policy.cfg.enabled && self.shared.enabled.load(Ordering::Relaxed)) {
            return;
        }
        if policy.local {
            self.charge_local(key, n);
        } else {
            self.charge_shared(key, shared_key, n);
        }
    }

    /// Charges the in-process limits.
    pub(super) fn charge_local(&self, key: Option<u64>, n: u32) {
        let policy = self.policy();
        let now = self.clock.now_ns();
        let n = u64::from(n);
        if let Some(rate) = &policy.rate {
            rate.charge(now, n);
        }
        if let (Some(key), Some(keyed)) = (key, &policy.rate_per_key) {
            if !keyed.charge(key, now, n) {
                tracing::debug!(op = &*self.name, "charge dropped: the key table is full");
            }
        }
    }
}
