//! `npdec bench` on its shortest run: what `-v` and `RUST_LOG` add to standard error, and a
//! `--json` standard output that stays one JSON object per line.

use std::process::{Command, Output};

/// Runs `npdec GLOBAL bench --steps 5 --case diffusion2d_o2 --threads 1 EXTRA` with `RUST_LOG`
/// set to `rust_log`, or unset.
fn bench(global: &[&str], extra: &[&str], rust_log: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_npdec"));
    command
        .args(global)
        .args([
            "bench",
            "--steps",
            "5",
            "--case",
            "diffusion2d_o2",
            "--threads",
            "1",
        ])
        .args(extra)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG");
    if let Some(filter) = rust_log {
        command.env("RUST_LOG", filter);
    }
    command.output().expect("the npdec binary runs")
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("UTF-8 output")
}

#[test]
fn verbose_bench_logs_its_plan() {
    let output = bench(&["-v"], &[], None);
    let stderr = text(output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("running the stencil benchmark steps=5 threads=[1]"),
        "{stderr}"
    );
    assert!(
        stderr.contains("measured the memory bandwidth, best of 3 repetitions threads=1"),
        "{stderr}"
    );
    assert!(stderr.contains("copy_gb_s="), "{stderr}");
    assert!(
        stderr.contains("compiled the case case=\"diffusion2d_o2\" threads=1 compile_ms="),
        "{stderr}"
    );
    assert!(stderr.contains("kernels="), "{stderr}");
    assert!(stderr.contains("blocking="), "{stderr}");
    assert!(
        stderr.contains("timed the steps case=\"diffusion2d_o2\" threads=1 steps=5"),
        "{stderr}"
    );
    // Repetitions and kernel names are debug events, which `-v` leaves out.
    assert!(!stderr.contains("DEBUG"), "{stderr}");
}

#[test]
fn bench_without_verbose_logs_nothing() {
    let output = bench(&[], &[], None);
    let stderr = text(output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "");
    let stdout = text(output.stdout);
    assert!(stdout.contains("diffusion2d_o2"), "{stdout}");
}

#[test]
fn rust_log_debug_lists_kernels_and_repetitions() {
    let output = bench(&[], &["--json"], Some("npdec=debug"));
    let stderr = text(output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("kernels of the step case=\"diffusion2d_o2\" kernels=[\"dirichlet"),
        "{stderr}"
    );
    assert!(
        stderr.contains("timed a bandwidth repetition threads=1 repetition=3"),
        "{stderr}"
    );

    // The log goes to standard error only: standard output is one JSON object per line.
    let stdout = text(output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let record: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON object");
    assert_eq!(record["case"], "diffusion2d_o2");
    assert_eq!(record["threads"], 1);
}
