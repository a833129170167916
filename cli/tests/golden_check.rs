//! Golden tests of `npdec check`: every program under `tests/check/err` and `tests/check/ok` is
//! checked by the built binary, and its standard error must match the `.stderr` file next to it byte
//! for byte. `NPDEC_BLESS=1 cargo test -p npdec --test golden_check` rewrites the golden files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the cli crate sits in the repository root")
        .to_path_buf()
}

/// Returns the `.npde` files of a folder under `tests/check`, relative to the repository root.
fn programs(folder: &str) -> Vec<PathBuf> {
    let relative = Path::new("tests/check").join(folder);
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join(&relative))
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", relative.display()))
        .map(|entry| entry.expect("readable folder entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "npde"))
        .map(|path| relative.join(path.file_name().expect("a file name")))
        .collect();
    files.sort();
    files
}

/// Runs `npdec check` on a program, from the repository root so paths in the output are stable.
fn check(program: &Path) -> (String, Option<i32>) {
    let output = Command::new(env!("CARGO_BIN_EXE_npdec"))
        .arg("check")
        .arg(program)
        .current_dir(repo_root())
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("the npdec binary runs");
    (
        String::from_utf8(output.stderr).expect("diagnostics are UTF-8"),
        output.status.code(),
    )
}

/// Formats a line diff of `expected` against `actual`, marking removed lines `-` and added ones `+`.
fn line_diff(expected: &str, actual: &str) -> String {
    let old: Vec<&str> = expected.lines().collect();
    let new: Vec<&str> = actual.lines().collect();
    // Longest common subsequence table, filled from the end.
    let mut common = vec![vec![0usize; new.len() + 1]; old.len() + 1];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            common[i][j] = if old[i] == new[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = String::new();
    while i < old.len() || j < new.len() {
        if i < old.len() && j < new.len() && old[i] == new[j] {
            out.push_str(&format!("  {}\n", old[i]));
            i += 1;
            j += 1;
        } else if j < new.len() && (i == old.len() || common[i][j + 1] >= common[i + 1][j]) {
            out.push_str(&format!("+ {}\n", new[j]));
            j += 1;
        } else {
            out.push_str(&format!("- {}\n", old[i]));
            i += 1;
        }
    }
    out
}

/// Checks every program of a folder against its golden file and expected exit code.
fn run_folder(folder: &str, expected_exit: i32) {
    let bless = std::env::var_os("NPDEC_BLESS").is_some_and(|v| v == "1");
    let files = programs(folder);
    assert!(!files.is_empty(), "no programs in tests/check/{folder}");
    let mut failures = Vec::new();
    for program in &files {
        let (stderr, exit) = check(program);
        let golden = repo_root().join(program.with_extension("stderr"));
        if exit != Some(expected_exit) {
            failures.push(format!(
                "{}: exit code {exit:?}, expected {expected_exit}\n{stderr}",
                program.display()
            ));
        }
        if bless {
            std::fs::write(&golden, &stderr)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", golden.display()));
            continue;
        }
        match std::fs::read_to_string(&golden) {
            Ok(expected) if expected == stderr => {}
            Ok(expected) => failures.push(format!(
                "{}: output differs from {} (- golden, + actual):\n{}",
                program.display(),
                golden.display(),
                line_diff(&expected, &stderr)
            )),
            Err(_) => failures.push(format!(
                "{}: golden file {} is missing; run with NPDEC_BLESS=1 to create it",
                program.display(),
                golden.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn invalid_programs_match_goldens() {
    run_folder("err", 1);
}

#[test]
fn valid_programs_match_goldens() {
    run_folder("ok", 0);
}

#[test]
fn every_code_has_an_invalid_program() {
    let mut found = BTreeSet::new();
    for program in programs("err") {
        let golden = repo_root().join(program.with_extension("stderr"));
        let text = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", golden.display()));
        // Each rendered diagnostic starts with its code in brackets, as in `[E0100] Error: ...`.
        for line in text.lines() {
            if let Some(code) = line
                .strip_prefix('[')
                .and_then(|rest| rest.split(']').next())
            {
                found.insert(code.to_string());
            }
        }
    }
    let missing: Vec<&str> = npdec_diagnostics::Code::ALL
        .iter()
        .filter(|code| code.found_by_check())
        .map(|code| code.as_str())
        .filter(|code| !found.contains(*code))
        .collect();
    assert!(
        missing.is_empty(),
        "codes without an invalid program under tests/check/err: {missing:?}"
    );
}

#[test]
fn line_diff_marks_changed_lines() {
    let diff = line_diff("a\nb\nc\n", "a\nx\nc\n");
    assert_eq!(diff, "  a\n+ x\n- b\n  c\n");
}
