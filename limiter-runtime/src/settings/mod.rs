//! Configuration: the [`OpConfig`] layer model, its resolution and checks,
//! and reading [`Settings`] from the environment and from a TOML file, or
//! through serde from a service's own configuration (`serde_impl.rs`).
//! (Applying them to the global registry is `load.rs`'s job.)
//!
//! Invalid values are errors naming the variable or key and the value —
//! never a panic, never a silent default.

mod env;
mod fields;
mod file;
pub(crate) mod resolve;
mod serde_impl;
mod types;

use std::collections::BTreeMap;

pub use env::{settings_from_env, settings_from_vars};
pub use fields::FIELDS as OP_FIELDS;
pub use file::{settings_from_file, settings_from_toml};
pub(crate) use resolve::ser_duration;
pub use resolve::{AdaptivePolicy, BreakerPolicy, RateSpec, ResolvedConfig, RetryPolicy};
pub use types::{
    Algorithm, Backend, Backoff, BreakerConfig, ConcurrencyScope, Degradation, OpConfig, OpKind,
    OverloadPolicy, RetryConfig, SharedMode, TimeoutStrategy,
};

/// Configuration read from the environment or a file, to be applied to a
/// registry with [`crate::Registry::apply`].
///
/// It is also `Deserialize` and `Serialize`, so a service can keep it in
/// its own configuration (figment, the `config` crate, `toml`, …): the
/// keys, spellings and error messages are those of `limiter.toml`
/// (`enabled`, `[defaults]`, `[ops.<name>]`, `[routes."<route>"]`,
/// `[redis]`, profiles), and serializing writes the same forms back.
///
/// ```
/// use std::time::Duration;
/// use limiter_runtime::Settings;
///
/// #[derive(serde::Deserialize)]
/// struct App {
///     name: String,
///     limiter: Settings,
/// }
///
/// let app: App = toml::from_str(
///     r#"
///     name = "api"
///     [limiter.ops.db]
///     timeout = "2s"
///     rate = "100/s"
///     max_concurrent = 5
///     [limiter.ops.db.breaker]
///     failure_rate = 0.5
///     "#,
/// )
/// .unwrap();
/// assert_eq!(app.name, "api");
/// assert_eq!(app.limiter.ops["db"].timeout, Some(Duration::from_secs(2)));
/// // limiter_runtime::registry().apply(&app.limiter)?;
///
/// let err = toml::from_str::<App>("name = \"api\"\n[limiter.ops.db]\ntimeout = \"ten\"\n")
///     .err()
///     .unwrap();
/// assert!(err.to_string().contains("`ops.db.timeout` = \"ten\": `ten` is not a number"));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// Turns every limit on or off.
    pub enabled: Option<bool>,
    /// Registry-wide defaults layer.
    pub defaults: OpConfig,
    /// Override layers, by op name (routes are ops named by their route).
    pub ops: BTreeMap<String, OpConfig>,
    /// Where ops with `backend = redis` keep their state.
    pub redis: RedisSettings,
}

/// The Redis connection of the settings (`LIMITER_REDIS_*`, `[redis]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://host:port/db`.
    pub url: Option<String>,
    /// Key prefix.
    pub prefix: Option<String>,
    /// Longest wait for one check.
    pub timeout: Option<std::time::Duration>,
    /// How long an instance, and a place it holds in a shared bulkhead,
    /// lasts in Redis unrenewed (`RedisConfig::lease_ttl`).
    pub lease_ttl: Option<std::time::Duration>,
}

impl Settings {
    /// Lays `top` over `self`.
    pub fn overlay(&mut self, top: &Settings) {
        if top.enabled.is_some() {
            self.enabled = top.enabled;
        }
        self.defaults.overlay(&top.defaults);
        let r = &top.redis;
        if r.url.is_some() {
            self.redis.url.clone_from(&r.url);
        }
        if r.prefix.is_some() {
            self.redis.prefix.clone_from(&r.prefix);
        }
        if r.timeout.is_some() {
            self.redis.timeout = r.timeout;
        }
        if r.lease_ttl.is_some() {
            self.redis.lease_ttl = r.lease_ttl;
        }
        for (name, cfg) in &top.ops {
            self.ops.entry(name.clone()).or_default().overlay(cfg);
        }
    }
}
