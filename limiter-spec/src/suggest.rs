//! "Did you mean" suggestions.

/// The candidate closest to `name` by edit distance, if it is close enough
/// to be a typo: the "did you mean" of every error about a name.
///
/// ```
/// assert_eq!(limiter_spec::closest("timout", &["rate", "timeout"]), Some("timeout"));
/// assert_eq!(limiter_spec::closest("zzz", &["rate", "timeout"]), None);
/// ```
pub fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}
