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
}

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// Splits Markdown into its `sh` blocks, reading the markers after `sh` in the info string.
fn shell_blocks(markdown: &str) -> Vec<ShellBlock> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let Some(info) = line.trim_start().strip_prefix("```") else {
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
            continue;
        }
        let mut block = ShellBlock {
            line: index + 1,
            script,
            long: false,
            expected_exit: 0,
            needs_numpy: false,
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
        ran += 1;
    }
    // The tutorial walks through a dozen steps; far fewer run blocks means the markers went wrong.
    assert!(ran >= 8, "only {ran} blocks of the tutorial ran");
    let _ = std::fs::remove_dir_all(&scratch);
}
