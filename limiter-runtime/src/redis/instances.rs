//! The registry of instances sharing one prefix: every backend has a
//! random 64-bit id and, once connected, a heartbeat that scores it in the
//! sorted set `{<prefix>}:instances` by the end of its lease (server time,
//! µs), drops the instances whose lease ran out and reads how many are
//! left, every third of the lease. The same heartbeat renews the places
//! this instance holds in shared bulkheads (see [`super::bulkhead`]).
//!
//! The count is what [`SharedState::instances`](crate::backend::SharedState::instances)
//! answers: the share of a shared limit each instance applies while Redis
//! cannot answer. The heartbeat runs on the tokio runtime that first used
//! the backend, restarts on the next use if that runtime went away, and
//! stops when the backend is dropped, which takes the instance out of the
//! registry (an instance that dies without that drops out when its lease
//! runs out).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::Script;
use std::sync::LazyLock as Lazy;
use tokio::task::AbortHandle;

use super::bulkhead::{renew, Holds};
use super::{micros, Conn};

/// `KEYS[1]` the registry, `ARGV`: this instance's id, its lease (µs).
/// Returns how many instances hold a lease now (this one included).
static HEARTBEAT: Lazy<Script> = Lazy::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((tonumber(last[2]) - now) / 1000)) + 1)
return redis.call('ZCARD', KEYS[1])
"#,
    )
});

/// `KEYS[1]` the registry, `ARGV[1]` an instance's id: takes it out.
static LEAVE: Lazy<Script> =
    Lazy::new(|| Script::new("return redis.call('ZREM', KEYS[1], ARGV[1])"));

/// This instance in the registry of its prefix.
#[derive(Debug)]
pub(super) struct Instances {
    id: u64,
    lease: Duration,
    key: String,
    /// Instances seen by the last heartbeat (1 before the first).
    live: AtomicU32,
    /// Whether a heartbeat task is alive.
    beating: AtomicBool,
    task: Mutex<Option<AbortHandle>>,
}

impl Instances {
    /// A new instance id for `prefix`, leased for `lease` at a time.
    pub(super) fn new(prefix: &str, lease: Duration) -> Self {
        Self {
            id: fastrand::u64(..),
            lease,
            key: format!("{{{prefix}}}:instances"),
            live: AtomicU32::new(1),
            beating: AtomicBool::new(false),
            task: Mutex::new(None),
        }
    }

    /// This instance's id.
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    /// How long a lease (this instance's, and its places') lasts unrenewed.
    pub(super) fn lease(&self) -> Duration {
        self.lease
    }

    /// Instances holding a lease at the last heartbeat (at least 1).
    pub(super) fn count(&self) -> u32 {
        self.live.load(Ordering::Relaxed).max(1)
    }

    /// Starts the heartbeat on the current tokio runtime over `conn`,
    /// unless one is alive.
    pub(super) fn ensure_beating(self: &Arc<Self>, conn: &Conn, holds: &Arc<Holds>) {
        if self.beating.load(Ordering::Acquire) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.beating.swap(true, Ordering::AcqRel) {
            return;
        }
        let alive = Beating(Arc::clone(self));
        let (conn, holds) = (conn.clone(), Arc::clone(holds));
        let task = rt.spawn(async move { alive.0.beat(&conn, &holds).await });
        let mut slot = self.task.lock().unwrap_or_else(|e| e.into_inner());
        *slot = Some(task.abort_handle());
    }

    /// Stops the heartbeat and, when `conn` is open and a runtime is at
    /// hand, takes this instance out of the registry in the background
    /// (otherwise its lease runs out by itself).
    pub(super) fn stop(&self, conn: Option<&Conn>, timeout: Duration) {
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            task.abort();
        }
        let (Some(conn), Ok(rt)) = (conn.cloned(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let mut inv = LEAVE.prepare_invoke();
        inv.key(&self.key).arg(format!("{:016x}", self.id));
        let leaving = async move { conn.run::<i64>(&inv).await };
        rt.spawn(async move {
            let _ = tokio::time::timeout(timeout, leaving).await;
        });
    }

    /// Beats every third of the lease until stopped.
    async fn beat(&self, conn: &Conn, holds: &Holds) {
        let period = (self.lease / 3).max(Duration::from_millis(1));
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.register(conn, period).await;
            let renewal = renew(conn, self.id, holds, self.lease);
            if tokio::time::timeout(period, renewal).await.is_err() {
                tracing::debug!(key = %self.key, "shared bulkhead renewal timed out");
            }
        }
    }

    /// One heartbeat: keeps this instance's lease and reads the count.
    async fn register(&self, conn: &Conn, bound: Duration) {
        let mut inv = HEARTBEAT.prepare_invoke();
        inv.key(&self.key)
            .arg(format!("{:016x}", self.id))
            .arg(micros(self.lease));
        match tokio::time::timeout(bound, conn.run::<u32>(&inv)).await {
            Ok(Ok(n)) => self.live.store(n.max(1), Ordering::Relaxed),
            Ok(Err(e)) => tracing::debug!(key = %self.key, error = %e, "heartbeat failed"),
            Err(_) => tracing::debug!(key = %self.key, "heartbeat timed out"),
        }
    }
}

/// Says the heartbeat stopped when its task ends (aborted, or its runtime
/// shut down), so the next use starts another.
struct Beating(Arc<Instances>);

impl Drop for Beating {
    fn drop(&mut self) {
        self.0.beating.store(false, Ordering::Release);
    }
}
