//! [`RegistryRef`]: a registry taken by the parts that outlive a call (the
//! HTTP layer, the monitoring router, the monitor's sampler), either the
//! `&'static` one (the global [`registry()`](crate::registry), or a leaked
//! one) or one shared through an `Arc`, as tower and axum users hold their
//! state.

use std::ops::Deref;
use std::sync::Arc;

use crate::registry::Registry;

/// A registry held for as long as its holder lives: `&'static Registry`
/// or `Arc<Registry>`, both accepted by `LimiterLayer::builder().registry(..)`,
/// `Monitoring::registry(..)` and [`RegistryRef::start_monitor`].
///
/// ```
/// use std::sync::Arc;
/// use limiter_runtime::{Registry, RegistryRef};
/// let shared = Arc::new(Registry::new());
/// let held: RegistryRef = Arc::clone(&shared).into();
/// assert!(std::ptr::eq(&*held, &*shared));
/// let global: RegistryRef = limiter_runtime::registry().into();
/// assert!(std::ptr::eq(&*global, limiter_runtime::registry()));
/// ```
#[derive(Debug, Clone)]
pub enum RegistryRef {
    /// A registry that lives for the whole program.
    Static(&'static Registry),
    /// A registry shared by reference count.
    Shared(Arc<Registry>),
}

impl Deref for RegistryRef {
    type Target = Registry;

    fn deref(&self) -> &Registry {
        match self {
            RegistryRef::Static(r) => r,
            RegistryRef::Shared(r) => r,
        }
    }
}

impl From<&'static Registry> for RegistryRef {
    fn from(r: &'static Registry) -> Self {
        RegistryRef::Static(r)
    }
}

impl From<Arc<Registry>> for RegistryRef {
    fn from(r: Arc<Registry>) -> Self {
        RegistryRef::Shared(r)
    }
}

impl From<&Arc<Registry>> for RegistryRef {
    fn from(r: &Arc<Registry>) -> Self {
        RegistryRef::Shared(Arc::clone(r))
    }
}

impl RegistryRef {
    /// Starts the task that samples the registry's routes and ops at the
    /// monitor's interval (see [`Registry::start_monitor`]), holding the
    /// registry for as long as the task runs.
    pub fn start_monitor(&self) -> bool {
        crate::registry::spawn_sampler(self.clone())
    }
}
