//! A bulkhead shared by every instance (`concurrency = "shared"`): the
//! places of an op live in the sorted set `{<prefix>:<op>}:c`, one member
//! `<instance id hex>:<seq>` per call in flight, scored by its lease's
//! expiry (server time, µs).
//!
//! Taking a place first drops the members whose lease ran out (the places
//! of instances that died without giving them back), then adds one if
//! fewer than `max` are left. This instance keeps the places it holds
//! ([`Holds`]) so that its heartbeat renews them: a place lives as long as
//! its instance does, and comes back within one lease when the instance
//! dies. Giving a place back removes the member.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::Script;
use std::sync::LazyLock as Lazy;

use super::{micros, Conn, RedisBackend};
use crate::backend::{BackendError, HoldId, SharedPlace};

/// Sets the key's expiry to its latest member's, so an idle set
/// disappears with its last lease (expects `now`).
const EXPIRE_WITH_LAST: &str = r#"
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then
  redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((tonumber(last[2]) - now) / 1000)) + 1)
end
"#;

/// Reads the server's clock into `now` (µs).
const NOW: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"#;

/// `KEYS[1]` the set, `ARGV`: `max`, the lease (µs), the member. Returns
/// `{1, 0}` (held) or `{0, wait_us}` (full; the earliest lease's end).
static ACQUIRE: Lazy<Script> = Lazy::new(|| {
    Script::new(&format!(
        r#"{NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[3])
  {EXPIRE_WITH_LAST}
  return {{1, 0}}
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {{0, math.max(0, math.ceil(tonumber(first[2]) - now))}}
"#
    ))
});

/// `KEYS[1]` the set, `ARGV[1]` the member. Returns 1 if it was there.
static RELEASE: Lazy<Script> =
    Lazy::new(|| Script::new("return redis.call('ZREM', KEYS[1], ARGV[1])"));

/// `KEYS[1]` the set, `ARGV`: the lease (µs), then the members to renew.
/// Only members still there are renewed (`XX`): a place given back or
/// lost is not brought back. Returns how many were renewed.
static RENEW: Lazy<Script> = Lazy::new(|| {
    Script::new(&format!(
        r#"{NOW}
local expiry = string.format('%.0f', now + tonumber(ARGV[1]))
local renewed = 0
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i])
    renewed = renewed + 1
  end
end
{EXPIRE_WITH_LAST}
return renewed
"#
    ))
});

/// The name of the set holding the places of `op`.
pub(super) fn places_key(prefix: &str, op: &str) -> String {
    format!("{{{prefix}:{op}}}:c")
}

/// The member naming place `seq` of instance `instance`.
fn member(instance: u64, seq: u64) -> String {
    format!("{instance:016x}:{seq}")
}

/// The places this instance holds, by set, for its heartbeat to renew.
#[derive(Debug, Default)]
pub(super) struct Holds {
    next: AtomicU64,
    by_set: Mutex<HashMap<String, HashSet<u64>>>,
}

impl Holds {
    fn take_seq(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    fn keep(&self, set: &str, seq: u64) {
        let mut by_set = self.by_set.lock().unwrap_or_else(|e| e.into_inner());
        by_set.entry(set.to_owned()).or_default().insert(seq);
    }

    fn forget(&self, set: &str, seq: u64) {
        let mut by_set = self.by_set.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = by_set.get_mut(set) {
            held.remove(&seq);
            if held.is_empty() {
                by_set.remove(set);
            }
        }
    }

    /// Every set with the places held in it.
    fn held(&self) -> Vec<(String, Vec<u64>)> {
        let by_set = self.by_set.lock().unwrap_or_else(|e| e.into_inner());
        by_set
            .iter()
            .map(|(set, seqs)| (set.clone(), seqs.iter().copied().collect()))
            .collect()
    }
}

/// Renews every place of `instance` in `holds` for `lease` more, one
/// script run per set; a place found gone is reported (its call runs on
/// without a shared place).
pub(super) async fn renew(conn: &Conn, instance: u64, holds: &Holds, lease: Duration) {
    for (set, seqs) in holds.held() {
        let mut inv = RENEW.prepare_invoke();
        inv.key(&set).arg(micros(lease));
        for seq in &seqs {
            inv.arg(member(instance, *seq));
        }
        match conn.run::<usize>(&inv).await {
            Ok(n) if n < seqs.len() => {
                tracing::debug!(set = %set, lost = seqs.len() - n, "shared bulkhead places lost their lease")
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(set = %set, error = %e, "shared bulkhead places not renewed"),
        }
    }
}

/// Removes a member whose script may have run although its caller never
/// heard the answer (it went away, or the answer timed out), in the
/// background; otherwise the place would return only with its lease.
struct Pending<'a> {
    backend: &'a RedisBackend,
    set: &'a str,
    member: &'a str,
    armed: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (Some(conn), Ok(rt)) = (
            self.backend.conn.get().cloned(),
            tokio::runtime::Handle::try_current(),
        ) else {
            return;
        };
        let (set, member) = (self.set.to_owned(), self.member.to_owned());
        let timeout = self.backend.timeout;
        rt.spawn(async move {
            let mut inv = RELEASE.prepare_invoke();
            inv.key(&set).arg(&member);
            let _ = tokio::time::timeout(timeout, conn.run::<i64>(&inv)).await;
        });
    }
}

impl RedisBackend {
    /// Takes one of `max` places of the bulkhead of `op` shared by every
    /// instance, leased for [`RedisConfig::lease_ttl`](super::RedisConfig)
    /// and renewed by this instance's heartbeat while held.
    pub async fn place_acquire(&self, op: &str, max: u32) -> Result<SharedPlace, BackendError> {
        let set = places_key(&self.prefix, op);
        let seq = self.holds.take_seq();
        let member = member(self.instances.id(), seq);
        let mut inv = ACQUIRE.prepare_invoke();
        inv.key(&set)
            .arg(max)
            .arg(micros(self.instances.lease()))
            .arg(&member);
        let mut pending = Pending {
            backend: self,
            set: &set,
            member: &member,
            armed: true,
        };
        let (held, wait) = self.invoke::<(i64, i64)>(&inv).await?;
        pending.armed = false;
        if held == 1 {
            self.holds.keep(&set, seq);
            return Ok(SharedPlace::Held(HoldId(seq)));
        }
        let wait = Duration::from_micros(u64::try_from(wait).unwrap_or(0));
        Ok(SharedPlace::Full { wait })
    }

    /// Stops renewing place `hold` of `op` (at once, so a release that
    /// never runs still lets the lease return it).
    fn place_forget(&self, op: &str, hold: HoldId) {
        self.holds.forget(&places_key(&self.prefix, op), hold.0);
    }

    /// Gives back place `hold` of `op`: stops renewing it and removes it.
    pub async fn place_release(&self, op: &str, hold: HoldId) -> Result<(), BackendError> {
        self.place_forget(op, hold);
        let set = places_key(&self.prefix, op);
        let mut inv = RELEASE.prepare_invoke();
        inv.key(&set).arg(member(self.instances.id(), hold.0));
        self.invoke::<i64>(&inv).await.map(drop)
    }

    /// [`place_release`](Self::place_release) for a backend shared
    /// through an `Arc`: the renewal stops when this is called.
    pub(super) fn place_release_owned(
        self: Arc<Self>,
        op: Arc<str>,
        hold: HoldId,
    ) -> crate::backend::StoreFuture<'static, ()> {
        self.place_forget(&op, hold);
        Box::pin(async move { self.place_release(&op, hold).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_are_kept_by_set_and_forgotten_one_by_one() {
        let h = Holds::default();
        let (a, b) = (h.take_seq(), h.take_seq());
        assert_ne!(a, b);
        h.keep("s", a);
        h.keep("s", b);
        h.keep("t", a);
        h.forget("s", a);
        let mut held = h.held();
        held.sort();
        assert_eq!(held, vec![("s".into(), vec![b]), ("t".into(), vec![a])]);
        h.forget("s", b);
        h.forget("t", a);
        assert!(h.held().is_empty(), "an emptied set is dropped");
    }

    #[test]
    fn members_name_the_instance_and_the_place() {
        assert_eq!(member(0xab, 7), "00000000000000ab:7");
        assert_eq!(places_key("p", "db"), "{p:db}:c");
    }
}
