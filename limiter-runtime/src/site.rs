//! The per-call-site handle the attribute macros expand to.

use std::sync::OnceLock;

use crate::op::Op;
use crate::registry::{registry, Registry};
use crate::settings::OpConfig;

/// One annotated function's handle on its op in the global registry: looked
/// up, and its declared layer (the attribute's arguments) installed, on
/// first use; a plain load after that.
///
/// Two functions naming the same `op` share one op; the declared layer of
/// whichever is called first is kept.
#[derive(Debug, Default)]
pub struct OpSite {
    op: OnceLock<Op>,
}

impl OpSite {
    /// An empty site, for a `static`.
    pub const fn new() -> Self {
        Self {
            op: OnceLock::new(),
        }
    }

    /// The op `name`, declared with `declared()` on first use. Should the
    /// declared layer clash with run-time configuration (checked at compile
    /// time, it can only clash with an override), the clash is logged and
    /// the op runs with the override and defaults alone.
    pub fn get(&self, name: &str, declared: impl FnOnce() -> OpConfig) -> &Op {
        self.get_in(registry(), name, declared)
    }

    /// [`OpSite::get`] in `registry` (`#[limit_blocking(registry =
    /// path)]`): the op is declared there on first use and kept by the
    /// site, so one site always runs in the registry it first met.
    pub fn get_in(
        &self,
        registry: &Registry,
        name: &str,
        declared: impl FnOnce() -> OpConfig,
    ) -> &Op {
        self.op.get_or_init(|| {
            // Checked and declared as one step, so that of two functions
            // first used at once, one declares and the other keeps its limits.
            match registry.declare_first(name, declared()) {
                (op, Ok(true)) => op,
                (op, Ok(false)) if op.core.rule.get().is_some() => {
                    // A `LimiterLayer` rule of this name was built first and
                    // took the name for its op.
                    tracing::error!(
                        op = name,
                        "an HTTP rule of the same name declared this op first: the function runs under the rule's limits, not its own; rename the rule or the op"
                    );
                    op
                }
                (op, Ok(false)) => {
                    // Another function declared this op first: keep its limits.
                    tracing::warn!(op = name, "two functions declare the same op; the first one's limits are kept");
                    op
                }
                (op, Err(e)) => {
                    tracing::error!(op = name, error = %e, "the attribute's limits clash with run-time configuration; using the run-time configuration");
                    op
                }
            }
        })
    }
}
