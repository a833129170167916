//! `npdec lsp` on standard input from a client that is not well-behaved. Bodies that are not
//! JSON-RPC messages get error responses and the server goes on. Broken framing or the end of the
//! input stops it, with a message that names what happened and exit status 1.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Starts `npdec lsp` with piped standard input, output and error.
fn spawn_server() -> Child {
    Command::new(env!("CARGO_BIN_EXE_npdec"))
        .arg("lsp")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("npdec lsp starts")
}

/// Runs `npdec lsp` with `input` on standard input, which then ends.
fn serve(input: &[u8]) -> Output {
    let mut child = spawn_server();
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
fn broken_framing_is_reported() {
    for input in [
        &b"garbage\r\n\r\n"[..],
        b"Content-Type: application/json\r\n\r\n{}",
        b"Content-Length: 50\r\n\r\n{}",
    ] {
        let output = serve(input);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("the input is not framed as LSP messages"),
            "{stderr}"
        );
    }
}

/// A server process driven message by message, with its replies read on a thread.
struct Session {
    child: Child,
    stdin: ChildStdin,
    replies: mpsc::Receiver<Value>,
}

impl Session {
    fn start() -> Self {
        let mut child = spawn_server();
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let (sender, replies) = mpsc::channel();
        std::thread::spawn(move || loop {
            let mut length = None;
            loop {
                let mut line = String::new();
                if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some(value) = line.strip_prefix("Content-Length: ") {
                    length = value.parse::<usize>().ok();
                }
            }
            let mut body = vec![0; length.expect("the server sends Content-Length")];
            stdout.read_exact(&mut body).expect("a whole body");
            let reply = serde_json::from_slice(&body).expect("the server sends JSON");
            if sender.send(reply).is_err() {
                return;
            }
        });
        Session {
            child,
            stdin,
            replies,
        }
    }

    fn send_body(&mut self, body: &[u8]) {
        write!(self.stdin, "Content-Length: {}\r\n\r\n", body.len()).expect("write header");
        self.stdin.write_all(body).expect("write body");
        self.stdin.flush().expect("flush");
    }

    fn send(&mut self, message: Value) {
        self.send_body(message.to_string().as_bytes());
    }

    /// Returns the next reply that is not a notification.
    fn response(&self) -> Value {
        loop {
            let reply = self
                .replies
                .recv_timeout(Duration::from_secs(20))
                .expect("the server replies");
            if reply.get("method").is_none() {
                return reply;
            }
        }
    }
}

#[test]
fn invalid_messages_get_error_responses() {
    let mut session = Session::start();

    // A request before `initialize`: a plain message, not Rust debug output.
    session
        .send(json!({ "jsonrpc": "2.0", "id": 1, "method": "textDocument/hover", "params": {} }));
    let reply = session.response();
    assert_eq!(reply["id"], 1);
    assert_eq!(reply["error"]["code"], -32002);
    assert_eq!(
        reply["error"]["message"],
        "the server is not initialized: send `initialize` before `textDocument/hover`"
    );

    // A truncated body: a parse error with the id null.
    session.send_body(br#"{"jsonrpc": "2.0", "id": 2, "method": "initialize", "par"#);
    let reply = session.response();
    assert_eq!(reply["id"], Value::Null, "{reply}");
    assert_eq!(reply["error"]["code"], -32700, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("parse error: the message body is not valid JSON"),
        "{reply}"
    );

    // Valid JSON that is no message: an invalid request with the id null.
    for body in [&b"[]"[..], b"42", br#"{"jsonrpc": "2.0"}"#] {
        session.send_body(body);
        let reply = session.response();
        assert_eq!(reply["id"], Value::Null, "{reply}");
        assert_eq!(reply["error"]["code"], -32600, "{reply}");
    }
    // An object with a valid id keeps it in the error.
    session.send(json!({ "jsonrpc": "2.0", "id": 3, "method": 7 }));
    let reply = session.response();
    assert_eq!(reply["id"], 3, "{reply}");
    assert_eq!(reply["error"]["code"], -32600, "{reply}");

    // The server still serves: the handshake, a request, and a bad body in between.
    session.send(json!({ "jsonrpc": "2.0", "id": 4, "method": "initialize", "params": { "capabilities": {} } }));
    let reply = session.response();
    assert_eq!(reply["id"], 4);
    assert!(
        reply["result"]["capabilities"]["completionProvider"].is_object(),
        "{reply}"
    );
    session.send(json!({ "jsonrpc": "2.0", "method": "initialized", "params": {} }));
    session.send_body(b"{");
    assert_eq!(session.response()["error"]["code"], -32700);
    session.send(json!({ "jsonrpc": "2.0", "id": 5, "method": "npdec/unknown", "params": {} }));
    let reply = session.response();
    assert_eq!(reply["id"], 5);
    assert_eq!(reply["error"]["code"], -32601, "{reply}");

    session.send(json!({ "jsonrpc": "2.0", "id": 6, "method": "shutdown" }));
    let reply = session.response();
    assert_eq!(reply["id"], 6);
    assert_eq!(reply["result"], Value::Null, "{reply}");
    session.send(json!({ "jsonrpc": "2.0", "method": "exit" }));
    let status = session.child.wait().expect("the server exits");
    let mut stderr = String::new();
    if let Some(mut pipe) = session.child.stderr.take() {
        pipe.read_to_string(&mut stderr).expect("read stderr");
    }
    assert_eq!(status.code(), Some(0), "{stderr}");
}
