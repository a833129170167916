//! The stdio transport: JSON-RPC messages framed by a `Content-Length` header, between the editor
//! on standard input and output and the server on an in-memory [`Connection`].
//!
//! lsp-server's own stdio transport ends the session at the first body that is not a JSON-RPC
//! message. This one replies to such a body as JSON-RPC 2.0 prescribes, with a `-32700` parse error
//! for invalid JSON and a `-32600` invalid request for valid JSON of another shape, both with the
//! id `null` unless the object carries a valid id, and goes on reading. Only a broken frame (a
//! header without `Content-Length`, or input that ends inside a body) ends the session, because
//! after it the start of the next message is unknown.

use lsp_server::{Connection, ErrorCode, Message};
use serde_json::{json, Value};
use std::io::{self, BufRead, Read, Write};
use std::thread::JoinHandle;

/// The threads that move messages between standard input and output and the server.
pub struct IoThreads {
    reader: JoinHandle<io::Result<()>>,
    writer: JoinHandle<io::Result<()>>,
}

impl IoThreads {
    /// Waits for the reader, which has stopped after `exit` or at the end of the input, and
    /// returns its error if the input was not framed as LSP messages.
    pub fn join_reader(self) -> io::Result<()> {
        let read = self
            .reader
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the reader thread panicked")));
        join_writer(self.writer)?;
        read
    }

    /// Waits until the writer has sent every message the server queued. The server's side of the
    /// connection must be dropped first, because the writer stops only when that side is gone.
    pub fn join_writer(self) -> io::Result<()> {
        join_writer(self.writer)
    }
}

fn join_writer(writer: JoinHandle<io::Result<()>>) -> io::Result<()> {
    writer
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the writer thread panicked")))
}

/// Starts the transport on standard input and output; returns the server's side of the connection.
pub fn stdio() -> (Connection, IoThreads) {
    let (server, client) = Connection::memory();
    let Connection { sender, receiver } = client;
    let writer = std::thread::Builder::new()
        .name("npdec-lsp-writer".to_string())
        .spawn(move || {
            for message in receiver {
                message.write(&mut io::stdout().lock())?;
            }
            Ok(())
        })
        .expect("spawning a thread succeeds");
    let reader = std::thread::Builder::new()
        .name("npdec-lsp-reader".to_string())
        .spawn(move || {
            let mut input = io::stdin().lock();
            while let Some(body) = read_frame(&mut input)? {
                match decode(&body) {
                    Ok(message) => {
                        let is_exit =
                            matches!(&message, Message::Notification(n) if n.method == "exit");
                        if sender.send(message).is_err() || is_exit {
                            // The server has stopped, or will stop: the rest of the input is
                            // not read.
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(code = error.code, message = %error.message, "rejected a message");
                        write_frame(&mut io::stdout().lock(), &error.to_response())?;
                    }
                }
            }
            Ok(())
        })
        .expect("spawning a thread succeeds");
    (server, IoThreads { reader, writer })
}

/// A body that is not a JSON-RPC message: the error response it gets.
#[derive(Debug)]
pub struct Rejection {
    pub code: i32,
    pub message: String,
    /// The id of the rejected request if it had a valid one, else `null`.
    pub id: Value,
}

impl Rejection {
    fn to_response(&self) -> Value {
        json!({
            "jsonrpc": "2.0",
            "id": self.id,
            "error": { "code": self.code, "message": self.message },
        })
    }
}

/// Decodes a message body: a JSON request, response or notification object.
pub fn decode(body: &[u8]) -> Result<Message, Rejection> {
    let value: Value = serde_json::from_slice(body).map_err(|error| Rejection {
        code: ErrorCode::ParseError as i32,
        message: format!("parse error: the message body is not valid JSON: {error}"),
        id: Value::Null,
    })?;
    let shape = match &value {
        Value::Object(_) => None,
        Value::Array(_) => Some("an array (LSP has no batch messages)"),
        Value::String(_) => Some("a string"),
        Value::Number(_) => Some("a number"),
        Value::Bool(_) => Some("a boolean"),
        Value::Null => Some("null"),
    };
    let id = match value.get("id") {
        Some(id) if id.is_string() || id.is_i64() => id.clone(),
        _ => Value::Null,
    };
    let invalid = |problem: &str| {
        Rejection {
        code: ErrorCode::InvalidRequest as i32,
        message: format!(
            "invalid request: expected a JSON-RPC request, response or notification object, but {problem}"
        ),
        id: id.clone(),
    }
    };
    if let Some(shape) = shape {
        return Err(invalid(&format!("found {shape}")));
    }
    if value.get("method").is_some_and(|m| !m.is_string()) {
        return Err(invalid("`method` is not a string"));
    }
    if value
        .get("id")
        .is_some_and(|i| !(i.is_string() || i.is_i64()))
    {
        return Err(invalid("`id` is not a string or an integer"));
    }
    if value.get("method").is_none()
        && value.get("result").is_none()
        && value.get("error").is_none()
    {
        return Err(invalid("the object has no `method`, `result` or `error`"));
    }
    serde_json::from_value(value).map_err(|error| invalid(&error.to_string()))
}

/// Reads one frame: the header lines, a blank line and the body of `Content-Length` bytes. Returns
/// `None` at the end of the input between two frames.
pub fn read_frame(input: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidData, message);
    let mut length = None;
    let mut line = String::new();
    let mut first = true;
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            if first {
                return Ok(None);
            }
            return Err(invalid(
                "the input ended inside a message header".to_string(),
            ));
        }
        first = false;
        let Some(header) = line.strip_suffix("\r\n") else {
            return Err(invalid(format!(
                "malformed header line {line:?}: a header line ends with \\r\\n"
            )));
        };
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(invalid(format!(
                "malformed header line {header:?}: expected `Name: value`"
            )));
        };
        if name.trim().eq_ignore_ascii_case("Content-Length") {
            let value = value.trim();
            length = Some(value.parse::<usize>().map_err(|_| {
                invalid(format!(
                    "invalid Content-Length `{value}`: expected a number of bytes"
                ))
            })?);
        }
    }
    let length =
        length.ok_or_else(|| invalid("a message header has no Content-Length".to_string()))?;
    let mut body = Vec::new();
    input.take(length as u64).read_to_end(&mut body)?;
    if body.len() < length {
        return Err(invalid(format!(
            "the input ended inside a message body: Content-Length is {length} but only {} bytes followed",
            body.len()
        )));
    }
    Ok(Some(body))
}

fn write_frame(output: &mut impl Write, message: &Value) -> io::Result<()> {
    let body = message.to_string();
    write!(output, "Content-Length: {}\r\n\r\n{body}", body.len())?;
    output.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_json_is_parse_error() {
        let rejection = decode(br#"{"jsonrpc": "2.0", "id": 1, "method": "#).unwrap_err();
        assert_eq!(rejection.code, -32700);
        assert_eq!(rejection.id, Value::Null);
    }

    #[test]
    fn other_json_is_invalid_request() {
        for (body, id) in [
            (&b"[]"[..], Value::Null),
            (b"7", Value::Null),
            (br#"{"jsonrpc": "2.0"}"#, Value::Null),
            (br#"{"jsonrpc": "2.0", "id": 4, "method": 5}"#, json!(4)),
            (
                br#"{"jsonrpc": "2.0", "id": true, "method": "x"}"#,
                Value::Null,
            ),
        ] {
            let rejection = decode(body).unwrap_err();
            assert_eq!(rejection.code, -32600, "{}", String::from_utf8_lossy(body));
            assert_eq!(rejection.id, id, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn frame_needs_content_length() {
        let mut input: &[u8] = b"Content-Type: x\r\n\r\n{}";
        let error = read_frame(&mut input).unwrap_err();
        assert!(error.to_string().contains("no Content-Length"), "{error}");
    }

    #[test]
    fn frame_reads_exact_body() {
        let mut input: &[u8] = b"content-length: 2\r\n\r\n{}Content-Length: 3\r\n\r\n[1]";
        assert_eq!(read_frame(&mut input).unwrap().unwrap(), b"{}");
        assert_eq!(read_frame(&mut input).unwrap().unwrap(), b"[1]");
        assert!(read_frame(&mut input).unwrap().is_none());
    }

    #[test]
    fn short_body_is_framing_error() {
        let mut input: &[u8] = b"Content-Length: 10\r\n\r\n{}";
        let error = read_frame(&mut input).unwrap_err();
        assert!(
            error.to_string().contains("ended inside a message body"),
            "{error}"
        );
    }
}
