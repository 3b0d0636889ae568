//! The configuration file reader, `config::settings_from_toml`, on
//! arbitrary text and on structured documents built from the known keys
//! (`enabled`, `profile`, `[defaults]`, `[ops.<name>]`, `[routes."<name>"]`,
//! `[ops.<name>.breaker]`, `[ops.<name>.retry]`, `[redis]`,
//! `[profiles.<name>]` with `scale`) and values that are either valid for
//! their key or arbitrary.
//!
//! Checks:
//! - no panic: every bad input is an `Err` whose message starts with the
//!   file name;
//! - `Ok` settings resolve (`OpConfig::resolve`, the defaults alone and
//!   each op over them) without panicking; a resolution error is
//!   `ConfigError::Invalid`;
//! - a structured document with a key the reader does not know (at the top
//!   level or in the chosen profile) is refused;
//! - a structured document whose every key is known and every value valid
//!   for its key is accepted, and its settings hold exactly the ops it
//!   names (the main sections' and the chosen profile's), with the
//!   `enabled` the document gives.

#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use limiter_fuzz::{valid_duration, valid_toml, FIELDS};
use limiter_runtime::config::settings_from_toml;
use limiter_runtime::{ConfigError, OpConfig, Settings};
use toml::{Table, Value};

const FILE: &str = "fuzz.toml";

#[derive(Arbitrary, Debug)]
enum Input {
    /// Any text.
    Raw(String),
    /// A document built from the known keys.
    Doc(Doc),
}

#[derive(Arbitrary, Debug)]
struct Doc {
    enabled: Option<bool>,
    sections: Sections,
    redis: Option<Vec<(RedisKey, Leaf)>>,
    profiles: Vec<(String, Profile)>,
    /// The top-level `profile = "..."` key.
    profile_key: Option<ProfileRef>,
    /// The `profile` argument (wins over the key).
    profile_arg: Option<ProfileRef>,
    /// Arbitrary top-level keys, most of them wrong.
    extra: Vec<(Key, RawValue)>,
}

#[derive(Arbitrary, Debug)]
struct Sections {
    defaults: Option<Vec<Entry>>,
    ops: Vec<(String, Vec<Entry>)>,
    routes: Vec<(String, Vec<Entry>)>,
}

#[derive(Arbitrary, Debug)]
struct Profile {
    enabled: Option<bool>,
    scale: Option<Scale>,
    sections: Sections,
    /// Arbitrary keys, most of them wrong.
    extra: Vec<(Key, RawValue)>,
}

/// A key of the document's own choosing.
#[derive(Arbitrary, Debug)]
enum Key {
    Raw(String),
    /// `<prefix>.<a known key>`, one quoted key that only looks like a path.
    Dotted(String, u8),
}

impl Key {
    fn text(&self) -> String {
        match self {
            Key::Raw(k) => k.clone(),
            Key::Dotted(prefix, i) => format!("{prefix}.{}", pick(TOP_KEYS, *i)),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Scale {
    /// A factor in (0, 16].
    Valid(u16),
    Raw(RawValue),
}

#[derive(Arbitrary, Debug)]
enum ProfileRef {
    /// The n-th generated profile (if there is one).
    Defined(u8),
    Named(String),
}

#[derive(Arbitrary, Debug)]
enum RedisKey {
    Url,
    Prefix,
    Timeout,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Entry {
    /// `field = value` in the op table.
    Flat(u8, Leaf),
    /// `[…breaker]` `enabled`/`failure_rate`/… (the field without `breaker_`).
    Breaker(u8, Leaf),
    /// `[…retry]` `retries`/`backoff`/`base`/`max`.
    Retry(u8, Leaf),
    /// Any key.
    Unknown(String, RawValue),
}

#[derive(Arbitrary, Debug)]
enum Leaf {
    /// A value valid for the key, chosen by the seed.
    Valid(u32),
    Raw(RawValue),
}

#[derive(Arbitrary, Debug, Clone)]
enum RawValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Strings(Vec<String>),
    Table(Vec<(String, String)>),
}

impl RawValue {
    fn to_toml(&self) -> Value {
        match self {
            RawValue::Str(s) => Value::String(s.clone()),
            RawValue::Int(i) => Value::Integer(*i),
            RawValue::Float(f) => Value::Float(*f),
            RawValue::Bool(b) => Value::Boolean(*b),
            RawValue::Strings(v) => Value::Array(v.iter().cloned().map(Value::String).collect()),
            RawValue::Table(kv) => Value::Table(
                kv.iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
        }
    }
}

const BREAKER_KEYS: &[&str] = &[
    "enabled",
    "failure_rate",
    "min_calls",
    "window",
    "slow_call",
    "recovery",
    "half_open_calls",
    "success_threshold",
    "consecutive_failures",
];
const RETRY_KEYS: &[(&str, &str)] = &[
    ("retries", "retries"),
    ("backoff", "backoff"),
    ("base", "backoff_base"),
    ("max", "backoff_max"),
];

fn pick<T: Copy>(items: &[T], i: u8) -> T {
    items[usize::from(i) % items.len()]
}

/// A TOML value and whether it is valid for its key.
type Checked = (Value, bool);

fn leaf(field: &str, leaf: &Leaf) -> Checked {
    match leaf {
        Leaf::Valid(seed) => (valid_toml(field, *seed), true),
        Leaf::Raw(raw) => (raw.to_toml(), false),
    }
}

/// The table of one op (or of `defaults`).
fn op_table(entries: &[Entry]) -> (Table, bool) {
    let mut flat: BTreeMap<String, Checked> = BTreeMap::new();
    let mut sub: BTreeMap<&str, BTreeMap<String, Checked>> = BTreeMap::new();
    for entry in entries {
        match entry {
            Entry::Flat(i, l) => {
                let field = pick(FIELDS, *i);
                flat.insert(field.to_owned(), leaf(field, l));
            }
            Entry::Breaker(i, l) => {
                let key = pick(BREAKER_KEYS, *i);
                let field = if key == "enabled" {
                    "breaker".to_owned()
                } else {
                    format!("breaker_{key}")
                };
                let checked = leaf(&field, l);
                sub.entry("breaker")
                    .or_default()
                    .insert(key.to_owned(), checked);
            }
            Entry::Retry(i, l) => {
                let (key, field) = pick(RETRY_KEYS, *i);
                sub.entry("retry")
                    .or_default()
                    .insert(key.to_owned(), leaf(field, l));
            }
            Entry::Unknown(key, raw) => {
                flat.insert(key.clone(), (raw.to_toml(), false));
            }
        }
    }
    // A sub-table replaces a flat key of the same name.
    for name in sub.keys() {
        flat.remove(*name);
    }
    let mut all_valid = true;
    let mut out = Table::new();
    for (key, (value, valid)) in flat {
        all_valid &= valid;
        out.insert(key, value);
    }
    for (name, leaves) in sub {
        let mut t = Table::new();
        for (key, (value, valid)) in leaves {
            all_valid &= valid;
            t.insert(key, value);
        }
        out.insert(name.to_owned(), Value::Table(t));
    }
    (out, all_valid)
}

/// Adds `defaults`, `ops` and `routes` to `table`; returns whether every
/// leaf is valid and the op names.
fn add_sections(table: &mut Table, s: &Sections) -> (bool, BTreeSet<String>) {
    let mut all_valid = true;
    let mut names = BTreeSet::new();
    if let Some(entries) = &s.defaults {
        let (t, valid) = op_table(entries);
        all_valid &= valid;
        table.insert("defaults".into(), Value::Table(t));
    }
    for (key, ops) in [("ops", &s.ops), ("routes", &s.routes)] {
        if ops.is_empty() {
            continue;
        }
        // A name given twice: the last table wins, as in a map.
        let mut section: BTreeMap<&String, Checked> = BTreeMap::new();
        for (name, entries) in ops {
            let (t, valid) = op_table(entries);
            section.insert(name, (Value::Table(t), valid));
        }
        let mut t = Table::new();
        for (name, (value, valid)) in section {
            all_valid &= valid;
            names.insert(name.clone());
            t.insert(name.clone(), value);
        }
        table.insert(key.into(), Value::Table(t));
    }
    (all_valid, names)
}

fn redis_table(entries: &[(RedisKey, Leaf)]) -> (Table, bool) {
    let mut leaves: BTreeMap<String, Checked> = BTreeMap::new();
    for (key, l) in entries {
        let (name, valid_value) = match key {
            RedisKey::Url => ("url", Value::String(format!("redis://h:{}", seed_of(l)))),
            RedisKey::Prefix => ("prefix", Value::String(format!("app{}", seed_of(l)))),
            RedisKey::Timeout => ("timeout", Value::String(valid_duration(seed_of(l)))),
            RedisKey::Other(k) => {
                leaves.insert(k.clone(), (Value::Boolean(true), false));
                continue;
            }
        };
        let checked = match l {
            Leaf::Valid(_) => (valid_value, true),
            Leaf::Raw(raw) => (raw.to_toml(), false),
        };
        leaves.insert(name.to_owned(), checked);
    }
    let mut all_valid = true;
    let mut t = Table::new();
    for (key, (value, valid)) in leaves {
        all_valid &= valid;
        t.insert(key, value);
    }
    (t, all_valid)
}

fn seed_of(l: &Leaf) -> u32 {
    match l {
        Leaf::Valid(seed) => *seed,
        Leaf::Raw(_) => 0,
    }
}

/// A profile's table, whether its leaves are valid, whether it has a key
/// the reader does not know, and its op names.
fn profile_table(p: &Profile) -> (Table, bool, bool, BTreeSet<String>) {
    let mut t = Table::new();
    let mut all_valid = true;
    if let Some(e) = p.enabled {
        t.insert("enabled".into(), Value::Boolean(e));
    }
    match &p.scale {
        None => {}
        Some(Scale::Valid(n)) => {
            t.insert(
                "scale".into(),
                Value::Float(f64::from(n % 1600 + 1) / 100.0),
            );
        }
        Some(Scale::Raw(raw)) => {
            all_valid = false;
            t.insert("scale".into(), raw.to_toml());
        }
    }
    let (valid, ops) = add_sections(&mut t, &p.sections);
    let unknown_key = add_extra(&mut t, &p.extra, PROFILE_KEYS);
    (
        t,
        all_valid && valid && p.extra.is_empty(),
        unknown_key,
        ops,
    )
}

/// Adds the keys of `extra` that `table` does not have yet; returns
/// whether one of them is none of `known`.
fn add_extra(table: &mut Table, extra: &[(Key, RawValue)], known: &[&str]) -> bool {
    let mut unknown_key = false;
    for (key, raw) in extra {
        let key = key.text();
        if !table.contains_key(&key) {
            unknown_key |= !known.contains(&key.as_str());
            table.insert(key, raw.to_toml());
        }
    }
    unknown_key
}

/// What a structured document must give when every leaf is valid.
struct Expected {
    all_valid: bool,
    enabled: Option<bool>,
    ops: BTreeSet<String>,
    /// The profile asked for is not defined.
    missing_profile: bool,
    /// The document has a key the reader does not know (at the top level
    /// or in the chosen profile).
    unknown_key: bool,
}

/// The top-level keys of the file format.
const TOP_KEYS: &[&str] = &[
    "enabled", "profile", "profiles", "redis", "defaults", "ops", "routes",
];
/// The keys of a `[profiles.<name>]` table.
const PROFILE_KEYS: &[&str] = &["enabled", "scale", "defaults", "ops", "routes"];

/// The document's text, the `profile` argument, and what it must give.
fn build(doc: &Doc) -> Option<(String, Option<String>, Expected)> {
    let mut root = Table::new();
    if let Some(e) = doc.enabled {
        root.insert("enabled".into(), Value::Boolean(e));
    }
    let (mut all_valid, mut ops) = add_sections(&mut root, &doc.sections);
    if let Some(entries) = &doc.redis {
        let (t, valid) = redis_table(entries);
        all_valid &= valid;
        root.insert("redis".into(), Value::Table(t));
    }

    // Profiles: the last of a name wins, and only the chosen one is read.
    let mut profiles: BTreeMap<&String, &Profile> = BTreeMap::new();
    for (name, p) in &doc.profiles {
        profiles.insert(name, p);
    }
    let names: Vec<&String> = profiles.keys().copied().collect();
    let resolve = |r: &ProfileRef| match r {
        ProfileRef::Defined(i) if !names.is_empty() => names[usize::from(*i) % names.len()].clone(),
        ProfileRef::Defined(_) => "undefined".to_owned(),
        ProfileRef::Named(n) => n.clone(),
    };
    let key = doc.profile_key.as_ref().map(resolve);
    let arg = doc.profile_arg.as_ref().map(resolve);
    if let Some(k) = &key {
        root.insert("profile".into(), Value::String(k.clone()));
    }
    let chosen = arg.clone().or(key);
    let mut enabled = doc.enabled;
    let mut unknown_key = false;
    let mut missing_profile = chosen.is_some();
    if !profiles.is_empty() {
        let mut t = Table::new();
        for (name, p) in profiles {
            let (table, valid, unknown, profile_ops) = profile_table(p);
            if chosen.as_ref() == Some(name) {
                missing_profile = false;
                all_valid &= valid;
                unknown_key |= unknown;
                enabled = p.enabled.or(enabled);
                ops.extend(profile_ops);
            }
            t.insert(name.clone(), Value::Table(table));
        }
        root.insert("profiles".into(), Value::Table(t));
    }
    unknown_key |= add_extra(&mut root, &doc.extra, TOP_KEYS);
    // A document the serializer cannot write is not one to test.
    let text = toml::to_string(&root).ok()?;
    let expected = Expected {
        all_valid: all_valid && doc.extra.is_empty(),
        enabled,
        ops,
        missing_profile,
        unknown_key,
    };
    Some((text, arg, expected))
}

fn check_resolves(settings: &Settings) {
    let check = |name: &str, layers: &[&OpConfig]| {
        if let Err(e) = OpConfig::resolve(name, layers) {
            assert!(
                matches!(e, ConfigError::Invalid { .. }),
                "resolving {name:?}: {e:?}"
            );
            assert!(!e.to_string().is_empty());
        }
    };
    check("<defaults>", &[&settings.defaults]);
    for (name, cfg) in &settings.ops {
        check(name, &[&settings.defaults, cfg]);
    }
}

fn check_text(text: &str, profile: Option<&str>) -> Result<Settings, ConfigError> {
    let result = settings_from_toml(text, FILE, profile);
    match &result {
        Ok(settings) => check_resolves(settings),
        Err(e) => {
            assert!(
                matches!(e, ConfigError::File { .. } | ConfigError::Syntax { .. }),
                "{e:?}"
            );
            let shown = e.to_string();
            assert!(shown.starts_with("fuzz.toml: "), "{shown}");
        }
    }
    result
}

fuzz_target!(|input: Input| {
    match input {
        Input::Raw(text) => {
            let _ = check_text(&text, None);
        }
        Input::Doc(doc) => {
            let Some((text, profile, expected)) = build(&doc) else {
                return;
            };
            let result = check_text(&text, profile.as_deref());
            if expected.unknown_key {
                assert!(result.is_err(), "{text}\nan unknown key was accepted");
            }
            if !expected.all_valid {
                return;
            }
            if expected.missing_profile {
                assert!(
                    result.is_err(),
                    "{text}\nprofile {profile:?} is not defined"
                );
                return;
            }
            let settings = result.unwrap_or_else(|e| panic!("{text}\nvalid document refused: {e}"));
            assert_eq!(settings.enabled, expected.enabled, "{text}");
            let ops: BTreeSet<String> = settings.ops.keys().cloned().collect();
            assert_eq!(ops, expected.ops, "{text}");
        }
    }
});
