//! Parser tests: accepted programs, recovery from several errors, and span bookkeeping.

use npdec_diagnostics::{Code, FileId};
use npdec_syntax::ast::{ExprKind, ItemKind, UseImports};
use npdec_syntax::parse;

const HEAT: &str = r#"
# Heat equation on the unit interval.
model heat1d
use std::ops::{laplace, diff}
use std::activations::*
grid x in [0, 1] points 101
grid (y, z) in ([0, 1], [0, 2]) points (65, 129)
field u(x)
field psi(x)[2]: complex
const nu = 0.01
param D = 0.1 learnable
param W(t)[64, 64] ~ normal(0, 0.1)
data mnist = idx("a.gz", "b.gz") split 8000 scale 1/255
equation heat: dt(u) = nu * laplace(u) - u^2 + 2i * psi[0]
equation gs {
    dt(u) = -u * v^2 + 0.5
    dt(v) = u * v^2
}
boundary u: dirichlet(0) on x.min, x.max
initial u = sin(pi * x)
readout y = softmax(W @ u)
fn swish(s) = s * sigmoid(s)
solve heat using euler(dt = 1e-4) until 0.1 every 100
train heat on mnist loss cross_entropy(y, label) metrics accuracy, loss
expect max(abs(u - exp(-nu * pi^2 * t) * sin(pi * x))) < 1e-3
"#;

#[test]
fn full_program_parses_without_errors() {
    let (module, diagnostics) = parse(FileId(0), HEAT);
    assert!(diagnostics.is_empty(), "{diagnostics:#?}");
    assert_eq!(module.items.len(), 20);
    assert!(
        matches!(&module.items[1].kind, ItemKind::Use(u) if matches!(&u.imports, UseImports::Names(n) if n.len() == 2))
    );
    let ItemKind::Equation { equations, .. } = &module.items[12].kind else {
        panic!("expected the gs block")
    };
    assert_eq!(equations.len(), 2);
}

#[test]
fn power_binds_tighter_than_unary_minus() {
    let expr = npdec_syntax::parse_expr(FileId(0), "-x^2").unwrap();
    let ExprKind::Unary(_, inner) = expr.kind else {
        panic!("expected negation at the top")
    };
    assert!(matches!(
        inner.kind,
        ExprKind::Binary(npdec_syntax::ast::BinaryOp::Pow, ..)
    ));
}

#[test]
fn recovery_reports_each_broken_statement() {
    let text = "grid x in [0, 1] points\nfield u(x\nconst c = 1 +\nconst d = 2\n";
    let (module, diagnostics) = parse(FileId(0), text);
    assert_eq!(diagnostics.len(), 3, "{diagnostics:#?}");
    assert!(diagnostics.iter().all(|d| d.code == Code::E0010));
    assert!(module
        .items
        .iter()
        .any(|i| matches!(&i.kind, ItemKind::Const { name, .. } if name.name == "d")));
}

#[test]
fn lexer_errors_are_reported_once() {
    let (_, diagnostics) = parse(
        FileId(0),
        "const a = 1 $ 2\nconst b = \"open\nconst c = 12abc\n",
    );
    let codes: Vec<Code> = diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, vec![Code::E0001, Code::E0002, Code::E0003]);
}

#[test]
fn spans_count_bytes_after_unicode() {
    let text = "# ∂u/∂t\nconst ψ = 1";
    let (module, diagnostics) = parse(FileId(0), text);
    assert!(diagnostics.is_empty());
    let ItemKind::Const { name, .. } = &module.items[0].kind else {
        panic!()
    };
    assert_eq!(&text[name.span.range()], "ψ");
}

#[test]
fn end_of_file_span_covers_a_whole_character() {
    let text = "const a = ψ +";
    let (_, diagnostics) = parse(FileId(0), text);
    let eof = diagnostics
        .iter()
        .find(|d| d.code == Code::E0011)
        .expect("unexpected end of file");
    assert_eq!(&text[eof.span().range()], "+");
    let text = "const a = (ψ";
    let (_, diagnostics) = parse(FileId(0), text);
    let eof = diagnostics
        .iter()
        .find(|d| d.code == Code::E0011)
        .expect("unexpected end of file");
    assert_eq!(&text[eof.span().range()], "ψ");
}

/// Returns the source text under the primary label of each diagnostic.
fn labelled<'a>(text: &'a str, diagnostics: &[npdec_diagnostics::Diagnostic]) -> Vec<&'a str> {
    diagnostics
        .iter()
        .map(|d| &text[d.span().range()])
        .collect()
}

#[test]
fn stray_token_at_line_end_is_labelled() {
    let text = "grid x in [0, 1] points 101 extra\nfield u(x)\n";
    let (_, diagnostics) = parse(FileId(0), text);
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    assert_eq!(diagnostics[0].code, Code::E0010);
    assert_eq!(labelled(text, &diagnostics), vec!["extra"]);
    assert!(
        diagnostics[0].message.contains("after `extra`"),
        "{}",
        diagnostics[0].message
    );
    assert_eq!(
        diagnostics[0].help.as_deref(),
        Some("insert a value after `extra`, or remove `extra`")
    );
}

#[test]
fn unfinished_lines_are_labelled_at_their_end() {
    let text = "grid x in [0, 1] points\n\n# a comment\nfield u(x\nconst c = 1 +\nconst d = 2\n";
    let (_, diagnostics) = parse(FileId(0), text);
    assert_eq!(labelled(text, &diagnostics), vec!["points", "x", "+"]);
    assert!(
        diagnostics[0].message.ends_with("found `field` on line 4"),
        "{}",
        diagnostics[0].message
    );
}

#[test]
fn unexpected_token_within_line_is_labelled() {
    let text = "field u x\n";
    let (_, diagnostics) = parse(FileId(0), text);
    assert_eq!(labelled(text, &diagnostics), vec!["x"], "{diagnostics:#?}");
}

#[test]
fn misspelled_keyword_gets_suggestion() {
    for (text, typo, keyword) in [
        ("equaton heat: dt(u) = laplace(u)\n", "equaton", "equation"),
        ("const a = 1\nfeild u(x)\n", "feild", "field"),
        (
            "grid x in [0, 1] points 11\nequaton heat: dt(u) = 0\n",
            "equaton",
            "equation",
        ),
        ("field u(x)\nslove heat until 1 extra\n", "slove", "solve"),
    ] {
        let (_, diagnostics) = parse(FileId(0), text);
        assert_eq!(labelled(text, &diagnostics), vec![typo], "{text}");
        assert_eq!(
            diagnostics[0].help.as_deref(),
            Some(format!("did you mean `{keyword}`?").as_str()),
            "{text}"
        );
    }
}

#[test]
fn short_names_are_not_keyword_typos() {
    // `in` is one edit from `fn`, but it is a clause name, so no keyword is suggested.
    let text = "grid x\nin [0, 1] points 11 :\n";
    let (_, diagnostics) = parse(FileId(0), text);
    assert_eq!(labelled(text, &diagnostics), vec![":"], "{diagnostics:#?}");
    assert_ne!(diagnostics[0].help.as_deref(), Some("did you mean `fn`?"));
}

#[test]
fn leading_byte_order_mark_skipped() {
    let text = "\u{feff}grid x in [0, 1] points 11\nfield u(x)\n";
    let (module, diagnostics) = parse(FileId(0), text);
    assert!(diagnostics.is_empty(), "{diagnostics:#?}");
    assert_eq!(module.items.len(), 2);

    // Spans are byte offsets into the text as given, so the first item starts after the 3-byte mark.
    let grid = module.items[0].span;
    assert_eq!(grid.start, 3);
    assert_eq!(&text[grid.range()], "grid x in [0, 1] points 11");
    let field = module.items[1].span;
    assert_eq!(&text[field.range()], "field u(x)");
}

#[test]
fn byte_order_mark_after_start_rejected() {
    let (_, diagnostics) = parse(
        FileId(0),
        "grid x in [0, 1] points 11\n\u{feff}field u(x)\n",
    );
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    assert_eq!(diagnostics[0].code, Code::E0001);
    assert_eq!(diagnostics[0].span().start, 27);
}
