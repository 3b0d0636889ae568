//! Path patterns of limiter rules, in axum's route-template syntax:
//! `/api/users/{id}`, `/files/{*path}`, or `*` for every path.
//!
//! Written here rather than taken from `matchit` (axum's router): a router
//! finds the one route of a path and refuses overlapping routes, while rules
//! overlap on purpose (`/auth/login` before `/{*rest}`) and are tried in
//! order. Matching ignores empty segments, so `/api//users/` is limited like
//! `/api/users`: a client cannot step around a rule with extra slashes.

use std::fmt;

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `{name}`: any one segment.
    Param,
    /// `{*name}`: any number of segments, also none; last only.
    CatchAll,
}

/// A parsed path pattern.
///
/// ```
/// use limiter_runtime::http::PathPattern;
/// let p: PathPattern = "/api/users/{id}".parse().unwrap();
/// assert!(p.matches("/api/users/42"));
/// assert!(!p.matches("/api/users/42/posts"));
/// let any: PathPattern = "/api/{*rest}".parse().unwrap();
/// assert!(any.matches("/api") && any.matches("/api/a/b"));
/// assert_eq!(
///     "/api/{id".parse::<PathPattern>().unwrap_err().to_string(),
///     "path pattern `/api/{id`: segment `{id` opens `{` without closing it"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    text: String,
    /// `None`: `*`, every path.
    segments: Option<Vec<Segment>>,
}

/// A path pattern that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path pattern `{pattern}`: {reason}")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

impl std::str::FromStr for PathPattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<Self, PatternError> {
        let err = |reason: String| PatternError {
            pattern: text.to_owned(),
            reason,
        };
        if text == "*" {
            return Ok(Self {
                text: text.into(),
                segments: None,
            });
        }
        if !text.starts_with('/') {
            return Err(err("must start with `/` (or be `*` for every path)".into()));
        }
        let parts: Vec<&str> = text.split('/').filter(|s| !s.is_empty()).collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let seg = if let Some(inner) = part.strip_prefix('{') {
                let Some(name) = inner.strip_suffix('}') else {
                    return Err(err(format!(
                        "segment `{part}` opens `{{` without closing it"
                    )));
                };
                let (catch_all, name) = match name.strip_prefix('*') {
                    Some(n) => (true, n),
                    None => (false, name),
                };
                if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    return Err(err(format!(
                        "segment `{part}`: a parameter needs a name of letters, digits and `_`"
                    )));
                }
                if catch_all && i + 1 != parts.len() {
                    return Err(err(format!(
                        "segment `{part}`: a catch-all must be the last segment"
                    )));
                }
                if catch_all {
                    Segment::CatchAll
                } else {
                    Segment::Param
                }
            } else if part.contains(['{', '}']) {
                return Err(err(format!(
                    "segment `{part}`: a parameter must be a whole segment, like `{{id}}`"
                )));
            } else {
                Segment::Literal((*part).to_owned())
            };
            segments.push(seg);
        }
        Ok(Self {
            text: text.to_owned(),
            segments: Some(segments),
        })
    }
}

impl PathPattern {
    /// Whether `path` (without query) matches.
    pub fn matches(&self, path: &str) -> bool {
        let Some(segments) = &self.segments else {
            return true;
        };
        let mut parts = path.split('/').filter(|s| !s.is_empty());
        for seg in segments {
            match seg {
                Segment::CatchAll => return true,
                Segment::Param => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Segment::Literal(lit) => {
                    if parts.next() != Some(lit.as_str()) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathPattern {
        s.parse().unwrap()
    }

    #[test]
    fn matching() {
        assert!(p("*").matches("/anything/at/all"));
        assert!(p("/").matches("/"));
        assert!(!p("/").matches("/a"));
        assert!(p("/auth/login").matches("/auth/login"));
        assert!(p("/auth/login").matches("//auth///login/"));
        assert!(!p("/auth/login").matches("/auth/logout"));
        assert!(p("/u/{id}/posts").matches("/u/7/posts"));
        assert!(!p("/u/{id}/posts").matches("/u/posts"));
        assert!(p("/{*rest}").matches("/"));
        assert!(p("/files/{*path}").matches("/files/a/b/c.txt"));
    }

    #[test]
    fn errors_name_the_segment() {
        for (bad, reason) in [
            ("api", "must start with `/`"),
            ("/a/{}", "needs a name"),
            ("/a/{*rest}/b", "catch-all must be the last"),
            ("/a/x{id}", "must be a whole segment"),
        ] {
            let e = bad.parse::<PathPattern>().unwrap_err().to_string();
            assert!(e.contains(reason), "{bad}: {e}");
        }
    }
}
