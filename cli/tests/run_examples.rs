//! `npdec run` on every solve example: exit 0, every expectation passed, and the promised files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SOLVE_EXAMPLES: &[&str] = &[
    "heat1d",
    "heat2d",
    "advection1d",
    "burgers1d",
    "fisher_kpp",
    "gray_scott",
    "schrodinger1d",
    "paraxial_beam",
    "wave2d",
    "helmholtz2d",
];

#[test]
fn every_solve_example_passes_its_expectations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root");
    let out_root = std::env::temp_dir().join(format!("npdec-run-examples-{}", std::process::id()));
    for name in SOLVE_EXAMPLES {
        let model = root.join("examples").join(format!("{name}.npde"));
        let out = out_root.join(name);
        let output = Command::new(env!("CARGO_BIN_EXE_npdec"))
            .args([
                "run",
                model.to_str().expect("utf-8 path"),
                "--out",
                out.to_str().expect("utf-8 path"),
            ])
            .env("NO_COLOR", "1")
            .output()
            .expect("npdec runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{name} failed:\n{stderr}");

        let summary: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join("summary.json")).expect("summary.json is written"),
        )
        .expect("valid JSON");
        assert_eq!(summary["model"], *name);
        let expects = summary["expects"].as_array().expect("expects is a list");
        assert!(!expects.is_empty(), "{name} has no expectations");
        for expect in expects {
            assert_eq!(expect["passed"], true, "{name}: {expect}");
            assert!(expect["text"].is_string() && expect["value"].is_number());
        }
        assert!(summary["metrics"].is_object());
        let files: Vec<String> = std::fs::read_dir(&out)
            .expect("output folder")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            files.iter().any(|f| f.ends_with(".npy")),
            "{name}: no snapshot in {files:?}"
        );
        assert!(
            files.iter().any(|f| f.ends_with(".png")),
            "{name}: no plot in {files:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&out_root);
}

/// A model with two solves prints one line per solve that names its equation, and a steady solve
/// reports its linear iterations and residual instead of time steps.
#[test]
fn solve_lines_name_equation_and_steady_result() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root");
    let out_root = std::env::temp_dir().join(format!("npdec-solve-lines-{}", std::process::id()));
    let run = |name: &str| {
        let model = root.join("examples").join(format!("{name}.npde"));
        let output = Command::new(env!("CARGO_BIN_EXE_npdec"))
            .arg("run")
            .arg(&model)
            .arg("--out")
            .arg(out_root.join(name))
            .env("NO_COLOR", "1")
            .output()
            .expect("npdec runs");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(0), "{name} failed:\n{stderr}");
        let solved: Vec<String> = stderr
            .lines()
            .filter(|l| l.starts_with("solved "))
            .map(str::to_string)
            .collect();
        (solved, out_root.join(name))
    };

    let (solved, out) = run("schrodinger1d");
    assert_eq!(solved.len(), 2, "{solved:?}");
    assert!(
        solved[0].starts_with("solved `free` with split_step in 200 steps of dt = 1e-2 to t = 2 ("),
        "{solved:?}"
    );
    assert!(
        solved[1]
            .starts_with("solved `trapped` with split_step in 200 steps of dt = 1e-2 to t = 2 ("),
        "{solved:?}"
    );
    for file in ["solve0_psi_000200.npy", "solve1_phi_000200.npy"] {
        assert!(out.join(file).is_file(), "{file} is missing");
    }
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("summary.json")).expect("summary.json is written"),
    )
    .expect("valid JSON");
    assert_eq!(
        summary["metrics"]["tasks"][1]["equations"],
        serde_json::json!(["trapped"])
    );

    let (solved, _) = run("helmholtz2d");
    assert_eq!(solved.len(), 1, "{solved:?}");
    assert!(
        solved[0].starts_with(
            "solved `helmholtz` with steady in 1 linear iteration to a relative residual of "
        ),
        "{solved:?}"
    );
    assert!(!solved[0].contains("steps of dt"), "{solved:?}");
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out_root.join("helmholtz2d/summary.json")).expect("summary.json is written"),
    )
    .expect("valid JSON");
    for key in ["steps", "dt", "final_time"] {
        assert!(summary["metrics"][key].is_null(), "{key}: {summary}");
        assert!(
            summary["metrics"]["tasks"][0][key].is_null(),
            "{key}: {summary}"
        );
    }
    assert_eq!(summary["metrics"]["tasks"][0]["linear_iterations"], 1);
    let _ = std::fs::remove_dir_all(&out_root);
}

/// Writes `source` as `model.npde` into a new temporary folder named `prefix-PID` and runs
/// `npdec run` on it with `--out FOLDER/out`. Returns the folder and the command's output.
fn run_in_new_folder(prefix: &str, source: &str) -> (PathBuf, Output) {
    let folder = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    std::fs::create_dir_all(&folder).expect("temporary folder");
    let model = folder.join("model.npde");
    std::fs::write(&model, source).expect("write model");
    let output = Command::new(env!("CARGO_BIN_EXE_npdec"))
        .args([
            "run",
            model.to_str().unwrap(),
            "--out",
            folder.join("out").to_str().unwrap(),
        ])
        .env("NO_COLOR", "1")
        .output()
        .expect("npdec runs");
    (folder, output)
}

#[test]
fn failed_expectation_exits_with_one() {
    let (folder, output) = run_in_new_folder(
        "npdec-run-fail",
        "grid x in [0, 1] points 21\nfield u(x)\nequation heat: dt(u) = laplace(u)\nboundary u: dirichlet(0) on x\ninitial u = sin(pi * x)\nsolve heat using rk4(dt = 1e-4) until 0.01\nexpect max(u) < 0.5\n",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("expect max(u) < 0.5: FAILED"), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("out/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["expects"][0]["passed"], false);
    let _ = std::fs::remove_dir_all(&folder);
}

#[test]
fn engines_agree_and_complex_falls_back_once() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root");
    let out_root = std::env::temp_dir().join(format!("npdec-engines-{}", std::process::id()));
    let run = |name: &str, engine: &str| {
        let out = out_root.join(format!("{name}-{engine}"));
        let model = root.join("examples").join(format!("{name}.npde"));
        let output = Command::new(env!("CARGO_BIN_EXE_npdec"))
            .args([
                "run",
                model.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--engine",
                engine,
            ])
            .env("NO_COLOR", "1")
            .output()
            .expect("npdec runs");
        assert_eq!(output.status.code(), Some(0), "{name} {engine}");
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
        (
            summary["expects"][0]["value"].as_f64().unwrap(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    for name in ["heat2d", "burgers1d", "wave2d", "gray_scott"] {
        let (jit, jit_log) = run(name, "jit");
        let (interp, _) = run(name, "interp");
        assert!(
            !jit_log.contains("W0003"),
            "{name} should compile:\n{jit_log}"
        );
        // The expectation is an error norm of a field of order one, so the engines must agree on it
        // to rounding, in absolute terms.
        assert!(
            (jit - interp).abs() <= 1e-12,
            "{name}: jit {jit} vs interpreter {interp}"
        );
    }
    let (_, log) = run("paraxial_beam", "jit");
    assert!(
        !log.contains("W0003"),
        "split-step needs no right-hand-side kernel:\n{log}"
    );
    let folder = out_root.join("complex");
    std::fs::create_dir_all(&folder).unwrap();
    let model = folder.join("free.npde");
    std::fs::write(&model, "grid x in [-10, 10] points 128\nfield psi(x): complex\nequation free: dt(psi) = 0.5i * laplace(psi)\nboundary psi: periodic on x\ninitial psi = exp(-x^2)\nsolve free using rk4(dt = 1e-3) until 0.1\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_npdec"))
        .args([
            "run",
            model.to_str().unwrap(),
            "--out",
            folder.join("out").to_str().unwrap(),
        ])
        .env("NO_COLOR", "1")
        .output()
        .expect("npdec runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr
            .matches("[W0003] Warning: the JIT cannot compile this task")
            .count(),
        1,
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&out_root);
}

/// `dt(u) = upsample(pool(u, 2), 2) − u` keeps the block means of `u` and damps the rest by
/// `exp(−t)`, because upsampling after pooling is a projection. The JIT does not compile pooling,
/// so the task falls back to the interpreter with one warning.
#[test]
fn pooled_solve_falls_back_and_keeps_block_means() {
    let (folder, output) = run_in_new_folder(
        "npdec-pooled",
        "grid x in [0, 1] points 64
field u(x)
equation relax: dt(u) = upsample(pool(u, 2), 2) - u
boundary u: neumann(0) on x
initial u = sin(7 * pi * x)
solve relax using rk4(dt = 1e-2) until 1
expect max(abs(pool(u, 2) - pool(sin(7 * pi * x), 2))) < 1e-12
expect max(abs(u - upsample(pool(u, 2), 2) - exp(-t) * (sin(7 * pi * x) - upsample(pool(sin(7 * pi * x), 2), 2)))) < 1e-9
",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr
            .matches("[W0003] Warning: the JIT cannot compile this task")
            .count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("pool"),
        "the warning names the node:\n{stderr}"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("out/summary.json")).unwrap()).unwrap();
    for expect in summary["expects"].as_array().unwrap() {
        assert_eq!(expect["passed"], true, "{expect}");
    }
    let _ = std::fs::remove_dir_all(&folder);
}

#[test]
fn summary_lists_check_and_run_warnings() {
    // `nu` is never used (W0001, from the check), and dt = 2e-3 is above the Euler limit
    // dx² / 2 = 1.25e-3 (W0005, from the run).
    let (folder, output) = run_in_new_folder(
        "npdec-run-warnings",
        "grid x in [0, 1] points 21\nfield u(x)\nconst nu = 0.1\nequation heat: dt(u) = laplace(u)\nboundary u: dirichlet(0) on x\ninitial u = sin(pi * x)\nsolve heat using euler(dt = 2e-3) until 0.004\n",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.matches("[W0001]").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("[W0005]").count(), 1, "{stderr}");

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("out/summary.json")).unwrap()).unwrap();
    let warnings: Vec<&str> = summary["warnings"]
        .as_array()
        .expect("a list of warnings")
        .iter()
        .map(|w| w.as_str().expect("a string"))
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with("W0001: constant `nu` is never used"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].starts_with("W0005: step dt = 2e-3"),
        "{warnings:?}"
    );
    let _ = std::fs::remove_dir_all(&folder);
}
