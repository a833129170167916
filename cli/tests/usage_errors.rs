//! Messages and exit codes that a new user meets first: invalid counts, a model without tasks, and
//! output piped into a reader that stops early.

use std::path::Path;
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

/// Runs `npdec run MODEL --epochs EPOCHS --train-samples 200 --out OUT` in `dir`, with `--resume`
/// when `resume` is set, and returns the exit code and standard error.
fn run_shortened(
    dir: &Path,
    model: &str,
    epochs: &str,
    out: &str,
    resume: bool,
) -> (Option<i32>, String) {
    let mut args = vec![
        "run",
        model,
        "--epochs",
        epochs,
        "--train-samples",
        "200",
        "--out",
        out,
    ];
    if resume {
        args.push("--resume");
    }
    let output = npdec(&args, dir);
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    (output.status.code(), stderr)
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
    let output = npdec(&["run", "model.npde", "--snapshots", "0"], &dir);
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    assert_eq!(output.status.code(), Some(2), "--snapshots: {stderr}");
    assert!(
        stderr.contains("invalid value '0' for '--snapshots <SNAPSHOTS>': expected a whole number of at least 1, found 0"),
        "--snapshots: {stderr}"
    );
    let output = npdec(&["run", "model.npde", "--epochs", "two"], &dir);
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("found `two`"), "{stderr}");
}

/// Thread counts are bounded, so a mistyped count cannot exhaust the machine.
#[test]
fn thread_counts_are_bounded() {
    let dir = scratch("threads");
    for args in [
        &["run", "model.npde", "--threads", "100000"][..],
        &["bench", "--threads", "1", "--threads", "100000"],
    ] {
        let output = npdec(args, &dir);
        let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("expected at most 1024 threads, found 100000"),
            "{args:?}: {stderr}"
        );
    }
    let output = npdec(&["bench", "--threads", "0"], &dir);
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("at least 1, found 0"), "{stderr}");
    // An unknown benchmark case and contradicting blocking flags are usage errors too.
    let output = npdec(&["bench", "--case", "diffusion4d"], &dir);
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("diffusion3d_o8"), "{stderr}");
    let output = npdec(&["bench", "--no-blocking", "--block-steps", "4"], &dir);
    assert_eq!(output.status.code(), Some(2));
}

/// `npdec build --help` lists every emit kind that reads `--checkpoint`.
#[test]
fn build_help_lists_checkpoint_emits() {
    let dir = scratch("build_help");
    let output = npdec(&["build", "--help"], &dir);
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("Trained parameters for photonic, spice, onnx and diffractive"),
        "{stdout}"
    );
    assert!(stdout.contains("required by diffractive"), "{stdout}");
}

/// `npdec build` rejects a flag that the chosen `--emit` kind does not read, and
/// `--emit diffractive` without `--checkpoint`, as usage errors before it reads the model.
#[test]
fn build_rejects_flags_of_other_emits() {
    let dir = scratch("build_emit_flags");
    // The model file does not exist: a usage error stops the build before it is read.
    let cases: [(&[&str], &str); 15] = [
        (
            &["--emit", "obj", "--checkpoint", "run"],
            "`--checkpoint` applies to `--emit photonic`, `spice`, `onnx` and `diffractive`, not to `--emit obj`",
        ),
        (
            &["--emit", "obj", "--seed", "3"],
            "`--seed` applies to `--emit photonic`, `spice` and `onnx`, not to `--emit obj`",
        ),
        (
            &["--emit", "diffractive", "--checkpoint", "run", "--seed", "3"],
            "`--seed` applies to `--emit photonic`, `spice` and `onnx`, not to `--emit diffractive`",
        ),
        (
            &["--emit", "spice", "--f32"],
            "`--f32` applies to `--emit obj`, not to `--emit spice`",
        ),
        (
            &["--emit", "onnx", "--robustness"],
            "`--robustness` applies to `--emit photonic`, not to `--emit onnx`",
        ),
        (
            &["--emit", "spice", "--robustness", "--trials", "3"],
            "`--robustness` applies to `--emit photonic`, not to `--emit spice`",
        ),
        (
            &["--emit", "obj", "--g-min", "1e-6"],
            "`--g-min` applies to `--emit spice`, not to `--emit obj`",
        ),
        (
            &["--emit", "photonic", "--g-max", "1e-3"],
            "`--g-max` applies to `--emit spice`, not to `--emit photonic`",
        ),
        (
            &["--emit", "onnx", "--volts-per-unit", "0.2"],
            "`--volts-per-unit` applies to `--emit spice`, not to `--emit onnx`",
        ),
        (
            &["--emit", "obj", "--index", "1.5"],
            "`--index` applies to `--emit diffractive`, not to `--emit obj`",
        ),
        (
            &["--emit", "spice", "--unit", "1e-6"],
            "`--unit` applies to `--emit diffractive`, not to `--emit spice`",
        ),
        (
            &["--emit", "photonic", "--levels", "8"],
            "`--levels` applies to `--emit diffractive`, not to `--emit photonic`",
        ),
        (
            &["--emit", "diffractive"],
            "`--emit diffractive` requires `--checkpoint RUN_DIR`, the output folder of `npdec run`",
        ),
        (
            &["--emit", "photonic", "--trials", "3"],
            "`--trials` sets the noisy draws of `--robustness`; add `--robustness`",
        ),
        (
            &["--emit", "onnx", "--trials", "3"],
            "`--trials` applies to `--emit photonic`, not to `--emit onnx`",
        ),
    ];
    for (flags, message) in cases {
        let mut args = vec!["build", "missing.npde", "-o", "out"];
        args.extend_from_slice(flags);
        let output = npdec(&args, &dir);
        let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("error: {message}")),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("Usage: npdec build"), "{args:?}: {stderr}");
    }
    assert!(!dir.join("out").exists());

    // A default value is not a flag given: each kind builds past the check to the missing file.
    for emit in ["obj", "photonic", "spice", "onnx"] {
        let output = npdec(
            &["build", "missing.npde", "--emit", emit, "-o", "out"],
            &dir,
        );
        let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
        assert_eq!(output.status.code(), Some(1), "{emit}: {stderr}");
        assert!(
            stderr.contains("cannot read `missing.npde`"),
            "{emit}: {stderr}"
        );
    }
    // Flags of the chosen kind pass the check.
    for flags in [
        &["--emit", "obj", "--f32"][..],
        &[
            "--emit", "spice", "--g-min", "1e-6", "--g-max", "1e-4", "--seed", "2",
        ],
        &[
            "--emit",
            "photonic",
            "--robustness",
            "--trials",
            "3",
            "--checkpoint",
            "run",
        ],
        &[
            "--emit",
            "diffractive",
            "--checkpoint",
            "run",
            "--levels",
            "8",
            "--unit",
            "1e-6",
            "--index",
            "1.5",
        ],
    ] {
        let mut args = vec!["build", "missing.npde", "-o", "out"];
        args.extend_from_slice(flags);
        let output = npdec(&args, &dir);
        let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("cannot read `missing.npde`"),
            "{args:?}: {stderr}"
        );
    }
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
        stderr.contains(
            "[W0004] Warning: model `empty` has no solve or train task, so nothing was run"
        ),
        "{stderr}"
    );
}

/// An empty file runs nothing; the warning goes to the terminal and into `summary.json`.
#[test]
fn empty_file_warning_in_summary() {
    let dir = scratch("empty_file");
    std::fs::write(dir.join("blank.npde"), "").expect("write model");
    let output = npdec(&["run", "blank.npde", "--out", "results"], &dir);
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let message = "model `blank` has no solve or train task, so nothing was run";
    assert!(
        stderr.contains(&format!("[W0004] Warning: {message}")),
        "{stderr}"
    );
    assert!(stderr.contains("blank.npde:1:1"), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("results/summary.json")).expect("summary.json is written"),
    )
    .expect("summary.json is JSON");
    assert_eq!(
        summary["warnings"],
        serde_json::json!([format!("W0004: {message}")]),
        "{summary}"
    );
    assert_eq!(summary["passed"], serde_json::json!(true), "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
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

#[test]
fn oversized_grid_is_an_error() {
    let dir = scratch("oversized");
    std::fs::write(
        dir.join("big.npde"),
        "model big\ngrid x in [0, 1] points 100000000000\nfield u(x)\n\
         equation heat: dt(u) = laplace(u)\nboundary u: dirichlet(0) on x\n\
         initial u = sin(pi * x)\nsolve heat using euler(dt = 1e-24) until 1e-23\n",
    )
    .expect("write model");
    let output = npdec(&["run", "big.npde"], &dir);
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("[E0231]"), "{stderr}");
    assert!(
        stderr.contains("one copy of `u` takes 745.1 GiB"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn output_folder_that_is_a_file() {
    let dir = scratch("out_file");
    std::fs::write(dir.join("afile"), "keep me").expect("write file");
    std::fs::write(
        dir.join("heat.npde"),
        "model heat\ngrid x in [0, 1] points 11\nfield u(x)\nequation e: dt(u) = laplace(u)\n\
         boundary u: dirichlet(0) on x\ninitial u = sin(pi * x)\nsolve e using euler(dt = 1e-3) until 1e-2\n",
    )
    .expect("write model");
    for (args, flag) in [
        (&["run", "heat.npde", "--out", "afile"][..], "--out DIR"),
        (
            &["build", "heat.npde", "--emit", "obj", "-o", "afile"][..],
            "-o DIR",
        ),
    ] {
        let output = npdec(args, &dir);
        let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "the output folder `afile` is a file; choose a folder with `{flag}`"
            )),
            "{args:?}: {stderr}"
        );
    }
    let kept = std::fs::read_to_string(dir.join("afile")).expect("read file");
    assert_eq!(kept, "keep me");
}

/// An output folder that cannot be created is E0252 on the task whose results were written, also
/// for a model that only trains.
#[test]
fn unwritable_output_folder_is_e0252() {
    let dir = scratch("out_unwritable");
    std::fs::write(dir.join("afile"), "keep me").expect("write file");
    std::fs::write(
        dir.join("heat.npde"),
        "model heat\ngrid x in [0, 1] points 11\nfield u(x)\nequation e: dt(u) = laplace(u)\n\
         boundary u: dirichlet(0) on x\ninitial u = sin(pi * x)\nsolve e using euler(dt = 1e-3) until 1e-2\n",
    )
    .expect("write model");
    let digits = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .join("examples/digits.npde");
    let digits = digits.to_str().expect("UTF-8 path");
    for (model, task_line) in [
        ("heat.npde", "7 │ solve e"),
        (digits, "train net on digits"),
    ] {
        let output = npdec(&["run", model, "--out", "afile/sub"], &dir);
        let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
        assert_eq!(output.status.code(), Some(1), "{model}: {stderr}");
        assert!(stderr.contains("[E0252]"), "{model}: {stderr}");
        assert!(stderr.contains(task_line), "{model}: {stderr}");
        assert!(
            stderr.contains("while writing the results of this task"),
            "{model}: {stderr}"
        );
    }
    let kept = std::fs::read_to_string(dir.join("afile")).expect("read file");
    assert_eq!(kept, "keep me");
}

/// Sends SIGINT, as Ctrl-C does, to `child` once `ready` returns true, and returns its exit code
/// and standard error. Fails when `ready` stays false for two minutes; `what` names the awaited
/// output in that message.
#[cfg(unix)]
fn interrupt_when(
    child: std::process::Child,
    what: &str,
    ready: impl Fn() -> bool,
) -> (Option<i32>, String) {
    let started = std::time::Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "no {what} after two minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let output = child.wait_with_output().expect("npdec exits");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

/// Ctrl-C in the middle of a run that writes a snapshot every step: the process exits with 130 and
/// leaves no temporary file behind.
#[cfg(unix)]
#[test]
fn interrupted_run_removes_temporaries() {
    let dir = scratch("interrupt");
    std::fs::write(
        dir.join("plane.npde"),
        "model plane\ngrid x in [0, 1] points 400\ngrid y in [0, 1] points 400\nfield u(x, y)\n\
         equation e: dt(u) = 1e-3 * laplace(u)\nboundary u: dirichlet(0) on x, y\n\
         initial u = sin(pi * x) * sin(pi * y)\nsolve e using euler(dt = 1e-3) until 100 every 1\n",
    )
    .expect("write model");
    let child = Command::new(env!("CARGO_BIN_EXE_npdec"))
        .args(["run", "plane.npde", "--out", "out", "--engine", "interp"])
        .current_dir(&dir)
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the npdec binary runs");
    let snapshots = dir.join("out");
    let (code, stderr) = interrupt_when(child, "snapshots", || {
        std::fs::read_dir(&snapshots).map_or(0, |d| d.count()) >= 3
    });
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");

    let names: Vec<String> = std::fs::read_dir(&snapshots)
        .expect("output folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|name| !name.starts_with('.')),
        "temporary files left: {names:?}"
    );
    assert!(names.iter().any(|name| name.ends_with(".npy")), "{names:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ctrl-C during training: the message names the epoch of the checkpoint this run wrote, which is
/// the checkpoint left in the output folder. The full training set makes an epoch long enough
/// (about 0.1 s here) that no newer checkpoint lands between the message and the exit.
#[cfg(unix)]
#[test]
fn interrupted_training_names_checkpoint_epoch() {
    let dir = scratch("interrupt_training");
    let digits = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/digits.npde")
        .canonicalize()
        .expect("examples/digits.npde");
    let child = Command::new(env!("CARGO_BIN_EXE_npdec"))
        .arg("run")
        .arg(&digits)
        .args(["--epochs", "100000", "--threads", "1"])
        .args(["--out", "out"])
        .current_dir(&dir)
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the npdec binary runs");
    let checkpoint = dir.join("out/checkpoint.npdc");
    let (code, stderr) = interrupt_when(child, "checkpoint", || checkpoint.exists());
    assert_eq!(code, Some(130), "{stderr}");

    let kept = npdec_learn::checkpoint::read_checkpoint(&checkpoint).expect("a whole checkpoint");
    assert!(kept.epoch >= 1, "{}", kept.epoch);
    assert!(
        stderr.contains(&format!(
            "; the checkpoint after epoch {} is kept, and `--resume` continues from it",
            kept.epoch
        )),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn non_finite_solution_warns() {
    let dir = scratch("nan");
    std::fs::write(
        dir.join("nan.npde"),
        "model nan\ngrid x in [0, 1] points 11\nfield u(x)\nequation e: dt(u) = laplace(u)\n\
         boundary u: neumann(0) on x\ninitial u = log(x - 1)\nsolve e using euler(dt = 1e-3) until 1e-2\n",
    )
    .expect("write model");
    let output = npdec(&["run", "nan.npde"], &dir);
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("`u` is not finite (NaN or infinite) in the initial state (t = 0)"),
        "{stderr}"
    );
}

#[test]
fn non_finite_warning_bounds_the_step() {
    // Every point follows u ← u + 0.1 u², which overflows to infinity at `blowup`.
    let mut u = 10.0_f64;
    let mut blowup: usize = 0;
    while u.is_finite() {
        u += 0.1 * u * u;
        blowup += 1;
    }
    assert!(blowup > 5, "{blowup}");
    assert!(blowup < 20, "{blowup}");
    let dir = scratch("blowup");
    let cases = [
        (
            "every 1",
            format!(
                "`u` became NaN or infinite at step {blowup} (t = {})",
                blowup as f64 / 10.0
            ),
        ),
        (
            "",
            "`u` became NaN or infinite after step 0 (t = 0) and by step 20 (t = 2)".to_string(),
        ),
        (
            "every 5",
            format!(
                "`u` became NaN or infinite after step {} (t = {}) and by step {} (t = {})",
                (blowup - 1) / 5 * 5,
                ((blowup - 1) / 5 * 5) as f64 / 10.0,
                blowup.div_ceil(5) * 5,
                (blowup.div_ceil(5) * 5) as f64 / 10.0
            ),
        ),
    ];
    for (every, expected) in cases {
        std::fs::write(
            dir.join("blowup.npde"),
            format!(
                "model blowup\ngrid x in [0, 1] points 11\nfield u(x)\nequation e: dt(u) = u * u\n\
                 boundary u: neumann(0) on x\ninitial u = 10\nsolve e using euler(dt = 0.1) until 2 {every}\n"
            ),
        )
        .expect("write model");
        let output = npdec(&["run", "blowup.npde"], &dir);
        let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        assert!(
            stderr.contains(&expected),
            "{every}: expected {expected}\n{stderr}"
        );
        let noted = stderr.contains("checked at the saved steps only");
        assert_eq!(noted, every != "every 1", "{every}: {stderr}");
    }
}

#[test]
fn train_samples_beyond_data_warn() {
    let dir = scratch("train_samples");
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/digits.npde")
        .canonicalize()
        .expect("examples/digits.npde");
    let model = model.to_str().expect("UTF-8 path");
    let output = npdec(
        &[
            "run",
            model,
            "--epochs",
            "1",
            "--train-samples",
            "100000",
            "--out",
            "out",
        ],
        &dir,
    );
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "warning: --train-samples 100000 is more than the 1440 training samples, so all of them were used"
        ),
        "{stderr}"
    );
}

/// `--resume` with no more epochs than the checkpoint contains trains nothing, prints that once and
/// reports the checkpoint, not a training run. Without a checkpoint, `--resume` fails with help.
#[test]
fn resume_without_new_epochs_trains_nothing() {
    let dir = scratch("resume");
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/digits.npde")
        .canonicalize()
        .expect("examples/digits.npde");
    let model = model.to_str().expect("UTF-8 path");
    let run = |epochs: &str, resume: bool| run_shortened(&dir, model, epochs, "out", resume);
    let (code, stderr) = run("2", true);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot read the checkpoint"), "{stderr}");
    assert!(
        stderr.contains("Help: pass the `--out` folder of the run that wrote the checkpoint"),
        "{stderr}"
    );

    let (code, stderr) = run("2", false);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("trained with adam for 2 epochs"),
        "{stderr}"
    );

    for (epochs, requested) in [("1", "1 epoch"), ("2", "2 epochs")] {
        let (code, stderr) = run(epochs, true);
        assert_eq!(code, Some(0), "--epochs {epochs}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "the checkpoint already contains 2 epochs and this run requests {requested}, so nothing more was trained"
            )),
            "--epochs {epochs}: {stderr}"
        );
        assert!(
            stderr.contains("checkpoint after 2 epochs with adam: train loss"),
            "--epochs {epochs}: {stderr}"
        );
        assert!(
            !stderr.contains("trained with"),
            "--epochs {epochs}: {stderr}"
        );
    }

    let (code, stderr) = run("3", true);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("resumed from the checkpoint after epoch 2; trained epoch 3"),
        "{stderr}"
    );
    assert!(
        stderr.contains("trained with adam for 3 epochs"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `npdec run --resume` rejects a checkpoint that a run of another model wrote, also when the
/// parameter names and shapes match (a renamed copy of the model), as `npdec build --checkpoint`
/// does, and leaves that checkpoint as it was.
#[test]
fn resume_rejects_other_models_checkpoint() {
    let dir = scratch("resume_other_model");
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .canonicalize()
        .expect("examples folder");
    let digits = examples.join("digits.npde");
    let copy = std::fs::read_to_string(&digits)
        .expect("read digits.npde")
        .replace("model digits\n", "model digits_copy\n");
    std::fs::create_dir_all(dir.join("data")).expect("data folder");
    std::fs::copy(
        examples.join("data/digits.csv.gz"),
        dir.join("data/digits.csv.gz"),
    )
    .expect("copy the digits data");
    std::fs::write(dir.join("digits_copy.npde"), copy).expect("write the copy");
    let digits = digits.to_str().expect("UTF-8 path");
    let cnn = examples.join("mnist_cnn.npde");
    let cnn = cnn.to_str().expect("UTF-8 path");
    let run = |model: &str, epochs: &str, resume: bool| {
        run_shortened(&dir, model, epochs, "digits_run", resume)
    };
    let (code, stderr) = run(digits, "1", false);
    assert_eq!(code, Some(0), "{stderr}");

    for (model, name, line) in [
        ("digits_copy.npde", "digits_copy", "train net on digits"),
        (cnn, "mnist_cnn", "train net on mnist"),
    ] {
        let (code, stderr) = run(model, "2", true);
        assert_eq!(code, Some(1), "{model}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "[E0261] Error: cannot resume from `digits_run/checkpoint.npdc`: it was written by a run of model `digits`, not `{name}`"
            )),
            "{model}: {stderr}"
        );
        assert!(stderr.contains(line), "{model}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "Help: pass `--out` with the output folder of a run of `{name}`"
            )),
            "{model}: {stderr}"
        );
        assert!(!stderr.contains("no parameter"), "{model}: {stderr}");
    }

    let (code, stderr) = run(digits, "2", true);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("resumed from the checkpoint after epoch 1; trained epoch 2"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The summary of a run that only trains has no time loop, so its `steps`, `dt` and `final_time`
/// are null, and the expectation that the shortened run skips has `"passed": null`.
#[test]
fn training_summary_nulls_and_skipped_expect() {
    let dir = scratch("training_summary");
    let digits = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/digits.npde")
        .canonicalize()
        .expect("examples/digits.npde");
    let output = npdec(
        &[
            "run",
            digits.to_str().expect("UTF-8 path"),
            "--epochs",
            "1",
            "--train-samples",
            "200",
            "--out",
            "out",
            "-q",
        ],
        &dir,
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("out/summary.json")).expect("summary.json is written"),
    )
    .expect("summary.json is JSON");
    for key in ["steps", "dt", "final_time"] {
        assert!(summary["metrics"][key].is_null(), "{key}: {summary}");
    }
    let expect = &summary["expects"][0];
    assert!(expect["passed"].is_null(), "{expect}");
    assert!(
        expect["skipped"]
            .as_str()
            .is_some_and(|reason| reason.starts_with("the run was shortened")),
        "{expect}"
    );
    assert_eq!(summary["passed"], true, "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `npdec build` reports a rejected model or checkpoint like `npdec check` does: a code, the
/// source line of the task or model, and a help line.
#[test]
fn build_errors_are_diagnostics() {
    let dir = scratch("build_diagnostics");
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .canonicalize()
        .expect("examples folder");
    let example = |name: &str| {
        examples
            .join(name)
            .to_str()
            .expect("UTF-8 path")
            .to_string()
    };
    let digits = example("digits.npde");
    let trained = npdec(
        &[
            "run",
            &digits,
            "--epochs",
            "1",
            "--train-samples",
            "200",
            "--out",
            "digits_run",
            "-q",
        ],
        &dir,
    );
    assert!(
        trained.status.success(),
        "{}",
        String::from_utf8_lossy(&trained.stderr)
    );
    std::fs::write(dir.join("garbage.npdc"), b"not a checkpoint").expect("write garbage");

    let schrodinger = example("schrodinger1d.npde");
    let heat = example("heat1d.npde");
    let mlp = example("mnist_mlp.npde");
    let d2nn = example("digits_d2nn.npde");
    // Each case: the arguments, the headline, the source line the diagnostic shows, the help.
    let cases: [(Vec<&str>, &str, &str, &str); 6] = [
        (
            vec!["build", &schrodinger, "--emit", "obj"],
            "[E0241] Error: `--emit obj` compiles explicit Euler solves, and `schrodinger1d.solve0` uses `split_step`",
            "solve free using split_step(dt = 1e-2) until 2",
            "Help: use `euler` for this task",
        ),
        (
            vec!["build", &heat, "--emit", "onnx"],
            "[E0261] Error: model `heat1d` has no train task",
            "model heat1d",
            "Help: add a task such as `train",
        ),
        (
            vec!["build", &digits, "--emit", "onnx", "--checkpoint", "no_such_run"],
            "[E0261] Error: checkpoint `no_such_run` does not exist",
            "train net on digits",
            "Help: pass the output folder of a training run",
        ),
        (
            vec!["build", &digits, "--emit", "onnx", "--checkpoint", "garbage.npdc"],
            "[E0261] Error: cannot read checkpoint garbage.npdc",
            "train net on digits",
            "Help: pass the output folder of a training run",
        ),
        (
            vec!["build", &mlp, "--emit", "spice", "--checkpoint", "digits_run"],
            "[E0261] Error: checkpoint `digits_run/checkpoint.npdc` does not fit model `mnist_mlp`",
            "train net on mnist",
            "Help: pass a checkpoint that a training run of `mnist_mlp` wrote",
        ),
        (
            vec!["build", &d2nn, "--emit", "diffractive", "--checkpoint", "digits_run"],
            "[E0261] Error: checkpoint `digits_run/checkpoint.npdc` does not fit model `digits_d2nn`: it was written by a run of model `digits`",
            "train propagate on digits",
            "Help: pass the output folder of a training run of `digits_d2nn`",
        ),
    ];
    for (args, headline, line, help) in cases {
        let output = npdec(&[&args[..], &["-o", "out"]].concat(), &dir);
        let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(headline), "{args:?}: {stderr}");
        assert!(stderr.contains(line), "{args:?}: {stderr}");
        assert!(stderr.contains(help), "{args:?}: {stderr}");
        assert!(!stderr.contains("cannot resume"), "{args:?}: {stderr}");
    }
}

/// `--emit obj` writes one object per solve task, named after the task's number when a model has
/// several, and rejects a step that reads a field without an equation as E0241 on the task.
#[test]
fn object_files_per_task_and_unset_fields() {
    let dir = scratch("obj_tasks");
    let two = "model two\ngrid x in [0, 1] points 21\nfield u(x)\nfield v(x)\n\
               equation a: dt(u) = 0.1 * laplace(u)\nequation b: dt(v) = 0.2 * laplace(v)\n\
               boundary u: dirichlet(0) on x\nboundary v: dirichlet(0) on x\n\
               initial u = sin(pi * x)\ninitial v = x * (1 - x)\n\
               solve a using euler(dt = 1e-3) until 1e-2\nsolve b using euler(dt = 1e-3) until 1e-2\n";
    std::fs::write(dir.join("two.npde"), two).expect("model written");
    let output = npdec(
        &["build", "two.npde", "--emit", "obj", "-o", "objects"],
        &dir,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    for name in ["two_solve0", "two_solve1"] {
        let header = std::fs::read_to_string(dir.join(format!("objects/{name}.h")))
            .unwrap_or_else(|e| panic!("{name}.h: {e}\n{stderr}"));
        assert!(header.contains(&format!("void {name}_run(")), "{header}");
        assert!(dir.join(format!("objects/{name}.o")).is_file(), "{stderr}");
    }
    let coefficient = "model coef\ngrid x in [0, 1] points 21\nfield u(x)\nfield c(x)\n\
                       equation h: dt(u) = c * laplace(u)\nboundary u: dirichlet(0) on x\n\
                       initial u = sin(pi * x)\ninitial c = 0.1 + 0.05 * x\n\
                       solve h using euler(dt = 1e-4) until 1e-2\n";
    std::fs::write(dir.join("coef.npde"), coefficient).expect("model written");
    let output = npdec(
        &["build", "coef.npde", "--emit", "obj", "-o", "coef_out"],
        &dir,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("[E0241]") && stderr.contains("the field `c` is read but has no equation"),
        "{stderr}"
    );
    assert!(stderr.contains("solve h using euler"), "{stderr}");
    assert!(!dir.join("coef_out/coef.o").exists(), "{stderr}");
}

/// A run into a folder that holds snapshots of an earlier run keeps them and says so.
#[test]
fn earlier_snapshots_are_kept_and_named() {
    let dir = scratch("earlier_snapshots");
    let model = |every: u32| {
        format!(
            "model heat\ngrid x in [0, 1] points 21\nfield u(x)\nconst nu = 0.1\n\
             equation e: dt(u) = nu * laplace(u)\nboundary u: dirichlet(0) on x\n\
             initial u = sin(pi * x)\nsolve e using euler(dt = 1e-3) until 2e-2 every {every}\n"
        )
    };
    std::fs::write(dir.join("heat.npde"), model(5)).expect("model written");
    let output = npdec(&["run", "heat.npde", "--out", "out"], &dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("note:"), "{stderr}");
    std::fs::write(dir.join("heat.npde"), model(10)).expect("model written");
    let output = npdec(&["run", "heat.npde", "--out", "out"], &dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("also holds 2 snapshot files this run did not write (u_000005.npy, …)"),
        "{stderr}"
    );
    assert!(dir.join("out/u_000005.npy").is_file() && dir.join("out/u_000015.npy").is_file());
}

#[test]
fn quiet_and_verbose_conflict() {
    let dir = scratch("quiet_verbose");
    for args in [
        &["bench", "-q", "-v", "--steps", "1"][..],
        &["run", "-v", "--quiet", "model.npde"],
    ] {
        let output = npdec(args, &dir);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("cannot be used with"), "{args:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_takes_short_out_flag() {
    let dir = scratch("short_out");
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .join("examples/heat1d.npde");
    let output = npdec(&["run", model.to_str().unwrap(), "-o", "heat"], &dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(dir.join("heat/summary.json").is_file(), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
