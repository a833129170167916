//! Golden tests of `npdec explain MODEL`: the normal form, the recognized layers and the graph size.
//! `NPDEC_BLESS=1` rewrites the golden files in `tests/explain/`.

use std::path::Path;
use std::process::Command;

const MODELS: &[&str] = &[
    "heat1d",
    "heat2d",
    "gray_scott",
    "schrodinger1d",
    "wave2d",
    "digits_pool",
    "identify_diffusion",
];

#[test]
fn explain_output_matches_goldens() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root");
    let bless = std::env::var_os("NPDEC_BLESS").is_some();
    let mut mismatches = Vec::new();
    for name in MODELS {
        let output = Command::new(env!("CARGO_BIN_EXE_npdec"))
            .args(["explain", &format!("examples/{name}.npde")])
            .current_dir(root)
            .env("NO_COLOR", "1")
            .output()
            .expect("npdec runs");
        assert_eq!(
            output.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let actual = String::from_utf8(output.stdout).expect("utf-8 output");
        let golden = root.join("tests/explain").join(format!("{name}.txt"));
        if bless {
            std::fs::write(&golden, &actual).expect("write golden");
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if expected != actual {
            mismatches.push(format!(
                "{name}:\n--- expected\n{expected}\n+++ actual\n{actual}"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "explain output changed (NPDEC_BLESS=1 to accept):\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn explain_emits_json_and_dot() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root");
    let run = |emit: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_npdec"))
            .args(["explain", "examples/heat2d.npde", "--emit", emit])
            .current_dir(root)
            .output()
            .expect("npdec runs");
        assert!(output.status.success());
        String::from_utf8(output.stdout).expect("utf-8")
    };
    let json: serde_json::Value = serde_json::from_str(&run("json")).expect("valid JSON");
    assert_eq!(json[0]["task"], "solve heat");
    assert_eq!(json[0]["layers"][1]["kind"], "convolution");
    assert_eq!(json[0]["layers"][1]["padding"], "mixed");
    let dot = run("dot");
    assert!(
        dot.starts_with("digraph") && dot.contains("l0 -> l1"),
        "{dot}"
    );
}

#[test]
fn dump_ir_with_emit_warns() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root");
    for emit in ["json", "dot"] {
        let output = Command::new(env!("CARGO_BIN_EXE_npdec"))
            .args([
                "explain",
                "examples/heat2d.npde",
                "--emit",
                emit,
                "--dump-ir",
            ])
            .current_dir(root)
            .env("NO_COLOR", "1")
            .output()
            .expect("npdec runs");
        let stdout = String::from_utf8(output.stdout).expect("utf-8");
        let stderr = String::from_utf8(output.stderr).expect("utf-8");
        assert!(output.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "`--dump-ir` adds the dataflow graph to the table output only, so it was ignored \
                 with `--emit {emit}`"
            )),
            "{stderr}"
        );
        // The output is the same as without `--dump-ir`, so tools can still parse it.
        assert!(!stdout.contains("nodes"), "{stdout}");
        if emit == "json" {
            let json: serde_json::Value = serde_json::from_str(&stdout).expect("valid JSON");
            assert_eq!(json[0]["task"], "solve heat");
        } else {
            assert!(stdout.starts_with("digraph"), "{stdout}");
        }
    }
}

#[test]
fn explain_emits_pooling_layers_as_json_and_dot() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root");
    let run = |emit: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_npdec"))
            .args(["explain", "examples/digits_pool.npde", "--emit", emit])
            .current_dir(root)
            .output()
            .expect("npdec runs");
        assert!(output.status.success());
        String::from_utf8(output.stdout).expect("utf-8")
    };
    let json: serde_json::Value = serde_json::from_str(&run("json")).expect("valid JSON");
    let pool = &json[0]["layers"][3];
    assert_eq!(pool["kind"], "pool", "{pool}");
    assert_eq!(pool["factor"], 2, "{pool}");
    assert_eq!(pool["input"], "8×8×8", "{pool}");
    assert_eq!(pool["output"], "8×4×4", "{pool}");
    assert_eq!(pool["input_shape"], serde_json::json!([8, 8, 8]), "{pool}");
    assert_eq!(pool["line"], 24, "{pool}");
    assert_eq!(json[0]["layers"][4]["kind"], "upsample");
    let dot = run("dot");
    assert!(dot.contains("avg pool 2×2\\n"), "{dot}");
    assert!(dot.contains("upsample 2×2 nearest"), "{dot}");
}

/// `--dump-ir after:PASS` prints the graph after one optimization pass, `after:all` after each.
#[test]
fn dump_ir_after_passes_matches_goldens() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root");
    let bless = std::env::var_os("NPDEC_BLESS").is_some();
    let cases = [
        ("heat2d", "after:all"),
        ("gray_scott", "after:fuse_stencils"),
    ];
    for (name, when) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_npdec"))
            .args([
                "explain",
                &format!("examples/{name}.npde"),
                "--dump-ir",
                when,
            ])
            .current_dir(root)
            .env("NO_COLOR", "1")
            .output()
            .expect("npdec runs");
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let actual = String::from_utf8(output.stdout).expect("utf-8 output");
        let pass = when.trim_start_matches("after:");
        let golden = root
            .join("tests/explain")
            .join(format!("{name}.after-{pass}.txt"));
        if bless {
            std::fs::write(&golden, &actual).expect("write golden");
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        assert_eq!(
            expected, actual,
            "{name} --dump-ir {when} changed (NPDEC_BLESS=1 to accept)"
        );
    }
}

#[test]
fn dump_ir_rejects_unknown_pass() {
    let output = Command::new(env!("CARGO_BIN_EXE_npdec"))
        .args([
            "explain",
            "examples/heat2d.npde",
            "--dump-ir",
            "after:unroll",
        ])
        .current_dir(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("repository root"),
        )
        .env("NO_COLOR", "1")
        .output()
        .expect("npdec runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown optimization pass `unroll`"),
        "{stderr}"
    );
    assert!(stderr.contains("fuse_stencils"), "{stderr}");
}
