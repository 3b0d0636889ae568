//! Prometheus text exposition (format 0.0.4) of a registry: ops, routes,
//! limiter-layer rules, alerts and background tasks.

use std::fmt::Write;

use super::Counts;

/// Histogram bucket bounds, in seconds (Prometheus' defaults plus the
/// sub-millisecond bounds a limiter's fast paths need).
const BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Writes metric families. Each family's `# HELP`/`# TYPE` comes once,
/// before its samples, as the format requires.
pub(crate) struct Exposition {
    out: String,
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(value: &str) -> String {
    let mut s = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// A sample value: integers print as integers, others in Go's float syntax.
fn value(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v}")
    }
}

impl Exposition {
    pub(crate) fn new() -> Self {
        Self { out: String::new() }
    }

    /// Starts a family.
    pub(crate) fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        self
    }

    /// One sample of the current family.
    pub(crate) fn sample(&mut self, name: &str, pairs: &[(&str, &str)], v: f64) -> &mut Self {
        let _ = writeln!(self.out, "{name}{} {}", labels(pairs), value(v));
        self
    }

    /// The samples of one histogram series (latencies in nanoseconds,
    /// exposed in seconds).
    pub(crate) fn histogram(&mut self, name: &str, pairs: &[(&str, &str)], counts: &Counts) {
        for bound in BOUNDS {
            let le = format!("{bound}");
            let mut with = pairs.to_vec();
            with.push(("le", &le));
            let n = counts.at_most((bound * 1e9) as u64);
            self.sample(&format!("{name}_bucket"), &with, n as f64);
        }
        let mut with = pairs.to_vec();
        with.push(("le", "+Inf"));
        self.sample(&format!("{name}_bucket"), &with, counts.count() as f64);
        self.sample(&format!("{name}_sum"), pairs, counts.sum() as f64 / 1e9);
        self.sample(&format!("{name}_count"), pairs, counts.count() as f64);
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            labels(&[("route", "/a\"b\\c\nd")]),
            r#"{route="/a\"b\\c\nd"}"#
        );
        assert_eq!(value(3.0), "3");
        assert_eq!(value(0.25), "0.25");
        assert_eq!(value(f64::INFINITY), "+Inf");
    }
}
