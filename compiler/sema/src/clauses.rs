//! Clauses such as `points 101` or `until 0.1`: checking names against the valid ones.

use crate::scope::Checker;
use npdec_diagnostics::{one_of, Code, Diagnostic};
use npdec_syntax::ast::{self, Clause};
use std::collections::HashMap;

impl Checker<'_> {
    /// Sorts clauses by name, reporting unknown and repeated ones.
    pub(crate) fn clauses<'a>(
        &mut self,
        clauses: &'a [Clause],
        valid: &[&'static str],
        owner: &str,
    ) -> HashMap<&'static str, &'a Clause> {
        let mut found: HashMap<&'static str, &'a Clause> = HashMap::new();
        for clause in clauses {
            let Some(&name) = valid.iter().find(|v| **v == clause.name.name) else {
                let mut diagnostic = Diagnostic::error(
                    Code::E0110,
                    format!("unknown clause `{}` in {owner}", clause.name.name),
                    clause.name.span,
                    "not a clause of this statement",
                );
                diagnostic = match crate::suggest::closest(&clause.name.name, valid.iter().copied())
                {
                    Some(s) => diagnostic.with_help(format!(
                        "did you mean `{s}`? the clauses are {}",
                        one_of(valid)
                    )),
                    None => match npdec_syntax::lexer::Token::statement_keyword_typo(
                        &clause.name.name,
                    ) {
                        // A misspelled keyword after the last clause reads as one more clause.
                        Some(keyword) => diagnostic.with_help(format!(
                            "did you mean `{keyword}`? a new statement starts with a keyword, and the clauses of {owner} are {}",
                            one_of(valid)
                        )),
                        None => diagnostic
                            .with_help(format!("the clauses of {owner} are {}", one_of(valid))),
                    },
                };
                self.error(diagnostic);
                continue;
            };
            if self.empty_clause(clause, valid) {
                continue;
            }
            if let Some(first) = found.get(name) {
                self.error(
                    Diagnostic::error(
                        Code::E0111,
                        format!("clause `{name}` given twice"),
                        clause.name.span,
                        "given again here",
                    )
                    .with_label(first.name.span, "first given here")
                    .with_help("keep one of the two"),
                );
                continue;
            }
            found.insert(name, clause);
        }
        found
    }

    /// Reports a clause left without a value, as `metrics` in `metrics l2 1e-3`, and returns true
    /// when it did. The parser reads the name of the next clause (`l2`) as the value and then fails
    /// on that clause's own value (`1e-3`). This replaces the syntax error there, so that the one
    /// mistake gets one error and the clause name is not also reported as an invalid value.
    fn empty_clause(&mut self, clause: &Clause, valid: &[&str]) -> bool {
        let [value] = clause.values.as_slice() else {
            return false;
        };
        let Some(next) = value
            .as_name()
            .filter(|name| valid.contains(&name.name.as_str()))
        else {
            return false;
        };
        let text = &self.sources.get(value.span.file).text;
        let after = value.span.end as usize;
        let syntax_error = self.diagnostics.iter().position(|d| {
            let span = d.span();
            d.code == Code::E0010
                && span.file == value.span.file
                && text
                    .get(after..span.start as usize)
                    .is_some_and(|gap| gap.trim().is_empty())
        });
        let Some(index) = syntax_error else {
            return false;
        };
        self.diagnostics.remove(index);
        let name = &clause.name.name;
        self.error(
            Diagnostic::error(
                Code::E0010,
                format!("clause `{name}` has no value"),
                clause.name.span,
                "no value after this clause",
            )
            .with_label(next.span, format!("`{}` starts the next clause", next.name))
            .with_help(format!(
                "write the value of `{name}` before `{}`, or remove `{name}`",
                next.name
            )),
        );
        true
    }

    /// Returns the single value of a clause, reporting a list where one value is expected.
    pub(crate) fn single<'a>(&mut self, clause: &'a Clause) -> Option<&'a ast::Expr> {
        if clause.values.len() != 1 {
            self.error(
                Diagnostic::error(
                    Code::E0131,
                    format!("clause `{}` takes one value", clause.name.name),
                    clause.span,
                    format!("{} values given", clause.values.len()),
                )
                .with_help(
                    "give one value, or a tuple in parentheses where the clause takes one per axis",
                ),
            );
            return None;
        }
        Some(&clause.values[0])
    }

    /// Returns the values of a clause that takes one value per axis: a tuple, a list or one value.
    pub(crate) fn per_axis<'a>(&self, clause: &'a Clause) -> Vec<&'a ast::Expr> {
        if clause.values.len() == 1 {
            if let ast::ExprKind::Tuple(items) = &clause.values[0].kind {
                return items.iter().collect();
            }
        }
        clause.values.iter().collect()
    }

    pub(crate) fn missing_clause(
        &mut self,
        span: npdec_diagnostics::Span,
        name: &str,
        owner: &str,
        example: &str,
    ) {
        // A misspelled clause in the same statement is most likely the missing one. A syntax
        // error in the statement, such as a clause given without a value, already explains it too.
        let misspelled = self.diagnostics.iter().any(|d| {
            matches!(d.code, Code::E0110 | Code::E0010)
                && d.span().file == span.file
                && span.start <= d.span().start
                && d.span().end <= span.end
        });
        if misspelled {
            return;
        }
        self.error(
            Diagnostic::error(
                Code::E0112,
                format!("{owner} needs the `{name}` clause"),
                span,
                format!("no `{name}` here"),
            )
            .with_help(format!("add it, for example: {example}")),
        );
    }
}
