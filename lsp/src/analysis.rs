//! One analyzed document: the checker's result plus the lookups editors ask for.

use crate::position::LineIndex;
use logos::Logos;
use lsp_types::{
    CompletionItem, CompletionItemKind, DiagnosticRelatedInformation, DiagnosticSeverity,
    DocumentSymbol, Hover, HoverContents, Location, MarkupContent, MarkupKind, NumberOrString,
    Position, Range, SymbolKind, Uri,
};
use npdec_diagnostics::{FileId, Severity, SourceMap, Span};
use npdec_sema::{CheckOptions, Checked};
use npdec_syntax::ast::{Ident, Item, ItemKind, TaskKind};
use npdec_syntax::lexer::Token;
use std::path::PathBuf;

pub struct Analysis {
    sources: SourceMap,
    file: FileId,
    checked: Checked,
}

/// Short descriptions of the built-in names, for hover and completion.
const BUILTIN_DOCS: &[(&str, &str)] = &[
    ("t", "the time (the depth of the network); in `expect`, the end time"),
    ("pi", "π"),
    ("input", "the current sample of the model's data source"),
    ("label", "the label of the current sample"),
    ("dt", "`dt(u)`: ∂u/∂t, on the left of an equation or in `initial dt(u) = …`"),
    ("dt2", "`dt2(u)`: ∂²u/∂t², on the left of a second-order equation"),
    ("diff", "`diff(u, x)`, `diff(u, x, 2)`, `diff(u, x, y)`: partial derivatives by centered differences"),
    ("laplace", "`laplace(u)`: the Laplacian over all axes of `u`"),
    ("grad", "`grad(u)`: the gradient, inside `div(c * grad(u))` only"),
    ("div", "`div(c * grad(u))`: variable-coefficient diffusion in conservative form"),
    ("upwind", "`upwind(a, u, x, order = 1)`: a·∂u/∂x, one-sided against the flow"),
    ("conv", "`conv(K, u)`: multi-channel convolution with a kernel parameter `K[out, in, k, …]`"),
    ("pool", "`pool(u, k)`: the mean of each block of k points per axis, on a grid k times coarser"),
    ("upsample", "`upsample(u, k)`: each point copied to its block of k points per axis, on a grid k times finer"),
    ("tanh", "hyperbolic tangent"),
    ("relu", "max(x, 0)"),
    ("sigmoid", "1 / (1 + exp(−x))"),
    ("exp", "exponential"),
    ("log", "natural logarithm"),
    ("sin", "sine"),
    ("cos", "cosine"),
    ("abs", "absolute value (modulus of a complex value)"),
    ("sqrt", "square root"),
    ("conj", "complex conjugate"),
    ("re", "real part"),
    ("im", "imaginary part"),
    ("max", "`max(u)`: the largest value of a field; `max(a, b)`: pointwise maximum"),
    ("min", "`min(u)`: the smallest value of a field; `min(a, b)`: pointwise minimum"),
    ("softmax", "softmax over channels or vector entries"),
    ("sum", "`sum(u)`: the sum over all points and channels"),
    ("mean", "`mean(u)`: the mean over all points and channels"),
    ("norm", "`norm(u)`: the discrete L2 norm sqrt(Σ|u|²·cell volume)"),
    ("integral", "`integral(u)`: the integral over the grid by the trapezoidal rule"),
];

impl Analysis {
    pub fn new(uri: &Uri, text: String) -> Self {
        let mut sources = SourceMap::new();
        let name =
            uri_path(uri).map_or_else(|| uri.as_str().to_string(), |p| p.display().to_string());
        let base_dir = uri_path(uri).and_then(|p| p.parent().map(PathBuf::from));
        let file = sources.add(name, text);
        let checked = npdec_sema::check(&mut sources, file, &CheckOptions { base_dir });
        Analysis {
            sources,
            file,
            checked,
        }
    }

    fn text(&self) -> &str {
        &self.sources.get(self.file).text
    }

    fn range(&self, span: Span) -> Range {
        LineIndex::new(self.text()).range(span.start as usize, span.end as usize)
    }

    /// Converts the checker's diagnostics into the protocol's, keeping code, severity, label and help.
    pub fn diagnostics(&self, uri: &Uri) -> Vec<lsp_types::Diagnostic> {
        let mut out = Vec::new();
        for diagnostic in &self.checked.diagnostics {
            // A problem inside a library function is shown where the user called it.
            let Some(primary) = diagnostic.labels.iter().find(|l| l.span.file == self.file) else {
                continue;
            };
            let mut message = diagnostic.message.clone();
            if primary.message != diagnostic.message && !primary.message.is_empty() {
                message.push_str(&format!("\n{}", primary.message));
            }
            for note in &diagnostic.notes {
                message.push_str(&format!("\nnote: {note}"));
            }
            if let Some(help) = &diagnostic.help {
                message.push_str(&format!("\nhelp: {help}"));
            }
            let related: Vec<DiagnosticRelatedInformation> = diagnostic
                .labels
                .iter()
                .filter(|l| l.span.file == self.file && l.span != primary.span)
                .map(|l| DiagnosticRelatedInformation {
                    location: Location {
                        uri: uri.clone(),
                        range: self.range(l.span),
                    },
                    message: l.message.clone(),
                })
                .collect();
            out.push(lsp_types::Diagnostic {
                range: self.range(primary.span),
                severity: Some(match diagnostic.severity {
                    Severity::Error => DiagnosticSeverity::ERROR,
                    Severity::Warning => DiagnosticSeverity::WARNING,
                }),
                code: Some(NumberOrString::String(diagnostic.code.as_str().to_string())),
                source: Some("npdec".to_string()),
                message,
                related_information: (!related.is_empty()).then_some(related),
                ..Default::default()
            });
        }
        out
    }

    /// Returns the name under the cursor and its span.
    fn name_at(&self, position: Position) -> Option<(String, Span)> {
        let offset = LineIndex::new(self.text()).offset(position);
        let mut lexer = Token::lexer(self.text());
        while let Some(token) = lexer.next() {
            let range = lexer.span();
            if range.start > offset {
                break;
            }
            if let Ok(Token::Ident(name)) = token {
                if range.start <= offset && offset <= range.end {
                    return Some((name, Span::new(self.file, range.start, range.end)));
                }
            }
        }
        None
    }

    /// Finds the declaration of a name in this document: the item and the span of the declared name.
    fn declaration(&self, name: &str) -> Option<(&Item, Span)> {
        self.checked.module.items.iter().find_map(|item| {
            declared_names(item)
                .into_iter()
                .find(|i| i.name == name)
                .map(|i| (item, i.span))
        })
    }

    pub fn definition(&self, position: Position) -> Option<Range> {
        let (name, _) = self.name_at(position)?;
        let (_, span) = self.declaration(&name)?;
        Some(self.range(span))
    }

    pub fn hover(&self, position: Position) -> Option<Hover> {
        let (name, span) = self.name_at(position)?;
        let text = if let Some((item, _)) = self.declaration(&name) {
            self.describe_item(item, &name)
        } else if let Some((_, doc)) = BUILTIN_DOCS.iter().find(|(n, _)| *n == name) {
            format!("```npde\n{name}\n```\nbuilt in: {doc}")
        } else if let Some((module, signature)) = library_function(&name) {
            format!("```npde\n{signature}\n```\nfrom `std::{module}`")
        } else {
            return None;
        };
        Some(Hover {
            contents: HoverContents::Markup(MarkupContent {
                kind: MarkupKind::Markdown,
                value: text,
            }),
            range: Some(self.range(span)),
        })
    }

    fn describe_item(&self, item: &Item, name: &str) -> String {
        let source = self.sources.snippet(item.span).trim();
        let first_lines: Vec<&str> = source.lines().take(6).collect();
        let mut text = format!("```npde\n{}\n```", first_lines.join("\n"));
        let model = &self.checked.partial;
        let detail = match &item.kind {
            ItemKind::Field { .. } => model
                .fields
                .iter()
                .find(|f| f.name == name)
                .map(|f| model.describe_field(f)),
            ItemKind::Param(_) => model
                .params
                .iter()
                .find(|p| p.name == name)
                .map(|p| model.describe_param(p)),
            ItemKind::Grid { .. } => model.axes.iter().find(|a| a.name == name).map(|a| {
                let periodic = if a.periodic { ", periodic" } else { "" };
                format!(
                    "axis {}: {} points, spacing {}{periodic}",
                    a.name,
                    a.points,
                    a.spacing()
                )
            }),
            ItemKind::Equation { .. } => {
                let lines: Vec<String> = model
                    .equations
                    .iter()
                    .filter(|e| e.name == name)
                    .map(|e| {
                        let field = model.display_expr(&match e.channel {
                            Some(k) => npdec_symbolic::Expr::Channel(e.field, k),
                            None => npdec_symbolic::Expr::Field(e.field),
                        });
                        let lhs = match e.time_order {
                            0 => String::new(),
                            1 => format!("dt({field}) = "),
                            _ => format!("dt2({field}) = "),
                        };
                        let rhs = model.display_sum(e.terms.iter().map(|t| &t.expr));
                        if e.time_order == 0 {
                            format!("{rhs} = 0    (steady, unknown {field})")
                        } else {
                            format!("{lhs}{rhs}")
                        }
                    })
                    .collect();
                (!lines.is_empty()).then(|| {
                    let mut text = format!(
                        "normal form, one term per summand:\n```npde\n{}\n```",
                        lines.join("\n")
                    );
                    // Stencils and layers need a model without errors.
                    if let Some(compiled) = self
                        .checked
                        .model
                        .as_ref()
                        .and_then(|m| crate::equation_hover::describe(m, name))
                    {
                        text.push_str("\n\n");
                        text.push_str(&compiled);
                    }
                    text
                })
            }
            _ => None,
        };
        if let Some(detail) = detail {
            text.push_str("\n\n");
            text.push_str(&detail);
        }
        text
    }

    pub fn completions(&self) -> Vec<CompletionItem> {
        let mut items = Vec::new();
        for keyword in npdec_sema::KEYWORDS {
            items.push(CompletionItem {
                label: keyword.to_string(),
                kind: Some(CompletionItemKind::KEYWORD),
                ..Default::default()
            });
        }
        for (name, doc) in BUILTIN_DOCS {
            items.push(CompletionItem {
                label: name.to_string(),
                kind: Some(CompletionItemKind::FUNCTION),
                detail: Some(format!("built in: {doc}")),
                ..Default::default()
            });
        }
        for (module, _, source) in npdec_sema::STDLIB_MODULES {
            for signature in source.lines().filter(|l| l.starts_with("fn ")) {
                let name = signature[3..]
                    .split('(')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string();
                items.push(CompletionItem {
                    label: name,
                    kind: Some(CompletionItemKind::FUNCTION),
                    detail: Some(format!("std::{module}: {}", signature.trim())),
                    ..Default::default()
                });
            }
        }
        for item in &self.checked.module.items {
            for ident in declared_names(item) {
                items.push(CompletionItem {
                    label: ident.name.clone(),
                    kind: Some(completion_kind(&item.kind)),
                    detail: Some(
                        self.sources
                            .snippet(item.span)
                            .lines()
                            .next()
                            .unwrap_or("")
                            .to_string(),
                    ),
                    ..Default::default()
                });
            }
        }
        items
    }

    #[allow(deprecated)] // `DocumentSymbol::deprecated` must still be filled in.
    pub fn symbols(&self) -> Vec<DocumentSymbol> {
        let mut symbols = Vec::new();
        for item in &self.checked.module.items {
            let (kind, names): (SymbolKind, Vec<(String, Span)>) = match &item.kind {
                ItemKind::Task {
                    kind, equations, ..
                } => {
                    let verb = if *kind == TaskKind::Solve {
                        "solve"
                    } else {
                        "train"
                    };
                    let names: Vec<&str> = equations.iter().map(|e| e.name.as_str()).collect();
                    (
                        SymbolKind::EVENT,
                        vec![(format!("{verb} {}", names.join(", ")), item.span)],
                    )
                }
                ItemKind::Boundary { field, .. } => (
                    SymbolKind::PROPERTY,
                    vec![(
                        format!("boundary {}", self.sources.snippet(field.span)),
                        item.span,
                    )],
                ),
                ItemKind::Initial { target, .. } => (
                    SymbolKind::PROPERTY,
                    vec![(
                        format!("initial {}", self.sources.snippet(target.span)),
                        item.span,
                    )],
                ),
                ItemKind::Expect(expr) => (
                    SymbolKind::BOOLEAN,
                    vec![(
                        format!("expect {}", self.sources.snippet(expr.span)),
                        item.span,
                    )],
                ),
                kind => (
                    symbol_kind(kind),
                    declared_names(item)
                        .into_iter()
                        .map(|i| (i.name.clone(), i.span))
                        .collect(),
                ),
            };
            for (name, selection) in names {
                symbols.push(DocumentSymbol {
                    name,
                    detail: None,
                    kind,
                    tags: None,
                    deprecated: None,
                    range: self.range(item.span),
                    selection_range: self.range(selection),
                    children: None,
                });
            }
        }
        symbols
    }
}

fn uri_path(uri: &Uri) -> Option<PathBuf> {
    let text = uri.as_str();
    let path = text.strip_prefix("file://")?;
    Some(PathBuf::from(percent_decode(path)))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(value) = u8::from_str_radix(text.get(i + 1..i + 3).unwrap_or(""), 16) {
                out.push(value);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Returns the names an item declares.
fn declared_names(item: &Item) -> Vec<&Ident> {
    match &item.kind {
        ItemKind::Grid { axes, .. } => axes.iter().collect(),
        ItemKind::Field { name, .. }
        | ItemKind::Const { name, .. }
        | ItemKind::Data { name, .. }
        | ItemKind::Equation { name, .. }
        | ItemKind::Readout { name, .. }
        | ItemKind::Function { name, .. }
        | ItemKind::Model(name) => vec![name],
        ItemKind::Param(param) => vec![&param.name],
        ItemKind::Use(_)
        | ItemKind::Boundary { .. }
        | ItemKind::Initial { .. }
        | ItemKind::Task { .. }
        | ItemKind::Expect(_)
        | ItemKind::Error => Vec::new(),
    }
}

fn symbol_kind(kind: &ItemKind) -> SymbolKind {
    match kind {
        ItemKind::Grid { .. } => SymbolKind::NAMESPACE,
        ItemKind::Field { .. } => SymbolKind::VARIABLE,
        ItemKind::Const { .. } => SymbolKind::CONSTANT,
        ItemKind::Param(_) => SymbolKind::FIELD,
        ItemKind::Data { .. } => SymbolKind::FILE,
        ItemKind::Equation { .. } => SymbolKind::OPERATOR,
        ItemKind::Readout { .. } => SymbolKind::PROPERTY,
        ItemKind::Function { .. } => SymbolKind::FUNCTION,
        ItemKind::Model(_) => SymbolKind::MODULE,
        ItemKind::Use(_)
        | ItemKind::Boundary { .. }
        | ItemKind::Initial { .. }
        | ItemKind::Task { .. }
        | ItemKind::Expect(_)
        | ItemKind::Error => SymbolKind::NULL,
    }
}

fn completion_kind(kind: &ItemKind) -> CompletionItemKind {
    match kind {
        ItemKind::Function { .. } => CompletionItemKind::FUNCTION,
        ItemKind::Const { .. } => CompletionItemKind::CONSTANT,
        ItemKind::Field { .. } | ItemKind::Param(_) => CompletionItemKind::VARIABLE,
        _ => CompletionItemKind::REFERENCE,
    }
}

/// Finds a standard-library function by name: its module and signature line.
fn library_function(name: &str) -> Option<(&'static str, &'static str)> {
    npdec_sema::STDLIB_MODULES
        .iter()
        .find_map(|(module, _, source)| {
            source
                .lines()
                .find(|l| l.starts_with(&format!("fn {name}(")))
                .map(|l| (*module, l))
        })
}
