//! The REPL, driven two ways: a script piped to standard input, and keystrokes in a real terminal
//! (tmux, which `.ci/run` installs; without it the second test says so and passes, except under CI).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SCRIPT: &str = "grid x in [0, 1] points 21
field u(x)
const nu = 0.1
equation heat: dt(u) = nu * lapalce(u)
equation heat: dt(u) = nu *
    laplace(u)
boundary u: dirichlet(0) on x
initial u = sin(pi * x)
solve heat using euler(dt = 1e-3) until 1
:check
:step 100
:show u
:explain
:show v
:step many
:quit
";

/// Runs `npdec repl` in `folder` with `script` piped to standard input.
fn run_script(script: &str, folder: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_npdec"))
        .arg("repl")
        .current_dir(folder)
        .env("NO_COLOR", "1")
        .env("HOME", std::env::temp_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("npdec repl starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write script");
    child.wait_with_output().expect("the session ends")
}

/// Returns an empty folder for one test.
fn scratch_folder(name: &str) -> PathBuf {
    let folder = std::env::temp_dir().join(format!("npdec_repl_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).expect("scratch folder");
    folder
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the cli crate sits in the repository root")
        .to_path_buf()
}

#[test]
fn piped_session_checks_steps_and_shows() {
    let output = run_script(SCRIPT, &std::env::temp_dir());
    // The script has errors, so the piped session exits with 1.
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The misspelled operator is a diagnostic, and the session goes on without that statement.
    assert!(
        stderr.contains("[E0104] Error: unknown function `lapalce`"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `laplace`?"), "{stderr}");
    assert!(stdout.contains("0 errors, 0 warnings"), "{stdout}");
    assert!(stdout.contains("step 100 (t = 0.1)"), "{stdout}");
    // After 100 Euler steps the peak is close to exp(-nu pi^2 t) = 0.9061.
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("u at step 100"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(summary.contains("max 9.06"), "{summary}");
    assert!(stdout.contains("residual(conv 3 1→1 fixed)"), "{stdout}");
    // The rejected first `heat` took no session line, so the accepted one starts on line 4.
    assert!(
        stdout.contains("heat: dt(u) = 0.1 * laplace(u)    (<repl>:4)"),
        "{stdout}"
    );
    let layer = stdout
        .lines()
        .find(|l| l.contains("conv 3 1→1 fixed") && !l.contains("residual("))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(layer.trim_end().ends_with("<repl>:4"), "{layer}");
    assert!(
        stderr.contains("unknown field `v`; the fields are u"),
        "{stderr}"
    );
    assert!(stderr.contains("usage: :step N"), "{stderr}");
}

#[test]
fn terminal_session_in_tmux() {
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tmux is missing; .ci/run installs the Debian package `tmux`"
        );
        eprintln!("skipped: tmux is not installed (apt-get install tmux)");
        return;
    }
    let session = format!("npdec-repl-{}", std::process::id());
    let tmux = |args: &[&str]| Command::new("tmux").args(args).output().expect("tmux runs");
    // The shell prints the exit status of the session, and keeps the pane open to show it.
    let command = format!(
        "NO_COLOR=1 HOME={} {} repl; echo exit status $?; sleep 20",
        std::env::temp_dir().display(),
        env!("CARGO_BIN_EXE_npdec")
    );
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "120",
        "-y",
        "40",
        "-c",
        &repo_root().display().to_string(),
        &command,
    ]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let capture = || {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout).into_owned()
    };
    let wait_for = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = capture();
            if screen.contains(needle) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "`{needle}` never appeared:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for("npde>");
    // Rustyline discards keys typed while the REPL is still busy with the previous line, so each
    // line waits for the prompt that follows it.
    let prompts = || capture().matches("npde>").count();
    let wait_for_prompt_after = |before: usize, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while prompts() <= before {
            assert!(
                Instant::now() < deadline,
                "no prompt after `{what}`:\n{}",
                capture()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    for line in [
        "grid x in [0, 1] points 11",
        "field u(x)",
        "equation e: dt(u) = laplace(u)",
        "boundary u: dirichlet(0) on x",
        "initial u = x * (1 - x)",
        // The end time leaves `:step 100000000` running until Ctrl-C.
        "solve e using euler(dt = 1e-3) until 1000000",
    ] {
        let before = prompts();
        tmux(&["send-keys", "-t", &session, "-l", line]);
        tmux(&["send-keys", "-t", &session, "Enter"]);
        wait_for_prompt_after(before, line);
    }
    // Tab completes a command from its prefix, with the space before its argument.
    let before = prompts();
    tmux(&["send-keys", "-t", &session, "-l", ":ste"]);
    tmux(&["send-keys", "-t", &session, "Tab"]);
    tmux(&["send-keys", "-t", &session, "-l", "10"]);
    tmux(&["send-keys", "-t", &session, "Enter"]);
    let screen = wait_for("step 10 (t = 0.01)");
    assert!(
        screen.contains(":step 10"),
        "Tab should complete `:ste` to `:step `:\n{screen}"
    );
    wait_for_prompt_after(before, ":step 10");
    // After `:show `, Tab completes the field names.
    let before = prompts();
    tmux(&["send-keys", "-t", &session, "-l", ":show "]);
    tmux(&["send-keys", "-t", &session, "Tab"]);
    tmux(&["send-keys", "-t", &session, "Enter"]);
    let screen = wait_for("u at step 10");
    assert!(screen.contains(":show u"), "{screen}");
    wait_for_prompt_after(before, ":show u");
    // Ctrl-C stops a long `:step` and keeps the session and its declarations.
    let before = prompts();
    tmux(&["send-keys", "-t", &session, "-l", ":step 100000000"]);
    tmux(&["send-keys", "-t", &session, "Enter"]);
    std::thread::sleep(Duration::from_millis(1500));
    tmux(&["send-keys", "-t", &session, "C-c"]);
    wait_for("interrupted; at step");
    wait_for_prompt_after(before, "Ctrl-C during :step");
    // Ctrl-D on a continuation line discards the statement and keeps the session.
    let before = prompts();
    tmux(&["send-keys", "-t", &session, "-l", "field w("]);
    tmux(&["send-keys", "-t", &session, "Enter"]);
    wait_for("  ...");
    tmux(&["send-keys", "-t", &session, "C-d"]);
    wait_for("discarded the unfinished statement");
    wait_for_prompt_after(before, "Ctrl-D on a continuation line");
    // After `:load `, Tab completes file names.
    let before = prompts();
    tmux(&["send-keys", "-t", &session, "-l", ":reset"]);
    tmux(&["send-keys", "-t", &session, "Enter"]);
    wait_for_prompt_after(before, ":reset");
    let before = prompts();
    tmux(&["send-keys", "-t", &session, "-l", ":lo"]);
    tmux(&["send-keys", "-t", &session, "Tab"]);
    tmux(&["send-keys", "-t", &session, "-l", "examples/heat1d.npd"]);
    tmux(&["send-keys", "-t", &session, "Tab"]);
    tmux(&["send-keys", "-t", &session, "Enter"]);
    let screen = wait_for("loaded examples/heat1d.npde");
    assert!(screen.contains(":load examples/heat1d.npde"), "{screen}");
    wait_for_prompt_after(before, ":load");
    // An error at the terminal is shown, and the session still exits with 0.
    tmux(&["send-keys", "-t", &session, "-l", ":show v"]);
    tmux(&["send-keys", "-t", &session, "Enter"]);
    wait_for("unknown field `v`");
    tmux(&["send-keys", "-t", &session, "-l", ":quit"]);
    tmux(&["send-keys", "-t", &session, "Enter"]);
    let screen = wait_for("exit status");
    let _ = tmux(&["kill-session", "-t", &session]);
    assert!(screen.contains("exit status 0"), "{screen}");
}

#[test]
fn piped_session_keeps_no_history() {
    let home = std::env::temp_dir().join(format!("npdec_repl_home_{}", std::process::id()));
    std::fs::create_dir_all(&home).expect("home folder");
    let mut child = Command::new(env!("CARGO_BIN_EXE_npdec"))
        .arg("repl")
        .env("NO_COLOR", "1")
        .env("HOME", &home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("npdec repl starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"grid x in [0, 1] points 11\n:source\n")
        .expect("write script");
    let output = child.wait_with_output().expect("the session ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(stdout.contains("grid x in [0, 1] points 11"), "{stdout}");
    assert!(
        !home.join(".npdec_history").exists(),
        "a piped script was written to the history file"
    );
}

#[test]
fn piped_session_without_errors_exits_zero() {
    let output = run_script(
        "grid x in [0, 1] points 11\nfield u(x)\n:check\n:source\n",
        &std::env::temp_dir(),
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn piped_session_fails_on_each_kind_of_error() {
    for line in [
        "const a = 1 +\n2 + b",
        ":frobnicate",
        ":load no/such/file.npde",
        ":show",
        ":show u",
        ":step",
    ] {
        let output = run_script(&format!("{line}\n"), &std::env::temp_dir());
        assert_eq!(output.status.code(), Some(1), "`{line}` did not fail");
    }
}

#[test]
fn unknown_command_suggests_closest() {
    let output = run_script(":stpe 3\n:frobnicate\n", &std::env::temp_dir());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("unknown command `:stpe`; did you mean `:step`?"),
        "{stderr}"
    );
    assert!(
        stderr.contains("unknown command `:frobnicate`; :help lists the commands"),
        "{stderr}"
    );
}

#[test]
fn explain_names_loaded_file_lines() {
    let heat1d = std::fs::read_to_string(repo_root().join("examples/heat1d.npde"))
        .expect("examples/heat1d.npde is readable");
    let line = heat1d
        .lines()
        .position(|l| l.starts_with("equation heat"))
        .expect("heat1d declares `heat`")
        + 1;
    // A typed statement first, so that the file's lines differ from the session's lines.
    let output = run_script(
        "const unused_offset = 1\n:load examples/heat1d.npde\n:explain\n",
        &repo_root(),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let source = format!("examples/heat1d.npde:{line}");
    assert!(
        stdout.contains(&format!("heat: dt(u) = 0.1 * laplace(u)    ({source})")),
        "{stdout}"
    );
    let layer = stdout
        .lines()
        .find(|l| l.contains("conv 3 1→1 fixed") && !l.contains("residual("))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(layer.trim_end().ends_with(&source), "{layer}");
}

#[test]
fn explain_prints_subtraction() {
    let output = run_script(
        "grid x in [0, 1] points 21
field u(x)
equation heat: dt(u) = 0.1 * laplace(u) - 2 * u - -u^2 + -(u * u)
boundary u: dirichlet(0) on x
initial u = sin(pi * x)
solve heat using euler(dt = 1e-3) until 1
:explain
",
        &std::env::temp_dir(),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let equation = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("heat:"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(!equation.contains("+ -"), "{equation}");
    assert!(equation.contains("0.1 * laplace(u) - 2 * u"), "{equation}");
}

/// `:step` stops at the solve's `until` and says how many requested steps it did not take; a
/// further `:step` says the solve is at its end, and a steady solve has no steps.
#[test]
fn step_stops_at_until() {
    let output = run_script(
        "grid x in [0, 1] points 11
field u(x)
equation heat: dt(u) = laplace(u)
boundary u: dirichlet(0) on x
initial u = sin(pi * x)
solve heat using euler(dt = 1e-3) until 0.01
:step 4
:step 100
:show u
:step 1
",
        &std::env::temp_dir(),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("step 4 (t = 0.004)\n"), "{stdout}");
    assert!(
        stdout.contains(
            "step 10 (t = 0.01), the end of the solve; 94 requested steps were not taken\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("u at step 10"), "{stdout}");
    assert!(
        stdout.contains("already at the end of the solve, step 10 (t = 0.01)"),
        "{stdout}"
    );
    assert!(!stdout.contains("step 104"), "{stdout}");

    let output = run_script(
        "grid x in [0, 1] points 11
field u(x)
equation poisson: laplace(u) = -1
boundary u: dirichlet(0) on x
solve poisson using steady
:step 1
",
        &std::env::temp_dir(),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the solve task is steady, so it has no time steps"),
        "{stderr}"
    );
}

#[test]
fn failed_plot_keeps_earlier_file() {
    let folder = scratch_folder("plot");
    std::fs::write(folder.join("earlier.txt"), "earlier output").expect("earlier file");
    let output = run_script(
        "grid x in [0, 1] points 11
field u(x)
equation heat: dt(u) = laplace(u)
boundary u: dirichlet(0) on x
initial u = sin(pi * x)
solve heat using euler(dt = 1e-3) until 1
:show u
:plot u earlier.txt
:step 10
:plot u plot.png
",
        &folder,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot plot to `earlier.txt`: the file name must end in `.png`"),
        "{stderr}"
    );
    // Before the first `:step`, a field shows its initial state.
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("u at step 0: min 0"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(folder.join("earlier.txt")).expect("earlier file"),
        "earlier output"
    );
    let png = std::fs::read(folder.join("plot.png")).expect("plot.png was written");
    assert!(png.starts_with(b"\x89PNG"), "plot.png is not a PNG");
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .expect("readable folder")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(names, vec!["earlier.txt", "plot.png"]);
}

#[test]
fn unfinished_statement_at_end_fails() {
    let output = run_script(
        "grid x in [0, 1] points 11\nfield w(\n",
        &std::env::temp_dir(),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the input ended inside an unfinished statement"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the `(` on line 2 is never closed with `)`"),
        "{stderr}"
    );
    assert!(stderr.contains("field w("), "{stderr}");

    let output = run_script("const a = 1 +\n", &std::env::temp_dir());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("line 1 ends with `+`"), "{stderr}");
}

const HEAT: &str = "grid x in [0, 1] points 11
field u(x)
equation heat: dt(u) = laplace(u)
boundary u: dirichlet(0) on x
initial u = sin(pi * x)
solve heat using euler(dt = 1e-3) until 1
";

#[test]
fn plot_checks_file_before_drawing() {
    let folder = scratch_folder("plot_checks");
    std::fs::create_dir_all(folder.join("build")).expect("build folder");
    std::fs::write(folder.join("file"), "").expect("plain file");
    let cases = [
        (
            ":plot u /nonexistent/dir/x.png",
            "the folder `/nonexistent/dir` does not exist",
        ),
        (":plot u build", "`build` is a folder"),
        (":plot u u.txt", "the file name must end in `.png`"),
        (":plot u file/x.png", "`file` is a file, not a folder"),
    ];
    for (command, expected) in cases {
        let output = run_script(&format!("{HEAT}{command}\n"), &folder);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "`{command}`: {stderr}");
        assert!(stderr.contains(expected), "`{command}`: {stderr}");
        assert!(!stderr.contains("tmp"), "`{command}`: {stderr}");
        assert!(!stderr.contains("backend"), "`{command}`: {stderr}");
    }
}

#[test]
fn show_without_fields_says_so() {
    let output = run_script(":show zz\n", &std::env::temp_dir());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("unknown field `zz`: no field is declared yet"),
        "{stderr}"
    );
}

#[test]
fn commands_reject_extra_arguments() {
    for (line, expected) in [
        (
            ":explain extra",
            "`:explain` takes no argument, but got `extra`",
        ),
        (":quit now", "`:quit` takes no argument"),
        (":show u v", "`:show` takes one argument: :show FIELD"),
        (":step 1 2", "`:step` takes one argument"),
        (":plot u a.png b.png", "`:plot` takes two arguments"),
    ] {
        // `:source` after the line shows the session went on.
        let output = run_script(
            &format!("grid x in [0, 1] points 11\n{line}\n:source\n"),
            &std::env::temp_dir(),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "`{line}`: {stderr}");
        assert!(stderr.contains(expected), "`{line}`: {stderr}");
        assert!(
            stdout.contains("grid x in [0, 1] points 11"),
            "`{line}`: {stdout}"
        );
    }
}
