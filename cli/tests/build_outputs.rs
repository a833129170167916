//! `npdec build` writes each output file under a temporary name and renames it into place, so a
//! failed build leaves no partial file behind and keeps the outputs of an earlier build.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("build-outputs")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

fn npdec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_npdec"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("npdec runs")
}

/// Returns the files of a folder with their contents; a folder maps to `None`.
fn contents(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    std::fs::read_dir(dir)
        .expect("readable folder")
        .map(|entry| {
            let path = entry.expect("folder entry").path();
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            let bytes = path
                .is_file()
                .then(|| std::fs::read(&path).expect("readable file"));
            (name, bytes)
        })
        .collect()
}

fn assert_no_temporary_files(dir: &Path) {
    let names: Vec<String> = contents(dir).into_keys().collect();
    assert!(
        names.iter().all(|name| !name.contains(".tmp")),
        "temporary files left in {}: {names:?}",
        dir.display()
    );
}

#[test]
fn rejected_obj_build_keeps_earlier_outputs() {
    let out = scratch("obj_rejected");
    let out_arg = out.to_str().expect("UTF-8 path");
    let first = npdec(&[
        "build",
        "examples/heat1d.npde",
        "--emit",
        "obj",
        "-o",
        out_arg,
    ]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let earlier = contents(&out);
    assert_eq!(earlier.len(), 2, "{:?}", earlier.keys());

    // The same model with a second task that `--emit obj` cannot compile: the first task would
    // overwrite the earlier files, so nothing may be written at all.
    let heat1d = std::fs::read_to_string(root().join("examples/heat1d.npde")).expect("heat1d");
    let model = out.with_extension("npde");
    std::fs::write(
        &model,
        format!("{heat1d}solve heat using rk4(dt = 2e-4) until 0.5\n"),
    )
    .expect("write the model");
    let rejected = npdec(&[
        "build",
        model.to_str().expect("UTF-8 path"),
        "--emit",
        "obj",
        "-o",
        out_arg,
    ]);
    let stderr = String::from_utf8_lossy(&rejected.stderr);
    assert_eq!(rejected.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("uses `rk4`"), "{stderr}");
    assert_eq!(contents(&out), earlier);
}

#[test]
fn failed_obj_write_leaves_no_partial_file() {
    let out = scratch("obj_failed_write");
    // A folder where the header goes makes its rename fail after the object file is written.
    std::fs::create_dir_all(out.join("heat1d.h")).expect("blocking folder");
    let output = npdec(&[
        "build",
        "examples/heat1d.npde",
        "--emit",
        "obj",
        "-o",
        out.to_str().expect("UTF-8 path"),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("heat1d.h"), "{stderr}");
    assert_no_temporary_files(&out);
    assert!(out.join("heat1d.h").is_dir());
}

#[test]
fn failed_hardware_writes_leave_no_partial_file() {
    for (emit, summary) in [
        ("spice", "crossbar.json"),
        ("photonic", "photonic.json"),
        ("onnx", "mnist_mlp.onnx"),
    ] {
        let out = scratch(&format!("{emit}_failed_write"));
        std::fs::create_dir_all(out.join(summary)).expect("blocking folder");
        let output = npdec(&[
            "build",
            "examples/mnist_mlp.npde",
            "--emit",
            emit,
            "-o",
            out.to_str().expect("UTF-8 path"),
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{emit}: {stderr}");
        assert!(stderr.contains(summary), "{emit}: {stderr}");
        assert_no_temporary_files(&out);
    }
}

/// Status lines go to stderr like those of `npdec run`, so stdout stays empty, and `-q` leaves
/// them out.
#[test]
fn build_status_lines_on_stderr() {
    let out = scratch("status_lines");
    let out_arg = out.to_str().expect("UTF-8 path");
    let build = [
        "build",
        "examples/heat1d.npde",
        "--emit",
        "obj",
        "-o",
        out_arg,
    ];

    let default_run = npdec(&build);
    let stderr = String::from_utf8_lossy(&default_run.stderr);
    assert!(default_run.status.success(), "{stderr}");
    assert!(
        default_run.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&default_run.stdout)
    );
    assert!(stderr.contains("wrote "), "{stderr}");
    assert!(stderr.contains("(entry point `"), "{stderr}");

    let quiet = npdec(&[&build[..], &["-q"]].concat());
    assert!(
        quiet.status.success(),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );
    assert!(
        quiet.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stdout)
    );
    assert!(
        quiet.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );
}
