//! The front end of `.npde` files: tokens, grammar and syntax tree.
//!
//! [`parse`] never fails and never panics: it returns a [`ast::Module`] together with the diagnostics
//! of every lexical and syntax error it recovered from. Statements that could not be parsed appear as
//! [`ast::ItemKind::Error`] so later stages can skip them.

pub mod ast;
pub mod lexer;

use lalrpop_util::{lalrpop_mod, ErrorRecovery, ParseError};
use lexer::Token;
use npdec_diagnostics::{Code, Diagnostic, FileId, Span};

lalrpop_mod!(
    #[allow(clippy::all, clippy::pedantic, unused_parens)]
    grammar
);

/// The deepest bracket nesting accepted. Later stages walk expressions recursively, so without a
/// bound a pathological input would overflow the stack instead of getting a diagnostic.
pub const MAX_NESTING: usize = 100;

/// The most operators accepted in one statement, for the same reason: `a + a + … + a` nests as deeply
/// as its number of operators.
pub const MAX_OPERATORS_PER_STATEMENT: usize = 1000;

/// Parses one file. Diagnostics are sorted by position.
pub fn parse(file: FileId, text: &str) -> (ast::Module, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let tokens = lexer::tokenize(file, text, &mut diagnostics);
    if let Some(diagnostic) = check_complexity(file, &tokens) {
        diagnostics.push(diagnostic);
        return (ast::Module::default(), diagnostics);
    }
    let error_tokens: Vec<usize> = tokens
        .iter()
        .filter(|t| t.1 == Token::Error)
        .map(|t| t.0)
        .collect();
    let token_starts: Vec<usize> = tokens.iter().map(|t| t.0).collect();

    let mut recovered = Vec::new();
    let result = grammar::ModuleParser::new().parse(
        file,
        &mut recovered,
        tokens.into_iter().map(Ok::<_, ()>),
    );
    let module = match result {
        Ok(module) => module,
        Err(error) => {
            recovered.push(ErrorRecovery {
                error,
                dropped_tokens: Vec::new(),
            });
            ast::Module::default()
        }
    };

    // A misplaced keyword that starts statements, as `equation` in `use std::equation`, is where
    // recovery resumes: the parser starts a new statement there and fails again on the next token.
    // That second error only repeats the first, so it is dropped.
    let mut resumed_at: Option<usize> = None;
    for recovery in recovered {
        let found_start = match &recovery.error {
            ParseError::UnrecognizedToken {
                token: (start, _, _),
                ..
            } => Some(*start),
            _ => None,
        };
        if found_start.is_some() && found_start == resumed_at {
            resumed_at = None;
            continue;
        }
        resumed_at = match &recovery.error {
            ParseError::UnrecognizedToken {
                token: (start, token, _),
                ..
            } if Token::STATEMENT_KEYWORDS.contains(&token.text()) => token_starts
                .iter()
                .position(|s| s == start)
                .and_then(|i| token_starts.get(i + 1))
                .copied(),
            _ => None,
        };
        // The lexer already reported its bad tokens; a second "unexpected token" there adds nothing.
        if let ParseError::UnrecognizedToken {
            token: (start, Token::Error, _),
            ..
        } = recovery.error
        {
            if error_tokens.contains(&start) {
                continue;
            }
        }
        diagnostics.push(syntax_error(file, text, recovery.error));
    }
    diagnostics.sort_by_key(|d| d.span());
    (module, diagnostics)
}

/// Parses a single expression, as the REPL and tests do.
pub fn parse_expr(file: FileId, text: &str) -> Result<ast::Expr, Vec<Diagnostic>> {
    let mut diagnostics = Vec::new();
    let tokens = lexer::tokenize(file, text, &mut diagnostics);
    if let Some(diagnostic) = check_complexity(file, &tokens) {
        diagnostics.push(diagnostic);
        return Err(diagnostics);
    }
    let mut recovered = Vec::new();
    let result =
        grammar::ExprParser::new().parse(file, &mut recovered, tokens.into_iter().map(Ok::<_, ()>));
    match result {
        Ok(expr) if diagnostics.is_empty() && recovered.is_empty() => Ok(expr),
        Ok(_) => {
            diagnostics.extend(
                recovered
                    .into_iter()
                    .map(|r| syntax_error(file, text, r.error)),
            );
            Err(diagnostics)
        }
        Err(error) => {
            diagnostics.push(syntax_error(file, text, error));
            Err(diagnostics)
        }
    }
}

/// Rejects input nested too deeply or with too many operators in one statement.
fn check_complexity(file: FileId, tokens: &[lexer::Spanned]) -> Option<Diagnostic> {
    let mut depth = 0usize;
    let mut operators = 0usize;
    for (start, token, end) in tokens {
        let span = Span::new(file, *start, *end);
        match token {
            Token::LParen | Token::LBracket | Token::LBrace => depth += 1,
            Token::RParen | Token::RBracket | Token::RBrace => depth = depth.saturating_sub(1),
            Token::Plus | Token::Minus | Token::Star | Token::Slash | Token::Caret | Token::At => {
                operators += 1
            }
            t if Token::KEYWORDS.contains(&t.text())
                && !matches!(t, Token::On | Token::Learnable | Token::Fixed) =>
            {
                operators = 0
            }
            _ => {}
        }
        if depth > MAX_NESTING {
            return Some(
                Diagnostic::error(
                    Code::E0012,
                    format!("brackets nested more than {MAX_NESTING} deep"),
                    span,
                    "too deep",
                )
                .with_help("split the expression with `const` or `fn` declarations"),
            );
        }
        if operators > MAX_OPERATORS_PER_STATEMENT {
            return Some(
                Diagnostic::error(
                    Code::E0012,
                    format!("more than {MAX_OPERATORS_PER_STATEMENT} operators in one statement"),
                    span,
                    "statement too long",
                )
                .with_help("split the expression with `const` or `fn` declarations"),
            );
        }
    }
    None
}

fn syntax_error(file: FileId, text: &str, error: ParseError<usize, Token, ()>) -> Diagnostic {
    match error {
        ParseError::UnrecognizedToken {
            token: (start, token, end),
            expected,
        } => {
            let span = Span::new(file, start, end);
            let expected = describe_expected(&expected);
            let mut diagnostic = Diagnostic::error(
                Code::E0010,
                format!("expected {expected}, found {token}"),
                span,
                "unexpected here",
            );
            diagnostic.help = Some(help_for(&token, &expected));
            diagnostic
        }
        ParseError::UnrecognizedEof { location, expected } => {
            // Point at the last character, since the end of the file has no width to underline.
            // The last character may take several bytes, so the span covers all of them.
            let before = text
                .get(..location.min(text.len()))
                .unwrap_or(text)
                .trim_end();
            let start = before.char_indices().last().map_or(0, |(i, _)| i);
            let end = before.len();
            let help = match ["}", ")", "]"]
                .iter()
                .find(|closer| expected.iter().any(|e| e.trim_matches('"') == **closer))
            {
                Some(closer) => format!("add the missing `{closer}`, or finish the statement"),
                None => "finish the statement, or remove it".to_string(),
            };
            let expected = describe_expected(&expected);
            Diagnostic::error(
                Code::E0011,
                format!("unexpected end of file, expected {expected}"),
                Span::new(file, start, end),
                "the file ends here",
            )
            .with_help(help)
        }
        ParseError::InvalidToken { location } => Diagnostic::error(
            Code::E0001,
            "unknown character",
            Span::new(file, location, location + 1),
            "not part of the language",
        )
        .with_help("remove it"),
        ParseError::ExtraToken {
            token: (start, token, end),
        } => Diagnostic::error(
            Code::E0010,
            format!("expected end of file, found {token}"),
            Span::new(file, start, end),
            "unexpected here",
        )
        .with_help("remove it"),
        ParseError::User { .. } => {
            Diagnostic::error(Code::E0010, "invalid syntax", Span::new(file, 0, 0), "here")
                .with_help("check the statement against docs/language.md")
        }
    }
}

/// Turns lalrpop's list of expected terminals into "one of `a`, `b` or `c`".
fn describe_expected(expected: &[String]) -> String {
    let mut names: Vec<String> = expected
        .iter()
        .map(|e| {
            let trimmed = e.trim_matches('"');
            match trimmed {
                "identifier" | "number" | "imaginary number" | "string" => {
                    trimmed.replace("imaginary number", "number")
                }
                other => format!("`{}`", other.replace("\\\"", "\"")),
            }
        })
        .filter(|e| e != "unknown character")
        .collect();
    names.dedup();
    let starts_statement = names
        .iter()
        .filter(|n| {
            Token::KEYWORDS
                .iter()
                .any(|k| n.as_str() == format!("`{k}`"))
        })
        .count();
    if starts_statement >= 8 {
        names.retain(|n| {
            !Token::KEYWORDS
                .iter()
                .any(|k| n.as_str() == format!("`{k}`"))
        });
        names.push("a statement".to_string());
    }
    match names.len() {
        0 => "nothing more".to_string(),
        1 => names[0].clone(),
        n if n <= 12 => format!("one of {} or {}", names[..n - 1].join(", "), names[n - 1]),
        _ => "an expression or a statement".to_string(),
    }
}

fn help_for(found: &Token, expected: &str) -> String {
    match found {
        // A statement keyword where an expression could start means the statement before it is
        // unfinished. Where only a name fits, the keyword was meant as a name.
        _ if expected.contains("number") && Token::STATEMENT_KEYWORDS.contains(&found.text()) => {
            format!(
                "the statement before `{}` is unfinished: complete it",
                found.text()
            )
        }
        _ if expected.contains("identifier") && Token::KEYWORDS.contains(&found.text()) => format!(
            "`{}` is a keyword and cannot be used as a name; choose another name",
            found.text()
        ),
        Token::Assign if expected.contains("`==`") => {
            "use `==` to compare, because `=` only defines".to_string()
        }
        Token::RParen | Token::RBracket | Token::RBrace
            if !expected.contains(&format!("`{}`", found.text())) =>
        {
            format!("remove this `{}`, which closes nothing", found.text())
        }
        _ if expected.contains("a statement") => {
            "a statement starts with a keyword such as `grid`, `field`, `equation` or `solve`"
                .to_string()
        }
        _ => format!("insert {expected} here, or remove what does not belong"),
    }
}
