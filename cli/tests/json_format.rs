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
    assert_eq!(d["secondary_labels"], serde_json::json!([]));
}

#[test]
fn json_output_has_secondary_labels() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root");
    let path = "tests/check/err/unclosed_parenthesis_at_line_end.npde";
    let output = Command::new(env!("CARGO_BIN_EXE_npdec"))
        .args(["check", "--format", "json", path])
        .current_dir(root)
        .output()
        .expect("the npdec binary runs");
    assert_eq!(output.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    let diagnostics = json.as_array().expect("a JSON array");
    assert_eq!(diagnostics.len(), 1, "{json:#}");
    let d = &diagnostics[0];
    assert_eq!(d["code"], "E0010");
    assert_eq!(
        d["label"],
        "the statement is unfinished at the end of this line"
    );

    // The `(` of `const nu = (0.1 + 0.2` on line 4, column 12.
    let labels = d["secondary_labels"].as_array().expect("a JSON array");
    assert_eq!(labels.len(), 1, "{json:#}");
    let label = &labels[0];
    let text = std::fs::read_to_string(root.join(path)).expect("the program is readable");
    let open = text
        .find("(0.1")
        .expect("the parenthesis is in the program");
    assert_eq!(label["file"], path);
    assert_eq!(label["message"], "this `(` is never closed");
    assert_eq!(label["byte_start"], open);
    assert_eq!(label["byte_end"], open + 1);
    assert_eq!(label["start"]["line"], 4);
    assert_eq!(label["start"]["column"], 12);
    assert_eq!(label["end"]["line"], 4);
    assert_eq!(label["end"]["column"], 13);
}

/// A file that does not exist or is not UTF-8 is reported inside the JSON array as an E0004
/// object, beside the diagnostics of the files that could be read.
#[test]
fn json_output_reports_unreadable_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root");
    let output = Command::new(env!("CARGO_BIN_EXE_npdec"))
        .args([
            "check",
            "--format",
            "json",
            "tests/check/no_such_model.npde",
            "tests/check/err/not_utf8.npde",
            "tests/check/err/unknown_name_typo.npde",
        ])
        .current_dir(root)
        .output()
        .expect("the npdec binary runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    let diagnostics = json.as_array().expect("a JSON array");
    assert_eq!(diagnostics.len(), 3, "{json:#}");

    let missing = &diagnostics[0];
    assert_eq!(missing["file"], "tests/check/no_such_model.npde");
    assert_eq!(missing["code"], "E0004");
    assert_eq!(missing["severity"], "error");
    assert_eq!(
        missing["message"],
        "model file `tests/check/no_such_model.npde` not found"
    );
    assert_eq!(missing["byte_start"], 0);
    assert_eq!(missing["byte_end"], 0);
    assert_eq!(missing["start"]["line"], 1);
    assert_eq!(missing["start"]["column"], 1);

    // The Latin-1 `é` (0xe9) of `café` on line 2 is the first byte that is not UTF-8.
    let bytes = std::fs::read(root.join("tests/check/err/not_utf8.npde")).expect("readable");
    let offset = bytes
        .iter()
        .position(|&b| b == 0xe9)
        .expect("the Latin-1 byte");
    let invalid = &diagnostics[1];
    assert_eq!(invalid["file"], "tests/check/err/not_utf8.npde");
    assert_eq!(invalid["code"], "E0004");
    assert_eq!(
        invalid["message"],
        format!(
            "`tests/check/err/not_utf8.npde` is not valid UTF-8: invalid byte 0xe9 at byte offset {offset}"
        )
    );
    assert_eq!(invalid["byte_start"], offset);
    assert_eq!(invalid["byte_end"], offset + 1);
    assert_eq!(invalid["start"]["line"], 2);
    assert_eq!(invalid["start"]["column"], 6);
    assert_eq!(
        invalid["help"],
        "save the file as UTF-8; model files are UTF-8 text"
    );

    assert_eq!(diagnostics[2]["code"], "E0100");
}
