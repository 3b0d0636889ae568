//! Rate limits kept in Redis (feature `redis`), so every instance of a
//! service shares one limit.
//!
//! One [`RedisBackend`] holds a lazily opened, auto-reconnecting
//! [`ConnectionManager`] (or, for a Redis Cluster, a cluster connection
//! routing each script by its keys' slot), the key prefix, the per-call timeout and a
//! health breaker: after consecutive failures Redis is not asked at all for
//! a growing pause (100 ms doubling up to 250 ms), then one call probes it; the
//! first success closes the breaker again, so a Redis that answers again is
//! used again within a second. What a limit does while Redis
//! cannot answer is the caller's [`Degradation`].
//!
//! Each backend is one instance in the registry of its prefix
//! (`{<prefix>}:instances`, see [`RedisBackend::instances`]); its heartbeat
//! also renews the places it holds in bulkheads shared by every instance
//! (`concurrency = "shared"`, `{<prefix>:<op>}:c`), leased for
//! [`RedisConfig::lease_ttl`].
//!
//! Keys are `{<prefix>:<op>[:<key>]}:<algorithm><window>`: the braces are a
//! Redis Cluster hash tag, so the keys of one check (one per window) live in
//! one slot and the script touching them all is valid on a cluster.

mod bulkhead;
mod health;
mod instances;
mod scripts;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::fmt::Write as _;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Cmd;
use serde::Serialize;
use tokio::sync::OnceCell;

pub use crate::backend::{BackendError, Check, Grant, SharedBreakerState, SharedTicket, Take};
pub use crate::backend::{HoldId, SharedPlace};
use crate::backend::{SharedBreakerView, SharedState, StoreFuture};
use crate::error::ConfigError;
use crate::keys::LimitKey;
use crate::rate::lease::{interval_micros, lease_cap};
use crate::settings::{Algorithm, BreakerPolicy, RateSpec};
pub use crate::spec::Degradation;

use bulkhead::Holds;
use health::Health;
use instances::Instances;

/// The most calls a token bucket of `per_second` tokens per second
/// (its tightest window) shared in `mode = "lease"` by `instances`
/// instances admits, over any span, beyond what `mode = "exact"` would:
/// every instance holds at most two slices (one served, one fetched
/// ahead), each at most its share of 100 ms of the rate (at least one
/// token), and a held token can be served later than an exact check would
/// have admitted it. Calls costing more than a slice add their cost.
///
/// ```
/// // 1 000/s shared by 4 instances: slices of at most 25 tokens.
/// assert_eq!(limiter_runtime::redis::over_admission_bound(1_000.0, 4), 200);
/// ```
pub fn over_admission_bound(per_second: f64, instances: u32) -> u64 {
    2 * u64::from(instances.max(1)) * lease_cap(per_second, instances)
}

/// How to reach Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://host:port/db` (or `rediss://`, `redis+unix://`); for a
    /// Redis Cluster, the seed nodes separated by commas.
    pub url: String,
    /// Talk to a Redis Cluster (implied by several comma-separated URLs).
    pub cluster: bool,
    /// Prefix of every key (default `limiter`).
    pub prefix: String,
    /// Longest wait for one check, connecting included (default 50 ms).
    pub timeout: Duration,
    /// Seed of the hash that turns keys into Redis key names; every
    /// instance must use the same (default 0).
    pub key_seed: u64,
    /// How long this instance stays in the registry of instances, and
    /// holds a place of a shared bulkhead, without renewing it (default
    /// 3 s). Its heartbeat renews both every third of it, so a place held
    /// by an instance that dies (killed, or its backend dropped without
    /// giving places back) returns within this time.
    pub lease_ttl: Duration,
}

impl RedisConfig {
    /// `url` with the default prefix, timeout and seed.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            cluster: false,
            prefix: "limiter".into(),
            timeout: Duration::from_millis(50),
            key_seed: 0,
            lease_ttl: Duration::from_secs(3),
        }
    }
}

/// Counters of a backend.
#[derive(Debug, Default)]
struct Counters {
    checks: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    skipped: AtomicU64,
    recoveries: AtomicU64,
}

/// What a backend has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BackendStats {
    /// Script calls Redis answered (rate checks and breaker calls).
    pub checks: u64,
    /// Checks that failed with an error.
    pub errors: u64,
    /// Checks that ran out of time.
    pub timeouts: u64,
    /// Checks not sent because Redis was paused after failures.
    pub skipped: u64,
    /// Times Redis answered again after failing.
    pub recoveries: u64,
    /// Whether Redis is paused now.
    pub paused: bool,
}

/// Where the backend connects.
enum Target {
    Single(redis::Client),
    Cluster(Box<redis::cluster::ClusterClient>),
}

/// An open connection: multiplexed and reconnecting either way.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Conn {
    /// Runs one script invocation, unbounded and uncounted (the caller
    /// bounds it): for the backend's own upkeep, not the calls' checks.
    async fn run<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> redis::RedisResult<T> {
        match self.clone() {
            Conn::Single(mut c) => inv.invoke_async::<T>(&mut c).await,
            Conn::Cluster(mut c) => inv.invoke_async::<T>(&mut c).await,
        }
    }
}

/// A connection to Redis shared by the ops that keep their limits there.
pub struct RedisBackend {
    target: Target,
    conn: OnceCell<Conn>,
    prefix: Arc<str>,
    timeout: Duration,
    seed: u64,
    health: Health,
    counters: Counters,
    instances: Arc<Instances>,
    holds: Arc<Holds>,
}

impl Drop for RedisBackend {
    fn drop(&mut self) {
        self.instances.stop(self.conn.get(), self.timeout);
    }
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("instance", &format_args!("{:016x}", self.instances.id()))
            .finish()
    }
}

/// FNV-1a over a `Hash` stream, seeded: stable across processes and
/// builds (std's hashers are randomly seeded or unspecified across
/// releases), so every instance names a client's key alike. Not
/// collision-resistant against a chosen-key attacker; the seed makes
/// collisions unpredictable to one who does not know it.
struct StableHasher(u64);

impl std::hash::Hasher for StableHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

impl RedisBackend {
    /// Checks the URL; connects on first use.
    pub fn new(cfg: RedisConfig) -> Result<Self, ConfigError> {
        let invalid = |field: &'static str, value: String, reason: String| ConfigError::Invalid {
            op: "<redis>".into(),
            field,
            value,
            reason,
        };
        let nodes: Vec<&str> = cfg
            .url
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        let target = if cfg.cluster || nodes.len() > 1 {
            let client = redis::cluster::ClusterClient::builder(nodes)
                .connection_timeout(cfg.timeout)
                .response_timeout(cfg.timeout)
                .build()
                .map_err(|e| invalid("url", cfg.url.clone(), e.to_string()))?;
            Target::Cluster(Box::new(client))
        } else {
            let client = redis::Client::open(cfg.url.as_str())
                .map_err(|e| invalid("url", cfg.url.clone(), e.to_string()))?;
            Target::Single(client)
        };
        if cfg.timeout.is_zero() {
            return Err(invalid(
                "timeout",
                "0".into(),
                "must be longer than zero".into(),
            ));
        }
        if cfg.lease_ttl < Duration::from_millis(3) {
            return Err(invalid(
                "lease_ttl",
                format!("{:?}", cfg.lease_ttl),
                "must be at least 3 ms (it is renewed every third of it)".into(),
            ));
        }
        if cfg.prefix.contains(['{', '}']) {
            return Err(invalid(
                "prefix",
                cfg.prefix.clone(),
                "must not contain `{` or `}` (they delimit the cluster hash tag)".into(),
            ));
        }
        Ok(Self {
            target,
            conn: OnceCell::new(),
            instances: Arc::new(Instances::new(&cfg.prefix, cfg.lease_ttl)),
            holds: Arc::default(),
            prefix: cfg.prefix.into(),
            timeout: cfg.timeout,
            seed: cfg.key_seed,
            health: Health::default(),
            counters: Counters::default(),
        })
    }

    /// What the backend has done so far.
    pub fn stats(&self) -> BackendStats {
        let c = &self.counters;
        BackendStats {
            checks: c.checks.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            recoveries: c.recoveries.load(Ordering::Relaxed),
            paused: self.health.is_paused(),
        }
    }

    /// How many instances (backends with this prefix, this one included)
    /// renewed their lease in the registry of instances at this one's last
    /// heartbeat: at least 1, and 1 until the first heartbeat (which
    /// starts once the backend has connected).
    pub fn instances(&self) -> u32 {
        self.instances.count()
    }

    /// The stable name of `key` in Redis.
    pub fn key_name(&self, key: &dyn LimitKey) -> u64 {
        let mut h = StableHasher(0xcbf2_9ce4_8422_2325 ^ self.seed);
        key.hash_key(&mut h);
        std::hash::Hasher::finish(&h)
    }

    /// Appends the Redis names of the keys of one check (one per window)
    /// to `cmd`, written through one reused buffer: no allocation per
    /// name.
    fn push_keys(&self, cmd: &mut Cmd, op: &str, key: Option<u64>, spec: &RateSpec) {
        let alg = match spec.algorithm {
            Algorithm::TokenBucket => 'g',
            Algorithm::SlidingWindow => 's',
            Algorithm::FixedWindow => 'f',
            Algorithm::SlidingExact => 'x',
        };
        KEY_NAME.with(|buf| {
            let mut buf = buf.borrow_mut();
            for i in 0..spec.windows.len() {
                buf.clear();
                // Writing to a String cannot fail.
                let _ = match key {
                    Some(k) => write!(buf, "{{{}:{op}:{k:016x}}}:{alg}{i}", self.prefix),
                    None => write!(buf, "{{{}:{op}}}:{alg}{i}", self.prefix),
                };
                cmd.arg(buf.as_bytes());
            }
        });
    }

    /// The connection, opened on first use (bounded by the timeout; after
    /// that each command is bounded by the connection's response timeout).
    async fn connection(&self) -> Result<Conn, redis::RedisError> {
        if let Some(conn) = self.conn.get() {
            // One load while the heartbeat lives; restarts it otherwise.
            self.instances.ensure_beating(conn, &self.holds);
            return Ok(conn.clone());
        }
        tokio::time::timeout(self.timeout, self.open())
            .await
            .unwrap_or_else(|_| {
                Err(redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connecting to redis timed out",
                )))
            })
    }

    async fn open(&self) -> Result<Conn, redis::RedisError> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                match &self.target {
                    Target::Single(client) => {
                        // One quick retry per reconnection: the health
                        // breaker's probes do the waiting between attempts.
                        let cfg = ConnectionManagerConfig::new()
                            .set_connection_timeout(Some(self.timeout))
                            .set_response_timeout(Some(self.timeout))
                            .set_number_of_retries(1)
                            .set_min_delay(Duration::from_millis(20))
                            .set_max_delay(Duration::from_millis(100));
                        ConnectionManager::new_with_config(client.clone(), cfg)
                            .await
                            .map(Conn::Single)
                    }
                    Target::Cluster(client) => {
                        client.get_async_connection().await.map(Conn::Cluster)
                    }
                }
            })
            .await?;
        self.instances.ensure_beating(conn, &self.holds);
        Ok(conn.clone())
    }

    /// Checks one call's `take` (its cost, or a charge after the fact)
    /// against `spec` for `op` (and `key`, already turned into its name by
    /// [`RedisBackend::key_name`]), in one round trip, bounded by the
    /// timeout.
    pub async fn check(
        &self,
        op: &str,
        key: Option<u64>,
        spec: &RateSpec,
        take: Take,
    ) -> Result<Check, BackendError> {
        let script = scripts::rate(spec.algorithm, spec.windows.len());
        let mut cmd = script.evalsha(spec.windows.len());
        self.push_keys(&mut cmd, op, key, spec);
        push_window_args(&mut cmd, spec);
        // Every script reads the take from its last two arguments.
        cmd.arg(take.tokens()).arg(u8::from(take.forced()));
        let (admitted, n, window) = self.run::<(i64, i64, i64)>(script, &cmd).await?;
        Ok(if admitted == 1 {
            Check::Admitted {
                remaining: u64::try_from(n).unwrap_or(0),
            }
        } else {
            Check::Limited {
                wait: Duration::from_micros(u64::try_from(n).unwrap_or(0)),
                window: usize::try_from(window).unwrap_or(0),
            }
        })
    }

    /// Leases a slice of the token bucket `spec` for `op` (and `key`): at
    /// least `least`, at most `most` tokens, none usable later than
    /// `reach` from now (see `mode = "lease"`).
    pub async fn lease(
        &self,
        op: &str,
        key: Option<u64>,
        spec: &RateSpec,
        least: u32,
        most: u32,
        reach: Duration,
    ) -> Result<Grant, BackendError> {
        if spec.algorithm != Algorithm::TokenBucket {
            return Err(BackendError::Unsupported("leases of a window counter"));
        }
        let script = &*scripts::LEASE_GCRA;
        let mut cmd = script.evalsha(spec.windows.len());
        self.push_keys(&mut cmd, op, key, spec);
        push_window_args(&mut cmd, spec);
        cmd.arg(least).arg(most).arg(micros(reach));
        let out = self.run::<Vec<i64>>(script, &cmd).await?;
        let (tokens, wait, now) = match out[..] {
            [tokens, wait, now, ..] => (tokens, wait, now),
            _ => {
                return Err(BackendError::Redis(format!(
                    "unexpected lease reply {out:?}"
                )))
            }
        };
        let starts = &out[3..];
        let intervals = spec.windows.iter().map(interval_micros);
        Ok(Grant {
            tokens: u32::try_from(tokens).unwrap_or(0),
            wait: Duration::from_micros(u64::try_from(wait).unwrap_or(0)),
            starts_us: starts.iter().map(|s| s - now).collect(),
            ends_us: starts
                .iter()
                .zip(intervals)
                .map(|(s, t)| {
                    u64::try_from(*s).unwrap_or(0) + t * u64::try_from(tokens).unwrap_or(0)
                })
                .collect(),
        })
    }

    /// Gives `tokens` unused tokens of a slice back when nobody took
    /// tokens after it; returns whether they went back.
    pub async fn give_back(
        &self,
        op: &str,
        key: Option<u64>,
        spec: &RateSpec,
        ends_us: &[u64],
        tokens: u32,
    ) -> Result<bool, BackendError> {
        let script = &*scripts::LEASE_RETURN;
        let mut cmd = script.evalsha(spec.windows.len());
        self.push_keys(&mut cmd, op, key, spec);
        for (w, end) in spec.windows.iter().zip(ends_us) {
            cmd.arg(interval_micros(w)).arg(*end);
        }
        cmd.arg(tokens);
        Ok(self.run::<i64>(script, &cmd).await? == 1)
    }

    /// Runs one `EVALSHA` of `script` (loading it on `NOSCRIPT`, e.g.
    /// after a restart or `SCRIPT FLUSH`): skipped while Redis is paused,
    /// bounded by the connection's own response timeout (one timeout per
    /// call), counted, and fed to the health breaker.
    async fn run<T: redis::FromRedisValue>(
        &self,
        script: &scripts::Lua,
        cmd: &Cmd,
    ) -> Result<T, BackendError> {
        let Some(_probe) = self.health.allow() else {
            self.counters.skipped.fetch_add(1, Ordering::Relaxed);
            return Err(BackendError::Paused);
        };
        let result = async {
            match self.connection().await? {
                Conn::Single(mut c) => script.run(cmd, &mut c).await,
                Conn::Cluster(mut c) => script.run(cmd, &mut c).await,
            }
        }
        .await;
        self.observe(result.map_err(Some))
    }

    /// Runs one script invocation: skipped while Redis is paused, bounded
    /// by the timeout, counted, and fed to the health breaker.
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, BackendError> {
        let Some(_probe) = self.health.allow() else {
            self.counters.skipped.fetch_add(1, Ordering::Relaxed);
            return Err(BackendError::Paused);
        };
        let run = async {
            match self.connection().await? {
                Conn::Single(mut c) => inv.invoke_async::<T>(&mut c).await,
                Conn::Cluster(mut c) => inv.invoke_async::<T>(&mut c).await,
            }
        };
        let result = match tokio::time::timeout(self.timeout, run).await {
            Err(_) => Err(None),
            Ok(r) => r.map_err(Some),
        };
        self.observe(result)
    }

    /// Counts a call's result (`Err(None)`: it ran out of time) and feeds
    /// it to the health breaker.
    fn observe<T>(&self, result: Result<T, Option<redis::RedisError>>) -> Result<T, BackendError> {
        let result = match result {
            Ok(v) => {
                self.counters.checks.fetch_add(1, Ordering::Relaxed);
                Ok(v)
            }
            Err(e) if e.as_ref().is_none_or(redis::RedisError::is_timeout) => {
                self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(BackendError::Timeout(self.timeout))
            }
            Err(Some(e)) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                Err(BackendError::Redis(e.to_string()))
            }
            Err(None) => unreachable!("a missing error is a timeout, matched above"),
        };
        match &result {
            Ok(_) => {
                if self.health.success() {
                    self.counters.recoveries.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(prefix = &*self.prefix, "redis answers again");
                }
            }
            Err(e) => {
                self.health.failure();
                tracing::warn!(prefix = &*self.prefix, error = %e, "redis call failed");
            }
        }
        result
    }

    fn breaker_keys(&self, op: &str) -> (String, String) {
        let tag = format!("{{{}:{op}}}", self.prefix);
        (format!("{tag}:b"), format!("{tag}:bw"))
    }

    /// Asks the breaker of `op` shared by every instance for a place:
    /// `Ok(Err(wait))` while it is open (or every probe is taken).
    pub async fn breaker_admit(
        &self,
        op: &str,
        policy: &BreakerPolicy,
    ) -> Result<Result<SharedTicket, Duration>, BackendError> {
        let (hash, _) = self.breaker_keys(op);
        let mut inv = scripts::BREAKER_ADMIT.prepare_invoke();
        inv.key(&hash)
            .arg(policy.half_open_calls)
            .arg(micros(policy.recovery));
        let (kind, wait, round) = self.invoke::<(i64, i64, i64)>(&inv).await?;
        let round = u64::try_from(round).unwrap_or(0);
        Ok(match kind {
            1 => Ok(SharedTicket::Closed { round }),
            2 => Ok(SharedTicket::Probe { round }),
            _ => Err(Duration::from_micros(u64::try_from(wait).unwrap_or(0))),
        })
    }

    /// Records how a call admitted by [`RedisBackend::breaker_admit`]
    /// ended; returns the breaker's state after it.
    pub async fn breaker_record(
        &self,
        op: &str,
        ticket: SharedTicket,
        failed: bool,
        policy: &BreakerPolicy,
    ) -> Result<SharedBreakerState, BackendError> {
        self.breaker_settle(op, ticket, Some(failed), policy).await
    }

    /// Gives back the place of a call that ended without an outcome (its
    /// caller went away); only a probe holds one.
    pub async fn breaker_release(
        &self,
        op: &str,
        ticket: SharedTicket,
        policy: &BreakerPolicy,
    ) -> Result<SharedBreakerState, BackendError> {
        self.breaker_settle(op, ticket, None, policy).await
    }

    /// Holds the shared breaker of `op` open until [`RedisBackend::breaker_reset`].
    pub async fn breaker_force_open(&self, op: &str) -> Result<(), BackendError> {
        self.breaker_set(op, true).await
    }

    /// Closes the shared breaker of `op` and clears its window.
    pub async fn breaker_reset(&self, op: &str) -> Result<(), BackendError> {
        self.breaker_set(op, false).await
    }

    async fn breaker_set(&self, op: &str, open: bool) -> Result<(), BackendError> {
        let (hash, window) = self.breaker_keys(op);
        let mut inv = scripts::BREAKER_SET.prepare_invoke();
        inv.key(&hash).key(&window).arg(u8::from(open));
        self.invoke::<i64>(&inv).await.map(|_| ())
    }

    /// The state of the breaker of `op` kept here, for monitoring.
    async fn breaker_view(&self, op: &str) -> Result<Option<SharedBreakerView>, BackendError> {
        let (hash, window) = self.breaker_keys(op);
        let mut inv = scripts::BREAKER_VIEW.prepare_invoke();
        inv.key(&hash).key(&window);
        let (state, wait, calls, failures) = self.invoke::<(i64, i64, i64, i64)>(&inv).await?;
        let state = match state {
            1 => SharedBreakerState::Open,
            2 => SharedBreakerState::HalfOpen,
            _ => SharedBreakerState::Closed,
        };
        Ok(Some(SharedBreakerView {
            state,
            retry_after: u64::try_from(wait).ok().map(Duration::from_micros),
            window_calls: u32::try_from(calls).unwrap_or(u32::MAX),
            window_failures: u32::try_from(failures).unwrap_or(u32::MAX),
        }))
    }

    async fn breaker_settle(
        &self,
        op: &str,
        ticket: SharedTicket,
        failed: Option<bool>,
        policy: &BreakerPolicy,
    ) -> Result<SharedBreakerState, BackendError> {
        let (hash, window) = self.breaker_keys(op);
        let (probe, round) = match (ticket, failed) {
            // A closed-state call holds nothing to give back.
            (SharedTicket::Closed { .. }, None) => return Ok(SharedBreakerState::Closed),
            (SharedTicket::Probe { round }, None) => (2, round),
            (SharedTicket::Closed { round }, Some(_)) => (0, round),
            (SharedTicket::Probe { round }, Some(_)) => (1, round),
        };
        let failed = failed.unwrap_or(false);
        // Idle breakers disappear, but not before their recovery ran out.
        let idle_ms = (policy.recovery.as_millis() as u64)
            .saturating_mul(2)
            .max(3_600_000);
        let mut inv = scripts::BREAKER_RECORD.prepare_invoke();
        inv.key(&hash)
            .key(&window)
            .arg(u8::from(failed))
            .arg(probe)
            .arg(round)
            .arg(policy.window)
            .arg(policy.min_calls)
            .arg(policy.failure_rate)
            .arg(micros(policy.recovery))
            .arg(policy.success_threshold)
            .arg(policy.consecutive_failures.unwrap_or(0))
            .arg(idle_ms);
        let (state, _) = self.invoke::<(i64, i64)>(&inv).await?;
        Ok(match state {
            1 => SharedBreakerState::Open,
            2 => SharedBreakerState::HalfOpen,
            _ => SharedBreakerState::Closed,
        })
    }
}

/// The window arguments of a rate script: per window its interval and
/// horizon (token bucket), sub-window length and limit (exact window), or
/// period and limit, in µs; the exact window's sub-window count first.
fn push_window_args(cmd: &mut Cmd, spec: &RateSpec) {
    if spec.algorithm == Algorithm::SlidingExact {
        cmd.arg(crate::rate::EXACT_SLOTS);
    }
    for (i, w) in spec.windows.iter().enumerate() {
        match spec.algorithm {
            Algorithm::TokenBucket => {
                let capacity = match (i, spec.burst) {
                    (0, Some(b)) => b,
                    _ => w.count(),
                };
                let interval = interval_micros(w);
                cmd.arg(interval)
                    .arg(interval.saturating_mul(u64::from(capacity.max(1))));
            }
            Algorithm::SlidingExact => {
                let slot = micros(w.period()).div_ceil(crate::rate::EXACT_SLOTS).max(1);
                cmd.arg(slot).arg(w.count());
            }
            _ => {
                cmd.arg(micros(w.period())).arg(w.count());
            }
        }
    }
}

thread_local! {
    /// The buffer Redis key names are written into before they are copied
    /// into a command.
    static KEY_NAME: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

impl SharedState for RedisBackend {
    fn key_name(&self, key: &dyn LimitKey) -> u64 {
        RedisBackend::key_name(self, key)
    }

    fn check<'a>(
        &'a self,
        op: &'a str,
        key: Option<u64>,
        spec: &'a RateSpec,
        take: Take,
    ) -> StoreFuture<'a, Check> {
        Box::pin(RedisBackend::check(self, op, key, spec, take))
    }

    fn lease<'a>(
        &'a self,
        op: &'a str,
        key: Option<u64>,
        spec: &'a RateSpec,
        least: u32,
        most: u32,
        reach: Duration,
    ) -> StoreFuture<'a, Grant> {
        Box::pin(RedisBackend::lease(self, op, key, spec, least, most, reach))
    }

    fn give_back<'a>(
        &'a self,
        op: &'a str,
        key: Option<u64>,
        spec: &'a RateSpec,
        ends_us: &'a [u64],
        tokens: u32,
    ) -> StoreFuture<'a, bool> {
        Box::pin(RedisBackend::give_back(
            self, op, key, spec, ends_us, tokens,
        ))
    }

    fn breaker_admit<'a>(
        &'a self,
        op: &'a str,
        policy: &'a BreakerPolicy,
    ) -> StoreFuture<'a, Result<SharedTicket, Duration>> {
        Box::pin(RedisBackend::breaker_admit(self, op, policy))
    }

    fn breaker_settle<'a>(
        &'a self,
        op: &'a str,
        ticket: SharedTicket,
        failed: Option<bool>,
        policy: &'a BreakerPolicy,
    ) -> StoreFuture<'a, SharedBreakerState> {
        Box::pin(RedisBackend::breaker_settle(
            self, op, ticket, failed, policy,
        ))
    }

    fn breaker_set<'a>(&'a self, op: &'a str, open: bool) -> StoreFuture<'a, ()> {
        Box::pin(RedisBackend::breaker_set(self, op, open))
    }

    fn breaker_view<'a>(&'a self, op: &'a str) -> StoreFuture<'a, Option<SharedBreakerView>> {
        Box::pin(RedisBackend::breaker_view(self, op))
    }

    fn instances(&self) -> u32 {
        RedisBackend::instances(self)
    }

    fn place_acquire<'a>(&'a self, op: &'a str, max: u32) -> StoreFuture<'a, Option<SharedPlace>> {
        Box::pin(async move { RedisBackend::place_acquire(self, op, max).await.map(Some) })
    }

    fn place_release(self: Arc<Self>, op: Arc<str>, hold: HoldId) -> StoreFuture<'static, ()> {
        self.place_release_owned(op, hold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Rate;

    #[test]
    fn interval_rounds_up_to_the_microsecond() {
        let r = |count, ms| Rate::new(count, Duration::from_millis(ms)).unwrap();
        assert_eq!(interval_micros(&r(3, 10)), 3_334, "3 × 3 333 µs < 10 ms");
        assert_eq!(interval_micros(&r(10, 1_000)), 100_000, "exact stays exact");
        assert_eq!(interval_micros(&r(1_000_000, 1)), 1, "never zero");
    }
}
