//! `npdec check --format json`: the fields editors rely on, for one invalid program.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

#[test]
fn json_output_has_editor_fields() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root");
    let output = Command::new(env!("CARGO_BIN_EXE_npdec"))
        .args([
            "check",
            "--format",
            "json",
            "tests/check/err/unknown_name_typo.npde",
        ])
        .current_dir(root)
        .output()
        .expect("the npdec binary runs");
    assert_eq!(output.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    let diagnostics = json.as_array().expect("a JSON array");
    assert_eq!(diagnostics.len(), 1, "{json:#}");
    let d = &diagnostics[0];
    assert_eq!(d["file"], "tests/check/err/unknown_name_typo.npde");
    assert_eq!(d["code"], "E0100");
    assert_eq!(d["severity"], "error");
    assert_eq!(d["message"], "unknown name `nuu`");
    assert_eq!(d["label"], "not declared");
    assert_eq!(d["help"], "did you mean `nu`?");

    // `nuu` is on line 6 at columns 24 to 27; columns count characters from 1.
    let text = std::fs::read_to_string(root.join("tests/check/err/unknown_name_typo.npde"))
        .expect("the program is readable");
    let start = text.find("nuu").expect("the typo is in the program");
    assert_eq!(d["byte_start"], start);
    assert_eq!(d["byte_end"], start + 3);
    assert_eq!(d["start"]["line"], 6);
    assert_eq!(d["start"]["column"], 24);
    assert_eq!(d["end"]["line"], 6);
    assert_eq!(d["end"]["column"], 27);
}
