//! "Did you mean" suggestions by edit distance.

/// Returns the candidate closest to `name`, if it is close enough to be a likely typo.
///
/// A candidate must keep at least one character of `name` in place, so a one-letter name such as `u`
/// is never "corrected" to an unrelated one-letter name such as `t`.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let length = name.chars().count();
    let limit = (length / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (levenshtein(name, c), c))
        .filter(|(d, c)| *d <= limit && *d < length.max(c.chars().count()))
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_typos() {
        assert_eq!(closest("lapalce", ["laplace", "diff"]), Some("laplace"));
        assert_eq!(closest("zzz", ["laplace", "diff"]), None);
        assert_eq!(closest("u", ["t", "pi"]), None);
        assert_eq!(closest("nuu", ["nu"]), Some("nu"));
    }
}
