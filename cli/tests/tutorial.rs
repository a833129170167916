//! The commands of `docs/tutorial.md`, run as a reader would run them, so that the tutorial stays
//! true.
//!
//! Every fenced block whose info string starts with `sh` is a shell script. The blocks run in order
//! with `bash -eo pipefail`, all in one scratch folder that holds a copy of `examples/`, as the root
//! of a clone would, with the `npdec` under test first on `PATH`. Words after `sh` in the info string
//! change what the test does with a block:
//!
//! - `long`: not run (a clone, a release build, a full training run);
//! - `exit=N`: the block must exit with status N instead of 0;
//! - `numpy`: needs Python with numpy; without it the block is skipped with a message, except under
//!   CI (`CI` set), where `.ci/run` installs numpy and a missing numpy fails the test.
//!
//! A `text` block right after a block that runs (blank lines between them only) is the output the
//! reader should see: each of its lines must appear among the lines the block printed (stdout and
//! stderr), in any order, after both sides have every number replaced by `#`, since timings and
//! the last digits of results vary. Lines that contain `…` or `...` are not compared.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One `sh` block of the tutorial.
#[derive(Debug)]
struct ShellBlock {
    /// The line of the opening fence, counted from 1.
    line: usize,
    script: String,
    long: bool,
    expected_exit: i32,
    needs_numpy: bool,
    /// The `text` block that follows the block, if one does.
    output: Option<String>,
}

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// Splits Markdown into its `sh` blocks, reading the markers after `sh` in the info string.
fn shell_blocks(markdown: &str) -> Vec<ShellBlock> {
    let mut blocks: Vec<ShellBlock> = Vec::new();
    let mut lines = markdown.lines().enumerate();
    // True while only blank lines came since the end of the last `sh` block.
    let mut after_shell = false;
    while let Some((index, line)) = lines.next() {
        let Some(info) = line.trim_start().strip_prefix("```") else {
            after_shell &= line.trim().is_empty();
            continue;
        };
        let mut words = info.split_whitespace();
        let is_shell = words.next() == Some("sh");
        let markers: Vec<&str> = words.collect();
        let mut script = String::new();
        for (_, body) in lines.by_ref() {
            if body.trim_start().starts_with("```") {
                break;
            }
            script.push_str(body);
            script.push('\n');
        }
        if !is_shell {
            if after_shell && info.trim() == "text" {
                if let Some(last) = blocks.last_mut() {
                    last.output = Some(script);
                }
            }
            after_shell = false;
            continue;
        }
        after_shell = true;
        let mut block = ShellBlock {
            line: index + 1,
            script,
            long: false,
            expected_exit: 0,
            needs_numpy: false,
            output: None,
        };
        for marker in markers {
            match marker {
                "long" => block.long = true,
                "numpy" => block.needs_numpy = true,
                _ => {
                    let code = marker.strip_prefix("exit=").unwrap_or_else(|| {
                        panic!("line {}: unknown marker `{marker}`", block.line)
                    });
                    block.expected_exit = code
                        .parse()
                        .unwrap_or_else(|_| panic!("line {}: invalid `{marker}`", block.line));
                }
            }
        }
        blocks.push(block);
    }
    blocks
}

/// Replaces every number (digits with an optional sign, fraction and exponent, not right after a
/// letter as in `heat2d`) by `#` and trims the line.
fn without_numbers(line: &str) -> String {
    let chars: Vec<char> = line.trim().chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let signed = (chars[i] == '-' || chars[i] == '+')
            && chars.get(i + 1).is_some_and(|c| c.is_ascii_digit())
            && (i == 0 || !chars[i - 1].is_alphanumeric());
        let after_letter = i > 0 && chars[i - 1].is_alphabetic();
        if !((chars[i].is_ascii_digit() && !after_letter) || signed) {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        i += 1;
        while i < chars.len() {
            let c = chars[i];
            let exponent_sign = (c == '-' || c == '+') && matches!(chars[i - 1], 'e' | 'E');
            let part = c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit()))
                || (matches!(c, 'e' | 'E')
                    && chars
                        .get(i + 1)
                        .is_some_and(|n| n.is_ascii_digit() || *n == '-' || *n == '+'));
            if !(part || exponent_sign) {
                break;
            }
            i += 1;
        }
        out.push('#');
    }
    out
}

/// Returns the lines of `expected` that `printed` lacks, both without numbers.
fn missing_lines(expected: &str, printed: &str) -> Vec<String> {
    let printed: Vec<String> = printed.lines().map(without_numbers).collect();
    expected
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.contains('…') && !line.contains("..."))
        .filter(|line| !printed.contains(&without_numbers(line)))
        .map(|line| line.to_string())
        .collect()
}

fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the folder") {
        let entry = entry.expect("folder entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_folder(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

fn numpy_available() -> bool {
    Command::new("python3")
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn markers_are_read_from_info_strings() {
    let markdown = "text\n```sh\nnpdec check a.npde\n```\n```text\nnot run\n```\n\
                    ```sh long\nnpdec run big.npde\n```\n```sh exit=1 numpy\nfalse\n```\n";
    let blocks = shell_blocks(markdown);
    assert_eq!(blocks.len(), 3);
    assert_eq!(blocks[0].line, 2);
    assert_eq!(blocks[0].script, "npdec check a.npde\n");
    assert!(!blocks[0].long);
    assert!(blocks[1].long);
    assert_eq!(blocks[2].expected_exit, 1);
    assert!(blocks[2].needs_numpy);
    assert_eq!(blocks[0].output.as_deref(), Some("not run\n"));
    assert_eq!(blocks[1].output, None);

    let markdown = "```sh\nnpdec run a.npde\n```\n\n```text\nsolved in 2 steps\n```\n\
                    ```sh\nls\n```\nSome prose.\n```text\nnot the output\n```\n";
    let blocks = shell_blocks(markdown);
    assert_eq!(blocks[0].output.as_deref(), Some("solved in 2 steps\n"));
    assert_eq!(blocks[1].output, None);
}

#[test]
fn output_is_compared_without_numbers() {
    assert_eq!(
        without_numbers("wrote 7 files (0.09 s), value 4.9e-6, t = -1, u_000500.npy"),
        "wrote # files (# s), value #, t = #, u_#.npy"
    );
    assert_eq!(without_numbers("x-1 e2e 3e+4 heat2d"), "x-# e2e # heat2d");
    let printed = "solved with euler in 2500 steps (0.12 s)\nwrote 7 files to out/heat1d\n";
    assert!(missing_lines("wrote 8 files to out/heat1d\n\n", printed).is_empty());
    assert_eq!(
        missing_lines("wrote 7 files to out/heat2d\nshown … elided\n", printed),
        ["wrote 7 files to out/heat2d"]
    );
}

#[test]
fn tutorial_commands_run() {
    let root = repository_root();
    let tutorial =
        std::fs::read_to_string(root.join("docs/tutorial.md")).expect("docs/tutorial.md exists");
    let blocks = shell_blocks(&tutorial);

    let scratch = std::env::temp_dir().join(format!("npdec-tutorial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    copy_folder(&root.join("examples"), &scratch.join("examples"));

    let binary = PathBuf::from(env!("CARGO_BIN_EXE_npdec"));
    let bin_dir = binary.parent().expect("binary folder");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let has_numpy = numpy_available();
    let under_ci = std::env::var_os("CI").is_some();

    let mut ran = 0;
    for block in &blocks {
        if block.long {
            continue;
        }
        if block.needs_numpy && !has_numpy {
            assert!(
                !under_ci,
                "line {}: CI must have numpy (.ci/run installs it)",
                block.line
            );
            eprintln!(
                "skipping the block at line {}: python3 with numpy is missing",
                block.line
            );
            continue;
        }
        let output = Command::new("bash")
            .args(["-eo", "pipefail", "-c", &block.script])
            .current_dir(&scratch)
            .env("PATH", &path)
            .env("NO_COLOR", "1")
            .output()
            .expect("bash runs");
        assert_eq!(
            output.status.code(),
            Some(block.expected_exit),
            "the block at docs/tutorial.md line {} exited with {:?}:\n{}\nstdout:\n{}\nstderr:\n{}",
            block.line,
            output.status.code(),
            block.script,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if let Some(expected) = &block.output {
            let printed = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            let missing = missing_lines(expected, &printed);
            assert!(
                missing.is_empty(),
                "the block at docs/tutorial.md line {} did not print these lines of the output shown \
                 after it (numbers aside):\n{}\nit printed:\n{printed}",
                block.line,
                missing.join("\n")
            );
        }
        ran += 1;
    }
    // The tutorial walks through a dozen steps; far fewer run blocks means the markers went wrong.
    assert!(ran >= 8, "only {ran} blocks of the tutorial ran");
    let _ = std::fs::remove_dir_all(&scratch);
}
