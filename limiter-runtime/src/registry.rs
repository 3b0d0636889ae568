//! The registry of named operations, and the global one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use serde::Serialize;
use std::sync::LazyLock as Lazy;

use crate::background::{BackgroundSnapshot, ShutdownReport, TaskManager};
use crate::clock::ClockSource;
use crate::error::ConfigError;
use crate::keys::KeySeed;
use crate::monitor::{KeyLimitView, Monitor, Summary, TaskTotals};
use crate::offload::Offload;
use crate::op::{Op, OpCore, OpSnapshot};
use crate::settings::resolve::cpu_count;
use crate::settings::{OpConfig, Settings};
use crate::shared::Shared;
use crate::stream::{StreamSnapshot, StreamTable};

/// A set of named operations with their limits, metrics and background
/// tasks. Most services use the global one, [`registry()`]; tests and
/// multi-tenant hosts can build their own.
///
/// ```
/// use std::time::Duration;
/// use limiter_runtime::{OpConfig, Registry};
/// let reg = Registry::new();
/// reg.configure("db", OpConfig {
///     timeout: Some(Duration::from_secs(2)),
///     max_concurrent: Some(20),
///     ..OpConfig::default()
/// })
/// .unwrap();
/// assert_eq!(reg.op("db").config().max_concurrent, 20);
/// // Bad values are errors, never panics or silent defaults:
/// let err = reg
///     .configure("db", OpConfig { max_concurrent: Some(0), ..OpConfig::default() })
///     .unwrap_err();
/// assert_eq!(err.to_string(), "op `db`: max_concurrent = 0: must be at least 1");
/// ```
pub struct Registry {
    shared: Arc<Shared>,
    ops: RwLock<HashMap<Arc<str>, Op>>,
    monitor: Monitor,
    /// The statistics of the stream handlers, by name.
    streams: Arc<StreamTable>,
    /// The registry-wide defaults layer.
    defaults: RwLock<OpConfig>,
    /// Held through every change of configuration, from reading the layers
    /// and defaults to installing the result, and through the creation of
    /// an op (which reads the defaults), so that changes never interleave.
    /// Taken before the op map's lock and any op's locks; never held across
    /// an `.await`.
    reconfig: Mutex<()>,
    /// The Redis backend, when one is set (also the ops' shared store).
    #[cfg(feature = "redis")]
    redis: arc_swap::ArcSwapOption<crate::redis::RedisBackend>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.ops().iter().map(|o| o.name().to_owned()).collect();
        f.debug_struct("Registry")
            .field("enabled", &self.is_enabled())
            .field("ops", &names)
            .finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything the registry knows, serialisable.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RegistrySnapshot {
    /// Whether limits are on.
    pub enabled: bool,
    /// Every operation, by name.
    pub ops: Vec<OpSnapshot>,
    /// Background tasks.
    pub background: BackgroundSnapshot,
}

impl Registry {
    /// A registry with the built-in defaults (see
    /// [`OpConfig::builtin_defaults`]); it reads no environment.
    pub fn new() -> Self {
        Self::with_clock(ClockSource::Auto)
    }

    /// A registry whose ops (and `LimiterLayer`s) read `clock`: for tests,
    /// [`ClockSource::Tokio`] (follows a paused tokio clock whenever it was
    /// paused) or a [`ManualClock`](crate::ManualClock) moved by hand.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use limiter_runtime::{ClockSource, OpConfig, Registry};
    /// let reg = Registry::with_clock(ClockSource::Tokio);
    /// reg.configure("db", OpConfig::default().with_rate("1/s").unwrap()).unwrap();
    /// let op = reg.op("db"); // made before the pause: follows it all the same
    /// tokio::time::pause();
    /// assert!(op.acquire(None).await.is_ok());
    /// assert!(op.acquire(None).await.is_err());
    /// tokio::time::advance(Duration::from_secs(1)).await;
    /// assert!(op.acquire(None).await.is_ok());
    /// # }
    /// ```
    pub fn with_clock(clock: ClockSource) -> Self {
        Self {
            shared: Arc::new(Shared {
                tasks: TaskManager::new(),
                offload: Arc::new(Offload::new(256, cpu_count() as usize)),
                hasher: KeySeed::default(),
                enabled: AtomicBool::new(true),
                store: arc_swap::ArcSwapOption::empty(),
                clock,
            }),
            ops: RwLock::new(HashMap::new()),
            monitor: Monitor::default(),
            streams: Arc::new(StreamTable::new()),
            defaults: RwLock::new(OpConfig::default()),
            reconfig: Mutex::new(()),
            #[cfg(feature = "redis")]
            redis: arc_swap::ArcSwapOption::empty(),
        }
    }

    /// The operation `name`, created with the defaults on first use.
    pub fn op(&self, name: &str) -> Op {
        if let Some(op) = self.ops.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            return op.clone();
        }
        let _reconfig = self.reconfig();
        self.op_locked(name)
    }

    /// Serializes changes of configuration (see `Registry::reconfig`).
    fn reconfig(&self) -> MutexGuard<'_, ()> {
        self.reconfig.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`op`](Self::op), with the reconfiguration lock held.
    fn op_locked(&self, name: &str) -> Op {
        let mut ops = self.ops.write().unwrap_or_else(|e| e.into_inner());
        if let Some(op) = ops.get(name) {
            return op.clone();
        }
        let defaults = self.defaults();
        // The defaults were checked when set; the built-in ones always hold.
        let cfg = OpConfig::resolve(name, &[&defaults])
            .or_else(|_| OpConfig::resolve(name, &[]))
            .unwrap_or_else(|e| unreachable!("built-in defaults are valid: {e}"));
        let name: Arc<str> = name.into();
        let op = Op {
            core: Arc::new(OpCore::new(name.clone(), Arc::clone(&self.shared), cfg)),
        };
        ops.insert(name, op.clone());
        op
    }

    fn defaults(&self) -> OpConfig {
        self.defaults
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets the declared layer of `name` (what the code says about it: the
    /// attribute's arguments). Validated against the other layers.
    pub fn declare(&self, name: &str, declared: OpConfig) -> Result<Op, ConfigError> {
        let _reconfig = self.reconfig();
        self.declare_locked(name, declared)
    }

    /// Declares `name` unless its declared layer is already set, as one
    /// step: of two call sites declaring one op, the first one's layer is
    /// kept. Returns the op and whether this call declared it.
    pub(crate) fn declare_first(
        &self,
        name: &str,
        declared: OpConfig,
    ) -> (Op, Result<bool, ConfigError>) {
        let _reconfig = self.reconfig();
        let op = self.op_locked(name);
        if op.core.is_declared() {
            return (op, Ok(false));
        }
        let declared = self.declare_locked(name, declared).map(|_| true);
        (op, declared)
    }

    fn declare_locked(&self, name: &str, declared: OpConfig) -> Result<Op, ConfigError> {
        let op = self.op_locked(name);
        let cfg = op
            .core
            .resolve_with(&self.defaults(), Some(&declared), None)?;
        op.core.install(Some(declared), None, cfg);
        Ok(op)
    }

    /// Sets the override layer of `name` (run-time tuning), replacing the
    /// previous override. Validated first: on error nothing changes. Live
    /// state (breaker state, in-flight calls, waiters) carries over.
    pub fn configure(&self, name: &str, overrides: OpConfig) -> Result<(), ConfigError> {
        let _reconfig = self.reconfig();
        let op = self.op_locked(name);
        let cfg = op
            .core
            .resolve_with(&self.defaults(), None, Some(&overrides))?;
        op.core.install(None, Some(overrides), cfg);
        Ok(())
    }

    /// Replaces the registry-wide defaults layer. Checked against every
    /// existing op first: on error nothing changes.
    pub fn set_defaults(&self, defaults: OpConfig) -> Result<(), ConfigError> {
        OpConfig::resolve("<defaults>", &[&defaults])?;
        let _reconfig = self.reconfig();
        let ops = self.ops();
        let resolved = ops
            .iter()
            .map(|op| op.core.resolve_with(&defaults, None, None))
            .collect::<Result<Vec<_>, _>>()?;
        *self.defaults.write().unwrap_or_else(|e| e.into_inner()) = defaults;
        for (op, cfg) in ops.iter().zip(resolved) {
            op.core.install(None, None, cfg);
        }
        Ok(())
    }

    /// Applies settings read from the environment or a file: the enabled
    /// flag, the defaults layer and each op's override layer. Everything is
    /// checked before anything changes.
    pub fn apply(&self, settings: &Settings) -> Result<(), ConfigError> {
        // Checked before anything changes; installed after the ops.
        #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
        let redis = self.redis_from(&settings.redis)?;
        if redis.is_none() && !self.has_shared_state() {
            needs_no_store(settings)?;
        }
        let _reconfig = self.reconfig();
        let mut defaults = self.defaults();
        defaults.overlay(&settings.defaults);
        OpConfig::resolve("<defaults>", &[&defaults])?;
        let mut plan = Vec::new();
        for op in self.ops() {
            let overrides = settings.ops.get(op.name());
            plan.push((
                op.clone(),
                overrides.cloned(),
                op.core.resolve_with(&defaults, None, overrides)?,
            ));
        }
        for (name, overrides) in &settings.ops {
            if !plan.iter().any(|(op, _, _)| op.name() == name) {
                let op = self.op_locked(name);
                let cfg = op.core.resolve_with(&defaults, None, Some(overrides))?;
                plan.push((op, Some(overrides.clone()), cfg));
            }
        }
        *self.defaults.write().unwrap_or_else(|e| e.into_inner()) = defaults;
        for (op, overrides, cfg) in plan {
            op.core.install(None, overrides, cfg);
        }
        if let Some(enabled) = settings.enabled {
            self.set_enabled(enabled);
        }
        #[cfg(feature = "redis")]
        if let Some(backend) = redis {
            self.install_redis(backend);
        }
        Ok(())
    }

    /// Turns every limit on or off (off: calls run with metrics only).
    pub fn set_enabled(&self, enabled: bool) {
        self.shared.enabled.store(enabled, Ordering::Relaxed);
    }

    /// Whether limits are on.
    pub fn is_enabled(&self) -> bool {
        self.shared.enabled.load(Ordering::Relaxed)
    }

    /// Every operation created so far, sorted by name.
    pub fn ops(&self) -> Vec<Op> {
        let mut ops: Vec<Op> = self
            .ops
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        ops.sort_by(|a, b| a.name().cmp(b.name()));
        ops
    }

    /// The background task manager.
    pub fn tasks(&self) -> &TaskManager {
        &self.shared.tasks
    }

    /// Everything the registry knows.
    pub fn snapshot(&self) -> RegistrySnapshot {
        RegistrySnapshot {
            enabled: self.is_enabled(),
            ops: self.ops().iter().map(Op::snapshot).collect(),
            background: self.shared.tasks.snapshot(),
        }
    }

    /// Connects ops with `backend = redis` to the Redis of `cfg` (checked
    /// now, connected on first use). Until this is called such ops find no
    /// Redis and degrade as configured.
    ///
    /// ```
    /// use limiter_runtime::{redis::RedisConfig, Registry};
    /// let reg = Registry::new();
    /// reg.set_redis(RedisConfig::new("redis://127.0.0.1:6379/")).unwrap();
    /// let err = reg.set_redis(RedisConfig::new("tcp://x")).unwrap_err();
    /// assert!(err.to_string().starts_with("op `<redis>`: url = tcp://x"));
    /// ```
    #[cfg(feature = "redis")]
    #[cfg_attr(all(docsrs, limiter_doc_cfg), doc(cfg(feature = "redis")))]
    pub fn set_redis(&self, cfg: crate::redis::RedisConfig) -> Result<(), ConfigError> {
        let backend = crate::redis::RedisBackend::new(cfg)?;
        self.install_redis(backend);
        Ok(())
    }

    /// Makes `backend` the Redis of this registry and its ops' store.
    #[cfg(feature = "redis")]
    fn install_redis(&self, backend: crate::redis::RedisBackend) {
        let backend = Arc::new(backend);
        self.redis.store(Some(Arc::clone(&backend)));
        self.set_shared_state(backend);
    }

    /// Whether a shared store (Redis, or another `SharedState`) is set.
    pub(crate) fn has_shared_state(&self) -> bool {
        self.shared.store.load().is_some()
    }

    /// A new reading of the registry's clock source (what its ops read).
    #[cfg(feature = "axum")]
    pub(crate) fn clock(&self) -> crate::clock::Clock {
        crate::clock::Clock::of(&self.shared.clock)
    }

    /// The shared store, when one is set.
    #[cfg(feature = "axum")]
    pub(crate) fn store(&self) -> Option<Arc<crate::backend::Store>> {
        self.shared.store.load_full()
    }

    /// Makes `store` the place where ops with `backend = "redis"` keep
    /// their breaker and rate state (any [`SharedState`](crate::backend::SharedState)
    /// implementation; [`set_redis`](Self::set_redis) sets Redis).
    pub fn set_shared_state(&self, store: Arc<dyn crate::backend::SharedState>) {
        self.shared.store.store(Some(Arc::new(store)));
    }

    /// The Redis backend, once [`Registry::set_redis`] was called.
    #[cfg(feature = "redis")]
    #[cfg_attr(all(docsrs, limiter_doc_cfg), doc(cfg(feature = "redis")))]
    pub fn redis(&self) -> Option<Arc<crate::redis::RedisBackend>> {
        self.redis.load_full()
    }

    /// Checks the Redis settings (built, not connected).
    #[cfg(feature = "redis")]
    fn redis_from(
        &self,
        r: &crate::settings::RedisSettings,
    ) -> Result<Option<crate::redis::RedisBackend>, ConfigError> {
        let Some(url) = &r.url else {
            return Ok(None);
        };
        let mut cfg = crate::redis::RedisConfig::new(url.clone());
        if let Some(p) = &r.prefix {
            cfg.prefix.clone_from(p);
        }
        if let Some(t) = r.timeout {
            cfg.timeout = t;
        }
        if let Some(t) = r.lease_ttl {
            cfg.lease_ttl = t;
        }
        crate::redis::RedisBackend::new(cfg).map(Some)
    }

    /// Without the `redis` feature a Redis URL is an error, not ignored.
    #[cfg(not(feature = "redis"))]
    fn redis_from(&self, r: &crate::settings::RedisSettings) -> Result<Option<()>, ConfigError> {
        match &r.url {
            None => Ok(None),
            Some(url) => Err(ConfigError::Invalid {
                op: "<redis>".into(),
                field: "url",
                value: url.clone(),
                reason: "needs the `redis` feature of limiter".into(),
            }),
        }
    }

    /// The stream handlers (backpressure) of this registry: make them
    /// with [`StreamTable::channel`] and [`StreamTable::buffered`]. The
    /// global registry's table is the one [`crate::stream::channel`] and
    /// [`crate::stream::buffered`] use.
    ///
    /// ```
    /// use limiter_runtime::{stream::StreamConfig, Registry};
    /// let reg = Registry::new();
    /// let (tx, _rx) = reg.streams().channel::<u32>(StreamConfig::new("events")).unwrap();
    /// tx.try_send(7).unwrap();
    /// let stats = reg.backpressure();
    /// assert_eq!((stats[0].name.as_str(), stats[0].buffered_items), ("events", 1));
    /// ```
    pub fn streams(&self) -> &StreamTable {
        &self.streams
    }

    /// The statistics of every stream handler name, sorted by name (what
    /// `GET /monitoring/backpressure` serves).
    pub fn backpressure(&self) -> Vec<StreamSnapshot> {
        self.streams.snapshots()
    }

    /// The performance monitor: route metrics, alerts, recommendations.
    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    /// Samples every route and op if a sample is due, checks the alert
    /// thresholds and updates the recommendations. The monitoring router
    /// calls it on every read and the sampler (see
    /// [`Registry::start_monitor`]) at every interval.
    pub fn refresh_monitor(&self) {
        self.monitor.refresh(&self.ops());
    }

    /// Everything at a glance: routes, ops, breakers, alerts, tasks and
    /// recommendations. Refreshes the monitor first.
    pub fn monitoring_summary(&self) -> Summary {
        let ops = self.ops();
        self.monitor.refresh(&ops);
        let snaps: Vec<OpSnapshot> = ops.iter().map(Op::snapshot).collect();
        let mut s = self.monitor.summary(&snaps);
        s.enabled = self.is_enabled();
        let bg = self.shared.tasks.snapshot();
        s.background = TaskTotals {
            pending: bg.pending,
            running: bg.running,
            spawned: bg.spawned,
            rejected: bg.rejected,
        };
        s
    }

    /// What every op and limiter-layer rule holds for the client key `key`
    /// (a string key; if it reads as an integer, the integer key too).
    pub fn key_limits(&self, key: &str) -> Vec<KeyLimitView> {
        let key = &*crate::client_id::normalize_id(key);
        let mut out = Vec::new();
        let int: Option<u64> = key.parse().ok();
        for op in self.ops() {
            let usage = op
                .key_usage(&key)
                .or_else(|| int.and_then(|n| op.key_usage(&n)));
            if let Some(u) = usage {
                let source = match op.core.rule.get() {
                    Some(rule) => format!("rule {rule}"),
                    None => format!("op {}", op.name()),
                };
                out.push(KeyLimitView {
                    source,
                    limit: u.limit,
                    available: u.available,
                    in_flight: u.in_flight,
                    queued: u.queued,
                });
            }
        }
        // Ops first, then rules, each by name.
        out.sort_by(|a, b| a.source.cmp(&b.source));
        out
    }

    /// Forgets the client key `key` in every op and limiter-layer rule (see
    /// [`Op::reset_key`]); returns in how many it was tracked.
    pub fn reset_key_everywhere(&self, key: &str) -> usize {
        let key = &*crate::client_id::normalize_id(key);
        let int: Option<u64> = key.parse().ok();
        let mut n = 0;
        for op in self.ops() {
            let by_str = op.reset_key(&key);
            let by_int = int.is_some_and(|i| op.reset_key(&i));
            n += usize::from(by_str || by_int);
        }
        n
    }

    /// Starts the task that samples routes and ops at the monitor's
    /// interval, so alerts are raised and history kept even when nobody
    /// reads. Idempotent; needs a tokio runtime (outside one it does
    /// nothing and returns `false`). For a registry in an `Arc`, see
    /// [`RegistryRef::start_monitor`](crate::RegistryRef::start_monitor).
    pub fn start_monitor(&'static self) -> bool {
        spawn_sampler(self)
    }

    /// Reads the breakers that ops kept in the shared store (Redis) have
    /// there, so that snapshots, `/monitoring/breakers`, the dashboard and
    /// Prometheus show the breaker every instance shares, not this
    /// process's. The monitor's sampler does it at every interval and the
    /// monitoring router before answering; never on a call's path.
    pub async fn refresh_shared_breakers(&self) {
        for op in self.ops() {
            op.core.refresh_shared_breaker().await;
        }
    }

    /// Drains or cancels the background tasks (see [`TaskManager::shutdown`]).
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.shared.tasks.shutdown(grace).await
    }
}

/// Starts the monitor's sampler of `registry` on the current runtime,
/// holding `registry` (a `&'static` or an `Arc`) for as long as the task
/// runs; `false` outside a runtime, `true` if one runs already.
pub(crate) fn spawn_sampler<R>(registry: R) -> bool
where
    R: std::ops::Deref<Target = Registry> + Send + Sync + 'static,
{
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return false;
    };
    if !registry.monitor().claim_sampler() {
        return true;
    }
    let claim = SamplerClaim(registry);
    handle.spawn(async move {
        // Dropped with the task, even unpolled: frees the flag when this
        // runtime shuts down.
        let registry = &*claim.0;
        loop {
            tokio::time::sleep(registry.monitor().sample_interval()).await;
            registry.refresh_shared_breakers().await;
            registry.refresh_monitor();
        }
    });
    true
}

/// The sampler task's claim on its registry's monitor; given back when
/// the task ends or is dropped, so that a later `start_monitor` starts
/// another.
struct SamplerClaim<R: std::ops::Deref<Target = Registry>>(R);

impl<R: std::ops::Deref<Target = Registry>> Drop for SamplerClaim<R> {
    fn drop(&mut self) {
        self.0.monitor().release_sampler();
    }
}

/// An op configured to keep its state in Redis while no Redis is known
/// (neither in the settings nor set on the registry) would fall back on
/// every call without a word: a start-up error instead.
fn needs_no_store(settings: &Settings) -> Result<(), ConfigError> {
    let redis = Some(crate::settings::Backend::Redis);
    let first = std::iter::once(("<defaults>", &settings.defaults))
        .chain(settings.ops.iter().map(|(n, c)| (n.as_str(), c)))
        .find(|(_, cfg)| cfg.backend == redis);
    match first {
        None => Ok(()),
        Some((op, _)) => Err(ConfigError::Invalid {
            op: op.to_owned(),
            field: "backend",
            value: "redis".into(),
            reason: "no Redis is configured: set LIMITER_REDIS_URL (or `url` in [redis] of limiter.toml), or call Registry::set_redis before applying".into(),
        }),
    }
}

static GLOBAL: Lazy<Registry> = Lazy::new(|| Registry {
    streams: crate::stream::global_table(),
    ..Registry::new()
});

/// The process-wide registry, built on first use with the built-in
/// defaults. Apply the environment or a file with
/// [`crate::config::load_env`] / [`crate::config::load_file`].
pub fn registry() -> &'static Registry {
    &GLOBAL
}

/// Drains or cancels the global registry's background tasks within `grace`.
pub async fn shutdown(grace: Duration) -> ShutdownReport {
    registry().shutdown(grace).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configure_error_changes_nothing() {
        let reg = Registry::new();
        reg.configure(
            "a",
            OpConfig {
                max_concurrent: Some(5),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(reg
            .configure(
                "a",
                OpConfig {
                    timeout: Some(Duration::ZERO),
                    ..Default::default()
                }
            )
            .is_err());
        assert_eq!(reg.op("a").config().max_concurrent, 5);
    }

    #[test]
    fn defaults_apply_to_existing_and_new_ops() {
        let reg = Registry::new();
        let a = reg.op("a");
        reg.set_defaults(OpConfig {
            max_concurrent: Some(9),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(a.config().max_concurrent, 9);
        assert_eq!(reg.op("b").config().max_concurrent, 9);
        assert!(reg
            .set_defaults(OpConfig {
                queue_timeout: Some(Duration::ZERO),
                ..Default::default()
            })
            .is_err());
        assert_eq!(a.config().max_concurrent, 9);
    }

    /// Runs `a` and `b` at once on two threads, released together.
    fn race<A, B>(a: A, b: B)
    where
        A: FnOnce() + Send,
        B: FnOnce() + Send,
    {
        let start = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                start.wait();
                a();
            });
            start.wait();
            b();
        });
    }

    /// A declaration racing an env `apply` keeps both layers in force.
    #[test]
    fn declare_racing_apply_keeps_both_layers() {
        for _ in 0..200 {
            let reg = Registry::new();
            let mut settings = Settings::default();
            settings.ops.insert(
                "db".into(),
                OpConfig {
                    max_concurrent: Some(7),
                    ..Default::default()
                },
            );
            let declared = OpConfig {
                timeout: Some(Duration::from_secs(2)),
                ..Default::default()
            };
            race(
                || drop(reg.declare("db", declared).unwrap()),
                || reg.apply(&settings).unwrap(),
            );
            let cfg = reg.op("db").config();
            assert_eq!(
                (cfg.timeout, cfg.max_concurrent),
                (Some(Duration::from_secs(2)), 7)
            );
        }
    }

    /// Two installs never mix: the policy and the bulkhead come from the
    /// same configuration.
    #[test]
    fn concurrent_configures_do_not_interleave() {
        let cfg = |max, secs| OpConfig {
            max_concurrent: Some(max),
            timeout: Some(Duration::from_secs(secs)),
            ..Default::default()
        };
        for _ in 0..200 {
            let reg = Registry::new();
            race(
                || reg.configure("db", cfg(5, 1)).unwrap(),
                || reg.configure("db", cfg(9, 2)).unwrap(),
            );
            let op = reg.op("db");
            let (policy, bulkhead) = (op.config(), op.snapshot().bulkhead);
            let expected = if policy.max_concurrent == 5 { 1 } else { 2 };
            assert_eq!(policy.timeout, Some(Duration::from_secs(expected)));
            assert_eq!(bulkhead.max_concurrent, policy.max_concurrent);
        }
    }

    /// Of two call sites first used at once, exactly one declares the op,
    /// and its limits are the ones kept.
    #[test]
    fn first_declaration_wins_atomically() {
        let cfg = |max| OpConfig {
            max_concurrent: Some(max),
            ..Default::default()
        };
        for _ in 0..200 {
            let reg = Registry::new();
            let (a, b) = (Mutex::new(None), Mutex::new(None));
            race(
                || *a.lock().unwrap() = Some(reg.declare_first("db", cfg(3)).1.unwrap()),
                || *b.lock().unwrap() = Some(reg.declare_first("db", cfg(4)).1.unwrap()),
            );
            let (a, b) = (a.into_inner().unwrap(), b.into_inner().unwrap());
            assert!(a.unwrap() ^ b.unwrap(), "exactly one declares");
            let winner = if a == Some(true) { 3 } else { 4 };
            assert_eq!(reg.op("db").config().max_concurrent, winner);
        }
    }
}
