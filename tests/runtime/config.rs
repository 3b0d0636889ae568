use std::io::Write;

use limiter::config::{settings_from_file, settings_from_toml, settings_from_vars};
use limiter::{ConfigError, OpConfig, OpKind, OverloadPolicy, Rate, Registry};

use super::*;

fn env(pairs: &[(&str, &str)]) -> Result<limiter::Settings, ConfigError> {
    settings_from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

#[test]
fn environment_applies_defaults_and_ops() {
    let reg = Registry::new();
    let existing = reg.op("api");
    let s = env(&[
        ("LIMITS_MAX_CONCURRENT_GLOBAL", "42"),
        ("LIMITS_OVERLOAD_POLICY", "block"),
        ("LIMITER_OP_DB_KIND", "database"),
        ("LIMITER_OP_DB_TIMEOUT", "3s"),
        ("LIMITS_ENABLED", "false"),
    ])
    .unwrap();
    reg.apply(&s).unwrap();
    assert!(!reg.is_enabled());
    assert_eq!(existing.config().max_concurrent, 42);
    assert_eq!(existing.config().overload, OverloadPolicy::Block);
    let db = reg.op("db").config();
    assert_eq!(db.kind, Some(OpKind::Database));
    assert_eq!(db.timeout, Some(secs(3)));
    assert_eq!(
        db.max_concurrent, 20,
        "the database preset wins over the global default"
    );
}

#[test]
fn file_applies_with_profile() {
    let dir = std::env::temp_dir().join(format!("limiter-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("limiter.toml");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(
        f,
        "profile = \"production\"\n[ops.search]\nmax_concurrent = 10\nrate = \"50/s\"\n\
         [profiles.production]\nscale = 3\n[profiles.development]\nenabled = false"
    )
    .unwrap();
    let s = settings_from_file(&path, None).unwrap();
    let reg = Registry::new();
    reg.apply(&s).unwrap();
    let search = reg.op("search").config();
    assert_eq!(search.max_concurrent, 30);
    assert_eq!(
        search.rate.unwrap().windows[0],
        Rate::per_second(150).unwrap()
    );
    let dev = settings_from_file(&path, Some("development")).unwrap();
    assert_eq!(dev.enabled, Some(false));
    let missing = settings_from_file(dir.join("nope.toml"), None).unwrap_err();
    assert!(
        missing.to_string().contains("nope.toml: cannot read"),
        "{missing}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_configuration_is_an_error_naming_field_and_value() {
    // Zero rate.
    assert_eq!(
        OpConfig::default()
            .with_rate("0/s")
            .unwrap_err()
            .to_string(),
        "must be greater than zero"
    );
    assert!(Rate::new(0, secs(1)).is_err());
    let e = env(&[("RATE_LIMIT_REQUESTS_PER_MINUTE", "0")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "environment variable RATE_LIMIT_REQUESTS_PER_MINUTE=\"0\": must be at least 1"
    );
    // Zero timeout, from code and from each source.
    let reg = Registry::new();
    let e = reg
        .configure(
            "db",
            OpConfig {
                timeout: Some(Duration::ZERO),
                ..OpConfig::default()
            },
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "op `db`: timeout = 0s: must be greater than zero"
    );
    let e = env(&[("LIMITER_OP_DB_TIMEOUT", "0ms")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "environment variable LIMITER_OP_DB_TIMEOUT=\"0ms\": must be greater than zero"
    );
    // Unknown overload policy.
    let e = env(&[("LIMITS_OVERLOAD_POLICY", "random")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "environment variable LIMITS_OVERLOAD_POLICY=\"random\": unknown overload policy `random`; expected one of: drop_newest, drop_oldest, block"
    );
    // Malformed LIMITS_* values.
    for (var, value) in [
        ("LIMITS_MAX_CONCURRENT_PER_USER", "three"),
        ("LIMITS_MAX_QUEUE_SIZE_PER_USER", "-1"),
        ("LIMITS_MAX_QUEUE_SIZE_GLOBAL", "1e3"),
        ("LIMITS_RETRY_AFTER_SECONDS", "soon"),
        ("LIMITS_QUEUE_TIMEOUT_SECONDS", ""),
        ("LIMITS_ENABLED", "enabled"),
    ] {
        let e = env(&[(var, value)]).unwrap_err();
        match &e {
            ConfigError::Env {
                var: v, value: val, ..
            } => assert_eq!((v.as_str(), val.as_str()), (var, value)),
            other => panic!("{var}: {other:?}"),
        }
        assert!(e
            .to_string()
            .starts_with(&format!("environment variable {var}={value:?}: ")));
    }
    // Malformed TOML: syntax and values.
    let e = settings_from_toml("[ops.db\n", "limiter.toml", None).unwrap_err();
    assert!(matches!(e, ConfigError::Syntax { .. }));
    assert!(e.to_string().starts_with("limiter.toml: "));
    let e = settings_from_toml("[ops.db]\nqueue_timeout = \"soon\"\n", "limiter.toml", None)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "limiter.toml: `ops.db.queue_timeout` = \"soon\": `soon` is not a number"
    );
    // A combination that only the merged layers can reject.
    let s = settings_from_toml(
        "[ops.db]\nbreaker = { enabled = true, min_calls = 50, window = 10 }\n",
        "limiter.toml",
        None,
    )
    .unwrap();
    let e = Registry::new().apply(&s).unwrap_err();
    assert_eq!(
        e.to_string(),
        "op `db`: breaker.min_calls = 50: must not exceed breaker.window (10), or the breaker could never open"
    );
}

/// An op moved to Redis by configuration while no Redis is configured is a
/// start-up error naming the op and the fix, not a silent fallback on every
/// call.
#[test]
fn a_redis_backend_without_a_redis_is_a_startup_error() {
    let vars = [("LIMITER_OP_FILES_BACKEND", "redis")];
    let s = settings_from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
    let reg = limiter::Registry::new();
    let err = reg.apply(&s).unwrap_err().to_string();
    assert!(
        err.contains("files") && err.contains("backend") && err.contains("LIMITER_REDIS_URL"),
        "{err}"
    );
    assert_eq!(
        reg.op("files").config().backend,
        limiter::Backend::Local,
        "nothing applied"
    );
}
