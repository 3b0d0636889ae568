//! Configuration from a TOML file.
//!
//! ```toml
//! enabled = true
//! profile = "production"          # default profile; LIMITER_PROFILE wins
//!
//! [defaults]                      # registry-wide defaults layer
//! max_concurrent = 100
//! max_concurrent_per_key = 3
//! queue = 500
//! queue_per_key = 10
//! retry_after = "5s"
//!
//! [ops.db]                        # override layer of op `db`
//! kind = "database"
//! timeout = "10s"
//! rate = "100/s"                  # or ["60/min", "1000/h"]
//! max_concurrent = 20
//! [ops.db.breaker]
//! enabled = true
//! failure_rate = 0.5
//! recovery = "30s"
//! [ops.db.retry]
//! retries = 3
//! backoff = "exponential"
//! base = "100ms"
//!
//! [routes."GET /users/{id}"]      # routes are ops named by their route
//! timeout = "2s"
//!
//! [profiles.production]
//! scale = 2.0                     # multiplies the capacities this file sets
//! [profiles.production.ops.db]
//! timeout = "5s"
//!
//! [profiles.development]
//! enabled = false
//! ```
//!
//! Every key is checked: an unknown key or a bad value is an error naming
//! the file, the dotted key and the value.

use toml::{Table, Value};

use super::fields::{closest, set_field};
use super::types::OpConfig;
use super::Settings;
use crate::error::ConfigError;

/// Reads the settings of `path` with `profile` (or the file's own
/// `profile` key when `None`).
pub fn settings_from_file(
    path: impl AsRef<std::path::Path>,
    profile: Option<&str>,
) -> Result<Settings, ConfigError> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Syntax {
        file: file.clone(),
        message: format!("cannot read: {e}"),
        source: Some(std::sync::Arc::new(e)),
    })?;
    settings_from_toml(&text, &file, profile)
}

/// Reads settings from TOML text; `file` names it in errors.
///
/// ```
/// use limiter_runtime::config::settings_from_toml;
/// let s = settings_from_toml("[ops.db]\ntimeout = \"2s\"\n", "limiter.toml", None).unwrap();
/// assert!(s.ops["db"].timeout.is_some());
/// let err = settings_from_toml("[ops.db]\ntimeout = \"2x\"\n", "limiter.toml", None).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "limiter.toml: `ops.db.timeout` = \"2x\": unknown unit `x`; expected one of: us, ms, s, m, min, h, d"
/// );
/// ```
pub fn settings_from_toml(
    text: &str,
    file: &str,
    profile: Option<&str>,
) -> Result<Settings, ConfigError> {
    let table: Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            file: file.to_owned(),
            message: e.to_string().trim_end().to_owned(),
            source: Some(std::sync::Arc::new(e)),
        })?;
    settings_from_table(&table, file, profile)
}

/// Reads settings from a parsed table (a file's, or one a deserializer
/// gave); `file` names it in errors.
pub(super) fn settings_from_table(
    table: &Table,
    file: &str,
    profile: Option<&str>,
) -> Result<Settings, ConfigError> {
    let reader = Reader { file };
    let mut settings = Settings::default();
    let mut chosen = profile.map(str::to_owned);
    let mut profiles = None;
    for (key, value) in table {
        match key.as_str() {
            "enabled" => settings.enabled = Some(reader.boolean(key, value)?),
            "profile" => {
                let name = reader.string(key, value)?;
                chosen.get_or_insert(name);
            }
            "profiles" => profiles = Some(reader.table(key, value)?),
            "redis" => reader.redis(&mut settings, key, reader.table(key, value)?)?,
            _ => reader.section(
                &mut settings,
                key,
                key,
                value,
                &["enabled", "profile", "profiles", "redis"],
            )?,
        }
    }
    let Some(name) = chosen else {
        return Ok(settings);
    };
    let available = profiles
        .map(|p| p.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    let Some(profile) = profiles.and_then(|p| p.get(&name)) else {
        return Err(ConfigError::File {
            file: file.to_owned(),
            key: "profiles".into(),
            value: format!("{name:?}"),
            reason: format!(
                "no such profile; defined: {}",
                if available.is_empty() {
                    "none".to_owned()
                } else {
                    available.join(", ")
                }
            ),
        });
    };
    let base = format!("profiles.{name}");
    let profile = reader.table(&base, profile)?;
    let mut top = Settings::default();
    for (key, value) in profile {
        let path = format!("{base}.{key}");
        match key.as_str() {
            "enabled" => top.enabled = Some(reader.boolean(&path, value)?),
            "scale" => {
                let factor = match value {
                    Value::Float(f) => *f,
                    Value::Integer(i) => *i as f64,
                    _ => f64::NAN,
                };
                if !(factor.is_finite() && factor > 0.0) {
                    return Err(reader.bad(&path, value, "expected a number greater than zero"));
                }
                settings.defaults.scale_limits(factor);
                for cfg in settings.ops.values_mut() {
                    cfg.scale_limits(factor);
                }
            }
            _ => reader.section(&mut top, &path, key, value, &["enabled", "scale"])?,
        }
    }
    settings.overlay(&top);
    Ok(settings)
}

/// Reads the tables of a file into settings, naming `file` in errors.
pub(super) struct Reader<'a> {
    pub(super) file: &'a str,
}

/// `path.key`, or `key` at the top (a table given alone, not a file).
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl Reader<'_> {
    fn bad(&self, key: &str, value: &Value, reason: &str) -> ConfigError {
        ConfigError::File {
            file: self.file.to_owned(),
            key: key.to_owned(),
            value: value.to_string(),
            reason: reason.to_owned(),
        }
    }

    fn boolean(&self, key: &str, value: &Value) -> Result<bool, ConfigError> {
        value
            .as_bool()
            .ok_or_else(|| self.bad(key, value, "expected true or false"))
    }

    fn string(&self, key: &str, value: &Value) -> Result<String, ConfigError> {
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| self.bad(key, value, "expected a string"))
    }

    fn table<'v>(&self, key: &str, value: &'v Value) -> Result<&'v Table, ConfigError> {
        value
            .as_table()
            .ok_or_else(|| self.bad(key, value, "expected a table"))
    }

    /// The section `name` (`defaults`, `ops` or `routes`) at `path`, merged
    /// into `settings`. The name is the key as written, not the end of the
    /// path: a quoted key such as `"x.ops"` is no `ops` section.
    fn section(
        &self,
        settings: &mut Settings,
        path: &str,
        name: &str,
        value: &Value,
        others: &[&str],
    ) -> Result<(), ConfigError> {
        match name {
            "defaults" => self.op(&mut settings.defaults, path, self.table(path, value)?),
            "ops" | "routes" => {
                for (op, cfg) in self.table(path, value)? {
                    let op_path = format!("{path}.{}", quote_key(op));
                    let entry = settings.ops.entry(op.clone()).or_default();
                    self.op(entry, &op_path, self.table(&op_path, cfg)?)?;
                }
                Ok(())
            }
            other => {
                let mut known: Vec<&str> = others.to_vec();
                known.extend(["defaults", "ops", "routes"]);
                let hint = closest(other, &known)
                    .map(|c| format!(" did you mean `{c}`?"))
                    .unwrap_or_default();
                Err(self.bad(
                    path,
                    value,
                    &format!("unknown key;{hint} expected one of: {}", known.join(", ")),
                ))
            }
        }
    }

    /// The `[redis]` table: `url`, `prefix`, `timeout`, `lease_ttl`.
    pub(super) fn redis(
        &self,
        settings: &mut Settings,
        path: &str,
        table: &Table,
    ) -> Result<(), ConfigError> {
        for (key, value) in table {
            let key_path = join(path, key);
            match key.as_str() {
                "url" => settings.redis.url = Some(self.string(&key_path, value)?),
                "prefix" => settings.redis.prefix = Some(self.string(&key_path, value)?),
                "timeout" | "lease_ttl" => {
                    let text = self.string(&key_path, value)?;
                    let d = crate::spec::parse_duration(&text)
                        .map_err(|e| self.bad(&key_path, value, &e.to_string()))?;
                    match key.as_str() {
                        "timeout" => settings.redis.timeout = Some(d),
                        _ => settings.redis.lease_ttl = Some(d),
                    }
                }
                _ => {
                    return Err(self.bad(
                        &key_path,
                        value,
                        "unknown key; expected one of: url, prefix, timeout, lease_ttl",
                    ))
                }
            }
        }
        Ok(())
    }

    /// The fields of one op table.
    pub(super) fn op(
        &self,
        cfg: &mut OpConfig,
        path: &str,
        table: &Table,
    ) -> Result<(), ConfigError> {
        for (key, value) in table {
            let key_path = join(path, key);
            match (key.as_str(), value) {
                ("breaker", Value::Table(t)) => self.breaker(cfg, &key_path, t)?,
                ("retry", Value::Table(t)) => self.retry(cfg, &key_path, t)?,
                _ => self.field(cfg, &key_path, key, value)?,
            }
        }
        Ok(())
    }

    /// The `[ops.<name>.breaker]` table: the `breaker_*` fields without
    /// the prefix, `enabled` for `breaker`.
    pub(super) fn breaker(
        &self,
        cfg: &mut OpConfig,
        path: &str,
        table: &Table,
    ) -> Result<(), ConfigError> {
        for (k, v) in table {
            let field = if k == "enabled" {
                "breaker".to_owned()
            } else {
                format!("breaker_{k}")
            };
            self.field(cfg, &join(path, k), &field, v)?;
        }
        Ok(())
    }

    /// The `[ops.<name>.retry]` table: `retries`, `backoff`, `base`, `max`.
    pub(super) fn retry(
        &self,
        cfg: &mut OpConfig,
        path: &str,
        table: &Table,
    ) -> Result<(), ConfigError> {
        for (k, v) in table {
            let field = match k.as_str() {
                "retries" | "backoff" => k.clone(),
                "base" | "max" => format!("backoff_{k}"),
                other => {
                    return Err(self.bad(
                        &join(path, other),
                        v,
                        "unknown field; expected one of: retries, backoff, base, max",
                    ))
                }
            };
            self.field(cfg, &join(path, k), &field, v)?;
        }
        Ok(())
    }

    fn field(
        &self,
        cfg: &mut OpConfig,
        path: &str,
        field: &str,
        value: &Value,
    ) -> Result<(), ConfigError> {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Integer(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Boolean(b) => b.to_string(),
            Value::Array(items) if field.starts_with("rate") => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| self.bad(path, value, "expected an array of rate strings"))
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(", "),
            _ => return Err(self.bad(path, value, "expected a string, a number or a boolean")),
        };
        let reason = match set_field(cfg, field, &text) {
            Ok(()) => return Ok(()),
            Err(reason) if reason.starts_with("unknown field") => {
                // Report the name as written in the file (`failure_rate`, not `breaker_failure_rate`).
                let written = path.rsplit('.').next().unwrap_or(field);
                if written == field {
                    reason
                } else {
                    format!("unknown field `{written}`")
                }
            }
            Err(reason) => reason,
        };
        Err(self.bad(path, value, &reason))
    }
}

fn quote_key(key: &str) -> String {
    if key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SAMPLE: &str = r#"
enabled = true

[defaults]
max_concurrent = 100
queue = 50

[ops.db]
kind = "database"
timeout = "10s"
rate = ["60/min", "1000/h"]
max_concurrent = 20
[ops.db.breaker]
enabled = true
failure_rate = 0.5
recovery = "30s"
[ops.db.retry]
retries = 3
base = "50ms"

[routes."GET /users/{id}"]
timeout = "2s"

[profiles.production]
scale = 2.0
[profiles.production.ops.db]
timeout = "5s"

[profiles.development]
enabled = false
"#;

    #[test]
    fn reads_every_section() {
        let s = settings_from_toml(SAMPLE, "limiter.toml", None).unwrap();
        assert_eq!(s.enabled, Some(true));
        assert_eq!(s.defaults.max_concurrent, Some(100));
        let db = &s.ops["db"];
        assert_eq!(db.timeout, Some(Duration::from_secs(10)));
        assert_eq!(db.rate.as_ref().unwrap().len(), 2);
        assert_eq!(db.breaker.enabled, Some(true));
        assert_eq!(db.breaker.recovery, Some(Duration::from_secs(30)));
        assert_eq!(db.retry.retries, Some(3));
        assert_eq!(db.retry.base, Some(Duration::from_millis(50)));
        assert_eq!(
            s.ops["GET /users/{id}"].timeout,
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn profiles_scale_and_override() {
        let s = settings_from_toml(SAMPLE, "limiter.toml", Some("production")).unwrap();
        assert_eq!(s.defaults.max_concurrent, Some(200));
        assert_eq!(s.defaults.queue, Some(100));
        let db = &s.ops["db"];
        assert_eq!(db.max_concurrent, Some(40));
        assert_eq!(db.rate.as_ref().unwrap()[0].count(), 120);
        assert_eq!(db.timeout, Some(Duration::from_secs(5)));
        let dev = settings_from_toml(SAMPLE, "limiter.toml", Some("development")).unwrap();
        assert_eq!(dev.enabled, Some(false));
        let err = settings_from_toml(SAMPLE, "limiter.toml", Some("staging")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "limiter.toml: `profiles` = \"staging\": no such profile; defined: development, production"
        );
    }

    #[test]
    fn errors_name_file_key_and_value() {
        let cases = [
            ("[ops.db]\ntimeout = \"0s\"", "limiter.toml: `ops.db.timeout` = \"0s\": must be greater than zero"),
            ("[ops.db]\nrate = \"0/s\"", "limiter.toml: `ops.db.rate` = \"0/s\": must be greater than zero"),
            ("[ops.db]\noverload = \"fifo\"", "limiter.toml: `ops.db.overload` = \"fifo\": unknown overload policy `fifo`; expected one of: drop_newest, drop_oldest, block"),
            ("[ops.db]\nmax_concurrent = -1", "limiter.toml: `ops.db.max_concurrent` = -1: expected a whole number from 1 to 4294967295"),
            ("[ops.db.breaker]\nfailure_rat = 0.5", "limiter.toml: `ops.db.breaker.failure_rat` = 0.5: unknown field `failure_rat`"),
            ("[ops.db.retry]\ntries = 2", "limiter.toml: `ops.db.retry.tries` = 2: unknown field; expected one of: retries, backoff, base, max"),
            ("[opps.db]\ntimeout = \"1s\"", "limiter.toml: `opps` = { db = { timeout = \"1s\" } }: unknown key; did you mean `ops`? expected one of: enabled, profile, profiles, redis, defaults, ops, routes"),
            ("enabled = \"yes\"", "limiter.toml: `enabled` = \"yes\": expected true or false"),
            ("[profiles.production]\nscale = 0\n", ""),
        ];
        for (text, expected) in cases {
            let profile = text.contains("profiles").then_some("production");
            let err = settings_from_toml(text, "limiter.toml", profile)
                .unwrap_err()
                .to_string();
            if expected.is_empty() {
                assert!(
                    err.contains(
                        "`profiles.production.scale` = 0: expected a number greater than zero"
                    ),
                    "{err}"
                );
            } else {
                assert_eq!(err, expected);
            }
        }
    }

    /// Found by `fuzz/run.sh` (target `config_toml`): a quoted key whose
    /// text ends in `.ops`, `.routes` or `.defaults` was read as that
    /// section (the name was taken from the end of the dotted path).
    #[test]
    fn quoted_keys_that_look_like_paths_are_unknown() {
        for (text, profile) in [
            ("[\".routes\"]", None),
            ("[\"x.ops\".db]\ntimeout = \"1s\"", None),
            ("[profiles.p.\"x.defaults\"]\ntimeout = \"1s\"", Some("p")),
        ] {
            let err = settings_from_toml(text, "limiter.toml", profile).unwrap_err();
            assert!(err.to_string().contains("unknown key"), "{text}: {err}");
        }
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = settings_from_toml("[ops.db\ntimeout = 1", "limiter.toml", None).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("limiter.toml: "), "{text}");
        assert!(text.contains("line 1"), "{text}");
        // The parser's error is kept as the source.
        let source = std::error::Error::source(&err)
            .and_then(|s| s.downcast_ref::<toml::de::Error>())
            .expect("the toml error");
        assert!(text.ends_with(source.to_string().trim_end()), "{text}");
    }
}
