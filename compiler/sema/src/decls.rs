//! Lowering of grids, fields, parameters, data sources and constants.

use crate::expr::Place;
use crate::scope::{Checker, DeclKind};
use npdec_diagnostics::{one_of, Code, Diagnostic, Span};
use npdec_symbolic::{
    Axis, AxisKind, DataFormat, DataId, DataSource, Field, FieldId, Initializer, LabelColumn,
    Param, ParamId, Split,
};
use npdec_syntax::ast::{self, ExprKind, ItemKind, ParamInit, ParamMode};
use std::collections::HashSet;

const GRID_CLAUSES: &[&str] = &["in", "points", "step", "index", "image"];
const DATA_CLAUSES: &[&str] = &["split", "scale", "pad", "shift"];
const INITIALIZERS: &[&str] = &["zeros", "ones", "normal", "uniform", "glorot", "he"];

impl Checker<'_> {
    pub(crate) fn lower_grids(&mut self, module: &ast::Module) {
        let periodic = periodic_axis_names(module);
        for item in &module.items {
            if let ItemKind::Grid { axes, clauses } = &item.kind {
                self.lower_grid(axes, clauses, item.span, &periodic);
            }
        }
    }

    fn lower_grid(
        &mut self,
        names: &[ast::Ident],
        clauses: &[ast::Clause],
        span: Span,
        periodic: &HashSet<&str>,
    ) {
        let found = self.clauses(clauses, GRID_CLAUSES, "a grid");
        let n = names.len();
        if n > 3 {
            self.error(
                Diagnostic::error(
                    Code::E0120,
                    format!("a grid has at most 3 axes, found {n}"),
                    span,
                    "too many axes",
                )
                .with_help("declare 1-D, 2-D or 3-D grids"),
            );
            return;
        }
        let counted =
            |checker: &mut Self, clause: &ast::Clause, min: usize| -> Option<Vec<usize>> {
                let values = checker.per_axis(clause);
                let values: Vec<ast::Expr> = values.into_iter().cloned().collect();
                let counts: Option<Vec<usize>> = values
                    .iter()
                    .map(|v| checker.const_integer(v, min))
                    .collect();
                let counts = counts?;
                match counts.len() {
                    1 => Some(vec![counts[0]; n]),
                    k if k == n => Some(counts),
                    k => {
                        checker.error(
                            Diagnostic::error(
                                Code::E0120,
                                format!("`{}` gives {k} values for {n} axes", clause.name.name),
                                clause.span,
                                "count mismatch",
                            )
                            .with_help(format!(
                                "give one value, or one per axis: ({})",
                                vec!["…"; n].join(", ")
                            )),
                        );
                        None
                    }
                }
            };

        let kinds: Vec<(&str, &ast::Clause)> = ["index", "image"]
            .iter()
            .filter_map(|k| found.get(k).map(|c| (*k, *c)))
            .collect();
        let axes: Option<Vec<(AxisKind, usize)>> = if let Some(&(kind, clause)) = kinds.first() {
            if let Some(other) = found
                .get("in")
                .or(found.get("points"))
                .or(found.get("step"))
            {
                self.error(
                    Diagnostic::error(
                        Code::E0120,
                        format!("an `{kind}` grid has no `{}` clause", other.name.name),
                        other.name.span,
                        "not allowed here",
                    )
                    .with_help(format!(
                        "`{kind}` grids have unit spacing: write only `{kind} N`"
                    )),
                );
                return;
            }
            if kind == "image" && n != 2 {
                self.error(
                    Diagnostic::error(
                        Code::E0120,
                        "an image grid has two axes",
                        span,
                        format!("{n} axes declared"),
                    )
                    .with_help("write `grid (row, col) image (28, 28)`"),
                );
                return;
            }
            counted(self, clause, 1)
                .map(|counts| counts.into_iter().map(|c| (AxisKind::Index, c)).collect())
        } else {
            self.interval_axes(names, &found, span, periodic)
        };
        let Some(axes) = axes else { return };
        for (ident, (kind, points)) in names.iter().zip(axes) {
            if points < 2 {
                self.error(
                    Diagnostic::error(
                        Code::E0120,
                        format!("axis `{}` has {points} point", ident.name),
                        ident.span,
                        "too few points",
                    )
                    .with_help("a grid axis needs at least 2 points"),
                );
                continue;
            }
            let id = npdec_symbolic::AxisId(self.model.axes.len());
            self.model.axes.push(Axis {
                name: ident.name.clone(),
                kind,
                points,
                periodic: false,
                span: ident.span,
                resampling: None,
            });
            self.set_decl(ident, DeclKind::Axis(Some(id)));
        }
    }

    fn interval_axes(
        &mut self,
        names: &[ast::Ident],
        found: &std::collections::HashMap<&'static str, &ast::Clause>,
        span: Span,
        periodic: &HashSet<&str>,
    ) -> Option<Vec<(AxisKind, usize)>> {
        let n = names.len();
        let Some(interval_clause) = found.get("in") else {
            self.missing_clause(
                span,
                "in",
                "a grid",
                "`grid x in [0, 1] points 101`, or `grid k index 784` for a network width",
            );
            return None;
        };
        let mut intervals = Vec::new();
        for value in self.per_axis(interval_clause) {
            let ExprKind::List(bounds) = &value.kind else {
                self.error(
                    Diagnostic::error(
                        Code::E0120,
                        "expected an interval `[min, max]`",
                        value.span,
                        "not an interval",
                    )
                    .with_help(
                        "write the interval as `[0, 1]`; for several axes, `([0, 1], [0, 2])`",
                    ),
                );
                return None;
            };
            if bounds.len() != 2 {
                self.error(
                    Diagnostic::error(
                        Code::E0120,
                        "an interval has two bounds",
                        value.span,
                        format!("{} values", bounds.len()),
                    )
                    .with_help("write `[min, max]`"),
                );
                return None;
            }
            let (min, max) = (self.const_real(&bounds[0]), self.const_real(&bounds[1]));
            let (min, max) = (min?, max?);
            if min >= max {
                self.error(
                    Diagnostic::error(
                        Code::E0120,
                        format!("empty interval [{min}, {max}]"),
                        value.span,
                        "min is not below max",
                    )
                    .with_help("write the smaller bound first"),
                );
                return None;
            }
            intervals.push((min, max, value.span));
        }
        if intervals.len() == 1 {
            intervals = vec![intervals[0]; n];
        } else if intervals.len() != n {
            self.error(
                Diagnostic::error(
                    Code::E0120,
                    format!("{} intervals for {n} axes", intervals.len()),
                    interval_clause.span,
                    "count mismatch",
                )
                .with_help("give one interval, or one per axis"),
            );
            return None;
        }
        let points: Vec<usize> = match (found.get("points"), found.get("step")) {
            (Some(a), Some(b)) => {
                self.error(
                    Diagnostic::error(
                        Code::E0111,
                        "a grid takes `points` or `step`, not both",
                        b.name.span,
                        "second way to size the grid",
                    )
                    .with_label(a.name.span, "points given here")
                    .with_help("keep one of the two"),
                );
                return None;
            }
            (None, None) => {
                self.missing_clause(
                    span,
                    "points",
                    "an interval grid",
                    "`points 101` or `step 0.01`",
                );
                return None;
            }
            (Some(clause), None) => {
                let values: Vec<ast::Expr> = self.per_axis(clause).into_iter().cloned().collect();
                let counts: Option<Vec<usize>> = values
                    .iter()
                    .map(|v| self.const_count(v, 2, Some("a grid axis needs at least 2 points")))
                    .collect();
                let counts = counts?;
                match counts.len() {
                    1 => vec![counts[0]; n],
                    k if k == n => counts,
                    k => {
                        self.error(
                            Diagnostic::error(
                                Code::E0120,
                                format!("`points` gives {k} values for {n} axes"),
                                clause.span,
                                "count mismatch",
                            )
                            .with_help("give one value, or one per axis"),
                        );
                        return None;
                    }
                }
            }
            (None, Some(clause)) => {
                let values: Vec<ast::Expr> = self.per_axis(clause).into_iter().cloned().collect();
                let steps: Option<Vec<(f64, Span)>> = values
                    .iter()
                    .map(|v| self.const_real(v).map(|h| (h, v.span)))
                    .collect();
                let mut steps = steps?;
                if steps.len() == 1 {
                    steps = vec![steps[0]; n];
                }
                if steps.len() != n {
                    self.error(
                        Diagnostic::error(
                            Code::E0120,
                            format!("`step` gives {} values for {n} axes", steps.len()),
                            clause.span,
                            "count mismatch",
                        )
                        .with_help("give one value, or one per axis"),
                    );
                    return None;
                }
                let mut counts = Vec::new();
                for (((h, h_span), (min, max, _)), name) in steps.iter().zip(&intervals).zip(names)
                {
                    let cells = (max - min) / h;
                    if *h <= 0.0 || (cells - cells.round()).abs() > 1e-9 * cells.max(1.0) {
                        self.error(
                            Diagnostic::error(Code::E0120, format!("step {h} does not divide the interval [{min}, {max}]"), *h_span, "invalid step")
                                .with_help("use a positive step that fits a whole number of times, or give `points` instead"),
                        );
                        return None;
                    }
                    // A periodic axis leaves out its right end point, so the step is kept by giving
                    // it one point per cell: `[0, 1] step 0.25` has 4 points at spacing 0.25.
                    let cells = cells.round() as usize;
                    counts.push(if periodic.contains(name.name.as_str()) {
                        cells
                    } else {
                        cells + 1
                    });
                }
                counts
            }
        };
        Some(
            intervals
                .into_iter()
                .zip(points)
                .map(|((min, max, _), p)| (AxisKind::Interval { min, max }, p))
                .collect(),
        )
    }

    /// Resolves a list of axis names; `allow_time` accepts `t` (for parameters).
    fn axis_list(
        &mut self,
        names: &[ast::Ident],
        allow_time: bool,
    ) -> Option<(Vec<npdec_symbolic::AxisId>, bool)> {
        let mut axes = Vec::new();
        let mut time = false;
        let mut ok = true;
        for name in names {
            if allow_time && name.name == "t" {
                time = true;
                continue;
            }
            match self
                .lookup(&name.name)
                .map(|i| (i, self.decls[i].kind.clone()))
            {
                Some((index, DeclKind::Axis(axis))) => {
                    self.decls[index].used = true;
                    match axis {
                        Some(axis) if axes.contains(&axis) => {
                            self.error(
                                Diagnostic::error(
                                    Code::E0121,
                                    format!("axis `{}` listed twice", name.name),
                                    name.span,
                                    "repeated axis",
                                )
                                .with_help("list each axis once"),
                            );
                            ok = false;
                        }
                        Some(axis) => axes.push(axis),
                        None => ok = false,
                    }
                }
                Some((_, DeclKind::Unparsed)) => ok = false,
                _ => {
                    let candidates: Vec<String> =
                        self.model.axes.iter().map(|a| a.name.clone()).collect();
                    let mut diagnostic = Diagnostic::error(
                        Code::E0121,
                        format!("unknown axis `{}`", name.name),
                        name.span,
                        "not a grid axis",
                    );
                    diagnostic = match crate::suggest::closest(
                        &name.name,
                        candidates.iter().map(String::as_str),
                    ) {
                        Some(s) => diagnostic.with_help(format!("did you mean `{s}`?")),
                        None if candidates.is_empty() => diagnostic
                            .with_help("declare a grid first: `grid x in [0, 1] points 101`"),
                        None => {
                            diagnostic.with_help(format!("the axes are {}", one_of(&candidates)))
                        }
                    };
                    self.error(diagnostic);
                    ok = false;
                }
            }
        }
        ok.then_some((axes, time))
    }

    fn value_type(&mut self, ty: Option<&ast::Ident>) -> Option<bool> {
        match ty.map(|t| t.name.as_str()) {
            None | Some("real") => Some(false),
            Some("complex") => Some(true),
            Some(_) => {
                self.unknown_type(ty.expect("matched a name"));
                None
            }
        }
    }

    pub(crate) fn lower_fields(&mut self, module: &ast::Module) {
        for item in &module.items {
            let ItemKind::Field {
                name,
                axes,
                channels,
                ty,
            } = &item.kind
            else {
                continue;
            };
            let axes = self.axis_list(axes, false);
            let complex = self.value_type(ty.as_ref());
            let channels = match channels {
                Some(expr) => match self.const_integer(expr, 0) {
                    Some(0) => {
                        self.error(
                            Diagnostic::error(
                                Code::E0122,
                                format!("field `{}` has no channels", name.name),
                                expr.span,
                                "zero channels",
                            )
                            .with_help(format!(
                                "give at least one channel, or drop the brackets: `field {}(...)`",
                                name.name
                            )),
                        );
                        None
                    }
                    count => count,
                },
                None => Some(1),
            };
            let (Some((axes, _)), Some(complex), Some(channels)) = (axes, complex, channels) else {
                continue;
            };
            if axes.is_empty() {
                self.error(
                    Diagnostic::error(
                        Code::E0121,
                        format!("field `{}` has no axes", name.name),
                        name.span,
                        "no grid",
                    )
                    .with_help("list the axes it lives on: `field u(x)`"),
                );
                continue;
            }
            let id = FieldId(self.model.fields.len());
            self.model.fields.push(Field {
                name: name.name.clone(),
                axes,
                channels,
                complex,
                span: name.span,
            });
            self.set_decl(name, DeclKind::Field(Some(id)));
        }
    }

    /// Stores the lowered id of a declaration, if this item is the one that declared the name.
    fn set_decl(&mut self, name: &ast::Ident, kind: DeclKind) {
        if let Some(index) = self.lookup(&name.name) {
            if self.decls[index].span == name.span {
                self.decls[index].kind = kind;
            }
        }
    }

    pub(crate) fn lower_params(&mut self, module: &ast::Module) {
        for item in &module.items {
            let ItemKind::Param(param) = &item.kind else {
                continue;
            };
            if let Some(lowered) = self.lower_param(param, item.span) {
                let id = ParamId(self.model.params.len());
                self.model.params.push(lowered);
                self.set_decl(&param.name, DeclKind::Param(Some(id)));
            }
        }
    }

    fn lower_param(&mut self, param: &ast::ParamItem, span: Span) -> Option<Param> {
        let (axes, per_step) = self.axis_list(&param.axes, true)?;
        let dims: Option<Vec<usize>> = param
            .dims
            .iter()
            .map(|d| self.const_integer(d, 1))
            .collect();
        let dims = dims?;
        let complex = self.value_type(param.ty.as_ref())?;
        let init = match &param.init {
            None => {
                self.error(
                    Diagnostic::error(Code::E0112, format!("parameter `{}` has no initial value", param.name.name), param.name.span, "no value")
                        .with_help("give a value, `param D = 0.1`, or an initializer, `param W[64, 64] ~ glorot`"),
                );
                return None;
            }
            Some(ParamInit::Value(value)) => {
                let lowered = self.lower(value, crate::expr::Place::Model)?;
                let allowed_axes = &axes;
                let bad = lowered.expr.any(|e| match e {
                    npdec_symbolic::Expr::Coordinate(a) => !allowed_axes.contains(a),
                    npdec_symbolic::Expr::Field(_)
                    | npdec_symbolic::Expr::Channel(..)
                    | npdec_symbolic::Expr::Param(_)
                    | npdec_symbolic::Expr::Time
                    | npdec_symbolic::Expr::Input(_)
                    | npdec_symbolic::Expr::Label(_) => true,
                    _ => false,
                });
                if bad {
                    self.error(
                        Diagnostic::error(Code::E0130, "a parameter's value may only depend on its own axes", value.span, "depends on something else")
                            .with_help("use numbers, constants and the coordinates of the axes in the parameter's parentheses"),
                    );
                    return None;
                }
                if lowered.complex && !complex {
                    self.error(
                        Diagnostic::error(
                            Code::E0200,
                            "complex value for a real parameter",
                            value.span,
                            "this value is complex",
                        )
                        .with_help("declare the parameter `: complex`"),
                    );
                    return None;
                }
                Initializer::Value(lowered.expr)
            }
            Some(ParamInit::Initializer(init)) => self.initializer(init)?,
        };
        let learnable = !matches!(param.mode, Some((ParamMode::Fixed, _)));
        let _ = span;
        Some(Param {
            name: param.name.name.clone(),
            axes,
            dims,
            per_step,
            complex,
            learnable,
            init,
            span: param.name.span,
        })
    }

    fn initializer(&mut self, init: &ast::Expr) -> Option<Initializer> {
        let (name, args): (&ast::Ident, &[ast::Arg]) = match &init.kind {
            ExprKind::Name(name) => (name, &[]),
            ExprKind::Call { callee, args } => (callee, args),
            _ => {
                self.unknown_initializer(init.span, None);
                return None;
            }
        };
        let (expected, defaults): (&[&str], &[f64]) = match name.name.as_str() {
            "zeros" | "ones" | "glorot" | "he" => (&[], &[]),
            "normal" => (&["mean", "std"], &[0.0, 1.0]),
            "uniform" => (&["min", "max"], &[-1.0, 1.0]),
            _ => {
                self.unknown_initializer(name.span, Some(&name.name));
                return None;
            }
        };
        let values = self.named_values(&name.name, args, expected, defaults, init.span)?;
        Some(match name.name.as_str() {
            "zeros" => Initializer::Zeros,
            "ones" => Initializer::Ones,
            "glorot" => Initializer::Glorot,
            "he" => Initializer::He,
            "normal" => Initializer::Normal {
                mean: values[0],
                std: values[1],
            },
            _ => Initializer::Uniform {
                min: values[0],
                max: values[1],
            },
        })
    }

    fn unknown_initializer(&mut self, span: Span, name: Option<&str>) {
        let headline = name.map_or("expected an initializer".to_string(), |n| {
            format!("unknown initializer `{n}`")
        });
        self.error(
            Diagnostic::error(Code::E0141, headline, span, "not an initializer").with_help(
                format!(
                    "the initializers are {}; or give a value with `=`",
                    one_of(INITIALIZERS)
                ),
            ),
        );
    }

    /// Reads the real-valued arguments of a library call such as `adam(lr = 1e-3)`, by position or
    /// name, with defaults where `defaults` has an entry (a NaN default means required).
    pub(crate) fn named_values(
        &mut self,
        callee: &str,
        args: &[ast::Arg],
        names: &[&str],
        defaults: &[f64],
        span: Span,
    ) -> Option<Vec<f64>> {
        let mut values: Vec<Option<f64>> = defaults
            .iter()
            .map(|d| (!d.is_nan()).then_some(*d))
            .collect();
        let mut given: Vec<Option<Span>> = vec![None; names.len()];
        let mut ok = true;
        for (position, arg) in args.iter().enumerate() {
            let slot = match &arg.name {
                Some(name) => match names.iter().position(|n| *n == name.name) {
                    Some(i) if given[i].is_none() => i,
                    Some(i) => {
                        self.repeated_argument(&name.name, callee, name.span, given[i]);
                        ok = false;
                        continue;
                    }
                    None => {
                        let help = if names.is_empty() {
                            format!("`{callee}` takes no arguments")
                        } else {
                            format!("`{callee}` takes {}", one_of(names))
                        };
                        self.error(
                            Diagnostic::error(
                                Code::E0106,
                                format!("unknown argument `{}` of `{callee}`", name.name),
                                name.span,
                                format!("`{callee}` has no argument of this name"),
                            )
                            .with_help(help),
                        );
                        ok = false;
                        continue;
                    }
                },
                None if position < names.len() && given[position].is_none() => position,
                None => {
                    self.wrong_arity(callee, format!("at most {}", names.len()), args.len(), span);
                    return None;
                }
            };
            given[slot] = Some(arg.name.as_ref().map_or(arg.value.span, |n| n.span));
            match self.const_real(&arg.value) {
                Some(v) => values[slot] = Some(v),
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        if let Some(missing) = values.iter().position(Option::is_none) {
            self.error(
                Diagnostic::error(
                    Code::E0107,
                    format!("`{callee}` needs the argument `{}`", names[missing]),
                    span,
                    "argument missing",
                )
                .with_help(format!("write `{callee}({} = ...)`", names[missing])),
            );
            return None;
        }
        Some(values.into_iter().flatten().collect())
    }

    /// Reports a named argument given twice; `first` is where it was given before, if known.
    pub(crate) fn repeated_argument(
        &mut self,
        name: &str,
        callee: &str,
        span: Span,
        first: Option<Span>,
    ) {
        let mut diagnostic = Diagnostic::error(
            Code::E0106,
            format!("argument `{name}` of `{callee}` given twice"),
            span,
            "given again here",
        )
        .with_help("pass each argument once");
        if let Some(first) = first {
            diagnostic = diagnostic.with_label(first, "first given here");
        }
        self.error(diagnostic);
    }

    pub(crate) fn lower_data(&mut self, module: &ast::Module) {
        for item in &module.items {
            let ItemKind::Data {
                name,
                source,
                clauses,
            } = &item.kind
            else {
                continue;
            };
            if let Some(data) = self.lower_data_source(name, source, clauses) {
                let id = DataId(self.model.data.len());
                self.model.data.push(data);
                self.set_decl(name, DeclKind::Data(Some(id)));
            }
        }
    }

    fn lower_data_source(
        &mut self,
        name: &ast::Ident,
        source: &ast::Expr,
        clauses: &[ast::Clause],
    ) -> Option<DataSource> {
        const FORMATS: &[&str] = &["idx", "csv", "npy"];
        let ExprKind::Call { callee, args } = &source.kind else {
            self.error(
                Diagnostic::error(Code::E0250, "expected a data format", source.span, "not a data format")
                    .with_help(format!("write a format call such as `idx(\"images.gz\", \"labels.gz\")`; the formats are {}", one_of(FORMATS))),
            );
            return None;
        };
        let string_arg = |checker: &mut Self, arg: &ast::Arg| -> Option<String> {
            match &arg.value.kind {
                ExprKind::String(s) => Some(s.clone()),
                _ => {
                    checker.invalid_operand(
                        arg.value.span,
                        "expected a file path in quotes",
                        "write the path as a string: \"data/file.gz\"",
                    );
                    None
                }
            }
        };
        let format = match callee.name.as_str() {
            "idx" | "npy" | "csv" => {
                let (required, optional): (&[&str], &[&str]) = match callee.name.as_str() {
                    "idx" => (&["images", "labels"], &[]),
                    "npy" => (&["path"], &["labels"]),
                    _ => (&["path"], &["label"]),
                };
                let all: Vec<&str> = required.iter().chain(optional).copied().collect();
                let mut values: Vec<Option<&ast::Arg>> = vec![None; all.len()];
                for (position, arg) in args.iter().enumerate() {
                    let slot = match &arg.name {
                        Some(n) => all.iter().position(|a| *a == n.name),
                        None => (position < all.len()).then_some(position),
                    };
                    match slot {
                        Some(slot) if values[slot].is_none() => values[slot] = Some(arg),
                        _ => {
                            let span = arg.name.as_ref().map_or(arg.value.span, |n| n.span);
                            self.error(
                                Diagnostic::error(
                                    Code::E0106,
                                    format!("unexpected argument of `{}`", callee.name),
                                    span,
                                    "invalid argument",
                                )
                                .with_help(format!(
                                    "the arguments of `{}` are {}",
                                    callee.name,
                                    one_of(&all)
                                )),
                            );
                            return None;
                        }
                    }
                }
                if let Some(missing) = (0..required.len()).find(|&i| values[i].is_none()) {
                    self.error(
                        Diagnostic::error(
                            Code::E0107,
                            format!(
                                "`{}` needs the argument `{}`",
                                callee.name, required[missing]
                            ),
                            source.span,
                            "argument missing",
                        )
                        .with_help(format!("pass {}", one_of(required))),
                    );
                    return None;
                }
                match callee.name.as_str() {
                    "idx" => DataFormat::Idx {
                        images: string_arg(self, values[0]?)?,
                        labels: string_arg(self, values[1]?)?,
                    },
                    "npy" => DataFormat::Npy {
                        path: string_arg(self, values[0]?)?,
                        labels: match values[1] {
                            Some(arg) => Some(string_arg(self, arg)?),
                            None => None,
                        },
                    },
                    _ => {
                        let label_column = match values[1].map(|a| &a.value) {
                            None => LabelColumn::Last,
                            Some(value) => match &value.kind {
                                ExprKind::Name(n) if n.name == "last" => LabelColumn::Last,
                                ExprKind::Name(n) if n.name == "first" => LabelColumn::First,
                                _ => LabelColumn::Index(self.const_integer(value, 0)?),
                            },
                        };
                        DataFormat::Csv {
                            path: string_arg(self, values[0]?)?,
                            label_column,
                        }
                    }
                }
            }
            other => {
                self.error(
                    Diagnostic::error(
                        Code::E0250,
                        format!("unknown data format `{other}`"),
                        callee.span,
                        "not a data format",
                    )
                    .with_help(format!("the formats are {}", one_of(FORMATS))),
                );
                return None;
            }
        };
        for path in data_paths(&format) {
            if let Some(base) = &self.options.base_dir {
                let full = base.join(path);
                if !full.is_file() {
                    let span = args
                        .iter()
                        .find(|a| matches!(&a.value.kind, ExprKind::String(s) if s == path))
                        .map_or(source.span, |a| a.value.span);
                    self.error(
                        Diagnostic::error(Code::E0251, format!("data file `{path}` not found"), span, format!("looked for {}", full.display()))
                            .with_help("paths are relative to the model file's folder; check the name and location"),
                    );
                }
            }
        }
        let found = self.clauses(clauses, DATA_CLAUSES, "a data source");
        let split = match found.get("split").and_then(|c| self.single(c)).cloned() {
            None => None,
            Some(value) => {
                let v = self.const_real(&value)?;
                if v > 0.0 && v < 1.0 {
                    Some(Split::Fraction(v))
                } else if v >= 1.0 && v.fract() == 0.0 {
                    Some(Split::Count(v as usize))
                } else {
                    self.error(
                        Diagnostic::error(Code::E0131, "invalid split", value.span, format!("{v} is neither a fraction nor a count"))
                            .with_help("give the number of training samples, `split 8000`, or a fraction, `split 0.8`"),
                    );
                    return None;
                }
            }
        };
        let scale = match found.get("scale").and_then(|c| self.single(c)).cloned() {
            None => 1.0,
            Some(value) => self.const_real(&value)?,
        };
        let pad = match found.get("pad").and_then(|c| self.single(c)).cloned() {
            None => 0,
            Some(value) => {
                let v = self.const_real(&value)?;
                if v >= 0.0 && v.fract() == 0.0 && v <= 4096.0 {
                    v as usize
                } else {
                    self.error(
                        Diagnostic::error(Code::E0131, "invalid padding", value.span, format!("{v} is not a count of samples' entries"))
                            .with_help("give the number of zeros to add on each side of every sample dimension, such as `pad 18`"),
                    );
                    return None;
                }
            }
        };
        let shift = match found.get("shift").and_then(|c| self.single(c)).cloned() {
            None => 0,
            Some(value) => self.const_integer(&value, 0)?,
        };
        Some(DataSource {
            name: name.name.clone(),
            format,
            split,
            scale,
            pad,
            shift,
            span: name.span,
        })
    }

    /// Evaluates every constant, so errors in unused ones are reported too.
    pub(crate) fn lower_consts(&mut self) {
        for index in 0..self.decls.len() {
            if matches!(self.decls[index].kind, DeclKind::Const { .. }) {
                let used = self.decls[index].used;
                let name = self.decls[index].name.clone();
                let span = self.decls[index].span;
                self.lower_name_for_check(&name, span);
                self.decls[index].used = used;
            }
        }
    }

    fn lower_name_for_check(&mut self, name: &str, span: Span) {
        let ident = ast::Expr::new(
            ExprKind::Name(ast::Ident {
                name: name.to_string(),
                span,
            }),
            span,
        );
        let _ = self.lower(&ident, Place::Constant);
    }
}

fn data_paths(format: &DataFormat) -> Vec<&str> {
    match format {
        DataFormat::Idx { images, labels } => vec![images, labels],
        DataFormat::Csv { path, .. } => vec![path],
        DataFormat::Npy { path, labels } => std::iter::once(path.as_str())
            .chain(labels.as_deref())
            .collect(),
    }
}

/// Collects the names of the axes that a `boundary …: periodic on …` statement names, read from the
/// syntax tree before any boundary is checked. A grid sized by `step` needs them, because a
/// periodic axis has one point fewer for the same spacing. A periodic statement that is later
/// rejected still counts here, and its own error is reported.
fn periodic_axis_names(module: &ast::Module) -> HashSet<&str> {
    let field_axes = |field_name: &str| {
        module.items.iter().find_map(|item| match &item.kind {
            ItemKind::Field { name, axes, .. } if name.name == field_name => Some(axes),
            _ => None,
        })
    };
    let mut names = HashSet::new();
    for item in &module.items {
        let ItemKind::Boundary {
            field,
            condition,
            sides,
        } = &item.kind
        else {
            continue;
        };
        let kind = match &condition.kind {
            ExprKind::Name(name) => name,
            ExprKind::Call { callee, .. } => callee,
            _ => continue,
        };
        if kind.name != "periodic" {
            continue;
        }
        for side in sides {
            match side.as_name() {
                Some(all) if all.name == "all" => {
                    let axes = field.as_name().and_then(|f| field_axes(&f.name));
                    names.extend(axes.into_iter().flatten().map(|a| a.name.as_str()));
                }
                Some(axis) => {
                    names.insert(axis.name.as_str());
                }
                None => {}
            }
        }
    }
    names
}
