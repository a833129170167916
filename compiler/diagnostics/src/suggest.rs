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

/// Returns the edit distance between `a` and `b`, where an edit inserts, deletes or replaces one
/// character or swaps two neighbours (the optimal string alignment distance).
fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut before_previous: Vec<usize> = Vec::new();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            let mut best = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
            if i > 0 && j > 0 && *ca == b[j - 1] && a[i - 1] == *cb {
                best = best.min(before_previous[j - 1] + 1);
            }
            current.push(best);
        }
        before_previous = std::mem::replace(&mut previous, current);
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
        assert_eq!(closest("adma", ["adam", "sgd"]), Some("adam"));
    }
}
