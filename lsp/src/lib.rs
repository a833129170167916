//! The npdec language server, over stdio, for editors.
//!
//! It publishes the same diagnostic values that `npdec check` renders (code, severity, headline,
//! labels, help) whenever a document is opened or changed, and answers hover, go-to-definition,
//! completion and document-symbol requests. Analysis is the checker itself, rerun on the whole
//! document at every change; it never fails on half-typed input because the parser recovers from
//! every error. Only this crate knows the protocol.

mod analysis;
mod equation_hover;
mod position;
pub mod transport;

use analysis::Analysis;
use lsp_server::{Connection, ErrorCode, Message, Notification, Request, RequestId, Response};
use lsp_types::notification::{
    DidChangeTextDocument, DidCloseTextDocument, DidOpenTextDocument, Exit, Notification as _,
    PublishDiagnostics,
};
use lsp_types::request::{
    Completion, DocumentSymbolRequest, GotoDefinition, HoverRequest, Initialize, Request as _,
    Shutdown,
};
use lsp_types::{
    CompletionOptions, HoverProviderCapability, InitializeParams, OneOf, PublishDiagnosticsParams,
    ServerCapabilities, TextDocumentSyncCapability, TextDocumentSyncKind, Uri,
};
use std::collections::HashMap;
use std::error::Error;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// The client went away before `shutdown` and `exit`: the input ended or could not be read.
#[derive(Debug)]
pub struct ClientGone;

impl std::fmt::Display for ClientGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the client closed the connection without sending `shutdown` and `exit`")
    }
}

impl Error for ClientGone {}

/// Runs the server on standard input and output until the client asks it to exit.
pub fn run_stdio() -> Result<()> {
    let (connection, io_threads) = transport::stdio();
    match serve(connection) {
        Ok(()) => Ok(io_threads.join_reader()?),
        Err(error) if error.is::<ClientGone>() => {
            // The channel closes only when the reader thread has ended, so this join returns at
            // once, with the read error if there was one.
            match io_threads.join_reader() {
                Err(read_error) => Err(format!(
                    "the input is not framed as LSP messages (a Content-Length header, a blank \
                     line, then the JSON body): {read_error}"
                )
                .into()),
                Ok(()) => Err(format!(
                    "{error}; standard input ended (a language server is started by an editor, \
                     not run by hand)"
                )
                .into()),
            }
        }
        Err(error) => {
            // The server's side of the connection is gone, so the writer ends after sending what
            // is queued. The reader may still wait for input and is left alone.
            io_threads.join_writer()?;
            Err(error)
        }
    }
}

/// Returns what this server can do, as announced in the `initialize` response.
pub fn capabilities() -> ServerCapabilities {
    ServerCapabilities {
        text_document_sync: Some(TextDocumentSyncCapability::Kind(TextDocumentSyncKind::FULL)),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        definition_provider: Some(OneOf::Left(true)),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec![":".to_string(), ".".to_string()]),
            ..Default::default()
        }),
        document_symbol_provider: Some(OneOf::Left(true)),
        ..Default::default()
    }
}

/// Serves one client on an established connection: the handshake, then requests until `exit`.
/// Returns [`ClientGone`] when the connection closes before that.
pub fn serve(connection: Connection) -> Result<()> {
    initialize(&connection)?;
    let mut server = Server {
        documents: HashMap::new(),
    };
    let mut shutdown_requested = false;
    for message in &connection.receiver {
        match message {
            Message::Request(request) if request.method == Shutdown::METHOD => {
                shutdown_requested = true;
                connection
                    .sender
                    .send(Response::new_ok(request.id, ()).into())?;
            }
            Message::Request(request) => {
                let response = if shutdown_requested {
                    Response::new_err(
                        request.id,
                        ErrorCode::InvalidRequest as i32,
                        format!(
                            "`{}` after `shutdown`: the server accepts only `exit` now",
                            request.method
                        ),
                    )
                } else if request.method == Initialize::METHOD {
                    Response::new_err(
                        request.id,
                        ErrorCode::InvalidRequest as i32,
                        "the server is already initialized: send `initialize` only once"
                            .to_string(),
                    )
                } else {
                    server.handle_request(request)
                };
                connection.sender.send(Message::Response(response))?;
            }
            Message::Notification(notification) if notification.method == Exit::METHOD => {
                if shutdown_requested {
                    return Ok(());
                }
                return Err("the client sent `exit` before `shutdown`".into());
            }
            Message::Notification(_) if shutdown_requested => {}
            Message::Notification(notification) => {
                for outgoing in server.handle_notification(notification) {
                    connection.sender.send(Message::Notification(outgoing))?;
                }
            }
            Message::Response(_) => {}
        }
    }
    Err(Box::new(ClientGone))
}

/// Waits for the `initialize` request and replies with the capabilities. Requests before it get
/// the error `ServerNotInitialized` and notifications are dropped, as the protocol prescribes.
fn initialize(connection: &Connection) -> Result<()> {
    let capabilities = serde_json::to_value(capabilities())?;
    for message in &connection.receiver {
        let request = match message {
            Message::Request(request) => request,
            Message::Notification(notification) if notification.method == Exit::METHOD => {
                return Err("the client sent `exit` before `initialize`".into());
            }
            Message::Notification(_) | Message::Response(_) => continue,
        };
        if request.method != Initialize::METHOD {
            let message = format!(
                "the server is not initialized: send `initialize` before `{}`",
                request.method
            );
            connection.sender.send(
                Response::new_err(request.id, ErrorCode::ServerNotInitialized as i32, message)
                    .into(),
            )?;
            continue;
        }
        if let Err(error) = serde_json::from_value::<InitializeParams>(request.params) {
            connection.sender.send(
                Response::new_err(
                    request.id,
                    ErrorCode::InvalidParams as i32,
                    format!("invalid `initialize` parameters: {error}"),
                )
                .into(),
            )?;
            continue;
        }
        let result = serde_json::json!({ "capabilities": capabilities });
        connection
            .sender
            .send(Response::new_ok(request.id, result).into())?;
        return Ok(());
    }
    Err(Box::new(ClientGone))
}

struct Server {
    documents: HashMap<Uri, Analysis>,
}

impl Server {
    fn handle_notification(&mut self, notification: Notification) -> Vec<Notification> {
        match notification.method.as_str() {
            DidOpenTextDocument::METHOD => {
                let Ok(params) = serde_json::from_value::<lsp_types::DidOpenTextDocumentParams>(
                    notification.params,
                ) else {
                    return Vec::new();
                };
                self.update(
                    params.text_document.uri,
                    params.text_document.text,
                    Some(params.text_document.version),
                )
            }
            DidChangeTextDocument::METHOD => {
                let Ok(params) = serde_json::from_value::<lsp_types::DidChangeTextDocumentParams>(
                    notification.params,
                ) else {
                    return Vec::new();
                };
                // The server asks for full synchronization, so the last change holds the whole text.
                let Some(change) = params.content_changes.into_iter().last() else {
                    return Vec::new();
                };
                self.update(
                    params.text_document.uri,
                    change.text,
                    Some(params.text_document.version),
                )
            }
            DidCloseTextDocument::METHOD => {
                let Ok(params) = serde_json::from_value::<lsp_types::DidCloseTextDocumentParams>(
                    notification.params,
                ) else {
                    return Vec::new();
                };
                self.documents.remove(&params.text_document.uri);
                vec![publish(params.text_document.uri, Vec::new(), None)]
            }
            _ => Vec::new(),
        }
    }

    /// Re-analyzes a document and returns the notification that publishes its diagnostics.
    fn update(&mut self, uri: Uri, text: String, version: Option<i32>) -> Vec<Notification> {
        let analysis = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Analysis::new(&uri, text)
        })) {
            Ok(analysis) => analysis,
            Err(_) => {
                tracing::error!(
                    uri = uri.as_str(),
                    "analysis panicked; diagnostics of this document are not updated"
                );
                return Vec::new();
            }
        };
        let diagnostics = analysis.diagnostics(&uri);
        self.documents.insert(uri.clone(), analysis);
        vec![publish(uri, diagnostics, version)]
    }

    fn handle_request(&mut self, request: Request) -> Response {
        let id = request.id.clone();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.dispatch(request)));
        match outcome {
            Ok(Ok(value)) => Response::new_ok(id, value),
            Ok(Err((code, message))) => Response::new_err(id, code as i32, message),
            Err(_) => {
                tracing::error!(?id, "request handler panicked");
                Response::new_err(
                    id,
                    ErrorCode::InternalError as i32,
                    "internal error while answering the request".to_string(),
                )
            }
        }
    }

    fn dispatch(
        &self,
        request: Request,
    ) -> std::result::Result<serde_json::Value, (ErrorCode, String)> {
        let invalid =
            |e: serde_json::Error| (ErrorCode::InvalidParams, format!("invalid parameters: {e}"));
        let unknown_document = |uri: &Uri| {
            (
                ErrorCode::InvalidParams,
                format!("document {} is not open", uri.as_str()),
            )
        };
        let to_value = |v: serde_json::Result<serde_json::Value>| {
            v.map_err(|e| (ErrorCode::InternalError, e.to_string()))
        };
        match request.method.as_str() {
            HoverRequest::METHOD => {
                let params: lsp_types::HoverParams =
                    serde_json::from_value(request.params).map_err(invalid)?;
                let uri = params.text_document_position_params.text_document.uri;
                let analysis = self
                    .documents
                    .get(&uri)
                    .ok_or_else(|| unknown_document(&uri))?;
                to_value(serde_json::to_value(
                    analysis.hover(params.text_document_position_params.position),
                ))
            }
            GotoDefinition::METHOD => {
                let params: lsp_types::GotoDefinitionParams =
                    serde_json::from_value(request.params).map_err(invalid)?;
                let uri = params.text_document_position_params.text_document.uri;
                let analysis = self
                    .documents
                    .get(&uri)
                    .ok_or_else(|| unknown_document(&uri))?;
                let location = analysis
                    .definition(params.text_document_position_params.position)
                    .map(|range| {
                        lsp_types::GotoDefinitionResponse::Scalar(lsp_types::Location {
                            uri: uri.clone(),
                            range,
                        })
                    });
                to_value(serde_json::to_value(location))
            }
            Completion::METHOD => {
                let params: lsp_types::CompletionParams =
                    serde_json::from_value(request.params).map_err(invalid)?;
                let uri = params.text_document_position.text_document.uri;
                let analysis = self
                    .documents
                    .get(&uri)
                    .ok_or_else(|| unknown_document(&uri))?;
                to_value(serde_json::to_value(lsp_types::CompletionResponse::Array(
                    analysis.completions(params.text_document_position.position),
                )))
            }
            DocumentSymbolRequest::METHOD => {
                let params: lsp_types::DocumentSymbolParams =
                    serde_json::from_value(request.params).map_err(invalid)?;
                let uri = params.text_document.uri;
                let analysis = self
                    .documents
                    .get(&uri)
                    .ok_or_else(|| unknown_document(&uri))?;
                to_value(serde_json::to_value(
                    lsp_types::DocumentSymbolResponse::Nested(analysis.symbols()),
                ))
            }
            other => Err((
                ErrorCode::MethodNotFound,
                format!("method {other} is not supported"),
            )),
        }
    }
}

fn publish(
    uri: Uri,
    diagnostics: Vec<lsp_types::Diagnostic>,
    version: Option<i32>,
) -> Notification {
    let params = PublishDiagnosticsParams {
        uri,
        diagnostics,
        version,
    };
    Notification::new(PublishDiagnostics::METHOD.to_string(), params)
}

#[doc(hidden)]
pub fn request_id(id: i32) -> RequestId {
    RequestId::from(id)
}
