//! `npdec explain`: documented codes print their section, anything else fails with a clear message.

use std::process::{Command, Output};

fn explain(code: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_npdec"))
        .args(["explain", code])
        .env("NO_COLOR", "1")
        .output()
        .expect("the npdec binary runs")
}

#[test]
fn explain_prints_documented_section() {
    let output = explain("E0221");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    assert_eq!(output.status.code(), Some(0));
    assert!(
        stdout.starts_with("## E0221: missing boundary condition"),
        "{stdout}"
    );
    assert!(stdout.contains("```npde"), "{stdout}");
    assert!(stdout.contains("**Fix**"), "{stdout}");
    assert!(!stdout.contains("## E0222"), "{stdout}");
}

#[test]
fn explain_accepts_lowercase_code() {
    let output = explain("e0100");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout.starts_with("## E0100: unknown name"), "{stdout}");
}

#[test]
fn explain_rejects_unknown_code() {
    let output = explain("E9999");
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert!(stderr.contains("`E9999`"), "{stderr}");
    assert!(stderr.contains("diagnostic code"), "{stderr}");
}

#[test]
fn explain_rejects_malformed_code() {
    let output = explain("bogus");
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert!(stderr.contains("`bogus`"), "{stderr}");
    assert!(stderr.contains("diagnostic code"), "{stderr}");
    assert!(stderr.contains("E0100"), "{stderr}");
}

#[test]
fn explain_unknown_code_names_catalogue() {
    let output = explain("W9999");
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("`W9999` is not a diagnostic code of npdec"),
        "{stderr}"
    );
    assert!(stderr.contains("docs/diagnostics.md"), "{stderr}");
}

#[test]
fn explain_missing_model_file() {
    let output = explain("no_such_model.npde");
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert!(
        stderr.contains("cannot read `no_such_model.npde`: the file does not exist"),
        "{stderr}"
    );
}

#[test]
fn explain_code_warns_on_model_flags() {
    let output = Command::new(env!("CARGO_BIN_EXE_npdec"))
        .args(["explain", "E0100", "--dump-ir"])
        .env("NO_COLOR", "1")
        .output()
        .expect("the npdec binary runs");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stdout.starts_with("## E0100: unknown name"), "{stdout}");
    assert!(
        stderr.contains(
            "`--dump-ir` and `--emit` apply to a model file, so they were ignored for E0100"
        ),
        "{stderr}"
    );
}
