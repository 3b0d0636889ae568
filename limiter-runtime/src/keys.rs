//! Per-key state with a bounded footprint.
//!
//! A [`KeyTable`] maps the hash of a caller's key (user id, tenant, client
//! address) to its state, kept in the table's slot (state shared with
//! users, such as a bulkhead key's counts, is an `Arc` in the slot). It is sharded to keep lock hold times short and
//! capped: when a shard is full, the entries whose state equals a fresh
//! key's are dropped first; then, if that is not enough, the entries that
//! owe least, but never one that is refused now (dropping it would let it
//! through sooner than its state says) and never one in use. Only when no
//! entry can go does an insert fail (the caller is told `Overloaded`). A
//! flood of distinct keys therefore cannot grow memory without bound, and
//! cannot clear a refused key's limit either.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

use crate::sync::{AtomicU64, AtomicUsize, Mutex, Ordering};

/// A value that can key per-key limits: anything `Hash`.
///
/// The runtime API takes keys as `Option<&dyn LimitKey>`, so `Some(&user_id)`
/// and `None` both work without naming a type.
pub trait LimitKey {
    /// Feeds the key into `state`.
    fn hash_key(&self, state: &mut dyn Hasher);

    /// The key's hash under `seed`, as the key tables use it. Every `Hash`
    /// type hashes itself here with the hasher called directly (one
    /// dynamic call per key instead of one per write); this default, for a
    /// hand-written `LimitKey`, feeds [`hash_key`](Self::hash_key) into the
    /// same hasher and gives the same value.
    fn key_hash(&self, seed: &KeySeed) -> u64 {
        let mut h = seed.0.build_hasher();
        self.hash_key(&mut h);
        h.finish()
    }
}

impl<T: Hash + ?Sized> LimitKey for T {
    #[inline]
    fn hash_key(&self, mut state: &mut dyn Hasher) {
        self.hash(&mut state);
    }

    #[inline]
    fn key_hash(&self, seed: &KeySeed) -> u64 {
        seed.0.hash_one(self)
    }
}

/// The seed of key hashes: random per process (SipHash-1-3, std's
/// `RandomState`), so a client cannot pick keys that collide on purpose.
/// Opaque: it is only ever passed to [`LimitKey::key_hash`].
#[derive(Debug, Clone, Default)]
pub struct KeySeed(std::collections::hash_map::RandomState);

impl KeySeed {
    /// The hash of `key` under this seed.
    #[inline]
    pub(crate) fn hash(&self, key: &dyn LimitKey) -> u64 {
        key.key_hash(self)
    }
}

/// The keys are already uniform 64-bit hashes: use them as they are.
#[derive(Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map<V> = HashMap<u64, Entry<V>, BuildHasherDefault<PassThrough>>;

struct Entry<V> {
    value: V,
    last_used: AtomicU64,
}

/// What dropping a key's state would forgive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Owed {
    /// Nothing: the state equals a fresh key's (a full bucket, no counts).
    Nothing,
    /// Something, ranked: the lower, the less the key owes (it would be
    /// admitted now, with less than a fresh key's budget).
    Some(u64),
    /// The key is refused now, or its state is in use: dropping it would
    /// let it through sooner than its state says. Never dropped.
    Everything,
}

/// State kept per key.
pub(crate) trait KeyState: Send + Sync {
    /// What the table knows of every key's state (a token bucket's
    /// parameters, kept once).
    type Ctx: Send + Sync;

    /// What dropping this state at `now_ns` would forgive.
    fn owed(&self, ctx: &Self::Ctx, now_ns: u64) -> Owed;

    /// Whether someone outside the table holds this state now (it is then
    /// never evicted).
    fn is_held(&self) -> bool {
        false
    }
}

/// State kept apart from the slot (a multi-window rate's cells).
impl<T: KeyState + ?Sized> KeyState for Box<T> {
    type Ctx = T::Ctx;

    fn owed(&self, ctx: &T::Ctx, now_ns: u64) -> Owed {
        (**self).owed(ctx, now_ns)
    }
}

/// State shared with its users (a bulkhead key's counts, held by permits).
impl<T: KeyState> KeyState for Arc<T> {
    type Ctx = T::Ctx;

    fn owed(&self, ctx: &T::Ctx, now_ns: u64) -> Owed {
        (**self).owed(ctx, now_ns)
    }

    fn is_held(&self) -> bool {
        Arc::strong_count(self) > 1
    }
}

const SHARDS: usize = 16;

/// A sharded, capped map from key hash to `Arc<V>`.
pub(crate) struct KeyTable<V: KeyState> {
    shards: Box<[Mutex<Map<V>>]>,
    cap_per_shard: AtomicUsize,
    ctx: V::Ctx,
    evicted: AtomicU64,
    /// Evictions that dropped state a fresh key does not have.
    forgotten: AtomicU64,
}

impl<V: KeyState> KeyTable<V> {
    pub(crate) fn new(cap: usize) -> Self
    where
        V::Ctx: Default,
    {
        Self::with_ctx(cap, V::Ctx::default())
    }

    /// A table whose keys' states are judged with `ctx`.
    pub(crate) fn with_ctx(cap: usize, ctx: V::Ctx) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Map::default())).collect(),
            cap_per_shard: AtomicUsize::new(Self::per_shard(cap)),
            ctx,
            evicted: AtomicU64::new(0),
            forgotten: AtomicU64::new(0),
        }
    }

    /// Whether the entry `e` can go at `now_ns` without losing anything.
    fn is_free(&self, e: &Entry<V>, now_ns: u64) -> bool {
        !e.value.is_held() && e.value.owed(&self.ctx, now_ns) == Owed::Nothing
    }

    fn per_shard(cap: usize) -> usize {
        (cap / SHARDS).max(1)
    }

    /// Changes the cap; shrinking takes effect as keys are inserted.
    pub(crate) fn set_cap(&self, cap: usize) {
        self.cap_per_shard
            .store(Self::per_shard(cap), Ordering::Relaxed);
    }

    /// The largest number of keys the table holds.
    #[cfg(test)]
    pub(crate) fn cap(&self) -> usize {
        self.cap_per_shard.load(Ordering::Relaxed) * SHARDS
    }

    fn shard(&self, hash: u64) -> &Mutex<Map<V>> {
        // The low bits pick the bucket inside the map; use high bits here.
        &self.shards[(hash >> 60) as usize % SHARDS]
    }

    /// The state of `hash`, created by `make` when missing. `None` when the
    /// table is full of keys that are all in use.
    pub(crate) fn get_or_insert(
        &self,
        hash: u64,
        now_ns: u64,
        make: impl FnOnce() -> V,
    ) -> Option<V>
    where
        V: Clone,
    {
        self.with(hash, now_ns, make, V::clone)
    }

    /// Runs `f` on the state of `hash` (created by `make` when missing)
    /// under its shard's lock, so the state is neither cloned out nor
    /// counted: a check costs the lock and `f`. `None` when the table is
    /// full of keys that are all in use.
    #[inline]
    pub(crate) fn with<R>(
        &self,
        hash: u64,
        now_ns: u64,
        make: impl FnOnce() -> V,
        f: impl FnOnce(&V) -> R,
    ) -> Option<R> {
        let mut map = self.shard(hash).lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get(&hash) {
            e.last_used.store(now_ns, Ordering::Relaxed);
            return Some(f(&e.value));
        }
        let cap = self.cap_per_shard.load(Ordering::Relaxed);
        if map.len() >= cap {
            self.make_room(&mut map, cap, now_ns);
            if map.len() >= cap {
                return None;
            }
        }
        let value = make();
        let out = f(&value);
        map.insert(
            hash,
            Entry {
                value,
                last_used: AtomicU64::new(now_ns),
            },
        );
        Some(out)
    }

    /// Frees places in a full shard: first every entry whose state equals
    /// a fresh key's; then, if that freed less than an eighth, the entries
    /// that owe least (least recently used first among equals), counted as
    /// `forgotten`. An entry that is refused now or in use is never
    /// dropped: a flood of other keys cannot clear a refused key's limit.
    fn make_room(&self, map: &mut Map<V>, cap: usize, now_ns: u64) {
        let before = map.len();
        // One judgement per entry: the free ones go now, the owing ones are
        // ranked in case that is not enough.
        let mut owing: Vec<(u64, u64, u64)> = Vec::new();
        map.retain(|k, e| {
            if e.value.is_held() {
                return true;
            }
            match e.value.owed(&self.ctx, now_ns) {
                Owed::Nothing => false,
                Owed::Some(rank) => {
                    owing.push((rank, e.last_used.load(Ordering::Relaxed), *k));
                    true
                }
                Owed::Everything => true,
            }
        });
        let target = (cap - cap / 8).min(cap - 1);
        let excess = map.len().saturating_sub(target).min(owing.len());
        if excess > 0 {
            owing.select_nth_unstable(excess - 1);
            for (_, _, k) in &owing[..excess] {
                map.remove(k);
            }
            self.forgotten.fetch_add(excess as u64, Ordering::Relaxed);
        }
        self.evicted
            .fetch_add((before - map.len()) as u64, Ordering::Relaxed);
    }

    /// Drops every idle entry nobody holds; returns how many were dropped.
    pub(crate) fn sweep(&self, now_ns: u64) -> usize {
        let mut dropped = 0;
        for shard in self.shards.iter() {
            let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
            let before = map.len();
            map.retain(|_, e| !self.is_free(e, now_ns));
            dropped += before - map.len();
        }
        self.evicted.fetch_add(dropped as u64, Ordering::Relaxed);
        dropped
    }

    /// Forgets every key and frees the memory they took.
    pub(crate) fn clear(&self) {
        for shard in self.shards.iter() {
            let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
            *map = Map::default();
        }
    }

    /// The state of `hash` if it is tracked.
    pub(crate) fn get(&self, hash: u64) -> Option<V>
    where
        V: Clone,
    {
        self.peek(hash, V::clone)
    }

    /// `f` of the state of `hash`, under its shard's lock, if it is
    /// tracked.
    pub(crate) fn peek<R>(&self, hash: u64, f: impl FnOnce(&V) -> R) -> Option<R> {
        let map = self.shard(hash).lock().unwrap_or_else(|e| e.into_inner());
        map.get(&hash).map(|e| f(&e.value))
    }

    /// Forgets `hash`; returns whether it was tracked.
    pub(crate) fn remove(&self, hash: u64) -> bool {
        let mut map = self.shard(hash).lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&hash).is_some()
    }

    /// Forgets `hash` if nobody but the table holds its state; the check and
    /// the removal happen under one lock, so no caller can take the state in
    /// between. Returns whether it was removed.
    pub(crate) fn remove_unused(&self, hash: u64) -> bool {
        let mut map = self.shard(hash).lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&hash) {
            Some(e) if !e.value.is_held() => map.remove(&hash).is_some(),
            _ => false,
        }
    }

    /// Keys tracked now.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Keys evicted so far.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Evictions so far that dropped state a fresh key does not have (a
    /// key that owed part of its budget, let through again with all of it).
    pub(crate) fn forgotten(&self) -> u64 {
        self.forgotten.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// Idle when its flag is set, else owing a little.
    struct S(AtomicBool);
    impl KeyState for S {
        type Ctx = ();
        fn owed(&self, _: &(), _: u64) -> Owed {
            if self.0.load(Ordering::Relaxed) {
                Owed::Nothing
            } else {
                Owed::Some(1)
            }
        }
    }

    #[test]
    fn stays_under_cap_with_many_keys() {
        let t = KeyTable::<Arc<S>>::new(1000);
        let h = KeySeed::default();
        for i in 0..100_000u64 {
            let v = t.get_or_insert(h.hash(&i), i, || Arc::new(S(AtomicBool::new(false))));
            assert!(v.is_some());
            assert!(t.len() <= t.cap());
        }
        assert!(t.len() <= 1000 + SHARDS);
        assert!(t.evicted() >= 99_000 - SHARDS as u64);
    }

    #[test]
    fn held_entries_are_never_evicted() {
        let t = KeyTable::<Arc<S>>::new(SHARDS); // one per shard
        let held: Vec<_> = (0..SHARDS as u64)
            .map(|i| {
                t.get_or_insert(i << 60, 0, || Arc::new(S(AtomicBool::new(true))))
                    .unwrap()
            })
            .collect();
        // Shard 0 is full of a held entry: a new key there is refused.
        assert!(t
            .get_or_insert(1, 1, || Arc::new(S(AtomicBool::new(true))))
            .is_none());
        drop(held);
        assert!(t
            .get_or_insert(1, 1, || Arc::new(S(AtomicBool::new(true))))
            .is_some());
        assert!(t.get(0).is_none(), "idle entry was dropped to make room");
        assert!(t.remove(1));
        assert_eq!(t.sweep(2), SHARDS - 1);
    }
}

/// Model checks of eviction (`RUSTFLAGS="--cfg limiter_loom" cargo test --release
/// -p limiter-runtime loom`): a key's state is never evicted while a caller
/// holds it, two callers of one key share one state, and the table never
/// holds more than its cap.
#[cfg(all(test, limiter_loom))]
mod loom_tests {
    use super::*;
    use loom::thread;

    /// Counts uses; idle when unused.
    #[derive(Default)]
    struct Uses(AtomicU64);
    impl KeyState for Uses {
        type Ctx = ();
        fn owed(&self, _: &(), _: u64) -> Owed {
            if self.0.load(Ordering::Relaxed) == 0 {
                Owed::Nothing
            } else {
                Owed::Everything
            }
        }
    }

    /// Keys in shard 0 (the shard is picked by the high bits).
    const A: u64 = 1;
    const B: u64 = 2;

    /// One place per shard. A caller of key A holds its state while another
    /// caller of A and a caller of B arrive: both A callers share the one
    /// state, B is refused (the shard is full of a held key), and the use
    /// counted by the second A caller is not lost.
    #[test]
    fn loom_keys_held_state_is_never_evicted() {
        loom::model(|| {
            let t = Arc::new(KeyTable::<Arc<Uses>>::new(SHARDS));
            let held = t.get_or_insert(A, 0, || Arc::new(Uses::default())).unwrap();
            held.0.fetch_add(1, Ordering::Relaxed);
            let again = {
                let t = Arc::clone(&t);
                thread::spawn(move || {
                    let s = t
                        .get_or_insert(A, 1, || Arc::new(Uses::default()))
                        .expect("A is tracked");
                    s.0.fetch_add(1, Ordering::Relaxed);
                    s
                })
            };
            let other = {
                let t = Arc::clone(&t);
                thread::spawn(move || {
                    t.get_or_insert(B, 1, || Arc::new(Uses::default()))
                        .is_some()
                })
            };
            let again = again.join().unwrap();
            assert!(!other.join().unwrap(), "B took the place of a held key");
            assert!(Arc::ptr_eq(&held, &again), "one key, two states");
            assert_eq!(held.0.load(Ordering::Relaxed), 2);
            assert_eq!(t.len(), 1);
        });
    }

    /// The holder of A lets go while B arrives: B gets the place only by
    /// evicting A (which then starts again), and the shard never holds two.
    #[test]
    fn loom_keys_eviction_racing_release() {
        loom::model(|| {
            let t = Arc::new(KeyTable::<Arc<Uses>>::new(SHARDS));
            let held = t.get_or_insert(A, 0, || Arc::new(Uses::default())).unwrap();
            let releaser = thread::spawn(move || drop(held));
            let inserter = {
                let t = Arc::clone(&t);
                thread::spawn(move || {
                    t.get_or_insert(B, 1, || Arc::new(Uses::default()))
                        .is_some()
                })
            };
            releaser.join().unwrap();
            let b_in = inserter.join().unwrap();
            assert_eq!(t.len(), 1);
            assert_eq!(t.get(A).is_some(), !b_in);
            assert_eq!(t.get(B).is_some(), b_in);
            assert_eq!(t.evicted(), u64::from(b_in));
        });
    }
}
