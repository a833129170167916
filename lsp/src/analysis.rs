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

    /// Returns the completions at a position: the members that can follow `name.` or `path::`
    /// there, or else every keyword, built-in, library function and declared name.
    pub fn completions(&self, position: Position) -> Vec<CompletionItem> {
        let offset = LineIndex::new(self.text()).offset(position);
        match completion_context(self.text(), offset) {
            CompletionContext::Member(receiver) => self.member_completions(&receiver),
            CompletionContext::Path(path) => path_completions(&path),
            CompletionContext::Anywhere => self.general_completions(),
        }
    }

    /// Returns the members of `receiver.`: the parts of a sample after a data source, the sides
    /// after an axis, and nothing after any other name.
    fn member_completions(&self, receiver: &str) -> Vec<CompletionItem> {
        let members: &[(&str, &str)] = match self.declaration(receiver).map(|(item, _)| &item.kind)
        {
            Some(ItemKind::Data { .. }) => DATA_MEMBERS,
            Some(ItemKind::Grid { .. }) => AXIS_SIDES,
            _ => &[],
        };
        members
            .iter()
            .map(|(name, doc)| CompletionItem {
                label: name.to_string(),
                kind: Some(CompletionItemKind::FIELD),
                detail: Some(format!("{receiver}.{name}: {doc}")),
                ..Default::default()
            })
            .collect()
    }

    fn general_completions(&self) -> Vec<CompletionItem> {
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
            items.extend(library_completions(module, source));
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

/// The members of a data source, which follow its name and a `.` in expressions.
const DATA_MEMBERS: &[(&str, &str)] = &[
    ("input", "the current sample"),
    ("label", "the label of the current sample"),
    (
        "sequence",
        "the sample as a sequence: at step n, row n of the sample viewed as [rows, features]",
    ),
];

/// The sides of an axis, which follow its name and a `.` in `boundary … on`.
const AXIS_SIDES: &[(&str, &str)] = &[
    ("min", "the lower end of the axis"),
    ("max", "the upper end of the axis"),
];

/// The kind of place where a name is being completed, read from the text before it.
#[derive(Debug, PartialEq)]
enum CompletionContext {
    /// `receiver.`, as in `mnist.` or `x.`.
    Member(String),
    /// A path and `::`, as in `std::` (`["std"]`) or `use std::ops::{laplace, ` (`["std", "ops"]`).
    Path(Vec<String>),
    /// Anything else: the start of a statement or an expression.
    Anywhere,
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Reads the completion context from the text of the current line before `offset`.
fn completion_context(text: &str, offset: usize) -> CompletionContext {
    let offset = (0..=offset.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[line_start..offset];

    // Anything after `#` is a comment.
    if line.contains('#') {
        return CompletionContext::Anywhere;
    }

    // The part of a name typed so far is what the client filters on.
    let before = line.trim_end_matches(is_name_char);
    if let Some(receiver_end) = before.strip_suffix('.') {
        let receiver = &receiver_end[receiver_end.trim_end_matches(is_name_char).len()..];
        // `1.` starts a number, which has no members.
        if receiver.is_empty() || receiver.starts_with(|c: char| c.is_ascii_digit()) {
            return CompletionContext::Member(String::new());
        }
        return CompletionContext::Member(receiver.to_string());
    }

    // Inside the braces of `use std::m::{a, b, `, the path is the one before the brace.
    let before = match before.rfind("::{") {
        Some(brace) if !before[brace..].contains('}') => {
            let listed = &before[brace + 3..];
            if listed
                .chars()
                .all(|c| is_name_char(c) || c == ',' || c.is_whitespace())
            {
                &before[..brace + 2]
            } else {
                before
            }
        }
        _ => before,
    };

    // The path is read backwards, segment by segment, as in `std::ops::`.
    let Some(mut rest) = before.strip_suffix("::") else {
        return CompletionContext::Anywhere;
    };
    let mut path = Vec::new();
    loop {
        let segment_start = rest.trim_end_matches(is_name_char).len();
        let segment = &rest[segment_start..];
        if segment.is_empty() {
            break;
        }
        path.push(segment.to_string());
        rest = &rest[..segment_start];
        match rest.strip_suffix("::") {
            Some(shorter) => rest = shorter,
            None => break,
        }
    }
    path.reverse();
    CompletionContext::Path(path)
}

/// Returns what can follow a path and `::`: the standard-library modules after `std::`, and the
/// functions of a module after `std::module::` or `module::`.
fn path_completions(path: &[String]) -> Vec<CompletionItem> {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    match path.as_slice() {
        ["std"] => npdec_sema::STDLIB_MODULES
            .iter()
            .map(|(module, _, _)| CompletionItem {
                label: module.to_string(),
                kind: Some(CompletionItemKind::MODULE),
                detail: Some(format!("std::{module}")),
                ..Default::default()
            })
            .collect(),
        ["std", module] | [module] => npdec_sema::STDLIB_MODULES
            .iter()
            .filter(|(name, _, _)| name == module)
            .flat_map(|(module, _, source)| library_completions(module, source))
            .collect(),
        _ => Vec::new(),
    }
}

/// Returns one completion per function that a standard-library module declares.
fn library_completions(module: &str, source: &str) -> Vec<CompletionItem> {
    source
        .lines()
        .filter(|l| l.starts_with("fn "))
        .map(|signature| CompletionItem {
            label: signature[3..]
                .split('(')
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
            kind: Some(CompletionItemKind::FUNCTION),
            detail: Some(format!("std::{module}: {}", signature.trim())),
            ..Default::default()
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn context(line: &str) -> CompletionContext {
        completion_context(line, line.len())
    }

    fn path(segments: &[&str]) -> CompletionContext {
        CompletionContext::Path(segments.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn context_after_dot_is_member() {
        let member = |name: &str| CompletionContext::Member(name.to_string());
        assert_eq!(context("initial u = mnist."), member("mnist"));
        assert_eq!(context("initial u = mnist.inp"), member("mnist"));
        assert_eq!(context("boundary u: neumann(0) on x."), member("x"));
        assert_eq!(context("const a = 1."), member(""));
    }

    #[test]
    fn context_after_colons_is_path() {
        assert_eq!(context("use std::"), path(&["std"]));
        assert_eq!(context("use std::act"), path(&["std"]));
        assert_eq!(context("use std::ops::"), path(&["std", "ops"]));
        assert_eq!(context("use std::ops::lap"), path(&["std", "ops"]));
        assert_eq!(context("use std::ops::{laplace, di"), path(&["std", "ops"]));
        assert_eq!(context("use std::ops::{"), path(&["std", "ops"]));
    }

    #[test]
    fn context_elsewhere_is_anywhere() {
        for line in [
            "",
            "equ",
            "equation heat: dt(u) = lap",
            "# see std::",
            "solve heat using ",
        ] {
            assert_eq!(context(line), CompletionContext::Anywhere, "{line:?}");
        }
        // Only the current line counts.
        let text = "use std::\nfield u(x)\n";
        assert_eq!(
            completion_context(text, text.len()),
            CompletionContext::Anywhere
        );
    }

    #[test]
    fn paths_list_modules_and_functions() {
        let labels = |path: &[&str]| -> Vec<String> {
            let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
            path_completions(&path)
                .into_iter()
                .map(|c| c.label)
                .collect()
        };
        let modules = labels(&["std"]);
        assert!(modules.contains(&"ops".to_string()), "{modules:?}");
        assert!(modules.contains(&"activations".to_string()), "{modules:?}");
        assert!(!modules.contains(&"softplus".to_string()), "{modules:?}");
        let functions = labels(&["std", "activations"]);
        assert!(functions.contains(&"softplus".to_string()), "{functions:?}");
        assert!(
            !functions.contains(&"perceptron".to_string()),
            "{functions:?}"
        );
        assert!(labels(&["std", "nothing"]).is_empty());
        assert!(labels(&["u"]).is_empty());
    }
}
