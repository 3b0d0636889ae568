//! Path patterns of limiter rules, `http::PathPattern`: parsing and
//! `matches` on arbitrary pattern and path text, and on patterns built from
//! a path's own segments.
//!
//! Checks:
//! - no panic;
//! - a pattern that parses keeps its text: `as_str()` and `Display` give the
//!   input back, and parsing that again gives an equal pattern; an error
//!   names the pattern as written;
//! - `*` matches every path;
//! - a literal pattern (starting with `/`, no `{` or `}`) parses, matches its
//!   own text, and still matches with its slashes doubled and a trailing
//!   slash (empty segments are ignored);
//! - a pattern made from a path by turning some segments into `{param}`s,
//!   or its tail into `{*rest}`, matches that path; one with an extra
//!   literal segment does not.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use limiter_runtime::http::PathPattern;

#[derive(Arbitrary, Debug)]
struct Input {
    pattern: String,
    path: String,
    /// Segments of a generated path and, per segment, whether the
    /// generated pattern makes it a parameter.
    segments: Vec<(String, bool)>,
    /// Cut the generated pattern here with a catch-all.
    catch_all_at: Option<u8>,
}

fn check_raw(pattern: &str, path: &str) {
    match pattern.parse::<PathPattern>() {
        Ok(p) => {
            assert_eq!(p.as_str(), pattern);
            assert_eq!(p.to_string(), pattern);
            let again: PathPattern = p.as_str().parse().expect("as_str parses again");
            assert_eq!(again, p);
            assert_eq!(again.matches(path), p.matches(path));
        }
        Err(e) => {
            assert_eq!(e.pattern, pattern);
            assert!(!e.reason.is_empty());
        }
    }
    let any: PathPattern = "*".parse().expect("`*` parses");
    assert!(any.matches(path), "`*` must match {path:?}");

    let literal = pattern.starts_with('/') && !pattern.contains(['{', '}']);
    if literal {
        let p: PathPattern = pattern
            .parse()
            .unwrap_or_else(|e| panic!("literal {pattern:?} refused: {e}"));
        assert!(p.matches(pattern), "{pattern:?} does not match itself");
        let loose = format!("{}/", pattern.replace('/', "//"));
        assert!(p.matches(&loose), "{pattern:?} does not match {loose:?}");
    }
}

fn check_generated(input: &Input) {
    // Segments as a router would see them: non-empty, without `/`.
    let segs: Vec<(String, bool)> = input
        .segments
        .iter()
        .map(|(s, param)| (s.replace('/', ""), *param))
        .filter(|(s, _)| !s.is_empty())
        .collect();
    let path = format!(
        "/{}",
        segs.iter()
            .map(|(s, _)| s.as_str())
            .collect::<Vec<_>>()
            .join("/")
    );
    let cut = input
        .catch_all_at
        .map(|c| usize::from(c) % (segs.len() + 1));
    let mut parts = Vec::new();
    for (i, (seg, param)) in segs.iter().enumerate() {
        if cut == Some(i) {
            break;
        }
        if *param || seg.contains(['{', '}']) {
            parts.push(format!("{{p{i}}}"));
        } else {
            parts.push(seg.clone());
        }
    }
    if cut.is_some() {
        parts.push("{*rest}".to_owned());
    }
    let text = format!("/{}", parts.join("/"));
    let pattern: PathPattern = text
        .parse()
        .unwrap_or_else(|e| panic!("generated {text:?} refused: {e}"));
    assert!(pattern.matches(&path), "{text:?} does not match {path:?}");

    if cut.is_none() {
        let longer: PathPattern = format!("{text}/zz-extra")
            .parse()
            .expect("a literal segment appended parses");
        let longer_text = longer.as_str().to_owned();
        assert!(
            !longer.matches(&path),
            "{longer_text:?} matches the shorter {path:?}"
        );
    }
}

fuzz_target!(|input: Input| {
    check_raw(&input.pattern, &input.path);
    check_generated(&input);
});
