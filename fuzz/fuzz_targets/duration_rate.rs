//! Durations and rates (`limiter_spec::{parse_duration, parse_seconds,
//! parse_rate, parse_rates}`) on any text (the input bytes, turned into
//! UTF-8 lossily, so non-UTF-8 input reaches the parsers too).
//!
//! Checks:
//! - no parser panics;
//! - an `Ok` duration is greater than zero, an `Ok` rate has a count and a
//!   period greater than zero (and a finite positive calls-per-second);
//! - round trips: `parse_duration(DisplayDuration(d))` is `d`, and
//!   `parse_rate(rate.to_string())` / `parse_rates` of the displayed windows
//!   give the same rates back;
//! - `parse_rates` yields one window per comma-separated element;
//! - a plain decimal is the same number of seconds for `parse_seconds(x)`
//!   and `parse_duration(x + "s")` (to the nanosecond, up to f64 precision).

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use limiter_runtime::spec::{
    parse_duration, parse_rate, parse_rates, parse_seconds, DisplayDuration, Rate,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check_duration(&text);
    check_seconds(&text);
    check_rate(&text);
    check_rates(&text);
});

fn check_duration(text: &str) {
    let Ok(d) = parse_duration(text) else { return };
    assert!(!d.is_zero(), "{text:?} parsed to a zero duration");
    let shown = DisplayDuration(d).to_string();
    assert_eq!(
        parse_duration(&shown),
        Ok(d),
        "{text:?} -> {d:?} displays as {shown:?}, which does not parse back"
    );
}

fn check_seconds(text: &str) {
    let seconds = parse_seconds(text);
    if let Ok(d) = seconds {
        assert!(!d.is_zero(), "{text:?} parsed to zero seconds");
    }
    let t = text.trim();
    let plain_decimal = t.bytes().any(|b| b.is_ascii_digit())
        && t.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && t.bytes().filter(|b| *b == b'.').count() <= 1;
    if !plain_decimal {
        return;
    }
    let with_unit = parse_duration(&format!("{t}s"));
    match (seconds, with_unit) {
        (Ok(a), Ok(b)) => {
            let diff = a.abs_diff(b);
            // Both read the number as f64 (52-bit mantissa) or better.
            let tolerance = Duration::from_nanos(1) + a / (1 << 25) / (1 << 25);
            assert!(
                diff <= tolerance,
                "{t:?}: parse_seconds gives {a:?}, parse_duration(\"{t}s\") gives {b:?}"
            );
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "{t:?}: different errors"),
        (a, b) => panic!("{t:?}: parse_seconds gives {a:?}, parse_duration(\"{t}s\") gives {b:?}"),
    }
}

fn check_rate_value(text: &str, r: &Rate) {
    assert!(r.count() > 0, "{text:?}: zero count");
    assert!(!r.period().is_zero(), "{text:?}: zero period");
    let per_second = r.per_second_f64();
    assert!(
        per_second.is_finite() && per_second > 0.0,
        "{text:?}: {per_second} calls per second"
    );
    let _ = r.interval();
}

fn check_rate(text: &str) {
    let Ok(r) = parse_rate(text) else { return };
    check_rate_value(text, &r);
    let shown = r.to_string();
    assert_eq!(
        parse_rate(&shown),
        Ok(r),
        "{text:?} -> {r:?} displays as {shown:?}, which does not parse back"
    );
}

fn check_rates(text: &str) {
    let Ok(windows) = parse_rates(text) else {
        return;
    };
    assert_eq!(
        windows.len(),
        text.split(',').count(),
        "{text:?}: one window per element"
    );
    for w in &windows {
        check_rate_value(text, w);
    }
    let shown = windows
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    assert_eq!(
        parse_rates(&shown),
        Ok(windows),
        "{text:?} displays as {shown:?}, which does not parse back"
    );
}
