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
        // A misspelled clause in the same statement is most likely the missing one.
        let misspelled = self.diagnostics.iter().any(|d| {
            d.code == Code::E0110
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
