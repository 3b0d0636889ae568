//! What every operation of one registry shares: the background task
//! manager, the offload pools, the key hasher, the switch that turns every
//! limit off, and the store of state shared by every instance (Redis).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::backend::Store;
use crate::background::TaskManager;
use crate::clock::ClockSource;
use crate::keys::KeySeed;
use crate::offload::Offload;

/// What every operation of a registry shares.
pub(crate) struct Shared {
    pub(crate) tasks: TaskManager,
    pub(crate) offload: Arc<Offload>,
    pub(crate) hasher: KeySeed,
    pub(crate) enabled: AtomicBool,
    /// Where ops with `backend = redis` keep their breaker and rate state.
    pub(crate) store: arc_swap::ArcSwapOption<Store>,
    /// The time every op of the registry reads.
    pub(crate) clock: ClockSource,
}
