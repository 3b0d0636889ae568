//! The limiter's configuration inside a service's own, read with figment:
//! the same values as `settings_from_toml` on the equivalent
//! `limiter.toml`, and the same messages for bad values.

use std::collections::HashMap;
use std::error::Error as _;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use limiter::config::{settings_from_file, settings_from_toml};
use limiter::{BreakerConfig, ConfigError, OpConfig, OpKind, Settings};
use serde::Deserialize;

/// A service's configuration, with the limiter's in it.
#[derive(Debug, Deserialize)]
struct App {
    name: String,
    limiter: Settings,
}

/// A service that keeps only op layers.
#[derive(Debug, Deserialize)]
struct Ops {
    ops: HashMap<String, OpConfig>,
}

const LIMITER_TOML: &str = r#"
enabled = true

[defaults]
max_concurrent = 100
queue = 50

[ops.db]
kind = "database"
timeout = "2s"
rate = "100/s"
max_concurrent = 5
[ops.db.breaker]
enabled = true
failure_rate = 0.5
recovery = "30s"
consecutive_failures = 5
[ops.db.retry]
retries = 2
base = "50ms"

[routes."GET /users/{id}"]
timeout = "1s"
rate_per_key = "60/min, 1000/h"
"#;

/// `limiter` as a section of the service's file: every table under
/// `[limiter]`.
fn app_toml(limiter: &str) -> String {
    let nested = format!("\n{limiter}").replace("\n[", "\n[limiter.");
    let (top, tables) = nested.split_once("\n[").unwrap_or((&nested, ""));
    // Keys before the first table belong to `[limiter]` itself.
    format!("name = \"api\"\n[limiter]\n{top}\n[{tables}")
}

/// The service's configuration from `text`, or figment's message.
fn read_app(text: &str) -> Result<App, String> {
    Figment::new()
        .merge(Toml::string(text))
        .extract()
        .map_err(|e| e.to_string())
}

/// The file loader's message for `[ops.db]` holding `line`, without the
/// file name.
fn file_message(line: &str) -> String {
    let text = format!("[ops.db]\n{line}\n");
    let e = settings_from_toml(&text, "limiter.toml", None).unwrap_err();
    e.to_string()
        .strip_prefix("limiter.toml: ")
        .unwrap()
        .to_owned()
}

#[test]
fn embedded_settings_read_like_the_file() {
    let app = read_app(&app_toml(LIMITER_TOML)).unwrap();
    assert_eq!(app.name, "api");
    let file = settings_from_toml(LIMITER_TOML, "limiter.toml", None).unwrap();
    assert_eq!(app.limiter, file);
    let db = &app.limiter.ops["db"];
    assert_eq!(db.kind, Some(OpKind::Database));
    assert_eq!(db.timeout, Some(Duration::from_secs(2)));
    assert_eq!(db.rate.as_ref().unwrap()[0].count(), 100);
    assert_eq!(db.max_concurrent, Some(5));
    assert_eq!(db.breaker.failure_rate, Some(0.5));
    assert_eq!(db.breaker.recovery, Some(Duration::from_secs(30)));
    assert_eq!(db.breaker.consecutive_failures, Some(5));
    assert_eq!(db.retry.base, Some(Duration::from_millis(50)));
    assert_eq!(
        app.limiter.ops["GET /users/{id}"]
            .rate_per_key
            .as_ref()
            .unwrap()
            .len(),
        2
    );
    // What the registry takes.
    limiter::Registry::new().apply(&app.limiter).unwrap();
}

#[test]
fn op_layers_alone_read_like_the_file() {
    let ops: Ops = Figment::new()
        .merge(Toml::string(
            "[ops.db]\ntimeout = \"2s\"\nrate = \"100/s\"\nmax_concurrent = 5\n\
             [ops.db.breaker]\nfailure_rate = 0.5\n",
        ))
        .extract()
        .unwrap();
    let file = settings_from_toml(
        "[ops.db]\ntimeout = \"2s\"\nrate = \"100/s\"\nmax_concurrent = 5\n\
         [ops.db.breaker]\nfailure_rate = 0.5\n",
        "limiter.toml",
        None,
    )
    .unwrap();
    assert_eq!(ops.ops["db"], file.ops["db"]);
    let breaker: BreakerConfig = Figment::new()
        .merge(Toml::string("failure_rate = 0.25\nrecovery = \"1m\""))
        .extract()
        .unwrap();
    assert_eq!(breaker.failure_rate, Some(0.25));
    assert_eq!(breaker.recovery, Some(Duration::from_secs(60)));
}

#[test]
fn environment_overrides_with_the_same_spellings() {
    // Names no other test of this binary reads.
    std::env::set_var("SERDE_CONFIG_TEST_LIMITER__OPS__DB__TIMEOUT", "5s");
    std::env::set_var("SERDE_CONFIG_TEST_LIMITER__OPS__DB__MAX_CONCURRENT", "7");
    std::env::set_var("SERDE_CONFIG_TEST_LIMITER__OPS__DB__RATE", "10/s, 100/min");
    let app: App = Figment::new()
        .merge(Toml::string(&app_toml(LIMITER_TOML)))
        .merge(Env::prefixed("SERDE_CONFIG_TEST_").split("__"))
        .extract()
        .unwrap();
    let db = &app.limiter.ops["db"];
    assert_eq!(db.timeout, Some(Duration::from_secs(5)));
    assert_eq!(db.max_concurrent, Some(7));
    assert_eq!(db.rate.as_ref().unwrap().len(), 2);
    assert_eq!(db.breaker.failure_rate, Some(0.5));
    std::env::set_var("SERDE_CONFIG_TEST_BAD_LIMITER__OPS__DB__TIMEOUT", "soon");
    let e = Figment::new()
        .merge(Toml::string(&app_toml(LIMITER_TOML)))
        .merge(Env::prefixed("SERDE_CONFIG_TEST_BAD_").split("__"))
        .extract::<App>()
        .unwrap_err();
    let expected = file_message("timeout = \"soon\"");
    assert!(e.to_string().contains(&expected), "{e} / {expected}");
}

#[test]
fn bad_values_get_the_file_loaders_messages() {
    for line in [
        "timeout = \"ten\"",
        "rate = \"5/fortnight\"",
        "max_concurrent = 0",
        "max_concurent = 5",
        "overload = \"fifo\"",
        "kind = \"databse\"",
        "breaker = \"maybe\"",
    ] {
        let expected = file_message(line);
        let e = read_app(&app_toml(&format!("[ops.db]\n{line}\n"))).unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.contains(&expected),
            "{line}: {shown}\n  expected: {expected}"
        );
    }
    // The loader's own words, for the record.
    assert_eq!(
        file_message("max_concurent = 5").split(" expected one of").next(),
        Some("`ops.db.max_concurent` = 5: unknown field `max_concurent`; did you mean `max_concurrent`?")
    );
    assert_eq!(
        file_message("timeout = \"ten\""),
        "`ops.db.timeout` = \"ten\": `ten` is not a number"
    );
    assert_eq!(
        file_message("rate = \"5/fortnight\""),
        "`ops.db.rate` = \"5/fortnight\": unknown unit `fortnight`; expected one of: us, ms, s, m, min, h, d"
    );
    assert_eq!(
        file_message("max_concurrent = 0"),
        "`ops.db.max_concurrent` = 0: must be at least 1"
    );
    // In a nested table, and at the top of the section.
    let e = read_app(&app_toml("[ops.db.breaker]\nfailure_rate = 2.0\n")).unwrap_err();
    assert!(
        e.to_string()
            .contains("`ops.db.breaker.failure_rate` = 2.0: must be in (0, 1]"),
        "{e}"
    );
    let e = read_app(&app_toml("[opps.db]\ntimeout = \"1s\"\n")).unwrap_err();
    assert!(
        e.to_string().contains("unknown key; did you mean `ops`?"),
        "{e}"
    );
}

#[test]
fn serialized_settings_read_back() {
    let settings = settings_from_toml(LIMITER_TOML, "limiter.toml", None).unwrap();
    let again: Settings = Figment::from(Serialized::defaults(&settings))
        .extract()
        .unwrap();
    assert_eq!(again, settings);
    let json = serde_json::to_value(&settings).unwrap();
    assert_eq!(json["ops"]["db"]["timeout"], "2s");
    assert_eq!(json["ops"]["db"]["rate"], "100/s");
    assert_eq!(
        json["ops"]["GET /users/{id}"]["rate_per_key"],
        "60/min, 1000/h"
    );
    assert_eq!(json["ops"]["db"]["kind"], "database");
    assert_eq!(json["ops"]["db"]["breaker"]["failure_rate"], 0.5);
    assert_eq!(serde_json::from_value::<Settings>(json).unwrap(), settings);
}

#[test]
fn syntax_errors_keep_their_source() {
    let e = settings_from_toml("[ops.db\n", "limiter.toml", None).unwrap_err();
    assert!(matches!(e, ConfigError::Syntax { .. }));
    let source = e.source().expect("the parser's error");
    assert!(e.to_string().contains(source.to_string().trim_end()), "{e}");
    let e = settings_from_file("/nonexistent/limiter.toml", None).unwrap_err();
    let io = e
        .source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .expect("the io error");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert!(e
        .to_string()
        .starts_with("/nonexistent/limiter.toml: cannot read: "));
}
