//! The VS Code TextMate grammar highlights every keyword, clause name, built-in and standard-library
//! function that the checker knows.

use std::path::Path;

/// Returns the whole words of the grammar's `match` patterns.
fn grammar_words() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../editors/vscode/syntaxes/npde.tmLanguage.json");
    let text = std::fs::read_to_string(&path).expect("the grammar is readable");
    let grammar: serde_json::Value = serde_json::from_str(&text).expect("the grammar is JSON");
    let mut patterns = Vec::new();
    collect_matches(&grammar, &mut patterns);
    patterns
        .iter()
        .flat_map(|p| p.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

fn collect_matches(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, item) in map {
                match item.as_str() {
                    Some(pattern) if key == "match" => out.push(pattern.to_string()),
                    _ => collect_matches(item, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| collect_matches(item, out)),
        _ => {}
    }
}

/// Returns whether `name` is one of `words`. The grammar writes `dt` and `dt2` as `dt2?`.
fn covered(words: &[String], name: &str) -> bool {
    let word = if name == "dt" { "dt2" } else { name };
    words.iter().any(|w| w == word)
}

#[test]
fn grammar_covers_language_names() {
    let words = grammar_words();
    let mut names: Vec<String> = npdec_sema::KEYWORDS.iter().map(|s| s.to_string()).collect();
    names.extend(npdec_sema::builtin_names().iter().map(|s| s.to_string()));
    // The clause names of `grid`, `data`, `solve` and `train`, as docs/language.md lists them.
    names.extend(
        [
            "in",
            "points",
            "step",
            "index",
            "image",
            "split",
            "scale",
            "pad",
            "shift",
            "using",
            "until",
            "every",
            "order",
            "loss",
            "optimizer",
            "epochs",
            "batch",
            "metrics",
            "l2",
            "gradient",
            "schedule",
        ]
        .map(str::to_string),
    );
    let stdlib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../stdlib");
    for entry in std::fs::read_dir(&stdlib).expect("the stdlib folder is readable") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("module");
        names.extend(text.lines().filter_map(|line| {
            let rest = line.strip_prefix("fn ")?;
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            Some(name)
        }));
    }
    let missing: Vec<&String> = names.iter().filter(|n| !covered(&words, n)).collect();
    assert!(missing.is_empty(), "the grammar lacks {missing:?}");
}
