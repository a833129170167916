//! Protocol-level tests: a client talks to the server over an in-memory connection.

use lsp_server::{Connection, Message, Notification, Request, RequestId, Response};
use serde_json::{json, Value};
use std::time::Duration;

const URI: &str = "file:///tmp/npdec-lsp-test/model.npde";

const BROKEN: &str = "grid x in [0, 1] points 11\nfield u(x)\nconst nu = 0.1\nequation heat: dt(u) = nu * lapalce(u)\nboundary u: dirichlet(0) on x\ninitial u = sin(pi * x)\nsolve heat using euler(dt = 1e-3) until 0.1\n";

struct Client {
    connection: Connection,
    next_id: i32,
    server: Option<std::thread::JoinHandle<()>>,
}

impl Client {
    fn start() -> Self {
        let (server_side, client_side) = Connection::memory();
        let server = std::thread::spawn(move || {
            npdec_lsp::serve(server_side).expect("the server runs until exit")
        });
        let mut client = Client {
            connection: client_side,
            next_id: 1,
            server: Some(server),
        };
        let response = client.request("initialize", json!({ "capabilities": {} }));
        assert!(response["capabilities"]["hoverProvider"]
            .as_bool()
            .unwrap_or(false));
        client.notify("initialized", json!({}));
        client
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = RequestId::from(self.next_id);
        self.next_id += 1;
        self.connection
            .sender
            .send(Message::Request(Request::new(
                id.clone(),
                method.to_string(),
                params,
            )))
            .expect("send");
        loop {
            match self
                .connection
                .receiver
                .recv_timeout(Duration::from_secs(20))
                .expect("a response arrives")
            {
                Message::Response(Response {
                    id: got,
                    response_result,
                }) if got == id => {
                    return response_result
                        .unwrap_or_else(|error| panic!("{method} failed: {error:?}"));
                }
                _ => continue,
            }
        }
    }

    fn request_error(&mut self, method: &str, params: Value) -> lsp_server::ResponseError {
        let id = RequestId::from(self.next_id);
        self.next_id += 1;
        self.connection
            .sender
            .send(Message::Request(Request::new(
                id.clone(),
                method.to_string(),
                params,
            )))
            .expect("send");
        loop {
            if let Message::Response(Response {
                id: got,
                response_result: Err(error),
            }) = self
                .connection
                .receiver
                .recv_timeout(Duration::from_secs(20))
                .expect("a response arrives")
            {
                if got == id {
                    return error;
                }
            }
        }
    }

    fn notify(&self, method: &str, params: Value) {
        self.connection
            .sender
            .send(Message::Notification(Notification::new(
                method.to_string(),
                params,
            )))
            .expect("send");
    }

    fn diagnostics(&self) -> Vec<Value> {
        loop {
            if let Message::Notification(n) = self
                .connection
                .receiver
                .recv_timeout(Duration::from_secs(20))
                .expect("diagnostics arrive")
            {
                if n.method == "textDocument/publishDiagnostics" {
                    return n.params["diagnostics"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                }
            }
        }
    }

    fn open(&self, text: &str) -> Vec<Value> {
        self.notify("textDocument/didOpen", json!({ "textDocument": { "uri": URI, "languageId": "npde", "version": 1, "text": text } }));
        self.diagnostics()
    }

    fn stop(mut self) {
        self.request("shutdown", Value::Null);
        self.notify("exit", Value::Null);
        self.server
            .take()
            .expect("started")
            .join()
            .expect("the server thread ends cleanly");
    }
}

fn position(line: u32, character: u32) -> Value {
    json!({ "textDocument": { "uri": URI }, "position": { "line": line, "character": character } })
}

#[test]
fn diagnostics_published_on_open_and_change() {
    let client = Client::start();
    let diagnostics = client.open(BROKEN);
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    let diagnostic = &diagnostics[0];
    assert_eq!(diagnostic["code"], "E0104");
    assert_eq!(diagnostic["severity"], 1);
    assert_eq!(
        diagnostic["range"]["start"],
        json!({ "line": 3, "character": 28 })
    );
    assert!(diagnostic["message"]
        .as_str()
        .unwrap()
        .contains("help: did you mean `laplace`?"));

    let fixed = BROKEN.replace("lapalce", "laplace");
    client.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": URI, "version": 2 }, "contentChanges": [{ "text": fixed }] }),
    );
    assert!(client.diagnostics().is_empty());
    client.stop();
}

#[test]
fn hover_describes_fields_equations_and_builtins() {
    let mut client = Client::start();
    client.open(&BROKEN.replace("lapalce", "laplace"));
    let field = client.request("textDocument/hover", position(1, 6));
    let text = field["contents"]["value"].as_str().expect("markdown hover");
    assert!(text.contains("field u on x (11 points), real"), "{text}");

    let equation = client.request("textDocument/hover", position(3, 10));
    let text = equation["contents"]["value"].as_str().unwrap();
    assert!(text.contains("dt(u) = 0.1 * laplace(u)"), "{text}");

    let builtin = client.request("textDocument/hover", position(3, 31));
    assert!(builtin["contents"]["value"]
        .as_str()
        .unwrap()
        .contains("the Laplacian"));

    let nothing = client.request("textDocument/hover", position(0, 1));
    assert!(nothing.is_null());
    client.stop();
}

const HEAT2D: &str = "grid (x, y) in [0, 1] points 11\nfield u(x, y)\nequation heat: dt(u) = 0.5 * laplace(u) + u * (1 - u)\nboundary u: dirichlet(0) on x, y\ninitial u = sin(pi * x) * sin(pi * y)\nsolve heat using euler(dt = 1e-4) until 1e-3\n";

#[test]
fn hover_shows_equation_stencil_and_layers() {
    let mut client = Client::start();
    assert!(client.open(HEAT2D).is_empty());
    let hover = client.request("textDocument/hover", position(2, 10));
    let text = hover["contents"]["value"].as_str().expect("markdown hover");
    // The second-order Laplacian on h = 0.1 in both axes: the 5-point stencil.
    assert!(text.contains("`laplace`, 5 points"), "{text}");
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("`laplace`, 5 points"))
        .skip(2)
        .take(4)
        .collect();
    assert_eq!(
        table,
        [
            "        -1    +0    +1",
            "  -1     ·   100     ·",
            "  +0   100  -400   100",
            "  +1     ·   100     ·",
        ],
        "{text}"
    );
    // The layers of an explicit Euler step: a residual block around a fixed 3×3 convolution.
    assert!(text.contains("layers it generates"), "{text}");
    assert!(
        text.contains("`solve heat`: 10 × residual(conv 3×3 1→1 fixed + pointwise)"),
        "{text}"
    );
    assert!(text.contains("- residual"), "{text}");
    assert!(
        text.contains("- conv 3×3 1→1 fixed (0 parameters) ← `0.5 * laplace(u)`"),
        "{text}"
    );

    // A model with an error still shows the normal form, without stencils or layers.
    let broken = HEAT2D.replace("u * (1 - u)", "u * (1 - w)");
    client.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": URI, "version": 2 }, "contentChanges": [{ "text": broken }] }),
    );
    assert_eq!(client.diagnostics().len(), 1);
    let hover = client.request("textDocument/hover", position(2, 10));
    let text = hover["contents"]["value"].as_str().expect("markdown hover");
    assert!(text.contains("equation heat"), "{text}");
    assert!(!text.contains("stencils"), "{text}");
    client.stop();
}

#[test]
fn definition_completion_and_symbols() {
    let mut client = Client::start();
    client.open(BROKEN);
    let definition = client.request("textDocument/definition", position(3, 25));
    assert_eq!(
        definition["range"]["start"],
        json!({ "line": 2, "character": 6 })
    );
    assert_eq!(definition["uri"], URI);

    let completions = client.request("textDocument/completion", position(3, 30));
    let labels: Vec<&str> = completions
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    for expected in ["laplace", "equation", "nu", "softplus", "heat"] {
        assert!(labels.contains(&expected), "missing completion {expected}");
    }

    let symbols = client.request(
        "textDocument/documentSymbol",
        json!({ "textDocument": { "uri": URI } }),
    );
    let names: Vec<&str> = symbols
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "x",
            "u",
            "nu",
            "heat",
            "boundary u",
            "initial u",
            "solve heat"
        ]
    );
    client.stop();
}

#[test]
fn half_typed_input_never_breaks_the_server() {
    let mut client = Client::start();
    let mut text = String::new();
    for (version, c) in BROKEN.chars().enumerate() {
        text.push(c);
        if version % 7 != 0 {
            continue;
        }
        client.notify(
            "textDocument/didChange",
            json!({ "textDocument": { "uri": URI, "version": version }, "contentChanges": [{ "text": text }] }),
        );
        client.diagnostics();
        let hover = client.request("textDocument/hover", position(0, 2));
        assert!(hover.is_null() || hover["contents"].is_object());
    }
    let error = client.request_error("textDocument/hover", json!({ "textDocument": { "uri": "file:///not/open.npde" }, "position": { "line": 0, "character": 0 } }));
    assert!(error.message.contains("not open"));
    let error = client.request_error("npdec/unknown", json!({}));
    assert!(error.message.contains("not supported"));
    client.stop();
}

type Served = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Starts a server and completes the handshake; returns the client side and the server thread.
fn initialized_server() -> (Connection, std::thread::JoinHandle<Served>) {
    let (server_side, client_side) = Connection::memory();
    let server = std::thread::spawn(move || npdec_lsp::serve(server_side));
    let initialize = Request::new(
        RequestId::from(1),
        "initialize".to_string(),
        json!({ "capabilities": {} }),
    );
    client_side
        .sender
        .send(Message::Request(initialize))
        .expect("send");
    client_side
        .receiver
        .recv_timeout(Duration::from_secs(20))
        .expect("the initialize response arrives");
    client_side
        .sender
        .send(Message::Notification(Notification::new(
            "initialized".to_string(),
            json!({}),
        )))
        .expect("send");
    (client_side, server)
}

#[test]
fn closed_connection_is_client_gone() {
    // Before the handshake.
    let (server_side, client_side) = Connection::memory();
    drop(client_side);
    let error = npdec_lsp::serve(server_side).expect_err("no client, no session");
    assert!(error.is::<npdec_lsp::ClientGone>(), "{error}");

    // After the handshake, with neither `shutdown` nor `exit`.
    let (client_side, server) = initialized_server();
    drop(client_side);
    let error = server
        .join()
        .expect("the server thread returns")
        .expect_err("the client left without exit");
    assert!(error.is::<npdec_lsp::ClientGone>(), "{error}");
}

#[test]
fn exit_before_shutdown_is_error() {
    let (client_side, server) = initialized_server();
    client_side
        .sender
        .send(Message::Notification(Notification::new(
            "exit".to_string(),
            Value::Null,
        )))
        .expect("send");
    let error = server
        .join()
        .expect("the server thread returns")
        .expect_err("`exit` without `shutdown` is an error");
    assert!(error.to_string().contains("before `shutdown`"), "{error}");
}

/// A document with a `.` or `::` where completion is asked for on each of the lines 3 to 6.
const HALF_TYPED: &str = "grid x in [0, 1] points 11\nfield u(x)\ndata mnist = idx(\"a.gz\", \"b.gz\")\nuse std::\nuse std::activations::\ninitial u = mnist.\nboundary u: dirichlet(0) on x.\nconst c = u.\n";

#[test]
fn completion_follows_dot_and_colons() {
    let mut client = Client::start();
    client.open(HALF_TYPED);
    let mut labels = |line: u32, character: u32| -> Vec<String> {
        let completions = client.request("textDocument/completion", position(line, character));
        completions
            .as_array()
            .expect("a completion list")
            .iter()
            .map(|c| c["label"].as_str().expect("a label").to_string())
            .collect()
    };

    assert_eq!(labels(5, 18), ["input", "label", "sequence"]);
    assert_eq!(labels(6, 30), ["min", "max"]);
    assert_eq!(labels(7, 12), Vec::<String>::new());
    let modules = labels(3, 9);
    assert_eq!(
        modules.len(),
        npdec_sema::STDLIB_MODULES.len(),
        "{modules:?}"
    );
    for module in ["ops", "activations", "equations", "layers"] {
        assert!(modules.iter().any(|m| m == module), "{modules:?}");
    }
    let functions = labels(4, 22);
    assert!(functions.iter().any(|f| f == "softplus"), "{functions:?}");
    assert!(!functions.iter().any(|f| f == "equation"), "{functions:?}");

    // At the start of a line, the general list.
    let general = labels(1, 0);
    for expected in ["equation", "laplace", "softplus", "mnist", "u"] {
        assert!(general.iter().any(|l| l == expected), "missing {expected}");
    }
    client.stop();
}
