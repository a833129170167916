//! Rendering diagnostics: ariadne reports for people, JSON objects for tools.

use crate::{byte_order_mark_len, Diagnostic, LineColumn, Severity, SourceMap};
use ariadne::{CharSet, Color, Config, IndexType, Label, Report, ReportKind};
use serde::Serialize;

/// How to render diagnostics for a terminal or a file.
#[derive(Clone, Copy, Debug, Default)]
pub struct RenderOptions {
    /// Colour the output with ANSI escapes; golden tests and pipes turn this off.
    pub color: bool,
}

/// Renders one diagnostic as ariadne text, source excerpt included.
pub fn render(diagnostic: &Diagnostic, sources: &SourceMap, options: RenderOptions) -> String {
    let kind = match diagnostic.severity {
        Severity::Error => ReportKind::Error,
        Severity::Warning => ReportKind::Warning,
    };
    let name = |id: crate::FileId| sources.get(id).name.clone();
    // ariadne gets each file without a leading byte-order mark, which it would count as a column of
    // the first line, so byte ranges into such a file move back by the mark's length.
    let range = |span: crate::Span| {
        let mark = byte_order_mark_len(&sources.get(span.file).text);
        span.range().start.saturating_sub(mark)..span.range().end.saturating_sub(mark)
    };
    let primary = diagnostic.span();
    // ariadne counts characters by default, while our spans count bytes: without the byte index type
    // every label after a non-ASCII character would drift.
    let config = Config::default()
        .with_color(options.color)
        .with_index_type(IndexType::Byte)
        .with_char_set(CharSet::Unicode);
    let mut report = Report::build(kind, (name(primary.file), range(primary)))
        .with_config(config)
        .with_code(diagnostic.code.as_str())
        .with_message(&diagnostic.message);
    // ariadne starts a new excerpt whenever a label lies above the one before it, and heads every
    // excerpt of the primary file with the primary location. Labels ordered by file and position
    // therefore give one excerpt per file, with both lines of a duplicate under the right header.
    let mut by_position: Vec<usize> = (0..diagnostic.labels.len()).collect();
    by_position.sort_by_key(|&index| {
        let span = diagnostic.labels[index].span;
        (span.file != primary.file, span.file, span.start, index)
    });
    let mut order = vec![0; diagnostic.labels.len()];
    for (rank, &index) in by_position.iter().enumerate() {
        order[index] = rank as i32;
    }
    for (index, label) in diagnostic.labels.iter().enumerate() {
        let color = match (index, diagnostic.severity) {
            (0, Severity::Error) => Color::Red,
            (0, Severity::Warning) => Color::Yellow,
            _ => Color::Blue,
        };
        let mut l =
            Label::new((name(label.span.file), range(label.span))).with_message(&label.message);
        if options.color {
            l = l.with_color(color);
        }
        report = report.with_label(l.with_order(order[index]));
    }
    for note in &diagnostic.notes {
        report = report.with_note(note);
    }
    if let Some(help) = &diagnostic.help {
        report = report.with_help(help);
    }
    let cache = ariadne::sources(sources.iter().map(|(_, f)| {
        (
            f.name.clone(),
            f.text[byte_order_mark_len(&f.text)..].to_string(),
        )
    }));
    let mut out = Vec::new();
    // Writing to a Vec cannot fail; a report whose span lies outside its file is still written, as
    // ariadne only drops the excerpt then.
    let _ = report.finish().write(cache, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Renders several diagnostics, each followed by a blank line, in the order given.
pub fn render_all(
    diagnostics: &[Diagnostic],
    sources: &SourceMap,
    options: RenderOptions,
) -> String {
    diagnostics
        .iter()
        .map(|d| render(d, sources, options))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A diagnostic in the JSON form that `npdec check --format json` prints, one object per diagnostic.
#[derive(Clone, Debug, Serialize)]
pub struct JsonDiagnostic {
    pub file: String,
    pub code: crate::Code,
    pub severity: Severity,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
    pub notes: Vec<String>,
    /// Byte offsets of the primary span.
    pub byte_start: usize,
    pub byte_end: usize,
    /// One-based line and character column of the primary span's ends.
    pub start: LineColumn,
    pub end: LineColumn,
    /// The other labels, such as "this `(` is never closed", in the order the checker added them.
    pub secondary_labels: Vec<JsonLabel>,
}

/// A secondary label of a [`JsonDiagnostic`]: its message and where it points, which may be
/// another file, such as a standard-library module.
#[derive(Clone, Debug, Serialize)]
pub struct JsonLabel {
    pub file: String,
    pub message: String,
    pub byte_start: usize,
    pub byte_end: usize,
    pub start: LineColumn,
    pub end: LineColumn,
}

/// Converts a diagnostic to its JSON form.
pub fn to_json(diagnostic: &Diagnostic, sources: &SourceMap) -> JsonDiagnostic {
    let span = diagnostic.span();
    let file = sources.get(span.file);
    JsonDiagnostic {
        file: file.name.clone(),
        code: diagnostic.code,
        severity: diagnostic.severity,
        message: diagnostic.message.clone(),
        label: diagnostic.labels[0].message.clone(),
        help: diagnostic.help.clone(),
        notes: diagnostic.notes.clone(),
        byte_start: span.start as usize,
        byte_end: span.end as usize,
        start: file.line_column(span.start as usize),
        end: file.line_column(span.end as usize),
        secondary_labels: diagnostic.labels[1..]
            .iter()
            .map(|label| {
                let file = sources.get(label.span.file);
                JsonLabel {
                    file: file.name.clone(),
                    message: label.message.clone(),
                    byte_start: label.span.start as usize,
                    byte_end: label.span.end as usize,
                    start: file.line_column(label.span.start as usize),
                    end: file.line_column(label.span.end as usize),
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Code, Diagnostic, Span};

    #[test]
    fn secondary_label_above_primary_shares_excerpt() {
        let mut sources = SourceMap::new();
        let text = "field u(x)\nconst a = 1\nconst b = 2\nfield u(x)\n";
        let file = sources.add("dup.npde", text.to_string());
        let second = text.rfind("u(x)").expect("second declaration");
        let diagnostic = Diagnostic::error(
            Code::E0101,
            "`u` is declared twice",
            Span::new(file, second, second + 1),
            "declared again here",
        )
        .with_label(Span::new(file, 6, 7), "first declared here as a field");
        let out = render(&diagnostic, &sources, RenderOptions { color: false });
        assert!(out.contains("dup.npde:4:7"), "{out}");
        assert_eq!(out.matches("dup.npde:").count(), 1, "{out}");
        let first_line = out
            .find(" 1 │ field u(x)")
            .unwrap_or_else(|| panic!("{out}"));
        let primary_line = out
            .find(" 4 │ field u(x)")
            .unwrap_or_else(|| panic!("{out}"));
        assert!(first_line < primary_line, "{out}");
        assert!(out.contains("declared again here"), "{out}");
        assert!(out.contains("first declared here as a field"), "{out}");
    }
}
