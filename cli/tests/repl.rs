//! The REPL, driven two ways: a script piped to standard input, and keystrokes in a real terminal
//! (tmux, which `.ci/run` installs; without it the second test says so and passes, except under CI).

use std::io::Write;
use std::process::{Command, Stdio};
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

#[test]
fn piped_session_checks_steps_and_shows() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_npdec"))
        .arg("repl")
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
        .write_all(SCRIPT.as_bytes())
        .expect("write script");
    let output = child.wait_with_output().expect("the session ends");
    assert!(output.status.success());
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
    let command = format!(
        "NO_COLOR=1 HOME={} {} repl",
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
        "solve e using euler(dt = 1e-3) until 1",
    ] {
        let before = prompts();
        tmux(&["send-keys", "-t", &session, "-l", line]);
        tmux(&["send-keys", "-t", &session, "Enter"]);
        wait_for_prompt_after(before, line);
    }
    // Tab completes a command from its prefix.
    let before = prompts();
    tmux(&["send-keys", "-t", &session, "-l", ":ste"]);
    tmux(&["send-keys", "-t", &session, "Tab"]);
    tmux(&["send-keys", "-t", &session, "-l", " 10"]);
    tmux(&["send-keys", "-t", &session, "Enter"]);
    let screen = wait_for("step 10 (t = 0.01)");
    assert!(
        screen.contains(":step 10"),
        "Tab should complete `:ste` to `:step`:\n{screen}"
    );
    wait_for_prompt_after(before, ":step 10");
    tmux(&["send-keys", "-t", &session, "-l", ":show u"]);
    tmux(&["send-keys", "-t", &session, "Enter"]);
    wait_for("u at step 10");
    tmux(&["send-keys", "-t", &session, "-l", ":quit"]);
    tmux(&["send-keys", "-t", &session, "Enter"]);
    std::thread::sleep(Duration::from_millis(200));
    let _ = tmux(&["kill-session", "-t", &session]);
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
