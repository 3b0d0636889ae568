//! `Serialize` and `Deserialize` for the configuration, so a service embeds
//! [`Settings`] or [`OpConfig`] in its own configuration struct (figment,
//! the `config` crate, `toml::from_str`, …).
//!
//! Deserializing reads the value into a TOML table and hands it to the
//! file reader: the keys, spellings and error messages are those of
//! `limiter.toml` (a message names the key path below the embedded value,
//! e.g. `` `ops.db.timeout` = "ten": `ten` is not a number ``). Serializing
//! writes the forms the reader takes back: durations as `"10s"`, rates as
//! `"100/s, 1000/h"`, choices by name, switches and numbers as themselves,
//! unset fields left out.

use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, SerializeMap, Serializer};
use toml::Table;

use super::fields::{file_key, get_field, FIELDS};
use super::file::{settings_from_table, Reader};
use super::types::{BreakerConfig, OpConfig, RetryConfig};
use super::{RedisSettings, Settings};
use crate::error::ConfigError;
use crate::spec::DisplayDuration;

/// The reader of embedded values: no file to name.
const READER: Reader<'static> = Reader { file: "" };

/// The file reader's message without the file name.
fn de_error<E: serde::de::Error>(e: ConfigError) -> E {
    match e {
        ConfigError::File {
            key, value, reason, ..
        } => E::custom(format_args!("`{key}` = {value}: {reason}")),
        other => E::custom(other),
    }
}

/// Writes the fields of `cfg` that a file writes in `table` (`None`: the
/// op's own table), under their names there.
fn write_fields<M: SerializeMap>(
    map: &mut M,
    cfg: &OpConfig,
    table: Option<&str>,
) -> Result<(), M::Error> {
    for field in FIELDS {
        let (section, key) = file_key(field);
        if section == table {
            if let Some(value) = get_field(cfg, field) {
                map.serialize_entry(key, &value)?;
            }
        }
    }
    Ok(())
}

/// As a `[ops.<name>]` table: the op's fields, then its `retry` and
/// `breaker` tables when they set anything.
impl Serialize for OpConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        write_fields(&mut map, self, None)?;
        if self.retry != RetryConfig::default() {
            map.serialize_entry("retry", &self.retry)?;
        }
        if self.breaker != BreakerConfig::default() {
            map.serialize_entry("breaker", &self.breaker)?;
        }
        map.end()
    }
}

/// The keys of `[ops.<name>]`, with the errors of the file reader.
impl<'de> Deserialize<'de> for OpConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let table = Table::deserialize(d)?;
        let mut cfg = OpConfig::default();
        READER.op(&mut cfg, "", &table).map_err(de_error)?;
        Ok(cfg)
    }
}

/// As a `[ops.<name>.retry]` table: `retries`, `backoff`, `base`, `max`.
impl Serialize for RetryConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let cfg = OpConfig {
            retry: self.clone(),
            ..OpConfig::default()
        };
        let mut map = s.serialize_map(None)?;
        write_fields(&mut map, &cfg, Some("retry"))?;
        map.end()
    }
}

/// The keys of `[ops.<name>.retry]`, with the errors of the file reader.
impl<'de> Deserialize<'de> for RetryConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let table = Table::deserialize(d)?;
        let mut cfg = OpConfig::default();
        READER.retry(&mut cfg, "", &table).map_err(de_error)?;
        Ok(cfg.retry)
    }
}

/// As a `[ops.<name>.breaker]` table: `enabled`, `failure_rate`, ….
impl Serialize for BreakerConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let cfg = OpConfig {
            breaker: self.clone(),
            ..OpConfig::default()
        };
        let mut map = s.serialize_map(None)?;
        write_fields(&mut map, &cfg, Some("breaker"))?;
        map.end()
    }
}

/// The keys of `[ops.<name>.breaker]`, with the errors of the file reader.
impl<'de> Deserialize<'de> for BreakerConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let table = Table::deserialize(d)?;
        let mut cfg = OpConfig::default();
        READER.breaker(&mut cfg, "", &table).map_err(de_error)?;
        Ok(cfg.breaker)
    }
}

/// As the `[redis]` table: `url`, `prefix`, `timeout`, `lease_ttl`.
impl Serialize for RedisSettings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if let Some(url) = &self.url {
            map.serialize_entry("url", url)?;
        }
        if let Some(prefix) = &self.prefix {
            map.serialize_entry("prefix", prefix)?;
        }
        for (key, d) in [("timeout", self.timeout), ("lease_ttl", self.lease_ttl)] {
            if let Some(d) = d {
                map.serialize_entry(key, &DisplayDuration(d).to_string())?;
            }
        }
        map.end()
    }
}

/// The keys of `[redis]`, with the errors of the file reader.
impl<'de> Deserialize<'de> for RedisSettings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let table = Table::deserialize(d)?;
        let mut settings = Settings::default();
        READER.redis(&mut settings, "", &table).map_err(de_error)?;
        Ok(settings.redis)
    }
}

/// As a `limiter.toml`: `enabled`, then the `defaults`, `ops` and `redis`
/// tables when they set anything (routes are among the ops).
impl Serialize for Settings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if let Some(enabled) = self.enabled {
            map.serialize_entry("enabled", &enabled)?;
        }
        if self.defaults != OpConfig::default() {
            map.serialize_entry("defaults", &self.defaults)?;
        }
        if !self.ops.is_empty() {
            map.serialize_entry("ops", &self.ops)?;
        }
        if self.redis != RedisSettings::default() {
            map.serialize_entry("redis", &self.redis)?;
        }
        map.end()
    }
}

/// The keys of a `limiter.toml` (`enabled`, `defaults`, `ops`, `routes`,
/// `redis`, `profile` and `profiles`), with the errors of the file reader.
impl<'de> Deserialize<'de> for Settings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let table = Table::deserialize(d)?;
        settings_from_table(&table, "", None).map_err(de_error)
    }
}

#[cfg(all(test, not(limiter_loom)))]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::super::fields::set_field;
    use super::super::settings_from_toml;
    use super::super::types::{
        Algorithm, Backend, Backoff, ConcurrencyScope, Degradation, OpKind, OverloadPolicy,
        SharedMode,
    };
    use super::*;

    /// Text values `set_field` accepts for `field`, over its whole range.
    fn values(field: &str) -> BoxedStrategy<String> {
        fn names(names: &'static [&'static str]) -> BoxedStrategy<String> {
            prop::sample::select(names).prop_map(str::to_owned).boxed()
        }
        let duration = (1..=u64::MAX)
            .prop_map(|n| DisplayDuration(Duration::from_nanos(n)).to_string())
            .boxed();
        match field {
            "kind" => names(OpKind::NAMES),
            "algorithm" => names(Algorithm::NAMES),
            "backend" => names(Backend::NAMES),
            "degradation" => names(Degradation::NAMES),
            "mode" => names(SharedMode::NAMES),
            "concurrency" => names(ConcurrencyScope::NAMES),
            "overload" => names(OverloadPolicy::NAMES),
            "backoff" => names(Backoff::NAMES),
            "enabled" | "breaker" | "adaptive" => any::<bool>().prop_map(|b| b.to_string()).boxed(),
            "rate" | "rate_per_key" => prop::collection::vec((1..=u32::MAX, 1..=u64::MAX), 1..4)
                .prop_map(|windows| {
                    let texts: Vec<String> = windows
                        .into_iter()
                        .map(|(n, p)| format!("{n}/{}", DisplayDuration(Duration::from_nanos(p))))
                        .collect();
                    texts.join(", ")
                })
                .boxed(),
            // Six decimals: serde_json reads longer ones back a bit off
            // (without its `float_roundtrip` feature).
            "breaker_failure_rate" => (1..=1_000_000u32)
                .prop_map(|n| (f64::from(n) / 1e6).to_string())
                .boxed(),
            "queue" | "queue_per_key" | "retries" => {
                (0..=u32::MAX).prop_map(|n| n.to_string()).boxed()
            }
            "timeout" | "queue_timeout" | "drain_timeout" | "retry_after" | "backoff_base"
            | "backoff_max" | "breaker_slow_call" | "breaker_recovery" | "slow_poll"
            | "adaptive_target" => duration,
            _ => (1..=u32::MAX).prop_map(|n| n.to_string()).boxed(),
        }
    }

    /// Op layers with any subset of the fields set to any valid value.
    fn op_configs() -> impl Strategy<Value = OpConfig> {
        let fields: Vec<_> = FIELDS.iter().map(|f| prop::option::of(values(f))).collect();
        fields.prop_map(|texts| {
            let mut cfg = OpConfig::default();
            for (field, text) in FIELDS.iter().zip(texts) {
                if let Some(text) = text {
                    set_field(&mut cfg, field, &text).unwrap_or_else(|e| panic!("{field}: {e}"));
                }
            }
            cfg
        })
    }

    fn settings(defaults: OpConfig, op: OpConfig) -> Settings {
        Settings {
            enabled: Some(false),
            defaults,
            ops: BTreeMap::from([
                ("db".to_owned(), op),
                ("GET /users/{id}".to_owned(), OpConfig::default()),
            ]),
            redis: RedisSettings {
                url: Some("redis://127.0.0.1:6379/0".into()),
                prefix: None,
                timeout: Some(Duration::from_millis(50)),
                lease_ttl: Some(Duration::from_secs(3)),
            },
        }
    }

    proptest! {
        /// Serialize then Deserialize gives the same value, through TOML
        /// and through JSON.
        #[test]
        fn round_trips(cfg in op_configs(), defaults in op_configs()) {
            let text = toml::to_string(&cfg).unwrap();
            prop_assert_eq!(&toml::from_str::<OpConfig>(&text).unwrap(), &cfg, "{}", text);
            let json = serde_json::to_string(&cfg).unwrap();
            prop_assert_eq!(&serde_json::from_str::<OpConfig>(&json).unwrap(), &cfg, "{}", json);
            let s = settings(defaults, cfg);
            let text = toml::to_string(&s).unwrap();
            prop_assert_eq!(&toml::from_str::<Settings>(&text).unwrap(), &s, "{}", text);
            // What is serialized is a limiter.toml the file reader takes.
            prop_assert_eq!(&settings_from_toml(&text, "limiter.toml", None).unwrap(), &s);
            let json = serde_json::to_string(&s).unwrap();
            prop_assert_eq!(&serde_json::from_str::<Settings>(&json).unwrap(), &s, "{}", json);
        }
    }

    #[test]
    fn writes_the_file_forms() {
        let cfg = OpConfig {
            kind: Some(OpKind::Database),
            timeout: Some(Duration::from_secs(10)),
            max_concurrent: Some(5),
            ..OpConfig::default()
        }
        .with_rate("100/s, 1000/h")
        .unwrap();
        let mut cfg = cfg;
        cfg.breaker.enabled = Some(true);
        cfg.breaker.failure_rate = Some(0.5);
        cfg.retry.base = Some(Duration::from_millis(100));
        assert_eq!(
            serde_json::to_value(&cfg).unwrap(),
            serde_json::json!({
                "kind": "database",
                "timeout": "10s",
                "rate": "100/s, 1000/h",
                "max_concurrent": 5,
                "retry": { "base": "100ms" },
                "breaker": { "enabled": true, "failure_rate": 0.5 },
            })
        );
        assert_eq!(
            serde_json::to_value(OpConfig::default()).unwrap(),
            serde_json::json!({})
        );
        assert_eq!(
            serde_json::to_value(Settings::default()).unwrap(),
            serde_json::json!({})
        );
    }

    /// Every value the file reader rejects is rejected with its message,
    /// the key path counted from the embedded value.
    #[test]
    fn errors_are_the_file_readers() {
        let cases = [
            ("timeout = \"ten\"", "`timeout` = \"ten\": `ten` is not a number"),
            ("rate = \"5/fortnight\"", "`rate` = \"5/fortnight\": unknown unit `fortnight`; expected one of: us, ms, s, m, min, h, d"),
            ("max_concurrent = 0", "`max_concurrent` = 0: must be at least 1"),
            ("max_concurent = 1", "`max_concurent` = 1: unknown field `max_concurent`; did you mean `max_concurrent`?"),
            ("overload = \"fifo\"", "`overload` = \"fifo\": unknown overload policy `fifo`; expected one of: drop_newest, drop_oldest, block"),
            ("[breaker]\nfailure_rat = 0.5", "`breaker.failure_rat` = 0.5: unknown field `failure_rat`"),
            ("[retry]\ntries = 2", "`retry.tries` = 2: unknown field; expected one of: retries, backoff, base, max"),
        ];
        for (text, expected) in cases {
            let in_file = format!("[ops.db]\n{}", text.replace('[', "[ops.db."));
            let file = settings_from_toml(&in_file, "limiter.toml", None)
                .unwrap_err()
                .to_string();
            let alone = toml::from_str::<OpConfig>(text).unwrap_err().to_string();
            assert!(alone.contains(expected), "{alone}");
            // The same reason as the file's, after the file's key path.
            let (_, reason) = expected.split_once(": ").unwrap();
            assert!(file.contains(reason), "{file}");
            let embedded = serde_json::from_value::<Settings>(serde_json::json!({
                "ops": { "db": toml::from_str::<toml::Table>(text).unwrap() }
            }))
            .unwrap_err()
            .to_string();
            assert_eq!(format!("limiter.toml: {embedded}"), file);
        }
        let e = serde_json::from_str::<BreakerConfig>(r#"{"recovery": "1x"}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("`recovery` = \"1x\": unknown unit `x`"),
            "{e}"
        );
        let e = serde_json::from_str::<RetryConfig>(r#"{"max": 3}"#).unwrap_err();
        assert!(e.to_string().starts_with("`max` = 3: missing unit"), "{e}");
        let e = serde_json::from_str::<RedisSettings>(r#"{"host": "x"}"#).unwrap_err();
        assert!(
            e.to_string().contains("unknown key; expected one of: url"),
            "{e}"
        );
    }
}
