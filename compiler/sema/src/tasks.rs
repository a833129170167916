//! `solve` and `train` tasks, `expect` assertions and readouts.

use crate::expr::{Place, Shape};
use crate::scope::{Checker, DeclKind};
use npdec_diagnostics::{one_of, Code, Diagnostic, Span};
use npdec_symbolic::{
    CompareOp, Discretization, EquationId, Expect, GradientMethod, Loss, Metric, MetricExpect,
    Optimizer, Schedule, Scheme, SolveTask, Task, TrainTask, TrainingMetric,
};
use npdec_syntax::ast::{self, ExprKind, ItemKind, TaskKind};

const SOLVE_CLAUSES: &[&str] = &["using", "until", "every", "order"];
const TRAIN_CLAUSES: &[&str] = &[
    "on",
    "using",
    "until",
    "order",
    "loss",
    "optimizer",
    "epochs",
    "batch",
    "metrics",
    "l2",
    "gradient",
    "schedule",
];
const SCHEMES: &[&str] = &[
    "euler",
    "rk4",
    "leapfrog",
    "crank_nicolson",
    "backward_euler",
    "split_step",
    "steady",
];
const OPTIMIZERS: &[&str] = &["sgd", "adam", "lbfgs", "pseudoinverse"];
const LOSSES: &[&str] = &["cross_entropy", "mse"];
const METRICS: &[&str] = &["accuracy", "loss", "mse"];
const GRADIENTS: &[&str] = &["discrete", "continuous"];
const SCHEDULES: &[&str] = &["constant", "cosine"];

/// Turns a comparison around, so that `a op b` reads `b flip(op) a`.
fn flip(op: ast::CompareOp) -> ast::CompareOp {
    match op {
        ast::CompareOp::Less => ast::CompareOp::Greater,
        ast::CompareOp::LessEqual => ast::CompareOp::GreaterEqual,
        ast::CompareOp::Greater => ast::CompareOp::Less,
        ast::CompareOp::GreaterEqual => ast::CompareOp::LessEqual,
        other => other,
    }
}

/// A scheme as written, before the step is known.
struct SchemeChoice {
    scheme: Scheme,
    dt: Option<f64>,
    steps: Option<usize>,
    span: Span,
}

impl Checker<'_> {
    pub(crate) fn lower_tasks(&mut self, module: &ast::Module) {
        for item in &module.items {
            let ItemKind::Task {
                kind,
                equations,
                clauses,
            } = &item.kind
            else {
                continue;
            };
            // The clauses are checked even when an equation failed, so their errors show up now and
            // not after the equation is fixed; the task itself is kept only if everything checked.
            let (equation_ids, equations_ok) = self.task_equations(equations);
            let task = match kind {
                TaskKind::Solve => self
                    .lower_solve(equation_ids, clauses, item.span)
                    .map(Task::Solve),
                TaskKind::Train => self
                    .lower_train(equation_ids, clauses, item.span)
                    .map(Task::Train),
            };
            if let (Some(task), true) = (task, equations_ok) {
                self.model.tasks.push(task);
            }
        }
    }

    /// Resolves the equations a task names. The flag is false if one of them is unknown or did not
    /// lower; the list then holds the others.
    fn task_equations(&mut self, names: &[ast::Ident]) -> (Vec<EquationId>, bool) {
        let mut ids = Vec::new();
        let mut ok = true;
        for name in names {
            match self
                .lookup(&name.name)
                .map(|i| (i, self.decls[i].kind.clone()))
            {
                Some((index, DeclKind::Equation(list))) => {
                    self.decls[index].used = true;
                    if list.is_empty() {
                        ok = false;
                    }
                    ids.extend(list);
                }
                Some((_, DeclKind::Unparsed)) => ok = false,
                other => {
                    let equations: Vec<String> = self
                        .decls
                        .iter()
                        .filter(|d| matches!(d.kind, DeclKind::Equation(_)))
                        .map(|d| d.name.clone())
                        .collect();
                    let label = match other {
                        Some((index, _)) => {
                            format!("a {}, not an equation", self.decls[index].kind.describe())
                        }
                        None => "not declared".to_string(),
                    };
                    let mut diagnostic = Diagnostic::error(
                        Code::E0243,
                        format!("unknown equation `{}`", name.name),
                        name.span,
                        label,
                    );
                    diagnostic = if equations.is_empty() {
                        diagnostic.with_help("declare one: `equation heat: dt(u) = laplace(u)`")
                    } else {
                        diagnostic.with_help(format!("the equations are {}", one_of(&equations)))
                    };
                    self.error(diagnostic);
                    ok = false;
                }
            }
        }
        (ids, ok)
    }

    fn scheme(&mut self, expr: &ast::Expr) -> Option<SchemeChoice> {
        let (name, args): (&ast::Ident, &[ast::Arg]) = match &expr.kind {
            ExprKind::Name(name) => (name, &[]),
            ExprKind::Call { callee, args } => (callee, args),
            _ => {
                self.unknown_scheme(expr.span, None);
                return None;
            }
        };
        if !SCHEMES.contains(&name.name.as_str()) {
            self.unknown_scheme(name.span, Some(&name.name));
            return None;
        }
        if name.name == "steady" {
            let values = self.named_values(
                "steady",
                args,
                &["tol", "max_iter"],
                &[1e-10, 10_000.0],
                expr.span,
            )?;
            if values[0] <= 0.0 || values[1] < 1.0 || values[1].fract() != 0.0 {
                self.error(
                    Diagnostic::error(
                        Code::E0242,
                        "invalid steady solver settings",
                        expr.span,
                        "out of range",
                    )
                    .with_help(
                        "`tol` must be positive and `max_iter` a whole number of at least 1",
                    ),
                );
                return None;
            }
            return Some(SchemeChoice {
                scheme: Scheme::Steady {
                    tolerance: values[0],
                    max_iterations: values[1] as usize,
                },
                dt: None,
                steps: None,
                span: expr.span,
            });
        }
        let values =
            self.named_values(&name.name, args, &["dt", "steps"], &[-1.0, -1.0], expr.span)?;
        let dt = (values[0] != -1.0).then_some(values[0]);
        let steps = (values[1] != -1.0).then_some(values[1]);
        if dt.is_some() == steps.is_some() {
            self.error(
                Diagnostic::error(
                    Code::E0242,
                    if dt.is_some() {
                        format!("`{}` takes `dt` or `steps`, not both", name.name)
                    } else {
                        format!("`{}` needs `dt` or `steps`", name.name)
                    },
                    expr.span,
                    if dt.is_some() {
                        "both given"
                    } else {
                        "neither given"
                    },
                )
                .with_help(format!(
                    "write `{}(dt = 1e-3)` or `{}(steps = 100)`",
                    name.name, name.name
                )),
            );
            return None;
        }
        if dt.is_some_and(|dt| dt <= 0.0) || steps.is_some_and(|s| s < 1.0 || s.fract() != 0.0) {
            self.error(
                Diagnostic::error(
                    Code::E0242,
                    "invalid time step",
                    expr.span,
                    "must be positive",
                )
                .with_help("`dt` is a positive time and `steps` a whole number of at least 1"),
            );
            return None;
        }
        let scheme = match name.name.as_str() {
            "euler" => Scheme::Euler,
            "rk4" => Scheme::Rk4,
            "leapfrog" => Scheme::Leapfrog,
            "crank_nicolson" => Scheme::CrankNicolson,
            "backward_euler" => Scheme::BackwardEuler,
            _ => Scheme::SplitStep,
        };
        Some(SchemeChoice {
            scheme,
            dt,
            steps: steps.map(|s| s as usize),
            span: expr.span,
        })
    }

    fn unknown_scheme(&mut self, span: Span, name: Option<&str>) {
        let headline = name.map_or("expected a time scheme".to_string(), |n| {
            format!("unknown time scheme `{n}`")
        });
        let mut diagnostic = Diagnostic::error(Code::E0240, headline, span, "not a scheme");
        diagnostic = match name.and_then(|n| crate::suggest::closest(n, SCHEMES.iter().copied())) {
            Some(s) => diagnostic.with_help(format!(
                "did you mean `{s}`? the schemes are {}",
                one_of(SCHEMES)
            )),
            None => diagnostic.with_help(format!("the schemes are {}", one_of(SCHEMES))),
        };
        self.error(diagnostic);
    }

    /// Builds the discretization from the `using`, `until` and `order` clauses.
    fn discretization(
        &mut self,
        found: &std::collections::HashMap<&'static str, &ast::Clause>,
        equations: &[EquationId],
        span: Span,
        default_until: Option<f64>,
    ) -> Option<Discretization> {
        let Some(using) = found.get("using") else {
            let owner = if default_until.is_some() {
                "`train`"
            } else {
                "`solve`"
            };
            self.missing_clause(span, "using", owner, "`using euler(dt = 1e-4)`");
            return None;
        };
        let choice = self.single(using).cloned().and_then(|e| self.scheme(&e));
        let space_order = match found.get("order").and_then(|c| self.single(c)).cloned() {
            None => Some(2),
            Some(value) => {
                let order = self.const_integer(&value, 1)?;
                if order % 2 == 1 {
                    self.error(
                        Diagnostic::error(
                            Code::E0230,
                            format!("centered space order {order} is odd"),
                            value.span,
                            "must be even",
                        )
                        .with_help("centered differences have even orders: use 2, 4, 6 or 8"),
                    );
                    None
                } else if !(2..=8).contains(&order) {
                    self.error(
                        Diagnostic::error(
                            Code::E0230,
                            format!("space order {order} is not supported"),
                            value.span,
                            "unsupported order",
                        )
                        .with_help("use 2, 4, 6 or 8"),
                    );
                    None
                } else {
                    Some(order as u8)
                }
            }
        };
        // The end time is checked even when the scheme is invalid, so that an invalid step and an
        // invalid end time are both reported. A steady scheme takes no end time at all.
        let steady = matches!(&choice, Some(c) if matches!(c.scheme, Scheme::Steady { .. }));
        let until = if steady {
            None
        } else {
            self.end_time(found, span, default_until, choice.is_some())
        };
        let choice = choice?;
        let space_order = space_order?;
        self.check_scheme_fits(&choice, equations)?;
        if let Scheme::Steady { .. } = choice.scheme {
            if let Some(until) = found.get("until") {
                self.error(
                    Diagnostic::error(
                        Code::E0242,
                        "a steady solve has no end time",
                        until.name.span,
                        "not used by `steady`",
                    )
                    .with_help("remove `until`"),
                );
                return None;
            }
            return Some(Discretization {
                scheme: choice.scheme,
                dt: 0.0,
                steps: 0,
                until: 0.0,
                space_order,
            });
        }
        let until = until?;
        let (dt, steps) = match (choice.dt, choice.steps) {
            (Some(dt), _) => {
                // A step that does not divide the end time is shortened so the last step lands on it.
                let steps = ((until / dt) - 1e-9).ceil().max(1.0) as usize;
                (until / steps as f64, steps)
            }
            (None, Some(steps)) => (until / steps as f64, steps),
            (None, None) => return None,
        };
        Some(Discretization {
            scheme: choice.scheme,
            dt,
            steps,
            until,
            space_order,
        })
    }

    /// Returns the end time of the `until` clause, or `default_until` without one. A missing
    /// clause is reported only when `scheme_known`, because an invalid scheme may be a misspelt
    /// `steady`, which takes no end time.
    fn end_time(
        &mut self,
        found: &std::collections::HashMap<&'static str, &ast::Clause>,
        span: Span,
        default_until: Option<f64>,
        scheme_known: bool,
    ) -> Option<f64> {
        let value = found.get("until").and_then(|c| self.single(c)).cloned();
        match (value, default_until) {
            (Some(value), _) => {
                let until = self.const_real(&value)?;
                if until <= 0.0 {
                    self.error(
                        Diagnostic::error(
                            Code::E0242,
                            "the end time must be positive",
                            value.span,
                            format!("{until} is not positive"),
                        )
                        .with_help("integrate from t = 0 to a positive time"),
                    );
                    return None;
                }
                Some(until)
            }
            (None, Some(default)) => Some(default),
            (None, None) => {
                if scheme_known {
                    self.missing_clause(span, "until", "a time-dependent `solve`", "`until 0.1`");
                }
                None
            }
        }
    }

    fn check_scheme_fits(&mut self, choice: &SchemeChoice, equations: &[EquationId]) -> Option<()> {
        for id in equations {
            let equation = &self.model.equations[id.0];
            let order = equation.time_order;
            let name = choice.scheme.name();
            let problem = match (&choice.scheme, order) {
                (Scheme::Steady { .. }, 0) | (Scheme::Leapfrog, 2) => None,
                (Scheme::Steady { .. }, _) => {
                    Some("`steady` solves only equations without a time derivative, so choose a time scheme such as `rk4`".to_string())
                }
                (_, 0) => Some(format!(
                    "`{name}` integrates in time, but this equation is steady; use `steady`"
                )),
                (Scheme::Leapfrog, _) => {
                    Some("`leapfrog` integrates second-order equations `dt2(u) = ...`".to_string())
                }
                (_, 2) => Some(format!(
                    "`{name}` integrates first-order equations; use `leapfrog` for `dt2(u) = ...`"
                )),
                (Scheme::SplitStep, _) => {
                    // The discretizer splits the right-hand side precisely; here it is enough that a
                    // complex field has a Laplacian of itself to propagate in Fourier space.
                    let field = equation.field;
                    let has_laplace = equation.terms.iter().any(|t| t.expr.any(|e| matches!(e, npdec_symbolic::Expr::Laplace(inner) if inner.mentions_field(field))));
                    let complex = self.model.fields[field.0].complex;
                    (!has_laplace || !complex).then(|| {
                        "`split_step` needs a complex field whose equation has a `laplace` term of that field, as in Schrödinger or paraxial equations".to_string()
                    })
                }
                _ => None,
            };
            if let Some(problem) = problem {
                let span = equation.span;
                self.error(
                    Diagnostic::error(
                        Code::E0241,
                        format!("scheme `{name}` does not fit this equation"),
                        choice.span,
                        "scheme chosen here",
                    )
                    .with_label(span, "equation here")
                    .with_help(problem),
                );
                return None;
            }
        }
        Some(())
    }

    fn lower_solve(
        &mut self,
        equations: Vec<EquationId>,
        clauses: &[ast::Clause],
        span: Span,
    ) -> Option<SolveTask> {
        let found = self.clauses(clauses, SOLVE_CLAUSES, "`solve`");
        let every = match found.get("every").and_then(|c| self.single(c)).cloned() {
            None => None,
            Some(value) => Some(self.const_integer(&value, 1)?),
        };
        let discretization = self.discretization(&found, &equations, span, None)?;
        Some(SolveTask {
            equations,
            discretization,
            every,
            span,
        })
    }

    fn lower_train(
        &mut self,
        equations: Vec<EquationId>,
        clauses: &[ast::Clause],
        span: Span,
    ) -> Option<TrainTask> {
        let found = self.clauses(clauses, TRAIN_CLAUSES, "`train`");
        let data_span = clauses
            .iter()
            .find(|clause| clause.name.name == "on")
            .map_or(span, |clause| clause.span);
        let data = match found.get("on").and_then(|c| self.single(c)).cloned() {
            None => {
                self.missing_clause(span, "on", "`train`", "`on mnist`, naming a `data` source");
                None
            }
            Some(value) => match value
                .as_name()
                .and_then(|n| self.lookup(&n.name).map(|i| (i, n)))
            {
                Some((index, _)) if matches!(self.decls[index].kind, DeclKind::Data(_)) => {
                    self.decls[index].used = true;
                    match self.decls[index].kind {
                        DeclKind::Data(data) => data,
                        _ => None,
                    }
                }
                Some((index, _)) if matches!(self.decls[index].kind, DeclKind::Unparsed) => None,
                resolved => {
                    let sources: Vec<String> =
                        self.model.data.iter().map(|d| d.name.clone()).collect();
                    let message = match (value.as_name(), resolved) {
                        (Some(name), None) => format!("unknown data source `{}`", name.name),
                        (Some(name), Some(_)) => format!("`{}` is not a data source", name.name),
                        (None, _) => "expected the name of a data source after `on`".to_string(),
                    };
                    let suggestion = value.as_name().and_then(|name| {
                        crate::suggest::closest(&name.name, sources.iter().map(String::as_str))
                    });
                    self.error(
                        Diagnostic::error(Code::E0261, message, value.span, "not a data source")
                            .with_help(match suggestion {
                                _ if sources.is_empty() => {
                                    "declare one: `data mnist = idx(\"images.gz\", \"labels.gz\")`"
                                        .to_string()
                                }
                                Some(closest) => format!(
                                    "did you mean `{closest}`? the data sources are {}",
                                    one_of(&sources)
                                ),
                                None => format!("the data sources are {}", one_of(&sources)),
                            }),
                    );
                    None
                }
            },
        };
        let discretization = self.discretization(&found, &equations, span, Some(1.0));
        let loss = match found.get("loss").and_then(|c| self.single(c)).cloned() {
            None => {
                self.missing_clause(span, "loss", "`train`", "`loss cross_entropy(y, label)`");
                None
            }
            Some(value) => self.loss(&value),
        };
        let optimizer = match found.get("optimizer").and_then(|c| self.single(c)).cloned() {
            None => Some(Optimizer::Adam {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            }),
            Some(value) => self.optimizer(&value),
        };
        let count = |checker: &mut Self, name: &str, default: usize| match found
            .get(name)
            .and_then(|c| checker.single(c))
            .cloned()
        {
            None => Some(default),
            Some(value) => checker.const_integer(&value, 1),
        };
        let epochs = count(self, "epochs", 1);
        let batch = count(self, "batch", 32);
        let l2 = match found.get("l2").and_then(|c| self.single(c)).cloned() {
            None => Some(0.0),
            Some(value) => self.const_real(&value).filter(|v| *v >= 0.0),
        };
        let schedule = match found.get("schedule").and_then(|c| self.single(c)).cloned() {
            None => Some(Schedule::Constant),
            Some(value) => match value.as_name().map(|n| n.name.as_str()) {
                Some("constant") => Some(Schedule::Constant),
                Some("cosine") => Some(Schedule::Cosine),
                _ => {
                    self.error(
                        Diagnostic::error(
                            Code::E0260,
                            format!(
                                "unknown learning-rate schedule `{}`",
                                self.sources.snippet(value.span)
                            ),
                            value.span,
                            "not a schedule",
                        )
                        .with_help(format!("the schedules are {}", one_of(SCHEDULES))),
                    );
                    None
                }
            },
        };
        let classifies = matches!(loss, Some(Loss::CrossEntropy { .. }));
        let metrics = match found.get("metrics") {
            // A `metrics` clause that was given but not kept had no value. That error is reported,
            // and the figures it was meant to list are unknown, so expectations are not checked
            // against the default ones.
            None if clauses.iter().any(|c| c.name.name == "metrics") => None,
            None if classifies => Some(vec![Metric::Loss, Metric::Accuracy]),
            None => Some(vec![Metric::Loss]),
            Some(clause) => {
                let mut metrics = Vec::new();
                // The span where each metric was first listed, to point at a repeated one.
                let mut listed: Vec<(&str, Span)> = Vec::new();
                let mut ok = true;
                for value in &clause.values {
                    let name = value.as_name().map(|n| n.name.as_str());
                    if let Some((name, first)) =
                        name.and_then(|name| listed.iter().find(|(n, _)| *n == name))
                    {
                        self.error(
                            Diagnostic::error(
                                Code::E0261,
                                format!("metric `{name}` listed twice"),
                                value.span,
                                "listed again here",
                            )
                            .with_label(*first, "first listed here")
                            .with_help("list each metric once"),
                        );
                        ok = false;
                        continue;
                    }
                    if let Some(name) = name {
                        listed.push((name, value.span));
                    }
                    match name {
                        Some("accuracy") if matches!(loss, Some(Loss::Mse { .. })) => {
                            self.error(
                                Diagnostic::error(
                                    Code::E0261,
                                    "`accuracy` needs a classification loss",
                                    value.span,
                                    "the task trains with `mse`",
                                )
                                .with_help("accuracy is measured for `cross_entropy` losses; list `loss` or `mse` instead"),
                            );
                            ok = false;
                        }
                        Some("accuracy") => metrics.push(Metric::Accuracy),
                        Some("loss") => metrics.push(Metric::Loss),
                        Some("mse") => metrics.push(Metric::Mse),
                        _ => {
                            self.error(
                                Diagnostic::error(
                                    Code::E0260,
                                    format!(
                                        "unknown metric `{}`",
                                        self.sources.snippet(value.span)
                                    ),
                                    value.span,
                                    "not a metric",
                                )
                                .with_help(format!("the metrics are {}", one_of(METRICS))),
                            );
                            ok = false;
                        }
                    }
                }
                ok.then_some(metrics)
            }
        };
        let gradient = match found.get("gradient").and_then(|c| self.single(c)).cloned() {
            None => Some(GradientMethod::Discrete),
            Some(value) => match value.as_name().map(|n| n.name.as_str()) {
                Some("discrete") => Some(GradientMethod::Discrete),
                Some("continuous") => {
                    if let Some(Optimizer::Pseudoinverse { .. }) = optimizer {
                        self.error(
                            Diagnostic::error(
                                Code::E0261,
                                "`gradient continuous` with the `pseudoinverse` optimizer",
                                value.span,
                                "no gradient is computed",
                            )
                            .with_help("`pseudoinverse` fits the readout by least squares without gradients: remove the `gradient` clause or choose `sgd`, `adam` or `lbfgs`"),
                        );
                        None
                    } else {
                        Some(GradientMethod::Continuous)
                    }
                }
                _ => {
                    self.error(
                        Diagnostic::error(
                            Code::E0260,
                            format!(
                                "unknown gradient method `{}`",
                                self.sources.snippet(value.span)
                            ),
                            value.span,
                            "not a gradient method",
                        )
                        .with_help(format!("the gradient methods are {}", one_of(GRADIENTS))),
                    );
                    None
                }
            },
        };
        Some(TrainTask {
            equations,
            data: data?,
            discretization: discretization?,
            loss: loss?,
            optimizer: optimizer?,
            epochs: epochs?,
            batch: batch?,
            l2: l2?,
            schedule: schedule?,
            metrics: metrics?,
            gradient: gradient?,
            span,
            data_span,
        })
    }

    fn loss(&mut self, value: &ast::Expr) -> Option<Loss> {
        let ExprKind::Call { callee, args } = &value.kind else {
            self.error(
                Diagnostic::error(Code::E0260, "expected a loss", value.span, "not a loss")
                    .with_help(format!("write `cross_entropy(scores, label)` or `mse(prediction, target)`; the losses are {}", one_of(LOSSES))),
            );
            return None;
        };
        if !LOSSES.contains(&callee.name.as_str()) {
            self.error(
                Diagnostic::error(
                    Code::E0260,
                    format!("unknown loss `{}`", callee.name),
                    callee.span,
                    "not a loss",
                )
                .with_help(format!("the losses are {}", one_of(LOSSES))),
            );
            return None;
        }
        if args.len() != 2 || args.iter().any(|a| a.name.is_some()) {
            self.wrong_arity(&callee.name, "2".to_string(), args.len(), value.span);
            return None;
        }
        let first = self.lower(&args[0].value, Place::Model);
        let second = self.lower(&args[1].value, Place::Model);
        let (first, second) = (first?, second?);
        if callee.name == "cross_entropy" {
            self.warn_softmax_scores(&args[0].value);
        }
        Some(if callee.name == "mse" {
            Loss::Mse {
                prediction: first.expr,
                target: second.expr,
            }
        } else {
            Loss::CrossEntropy {
                scores: first.expr,
                label: second.expr,
            }
        })
    }

    /// Warns when the scores given to `cross_entropy` end in `softmax`, directly or as the value
    /// of a readout. The loss applies its own softmax to the scores, so a second one squashes them
    /// into [0, 1] and the gradients shrink: the network still trains, but slowly and worse.
    fn warn_softmax_scores(&mut self, scores: &ast::Expr) {
        let mut value = scores.clone();
        // A readout may be defined by another readout, so follow names up to a bound that a
        // cycle, which is reported as E0131 elsewhere, cannot exceed.
        for _ in 0..self.decls.len() + 1 {
            let ExprKind::Name(name) = &value.kind else {
                break;
            };
            match self.lookup(&name.name).map(|index| &self.decls[index].kind) {
                Some(DeclKind::Readout { value: inner, .. }) => value = inner.clone(),
                _ => break,
            }
        }
        let ExprKind::Call { callee, args } = &value.kind else {
            return;
        };
        if callee.name != "softmax" || args.len() != 1 {
            return;
        }
        let inner = self.sources.snippet(args[0].value.span).to_string();
        let mut diagnostic = Diagnostic::warning(
            Code::W0008,
            "`cross_entropy` gets scores that already went through `softmax`",
            callee.span,
            "softmax applied here",
        )
        .with_help(format!(
            "remove this `softmax` and keep `{inner}`, because `cross_entropy` applies softmax \
             itself and takes raw scores (logits)"
        ));
        if value.span != scores.span {
            diagnostic = diagnostic.with_label(scores.span, "used as the scores of the loss here");
        }
        self.diagnostics.push(diagnostic);
    }

    fn optimizer(&mut self, value: &ast::Expr) -> Option<Optimizer> {
        let (name, args): (&ast::Ident, &[ast::Arg]) = match &value.kind {
            ExprKind::Name(name) => (name, &[]),
            ExprKind::Call { callee, args } => (callee, args),
            _ => (
                &ast::Ident {
                    name: String::new(),
                    span: value.span,
                },
                &[],
            ),
        };
        let values = match name.name.as_str() {
            "sgd" => self.named_values(
                "sgd",
                args,
                &["lr", "momentum"],
                &[f64::NAN, 0.0],
                value.span,
            )?,
            "adam" => self.named_values(
                "adam",
                args,
                &["lr", "beta1", "beta2", "eps"],
                &[1e-3, 0.9, 0.999, 1e-8],
                value.span,
            )?,
            "lbfgs" => self.named_values(
                "lbfgs",
                args,
                &["max_iter", "history", "tol"],
                &[100.0, 10.0, 1e-9],
                value.span,
            )?,
            "pseudoinverse" => {
                self.named_values("pseudoinverse", args, &["ridge"], &[0.0], value.span)?
            }
            other => {
                let mut diagnostic = Diagnostic::error(
                    Code::E0260,
                    format!("unknown optimizer `{other}`"),
                    name.span,
                    "not an optimizer",
                );
                diagnostic = match crate::suggest::closest(other, OPTIMIZERS.iter().copied()) {
                    Some(s) => diagnostic.with_help(format!(
                        "did you mean `{s}`? the optimizers are {}",
                        one_of(OPTIMIZERS)
                    )),
                    None => {
                        diagnostic.with_help(format!("the optimizers are {}", one_of(OPTIMIZERS)))
                    }
                };
                self.error(diagnostic);
                return None;
            }
        };
        if values.iter().any(|v| *v < 0.0) {
            self.error(
                Diagnostic::error(
                    Code::E0261,
                    format!("negative setting for `{}`", name.name),
                    value.span,
                    "settings must not be negative",
                )
                .with_help("use a positive learning rate and non-negative settings"),
            );
            return None;
        }
        // The ranges the optimizers accept at run time: a step size and `eps` above zero, the
        // momentum and the decay rates below one.
        let ranges: &[(&str, bool)] = match name.name.as_str() {
            "sgd" => &[("lr", true), ("momentum", false)],
            "adam" => &[
                ("lr", true),
                ("beta1", false),
                ("beta2", false),
                ("eps", true),
            ],
            _ => &[],
        };
        for ((setting, positive), given) in ranges.iter().zip(&values) {
            let (bad, expected) = if *positive {
                (*given <= 0.0, "above 0")
            } else {
                (*given >= 1.0, "below 1")
            };
            if bad {
                self.error(
                    Diagnostic::error(
                        Code::E0261,
                        format!("`{setting}` of `{}` is {given}", name.name),
                        value_span(args, setting).unwrap_or(value.span),
                        format!("`{setting}` must be {expected}"),
                    )
                    .with_help(format!("use a value of `{setting}` {expected}")),
                );
                return None;
            }
        }
        Some(match name.name.as_str() {
            "sgd" => Optimizer::Sgd {
                lr: values[0],
                momentum: values[1],
            },
            "adam" => Optimizer::Adam {
                lr: values[0],
                beta1: values[1],
                beta2: values[2],
                eps: values[3],
            },
            "lbfgs" => Optimizer::Lbfgs {
                max_iterations: values[0] as usize,
                history: values[1].max(1.0) as usize,
                tolerance: values[2],
            },
            _ => Optimizer::Pseudoinverse { ridge: values[0] },
        })
    }

    pub(crate) fn lower_expects(&mut self, module: &ast::Module) {
        for item in &module.items {
            let ItemKind::Expect(expr) = &item.kind else {
                continue;
            };
            if let ExprKind::Compare(op, a, b) = &expr.kind {
                let left = self.metric_name(a);
                let right = self.metric_name(b);
                match (left, right) {
                    (Some(metric), None) => {
                        self.lower_metric_expect(module, metric, *op, b, expr);
                        continue;
                    }
                    (None, Some(metric)) => {
                        self.lower_metric_expect(module, metric, flip(*op), a, expr);
                        continue;
                    }
                    (Some(_), Some(second)) => {
                        self.error(
                            Diagnostic::error(
                                Code::E0271,
                                "an expectation compares one training metric with a bound",
                                second.span,
                                "a second metric",
                            )
                            .with_help("write one expectation per metric, e.g. `expect test_accuracy >= 0.98`"),
                        );
                        continue;
                    }
                    (None, None) => {}
                }
            }
            if !matches!(expr.kind, ExprKind::Compare(..)) {
                self.error(
                    Diagnostic::error(
                        Code::E0270,
                        "an expectation must be a comparison",
                        expr.span,
                        "not a comparison",
                    )
                    .with_help(
                        "compare a number with a bound, e.g. `expect max(abs(u - exact)) < 1e-3`",
                    ),
                );
                continue;
            }
            let Some(typed) = self.lower(expr, Place::Model) else {
                continue;
            };
            debug_assert_eq!(typed.shape, Shape::Scalar);
            let text = self.sources.snippet(expr.span).to_string();
            self.model.expects.push(Expect {
                text,
                expr: typed.expr,
                span: expr.span,
            });
        }
    }

    /// Returns the name on one side of an expectation when it names a training metric: an
    /// undeclared name that is a metric or starts with `test_` or `train_` (a misspelt metric).
    fn metric_name<'e>(&self, side: &'e ast::Expr) -> Option<&'e ast::Ident> {
        let ExprKind::Name(name) = &side.kind else {
            return None;
        };
        let looks_like_metric = TrainingMetric::from_name(&name.name).is_some()
            || name.name.starts_with("test_")
            || name.name.starts_with("train_");
        (looks_like_metric && self.lookup(&name.name).is_none()).then_some(name)
    }

    /// Lowers `expect METRIC op BOUND`, with `op` already turned so that the metric is on the left.
    fn lower_metric_expect(
        &mut self,
        module: &ast::Module,
        name: &ast::Ident,
        op: ast::CompareOp,
        bound: &ast::Expr,
        expr: &ast::Expr,
    ) {
        let names: Vec<&str> = TrainingMetric::ALL.iter().map(|m| m.name()).collect();
        let Some(metric) = TrainingMetric::from_name(&name.name) else {
            let help = match crate::suggest::closest(&name.name, names.iter().copied()) {
                Some(s) => format!(
                    "did you mean `{s}`? the training metrics are {}",
                    one_of(&names)
                ),
                None => format!("the training metrics are {}", one_of(&names)),
            };
            self.error(
                Diagnostic::error(
                    Code::E0271,
                    format!("unknown training metric `{}`", name.name),
                    name.span,
                    "not a training metric",
                )
                .with_help(help),
            );
            return;
        };
        let has_train = module.items.iter().any(|item| {
            matches!(
                item.kind,
                ItemKind::Task {
                    kind: TaskKind::Train,
                    ..
                }
            )
        });
        if !has_train {
            self.error(
                Diagnostic::error(
                    Code::E0271,
                    format!("`{}` needs a `train` task", name.name),
                    name.span,
                    "no task trains this model",
                )
                .with_help("training metrics exist only after a `train` task; compare fields or parameters instead"),
            );
            return;
        }
        // The metrics belong to the last train task, as in `summary.json`.
        let task = self.model.tasks.iter().rev().find_map(|t| match t {
            Task::Train(train) => Some(train.clone()),
            Task::Solve(_) => None,
        });
        if let Some(task) = &task {
            if metric.needs_classes() && matches!(task.loss, Loss::Mse { .. }) {
                self.error(
                    Diagnostic::error(
                        Code::E0271,
                        format!("`{}` needs a classification loss", name.name),
                        name.span,
                        "the train task has no classes",
                    )
                    .with_label(task.span, "trained with `mse` here")
                    .with_help("accuracy is measured for `cross_entropy` losses; compare `test_loss` or `train_loss` instead"),
                );
                return;
            }
            if let Some(needed) = metric.needs_metric().filter(|m| !task.metrics.contains(m)) {
                let listed = match needed {
                    Metric::Accuracy => "accuracy",
                    Metric::Mse => "mse",
                    Metric::Loss => "loss",
                };
                self.error(
                    Diagnostic::error(
                        Code::E0271,
                        format!("`{}` is not computed", name.name),
                        name.span,
                        "not among the task's metrics",
                    )
                    .with_label(task.span, format!("the `metrics` of this task do not list `{listed}`"))
                    .with_help(format!("add `{listed}` to the task's `metrics` clause, as in `metrics loss, {listed}`")),
                );
                return;
            }
            let source = &self.model.data[task.data.0];
            if metric.needs_test_set() && source.split.is_none() {
                let help = format!(
                    "give `{}` a test set with a `split` clause, e.g. `split 0.8`, or compare `train_loss`",
                    source.name
                );
                self.error(
                    Diagnostic::error(
                        Code::E0271,
                        format!("`{}` needs a test set", name.name),
                        name.span,
                        "no samples are held out for testing",
                    )
                    .with_label(source.span, "this data source has no `split`")
                    .with_help(help),
                );
                return;
            }
        }
        let Some(bound) = self.const_real(bound) else {
            return;
        };
        let op = match op {
            ast::CompareOp::Less => CompareOp::Less,
            ast::CompareOp::LessEqual => CompareOp::LessEqual,
            ast::CompareOp::Greater => CompareOp::Greater,
            ast::CompareOp::GreaterEqual => CompareOp::GreaterEqual,
            ast::CompareOp::Equal => CompareOp::Equal,
            ast::CompareOp::NotEqual => CompareOp::NotEqual,
        };
        let text = self.sources.snippet(expr.span).to_string();
        self.model.metric_expects.push(MetricExpect {
            text,
            metric,
            op,
            bound,
            span: expr.span,
        });
    }

    /// Lowers the readouts that no loss referred to, so their errors are reported too.
    pub(crate) fn lower_readouts(&mut self) {
        for index in 0..self.decls.len() {
            if let DeclKind::Readout { .. } = self.decls[index].kind {
                if self.decls[index].imported {
                    continue;
                }
                let used = self.decls[index].used;
                let name = self.decls[index].name.clone();
                let span = self.decls[index].span;
                let ident = ast::Expr::new(ExprKind::Name(ast::Ident { name, span }), span);
                let _ = self.lower(&ident, Place::Model);
                self.decls[index].used = used;
            }
        }
    }
}

/// Returns the span of the value given for the named setting `name`, when one is.
fn value_span(args: &[ast::Arg], name: &str) -> Option<Span> {
    args.iter()
        .find(|arg| arg.name.as_ref().is_some_and(|n| n.name == name))
        .map(|arg| arg.value.span)
}
