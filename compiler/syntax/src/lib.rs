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
    let all_tokens = tokens.clone();

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
        diagnostics.push(syntax_error(file, text, &all_tokens, recovery.error));
    }
    diagnostics.sort_by_key(|d| d.span());
    let misspelled: Vec<usize> = diagnostics
        .iter()
        .filter(|d| d.code == Code::E0010)
        .map(|d| d.span().range())
        .filter(|range| {
            text.get(range.clone())
                .is_some_and(|name| Token::statement_keyword_typo(name).is_some())
        })
        .map(|range| range.start)
        .collect();
    let module = split_at_misspelled_keywords(file, module, &misspelled);
    (module, diagnostics)
}

/// Ends each statement at a misspelled keyword that the parser took for one of its clauses, as in
/// `grid x in [0, 1] points 11` followed by `equaton heat: …` on the next line. The clauses from the
/// misspelled keyword on become an [`ast::ItemKind::Error`] item, so that later stages neither
/// report them as unknown clauses nor miss the name `heat` that the statement was declaring.
fn split_at_misspelled_keywords(
    file: FileId,
    module: ast::Module,
    misspelled: &[usize],
) -> ast::Module {
    if misspelled.is_empty() {
        return module;
    }
    let mut items = Vec::with_capacity(module.items.len());
    for mut item in module.items {
        let clauses = match &mut item.kind {
            ast::ItemKind::Grid { clauses, .. }
            | ast::ItemKind::Data { clauses, .. }
            | ast::ItemKind::Task { clauses, .. } => Some(clauses),
            _ => None,
        };
        let Some(clauses) = clauses else {
            items.push(item);
            continue;
        };
        let Some(index) = clauses
            .iter()
            .position(|c| misspelled.contains(&(c.name.span.start as usize)))
        else {
            items.push(item);
            continue;
        };
        let rest = Span::new(
            file,
            clauses[index].span.start as usize,
            item.span.end as usize,
        );
        clauses.truncate(index);
        if let Some(last) = clauses.last() {
            item.span = Span::new(file, item.span.start as usize, last.span.end as usize);
        }
        items.push(item);
        items.push(ast::Item {
            kind: ast::ItemKind::Error,
            span: rest,
        });
    }
    ast::Module { items }
}

/// Parses a single expression, as the REPL and tests do.
pub fn parse_expr(file: FileId, text: &str) -> Result<ast::Expr, Vec<Diagnostic>> {
    let mut diagnostics = Vec::new();
    let tokens = lexer::tokenize(file, text, &mut diagnostics);
    if let Some(diagnostic) = check_complexity(file, &tokens) {
        diagnostics.push(diagnostic);
        return Err(diagnostics);
    }
    let all_tokens = tokens.clone();
    let mut recovered = Vec::new();
    let result =
        grammar::ExprParser::new().parse(file, &mut recovered, tokens.into_iter().map(Ok::<_, ()>));
    match result {
        Ok(expr) if diagnostics.is_empty() && recovered.is_empty() => Ok(expr),
        Ok(_) => {
            diagnostics.extend(
                recovered
                    .into_iter()
                    .map(|r| syntax_error(file, text, &all_tokens, r.error)),
            );
            Err(diagnostics)
        }
        Err(error) => {
            diagnostics.push(syntax_error(file, text, &all_tokens, error));
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

fn syntax_error(
    file: FileId,
    text: &str,
    tokens: &[lexer::Spanned],
    error: ParseError<usize, Token, ()>,
) -> Diagnostic {
    match error {
        ParseError::UnrecognizedToken {
            token: (start, token, end),
            expected,
        } => {
            let index = tokens.iter().position(|t| t.0 == start);
            if let Some(diagnostic) = index.and_then(|i| misspelled_keyword(file, text, tokens, i))
            {
                return diagnostic;
            }
            let expected_tokens = expected;
            let expected = describe_expected(&expected_tokens);
            // Newlines carry no meaning, so a token left over at the end of a line only fails at
            // the first token of the next statement. The mistake sits on the line that ended.
            let previous = index
                .and_then(|i| i.checked_sub(1))
                .map(|i| &tokens[i])
                .filter(|(_, _, previous_end)| {
                    text.get(*previous_end..start)
                        .is_some_and(|gap| gap.contains('\n'))
                });
            let unclosed =
                index.and_then(|i| unclosed_bracket(file, text, tokens, i, &expected_tokens));
            if let Some((previous_start, previous, previous_end)) = previous {
                let diagnostic = unfinished_line(
                    text,
                    Span::new(file, *previous_start, *previous_end),
                    previous,
                    (start, &token),
                    &expected,
                );
                return match unclosed {
                    Some(bracket) => {
                        let last_text = text
                            .get(*previous_start..*previous_end)
                            .unwrap_or_else(|| previous.text());
                        let help = format!("insert `{}` after `{last_text}`", bracket.closer);
                        bracket.annotate(diagnostic, help)
                    }
                    None => diagnostic,
                };
            }
            let span = Span::new(file, start, end);
            if let Some(bracket) = unclosed {
                let diagnostic = Diagnostic::error(
                    Code::E0010,
                    format!(
                        "expected `{}` to close the `{}` on line {}, found {token}",
                        bracket.closer, bracket.opener, bracket.line
                    ),
                    span,
                    "unexpected here",
                );
                let help = format!("insert `{}` before {token}", bracket.closer);
                return bracket.annotate(diagnostic, help);
            }
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
            let unclosed = unclosed_bracket(file, text, tokens, tokens.len(), &expected);
            let expected = describe_expected(&expected);
            let diagnostic = Diagnostic::error(
                Code::E0011,
                format!("unexpected end of file, expected {expected}"),
                Span::new(file, start, end),
                "the file ends here",
            );
            match unclosed {
                Some(bracket) => {
                    let help = format!("add the missing `{}` at the end", bracket.closer);
                    bracket.annotate(diagnostic, help)
                }
                None => diagnostic.with_help(help),
            }
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

/// A bracket of the failed statement that is open where parsing failed and that nothing after
/// it in the statement closes.
struct UnclosedBracket {
    span: Span,
    opener: &'static str,
    closer: &'static str,
    /// The one-based line of the opening bracket.
    line: usize,
}

impl UnclosedBracket {
    /// Adds the secondary label on the opening bracket and the help line.
    fn annotate(self, diagnostic: Diagnostic, help: String) -> Diagnostic {
        diagnostic
            .with_label(self.span, format!("this `{}` is never closed", self.opener))
            .with_help(help)
    }
}

/// Finds the innermost bracket of the failed statement that is still open before `tokens[failed]`.
/// Returns `None` unless its closing bracket is among the `expected` tokens and no later token of
/// the statement closes it. A statement starts at a statement keyword, so brackets left open by an
/// earlier statement are not counted.
fn unclosed_bracket(
    file: FileId,
    text: &str,
    tokens: &[lexer::Spanned],
    failed: usize,
    expected: &[String],
) -> Option<UnclosedBracket> {
    let is_statement_start = |token: &Token| Token::STATEMENT_KEYWORDS.contains(&token.text());
    let statement_start = tokens[..failed]
        .iter()
        .rposition(|(_, token, _)| is_statement_start(token))
        .unwrap_or(0);
    let mut open: Vec<usize> = Vec::new();
    for (index, (_, token, _)) in tokens.iter().enumerate().take(failed).skip(statement_start) {
        match token {
            Token::LParen | Token::LBracket | Token::LBrace => open.push(index),
            Token::RParen | Token::RBracket | Token::RBrace => {
                let matches_top = open
                    .last()
                    .is_some_and(|&top| closing_bracket(&tokens[top].1) == Some(token.text()));
                if matches_top {
                    open.pop();
                }
            }
            _ => {}
        }
    }
    let innermost = *open.last()?;
    let (start, opener, end) = &tokens[innermost];
    let closer = closing_bracket(opener)?;
    if !expected.iter().any(|e| e.trim_matches('"') == closer) {
        return None;
    }

    // A bracket that a later token of the statement closes is not missing, so the error lies
    // elsewhere.
    let mut depth = 0usize;
    for (_, token, _) in tokens.iter().skip(failed) {
        if is_statement_start(token) {
            break;
        }
        match token {
            Token::LParen | Token::LBracket | Token::LBrace => depth += 1,
            Token::RParen | Token::RBracket | Token::RBrace if depth > 0 => depth -= 1,
            _ if token.text() == closer => return None,
            _ => {}
        }
    }
    let line = text.get(..*start).unwrap_or(text).matches('\n').count() + 1;
    Some(UnclosedBracket {
        span: Span::new(file, *start, *end),
        opener: opener.text(),
        closer,
        line,
    })
}

/// Returns the closing bracket of an opening one.
fn closing_bracket(opener: &Token) -> Option<&'static str> {
    match opener {
        Token::LParen => Some(")"),
        Token::LBracket => Some("]"),
        Token::LBrace => Some("}"),
        _ => None,
    }
}

/// Reports a syntax error on a line that starts with a misspelled statement keyword, such as
/// `equaton heat: dt(u) = laplace(u)`, with the keyword it most likely meant. Returns `None` when
/// the line of the token at `index` starts with anything else.
fn misspelled_keyword(
    file: FileId,
    text: &str,
    tokens: &[lexer::Spanned],
    index: usize,
) -> Option<Diagnostic> {
    let line_start = text
        .get(..tokens[index].0)?
        .rfind('\n')
        .map_or(0, |newline| newline + 1);
    let (start, token, end) = tokens[..=index].iter().find(|t| t.0 >= line_start)?;
    let Token::Ident(name) = token else {
        return None;
    };
    let keyword = Token::statement_keyword_typo(name)?;
    Some(
        Diagnostic::error(
            Code::E0010,
            format!("expected a statement, found identifier `{name}`"),
            Span::new(file, *start, *end),
            "not a keyword",
        )
        .with_help(format!("did you mean `{keyword}`?")),
    )
}

/// Reports a statement that stops at the end of a line, on the last token of that line: a stray
/// token such as `extra` in `grid x in [0, 1] points 101 extra`, or an operator with nothing after
/// it. `next` is the token on a later line where the parser failed.
fn unfinished_line(
    text: &str,
    span: Span,
    last: &Token,
    next: (usize, &Token),
    expected: &str,
) -> Diagnostic {
    let (next_start, next_token) = next;
    let next_line = text.get(..next_start).unwrap_or(text).matches('\n').count() + 1;
    let last_text = text.get(span.range()).unwrap_or_else(|| last.text());
    let wanted = if expected.contains("number") {
        "a value"
    } else {
        expected
    };
    // An identifier after which a value is expected is a clause name without its value, or a
    // token that does not belong at all.
    let label = if matches!(last, Token::Ident(_)) && expected.contains("number") {
        "unexpected here"
    } else {
        "the statement is unfinished at the end of this line"
    };
    Diagnostic::error(
        Code::E0010,
        format!("expected {expected} after `{last_text}`, found {next_token} on line {next_line}"),
        span,
        label,
    )
    .with_help(format!(
        "insert {wanted} after `{last_text}`, or remove `{last_text}`"
    ))
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
