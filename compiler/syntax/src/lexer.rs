//! The lexer: logos turns source text into tokens with byte spans.
//!
//! Whitespace (newlines included) and `#` comments are skipped, so statements are separated by the
//! keyword that starts each one. Characters that start no token become [`Token::Error`], which the
//! parser rejects and recovers from; the lexer also records a diagnostic for each of them.

use logos::Logos;
use npdec_diagnostics::{Code, Diagnostic, FileId, Span};
use std::fmt;

/// A token of the `.npde` language.
#[derive(Logos, Clone, Debug, PartialEq)]
#[logos(skip r"[ \t\r\n\f]+")]
#[logos(skip(r"#[^\n]*", allow_greedy = true))]
pub enum Token {
    #[token("use")]
    Use,
    #[token("model")]
    Model,
    #[token("grid")]
    Grid,
    #[token("field")]
    Field,
    #[token("const")]
    Const,
    #[token("param")]
    Param,
    #[token("data")]
    Data,
    #[token("equation")]
    Equation,
    #[token("boundary")]
    Boundary,
    #[token("initial")]
    Initial,
    #[token("readout")]
    Readout,
    #[token("fn")]
    Fn,
    #[token("solve")]
    Solve,
    #[token("train")]
    Train,
    #[token("expect")]
    Expect,
    #[token("on")]
    On,
    #[token("learnable")]
    Learnable,
    #[token("fixed")]
    Fixed,

    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token(",")]
    Comma,
    #[token(";")]
    Semicolon,
    #[token("::")]
    PathSep,
    #[token(":")]
    Colon,
    #[token(".")]
    Dot,
    #[token("=")]
    Assign,
    #[token("~")]
    Tilde,
    #[token("+")]
    Plus,
    #[token("-")]
    Minus,
    #[token("*")]
    Star,
    #[token("/")]
    Slash,
    #[token("^")]
    Caret,
    #[token("@")]
    At,
    #[token("<")]
    Less,
    #[token("<=")]
    LessEqual,
    #[token(">")]
    Greater,
    #[token(">=")]
    GreaterEqual,
    #[token("==")]
    EqualEqual,
    #[token("!=")]
    NotEqual,

    #[regex(r"\p{XID_Start}\p{XID_Continue}*", |lex| lex.slice().to_string())]
    #[regex(r"_\p{XID_Continue}+", |lex| lex.slice().to_string())]
    Ident(String),
    /// A real number literal; the lexer reports literals that overflow to infinity.
    #[regex(r"([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?", |lex| lex.slice().parse::<f64>().ok(), priority = 5)]
    Number(f64),
    /// An imaginary literal such as `2i` or `0.5i`.
    #[regex(r"([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?i", |lex| lex.slice()[..lex.slice().len() - 1].parse::<f64>().ok(), priority = 5)]
    Imaginary(f64),
    /// A malformed number such as `12abc` or `1e`.
    #[regex(r"[0-9][0-9A-Za-z_.]*", priority = 1)]
    BadNumber,
    #[regex(r#""([^"\\\n]|\\.)*""#, |lex| unescape(lex.slice()))]
    Str(String),
    /// A string literal that reaches the end of its line without a closing quote.
    #[regex(r#""([^"\\\n]|\\.)*"#, priority = 1)]
    UnterminatedStr,

    /// A character that starts no token; the parser never accepts it.
    Error,
}

fn unescape(quoted: &str) -> String {
    let body = &quoted[1..quoted.len() - 1];
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Ident(name) => write!(f, "identifier `{name}`"),
            Token::Number(value) => write!(f, "number `{value}`"),
            Token::Imaginary(value) => write!(f, "imaginary number `{value}i`"),
            Token::Str(_) | Token::UnterminatedStr => f.write_str("string literal"),
            Token::BadNumber => f.write_str("invalid number"),
            Token::Error => f.write_str("unknown character"),
            other => write!(f, "`{}`", other.text()),
        }
    }
}

impl Token {
    /// Returns the source text of a keyword or punctuation token.
    pub fn text(&self) -> &'static str {
        match self {
            Token::Use => "use",
            Token::Model => "model",
            Token::Grid => "grid",
            Token::Field => "field",
            Token::Const => "const",
            Token::Param => "param",
            Token::Data => "data",
            Token::Equation => "equation",
            Token::Boundary => "boundary",
            Token::Initial => "initial",
            Token::Readout => "readout",
            Token::Fn => "fn",
            Token::Solve => "solve",
            Token::Train => "train",
            Token::Expect => "expect",
            Token::On => "on",
            Token::Learnable => "learnable",
            Token::Fixed => "fixed",
            Token::LParen => "(",
            Token::RParen => ")",
            Token::LBracket => "[",
            Token::RBracket => "]",
            Token::LBrace => "{",
            Token::RBrace => "}",
            Token::Comma => ",",
            Token::Semicolon => ";",
            Token::PathSep => "::",
            Token::Colon => ":",
            Token::Dot => ".",
            Token::Assign => "=",
            Token::Tilde => "~",
            Token::Plus => "+",
            Token::Minus => "-",
            Token::Star => "*",
            Token::Slash => "/",
            Token::Caret => "^",
            Token::At => "@",
            Token::Less => "<",
            Token::LessEqual => "<=",
            Token::Greater => ">",
            Token::GreaterEqual => ">=",
            Token::EqualEqual => "==",
            Token::NotEqual => "!=",
            Token::Ident(_) => "identifier",
            Token::Number(_) | Token::Imaginary(_) | Token::BadNumber => "number",
            Token::Str(_) | Token::UnterminatedStr => "string",
            Token::Error => "unknown character",
        }
    }

    /// Returns the statement keyword that `name` is a likely misspelling of, such as `equation` for
    /// `equaton`. Names shorter than three characters are never corrected, because the clause name
    /// `in` is one edit away from `fn`.
    pub fn statement_keyword_typo(name: &str) -> Option<&'static str> {
        if name.chars().count() < 3 || Self::KEYWORDS.contains(&name) {
            return None;
        }
        npdec_diagnostics::suggest::closest(name, Self::STATEMENT_KEYWORDS.iter().copied())
    }

    /// Keywords that start a statement, where the parser resumes after a syntax error.
    pub const STATEMENT_KEYWORDS: &'static [&'static str] = &[
        "use", "model", "grid", "field", "const", "param", "data", "equation", "boundary",
        "initial", "readout", "fn", "solve", "train", "expect",
    ];

    /// Keywords, which cannot be used as names.
    pub const KEYWORDS: &'static [&'static str] = &[
        "use",
        "model",
        "grid",
        "field",
        "const",
        "param",
        "data",
        "equation",
        "boundary",
        "initial",
        "readout",
        "fn",
        "solve",
        "train",
        "expect",
        "on",
        "learnable",
        "fixed",
    ];
}

/// A token with its byte range, as the parser consumes it.
pub type Spanned = (usize, Token, usize);

/// Splits source text into tokens, recording a diagnostic for every lexical error.
///
/// Lexical errors do not stop the lexer: the bad input becomes a [`Token::Error`] and the parser
/// recovers at the next statement, so one run reports every independent error. A UTF-8 byte-order
/// mark at the start of the text, which some Windows editors write, is skipped. Spans still count
/// from the first byte of `text`, mark included.
pub fn tokenize(file: FileId, text: &str, diagnostics: &mut Vec<Diagnostic>) -> Vec<Spanned> {
    let mut tokens = Vec::new();
    let offset = npdec_diagnostics::byte_order_mark_len(text);
    let mut lexer = Token::lexer(&text[offset..]);
    while let Some(result) = lexer.next() {
        let range = lexer.span();
        let range = range.start + offset..range.end + offset;
        let span = Span::new(file, range.start, range.end);
        let token = match result {
            Ok(Token::Number(value)) | Ok(Token::Imaginary(value)) if !value.is_finite() => {
                diagnostics.push(
                    Diagnostic::error(
                        Code::E0003,
                        "number literal out of range",
                        span,
                        "this does not fit in a 64-bit float",
                    )
                    .with_help("use a value of magnitude below 1.8e308"),
                );
                Token::Error
            }
            Ok(Token::BadNumber) => {
                diagnostics.push(
                    Diagnostic::error(Code::E0003, "invalid number literal", span, "not a number")
                        .with_help("write numbers as `12`, `0.5`, `1e-4` or `2i`, and separate a number from a name with an operator such as `*`"),
                );
                Token::Error
            }
            Ok(Token::UnterminatedStr) => {
                diagnostics.push(
                    Diagnostic::error(
                        Code::E0002,
                        "unterminated string literal",
                        span,
                        "this string has no closing quote",
                    )
                    .with_help("add `\"` at the end of the string; strings cannot span lines"),
                );
                Token::Error
            }
            Ok(token) => token,
            Err(()) => {
                // A run of unknown characters, such as a Markdown fence, gets one diagnostic.
                let previous_unknown = tokens
                    .last()
                    .is_some_and(|t: &Spanned| t.1 == Token::Error && t.2 == range.start)
                    && diagnostics.last().is_some_and(|d: &Diagnostic| {
                        d.code == Code::E0001 && d.span().end as usize == range.start
                    });
                if previous_unknown {
                    let run_start = tokens.last().map_or(range.start, |t| t.0);
                    let run = &text[run_start..range.end];
                    if let (Some(token), Some(diagnostic)) =
                        (tokens.last_mut(), diagnostics.last_mut())
                    {
                        token.2 = range.end;
                        diagnostic.labels[0].span = Span::new(file, run_start, range.end);
                        diagnostic.message = format!("unknown characters `{}`", run.escape_debug());
                    }
                    continue;
                }
                let bad = &text[range.clone()];
                let help = match bad {
                    "∂" => "write a time derivative as `dt(u)` and a space derivative as `diff(u, x)`".to_string(),
                    "∇" => "write `laplace(u)`, `grad(u)` or `div(...)`".to_string(),
                    "&" | "|" | "!" => "the language has no logical operators; compare with `<`, `<=`, `>`, `>=`, `==` or `!=`".to_string(),
                    "'" => "string literals use double quotes: \"...\"".to_string(),
                    _ => "remove it; names use letters, digits and `_`, and comments start with `#`".to_string(),
                };
                diagnostics.push(
                    Diagnostic::error(
                        Code::E0001,
                        format!("unknown character `{}`", bad.escape_debug()),
                        span,
                        "not part of the language",
                    )
                    .with_help(help),
                );
                Token::Error
            }
        };
        tokens.push((range.start, token, range.end));
    }
    tokens
}
