//! The last good value per key, for `strategy = "cache_fallback"`.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

type Value = Box<dyn Any + Send + Sync>;

/// A bounded map from key hash (`None`: no key) to the last good value.
/// Oldest insertions are dropped first when full.
pub(crate) struct FallbackCache {
    inner: Mutex<Inner>,
}

struct Inner {
    values: HashMap<Option<u64>, Value>,
    order: VecDeque<Option<u64>>,
    cap: usize,
}

impl FallbackCache {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                values: HashMap::new(),
                order: VecDeque::new(),
                cap: cap.max(1),
            }),
        }
    }

    pub(crate) fn set_cap(&self, cap: usize) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).cap = cap.max(1);
    }

    pub(crate) fn store<T: Any + Send + Sync>(&self, key: Option<u64>, value: T) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.values.insert(key, Box::new(value)).is_none() {
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

    /// The value stored for `key`, if there is one of type `T`.
    pub(crate) fn get<T: Any + Clone>(&self, key: Option<u64>) -> Option<T> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.values.get(&key)?.downcast_ref::<T>().cloned()
    }

    pub(crate) fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values
            .len()
    }
}
