//! `npdec lsp` on standard input that is not a well-behaved client: the error names what happened and
//! the exit status is 1.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `npdec lsp` with `input` on standard input, which then ends.
fn serve(input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_npdec"))
        .arg("lsp")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("npdec lsp starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write input");
    child.wait_with_output().expect("the server ends")
}

#[test]
fn end_of_input_is_reported() {
    let output = serve(b"");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the client closed the connection without sending `shutdown` and `exit`"),
        "{stderr}"
    );
    assert!(!stderr.contains("disconnected channel"), "{stderr}");
}

#[test]
fn malformed_input_is_reported() {
    for input in [&b"garbage\r\n\r\n"[..], b"Content-Length: 5\r\n\r\nhello"] {
        let output = serve(input);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("the input is not a valid JSON-RPC message"),
            "{stderr}"
        );
    }
}
