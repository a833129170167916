//! Messages and exit codes that a new user meets first: invalid counts, a model without tasks, and
//! output piped into a reader that stops early.

use std::process::{Command, Output};

fn npdec(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_npdec"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("the npdec binary runs")
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("npdec_usage_{name}_{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

#[test]
fn zero_epochs_is_usage_error() {
    let dir = scratch("epochs");
    for flag in ["--epochs", "--train-samples"] {
        let output = npdec(&["run", "model.npde", flag, "0"], &dir);
        let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
        assert_eq!(output.status.code(), Some(2), "{flag}: {stderr}");
        assert!(
            stderr.contains("expected a whole number of at least 1, found 0"),
            "{flag}: {stderr}"
        );
    }
    let output = npdec(&["run", "model.npde", "--epochs", "two"], &dir);
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("found `two`"), "{stderr}");
}

#[test]
fn run_counts_one_file_in_singular() {
    let dir = scratch("singular");
    std::fs::write(dir.join("empty.npde"), "model empty\n").expect("write model");
    let output = npdec(&["run", "empty.npde"], &dir);
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("wrote 1 file to out/empty"), "{stderr}");
    assert!(
        stderr.contains("warning: `empty.npde` has no solve or train task, so nothing was run"),
        "{stderr}"
    );
}

/// `npdec explain E0100 | head -1`: the reader closes the pipe, and npdec ends without a panic.
#[cfg(unix)]
#[test]
fn closed_pipe_ends_without_panic() {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_npdec"))
        .args(["explain", "E0100"])
        .env("NO_COLOR", "1")
        .stdout(writer)
        .output()
        .expect("the npdec binary runs");
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.signal(), Some(13), "{:?}", output.status);
}

#[test]
fn training_flags_without_train_task_warn() {
    let dir = scratch("training_flags");
    std::fs::write(
        dir.join("heat.npde"),
        "model heat\ngrid x in [0, 1] points 11\nfield u(x)\nequation e: dt(u) = laplace(u)\n\
         boundary u: dirichlet(0) on x\ninitial u = sin(pi * x)\nsolve e using euler(dt = 1e-3) until 1e-2\n",
    )
    .expect("write model");

    let output = npdec(&["run", "heat.npde", "--epochs", "3"], &dir);
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "warning: --epochs affects only train tasks, and `heat.npde` has none, so it was ignored"
        ),
        "{stderr}"
    );

    let output = npdec(&["run", "heat.npde", "--epochs", "3", "--resume"], &dir);
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    assert!(
        stderr.contains("--epochs, --resume affect only train tasks"),
        "{stderr}"
    );

    let output = npdec(&["run", "heat.npde"], &dir);
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    assert!(!stderr.contains("train tasks"), "{stderr}");
}
