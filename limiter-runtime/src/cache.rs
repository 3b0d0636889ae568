//! The last good value per key: answers `strategy = "cache_fallback"` after
//! a timeout (whatever its age) and fresh responses of a coalesced call
//! (within its time to live).

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

struct Entry {
    value: Box<dyn Any + Send + Sync>,
    stored: Instant,
}

/// A bounded map from key hash (`None`: no key) to the last good value.
/// Oldest insertions are dropped first when full.
pub(crate) struct ValueCache {
    inner: Mutex<Inner>,
}

struct Inner {
    values: HashMap<Option<u64>, Entry>,
    order: VecDeque<Option<u64>>,
    cap: usize,
}

impl ValueCache {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                values: HashMap::new(),
                order: VecDeque::new(),
                cap: cap.max(1),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_cap(&self, cap: usize) {
        self.lock().cap = cap.max(1);
    }

    pub(crate) fn store<T: Any + Send + Sync>(&self, key: Option<u64>, value: T) {
        let mut inner = self.lock();
        let entry = Entry {
            value: Box::new(value),
            stored: Instant::now(),
        };
        if inner.values.insert(key, entry).is_none() {
            inner.order.push_back(key);
            while inner.values.len() > inner.cap {
                match inner.order.pop_front() {
                    Some(old) => {
                        inner.values.remove(&old);
                    }
                    None => break,
                }
            }
        }
    }

    /// The value stored for `key`, if there is one of type `T` no older
    /// than `max_age` (any age when `None`).
    pub(crate) fn get<T: Any + Clone>(
        &self,
        key: Option<u64>,
        max_age: Option<Duration>,
    ) -> Option<T> {
        let inner = self.lock();
        let entry = inner.values.get(&key)?;
        if max_age.is_some_and(|age| entry.stored.elapsed() > age) {
            return None;
        }
        entry.value.downcast_ref::<T>().cloned()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().values.len()
    }
}
