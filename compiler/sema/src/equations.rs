//! Equations in normal form, boundary conditions and initial conditions.
//!
//! An equation `c · ∂ᵏu/∂tᵏ = rhs` becomes `∂ᵏu/∂tᵏ = Σ terms / c`, one [`Term`] per top-level summand of
//! `rhs`. An equation without a time derivative is steady: `lhs = rhs` becomes `Σ (lhs − rhs) = 0`,
//! and its unknown is the one field its left-hand side mentions.

use crate::expr::{fold, Place, Shape, Typed};
use crate::scope::{Checker, DeclKind};
use npdec_diagnostics::{one_of, Code, Diagnostic, Span};
use npdec_symbolic::{
    AxisId, BinaryOp, BoundaryCondition, BoundaryKind, Equation, EquationId, Expr, FieldId,
    InitialCondition, Side, Term, UnaryOp,
};
use npdec_syntax::ast::{self, ExprKind, ItemKind};
use std::collections::{BTreeMap, BTreeSet};

/// The time derivative found on an equation's left-hand side.
struct TimeDerivative<'a> {
    order: u8,
    target: &'a ast::Expr,
    coefficient: Option<&'a ast::Expr>,
    /// True when the left-hand side divides by the coefficient instead of multiplying.
    divides: bool,
}

fn is_time_derivative(expr: &ast::Expr) -> Option<(u8, &ast::Expr)> {
    match &expr.kind {
        ExprKind::Call { callee, args }
            if (callee.name == "dt" || callee.name == "dt2")
                && args.len() == 1
                && args[0].name.is_none() =>
        {
            Some((if callee.name == "dt" { 1 } else { 2 }, &args[0].value))
        }
        _ => None,
    }
}

fn mentions_time_derivative(expr: &ast::Expr) -> bool {
    match &expr.kind {
        ExprKind::Call { callee, args } => {
            callee.name == "dt"
                || callee.name == "dt2"
                || args.iter().any(|a| mentions_time_derivative(&a.value))
        }
        ExprKind::Unary(_, a) => mentions_time_derivative(a),
        ExprKind::Binary(_, a, b) | ExprKind::Compare(_, a, b) => {
            mentions_time_derivative(a) || mentions_time_derivative(b)
        }
        ExprKind::Index { base, .. } | ExprKind::Member { base, .. } => {
            mentions_time_derivative(base)
        }
        ExprKind::Tuple(items) | ExprKind::List(items) => {
            items.iter().any(mentions_time_derivative)
        }
        ExprKind::Number(_) | ExprKind::Imaginary(_) | ExprKind::String(_) | ExprKind::Name(_) => {
            false
        }
    }
}

/// Recognizes `dt(u)`, `dt2(u)`, `c * dt(u)`, `dt(u) * c` and `dt(u) / c`.
fn time_derivative(lhs: &ast::Expr) -> Option<TimeDerivative<'_>> {
    if let Some((order, target)) = is_time_derivative(lhs) {
        return Some(TimeDerivative {
            order,
            target,
            coefficient: None,
            divides: false,
        });
    }
    match &lhs.kind {
        ExprKind::Binary(ast::BinaryOp::Mul, a, b) => {
            if let Some((order, target)) = is_time_derivative(b) {
                Some(TimeDerivative {
                    order,
                    target,
                    coefficient: Some(a),
                    divides: false,
                })
            } else {
                is_time_derivative(a).map(|(order, target)| TimeDerivative {
                    order,
                    target,
                    coefficient: Some(b),
                    divides: false,
                })
            }
        }
        ExprKind::Binary(ast::BinaryOp::Div, a, b) => {
            is_time_derivative(a).map(|(order, target)| TimeDerivative {
                order,
                target,
                coefficient: Some(b),
                divides: true,
            })
        }
        _ => None,
    }
}

/// Splits an expression at its top-level `+` and `-` into signed summands.
fn summands(expr: &ast::Expr, negate: bool, out: &mut Vec<(bool, ast::Expr)>) {
    match &expr.kind {
        ExprKind::Binary(ast::BinaryOp::Add, a, b) => {
            summands(a, negate, out);
            summands(b, negate, out);
        }
        ExprKind::Binary(ast::BinaryOp::Sub, a, b) => {
            summands(a, negate, out);
            summands(b, !negate, out);
        }
        _ => out.push((negate, expr.clone())),
    }
}

impl Checker<'_> {
    pub(crate) fn lower_equations(&mut self, module: &ast::Module) {
        // (field, channel) → span of the equation that evolves it.
        let mut evolved: BTreeMap<(FieldId, Option<usize>), Span> = BTreeMap::new();
        for item in &module.items {
            let ItemKind::Equation { name, equations } = &item.kind else {
                continue;
            };
            let mut ids = Vec::new();
            for equation in equations {
                let lowered = self.lower_equation(&name.name, equation);
                self.conditions_incomplete |= lowered.is_none();
                if let Some(lowered) = lowered {
                    let key = (lowered.field, lowered.channel);
                    let whole = (lowered.field, None);
                    let clash = evolved
                        .get(&key)
                        .or_else(|| {
                            if lowered.channel.is_some() {
                                evolved.get(&whole)
                            } else {
                                None
                            }
                        })
                        .copied()
                        .or_else(|| {
                            if lowered.channel.is_none() {
                                evolved
                                    .iter()
                                    .find(|((f, _), _)| *f == lowered.field)
                                    .map(|(_, s)| *s)
                            } else {
                                None
                            }
                        });
                    if let Some(first) = clash {
                        let field = self.model.fields[lowered.field.0].name.clone();
                        self.error(
                            Diagnostic::error(
                                Code::E0211,
                                format!("field `{field}` has more than one equation"),
                                equation.span,
                                "second equation for it",
                            )
                            .with_label(first, "first equation here")
                            .with_help("merge the right-hand sides into one equation"),
                        );
                        continue;
                    }
                    evolved.insert(key, equation.span);
                    ids.push(EquationId(self.model.equations.len()));
                    self.model.equations.push(lowered);
                }
            }
            if let Some(index) = self.lookup(&name.name) {
                if self.decls[index].span == name.span {
                    self.decls[index].kind = DeclKind::Equation(ids);
                }
            }
        }
    }

    fn equation_target(&mut self, target: &ast::Expr) -> Option<(FieldId, Option<usize>)> {
        let (name, channel) = match &target.kind {
            ExprKind::Name(name) => (name, None),
            ExprKind::Index { base, indices } if base.as_name().is_some() && indices.len() == 1 => {
                (base.as_name()?, Some(&indices[0]))
            }
            _ => {
                self.error(
                    Diagnostic::error(
                        Code::E0210,
                        "a time derivative applies to a field",
                        target.span,
                        "not a field",
                    )
                    .with_help(
                        "write `dt(u)` for a declared field `u`, or `dt(u[0])` for one channel",
                    ),
                );
                return None;
            }
        };
        let Some(index) = self.lookup(&name.name) else {
            self.unknown_field(name);
            return None;
        };
        self.decls[index].used = true;
        let DeclKind::Field(field) = self.decls[index].kind else {
            if let DeclKind::Unparsed = self.decls[index].kind {
                return None;
            }
            let what = self.decls[index].kind.describe();
            self.error(
                Diagnostic::error(
                    Code::E0210,
                    format!("`{}` is a {what}, not a field", name.name),
                    name.span,
                    "cannot evolve in time",
                )
                .with_help("declare what evolves as a field: `field u(x)`"),
            );
            return None;
        };
        let field = field?;
        let channel = match channel {
            None => None,
            Some(expr) => {
                let channels = self.model.fields[field.0].channels;
                let k = self.const_integer(expr, 0)?;
                if k >= channels {
                    self.error(
                        Diagnostic::error(
                            Code::E0122,
                            format!("channel {k} is out of range"),
                            expr.span,
                            format!("the field has {channels} channels"),
                        )
                        .with_help(format!("use a channel from 0 to {}", channels - 1)),
                    );
                    return None;
                }
                Some(k)
            }
        };
        Some((field, channel))
    }

    fn lower_equation(&mut self, name: &str, equation: &ast::EquationSyntax) -> Option<Equation> {
        let Some(derivative) = time_derivative(&equation.lhs) else {
            if mentions_time_derivative(&equation.lhs) {
                self.error(
                    Diagnostic::error(Code::E0210, "invalid left-hand side", equation.lhs.span, "the time derivative must stand alone")
                        .with_help("write `dt(u) = ...`, `dt2(u) = ...` or `c * dt(u) = ...` with a constant `c`, and move other terms to the right"),
                );
                return None;
            }
            return self.lower_steady(name, equation);
        };
        let (field, channel) = self.equation_target(derivative.target)?;
        let coefficient = match derivative.coefficient {
            None => None,
            Some(c) => {
                let typed = self.lower(c, Place::Model)?;
                let value = fold(&typed.expr).filter(|_| typed.is_constant());
                match value {
                    Some(v) if v.norm() != 0.0 => {
                        Some(if derivative.divides { 1.0 / v } else { v })
                    }
                    _ => {
                        self.error(
                            Diagnostic::error(
                                Code::E0210,
                                "the coefficient of a time derivative must be a non-zero constant",
                                c.span,
                                "not a non-zero constant",
                            )
                            .with_help(
                                "divide the right-hand side by the coefficient, or use a constant",
                            ),
                        );
                        return None;
                    }
                }
            }
        };
        let mut parts = Vec::new();
        summands(&equation.rhs, false, &mut parts);
        let terms = self.lower_terms(&parts, field, channel, coefficient.map(|c| 1.0 / c))?;
        Some(Equation {
            name: name.to_string(),
            field,
            channel,
            time_order: derivative.order,
            terms,
            span: equation.span,
        })
    }

    /// Lowers signed summands into terms, scaled by `scale`, and checks them against the field.
    fn lower_terms(
        &mut self,
        parts: &[(bool, ast::Expr)],
        field: FieldId,
        channel: Option<usize>,
        scale: Option<num_complex::Complex64>,
    ) -> Option<Vec<Term>> {
        let mut terms = Vec::new();
        let mut ok = true;
        for (negate, part) in parts {
            let Some(typed) = self.lower(part, Place::Model) else {
                ok = false;
                continue;
            };
            if !self.fits_field(&typed, field, channel, part.span) {
                ok = false;
                continue;
            }
            let mut expr = typed.expr;
            if let Some(scale) = scale {
                if scale != num_complex::Complex64::new(1.0, 0.0) {
                    let factor = if scale.im == 0.0 {
                        Expr::Real(scale.re)
                    } else {
                        Expr::Complex(scale.re, scale.im)
                    };
                    expr = Expr::binary(BinaryOp::Mul, factor, expr);
                }
            }
            if *negate {
                expr = match expr {
                    Expr::Real(v) => Expr::Real(-v),
                    other => Expr::Unary(UnaryOp::Neg, Box::new(other)),
                };
            }
            terms.push(Term {
                expr,
                span: part.span,
            });
        }
        ok.then_some(terms)
    }

    /// Checks that a value can be assigned to a field: type, grid and channels.
    pub(crate) fn fits_field(
        &mut self,
        typed: &Typed,
        field: FieldId,
        channel: Option<usize>,
        span: Span,
    ) -> bool {
        let f = self.model.fields[field.0].clone();
        if typed.complex && !f.complex {
            self.error(
                Diagnostic::error(
                    Code::E0200,
                    format!("complex value for the real field `{}`", f.name),
                    span,
                    "this value is complex",
                )
                .with_label(f.span, "declared real here")
                .with_help(format!(
                    "declare the field complex: `field {}(...): complex`",
                    f.name
                )),
            );
            return false;
        }
        let channels = if channel.is_some() { 1 } else { f.channels };
        match &typed.shape {
            Shape::Scalar | Shape::Data => true,
            Shape::Grid { axes, channels: c } => {
                if let Some(extra) = axes.iter().find(|a| !f.axes.contains(a)) {
                    let axis = self.model.axes[extra.0].name.clone();
                    let description = self.describe_shape(&typed.shape);
                    self.error(
                        Diagnostic::error(
                            Code::E0202,
                            format!(
                                "term lives on axis `{axis}`, which field `{}` does not have",
                                f.name
                            ),
                            span,
                            description,
                        )
                        .with_label(f.span, format!("`{}` declared here", f.name))
                        .with_help(format!(
                            "use only values on the axes of `{}`, or reduce over `{axis}`",
                            f.name
                        )),
                    );
                    return false;
                }
                if *c != channels && *c != 1 {
                    self.error(
                        Diagnostic::error(Code::E0201, format!("term has {c} channels but field `{}` has {channels}", f.name), span, format!("{c} channels"))
                            .with_label(f.span, format!("`{}` has {channels} channel{}", f.name, if channels == 1 { "" } else { "s" }))
                            .with_help("match the channel count, e.g. with a convolution kernel of the right output size"),
                    );
                    return false;
                }
                true
            }
            Shape::Tensor(dims) => {
                let points = self.model.field_points(field);
                if dims.len() == 1 && f.axes.len() == 1 && dims[0] == points && channels == 1 {
                    return true;
                }
                let description = self.describe_shape(&typed.shape);
                self.error(
                    Diagnostic::error(
                        Code::E0202,
                        format!("{description} does not fit field `{}`", f.name),
                        span,
                        description,
                    )
                    .with_label(f.span, format!("`{}` has {points} points", f.name))
                    .with_help("a vector fits a field on one axis with as many points"),
                );
                false
            }
        }
    }

    fn lower_steady(&mut self, name: &str, equation: &ast::EquationSyntax) -> Option<Equation> {
        let lhs = self.lower(&equation.lhs, Place::Model)?;
        let fields: BTreeSet<FieldId> = {
            let mut found = BTreeSet::new();
            lhs.expr.walk(&mut |e| {
                if let Expr::Field(f) | Expr::Channel(f, _) = e {
                    found.insert(*f);
                }
            });
            found
        };
        if fields.len() != 1 {
            self.error(
                Diagnostic::error(Code::E0212, "cannot tell the unknown of this steady equation", equation.lhs.span, if fields.is_empty() { "no field here".to_string() } else { format!("{} fields here", fields.len()) })
                    .with_help("a steady equation such as `laplace(u) = f` has exactly one field on its left; time-dependent ones start with `dt(u)`"),
            );
            return None;
        }
        let field = *fields.iter().next()?;
        let mut parts = Vec::new();
        summands(&equation.lhs, false, &mut parts);
        summands(&equation.rhs, true, &mut parts);
        let terms = self.lower_terms(&parts, field, None, None)?;
        Some(Equation {
            name: name.to_string(),
            field,
            channel: None,
            time_order: 0,
            terms,
            span: equation.span,
        })
    }

    pub(crate) fn lower_boundaries(&mut self, module: &ast::Module) {
        for item in &module.items {
            let ItemKind::Boundary {
                field,
                condition,
                sides,
            } = &item.kind
            else {
                continue;
            };
            let before = self.model.boundaries.len();
            self.lower_boundary(field, condition, sides, item.span);
            self.conditions_incomplete |= self.model.boundaries.len() == before;
        }
        self.mark_periodic_axes();
    }

    fn lower_boundary(
        &mut self,
        field_expr: &ast::Expr,
        condition: &ast::Expr,
        sides: &[ast::Expr],
        span: Span,
    ) {
        let Some(field_name) = field_expr.as_name() else {
            self.invalid_operand(
                field_expr.span,
                "a boundary condition names a field",
                "write `boundary u: dirichlet(0) on x`",
            );
            return;
        };
        let Some(index) = self.lookup(&field_name.name) else {
            self.unknown_field(field_name);
            return;
        };
        self.decls[index].used = true;
        let DeclKind::Field(Some(field)) = self.decls[index].kind else {
            if !matches!(
                self.decls[index].kind,
                DeclKind::Field(None) | DeclKind::Unparsed
            ) {
                let what = self.decls[index].kind.describe();
                self.invalid_operand(
                    field_name.span,
                    &format!("`{}` is a {what}, not a field", field_name.name),
                    "boundary conditions apply to fields",
                );
            }
            return;
        };
        let Some(kind) = self.boundary_kind(condition, field) else {
            return;
        };
        let Some(targets) = self.boundary_sides(sides, field) else {
            return;
        };
        let periodic = matches!(kind, BoundaryKind::Periodic);
        for (axis, side_list, side_span) in targets {
            if periodic && side_list.len() == 1 {
                let axis_name = self.model.axes[axis.0].name.clone();
                self.error(
                    Diagnostic::error(
                        Code::E0225,
                        "a periodic condition applies to both sides",
                        side_span,
                        "one side only",
                    )
                    .with_help(format!(
                        "write `on {axis_name}` to make `{axis_name}` periodic"
                    )),
                );
                continue;
            }
            for side in side_list {
                if let Some(existing) = self.model.boundary(field, axis, side) {
                    let first = existing.span;
                    let side_name = format!(
                        "{}.{}",
                        self.model.axes[axis.0].name,
                        if side == Side::Min { "min" } else { "max" }
                    );
                    let field_name = self.model.fields[field.0].name.clone();
                    self.error(
                        Diagnostic::error(
                            Code::E0222,
                            format!("two boundary conditions for `{field_name}` on `{side_name}`"),
                            side_span,
                            "second condition",
                        )
                        .with_label(first, "first condition here")
                        .with_help("keep one condition per side"),
                    );
                    continue;
                }
                self.model.boundaries.push(BoundaryCondition {
                    field,
                    axis,
                    side,
                    kind: kind.clone(),
                    span,
                });
            }
        }
    }

    fn boundary_kind(&mut self, condition: &ast::Expr, field: FieldId) -> Option<BoundaryKind> {
        const KINDS: &[&str] = &["dirichlet", "neumann", "robin", "periodic"];
        let (name, args): (&ast::Ident, &[ast::Arg]) = match &condition.kind {
            ExprKind::Name(name) => (name, &[]),
            ExprKind::Call { callee, args } => (callee, args),
            _ => {
                self.error(
                    Diagnostic::error(
                        Code::E0223,
                        "expected a boundary condition kind",
                        condition.span,
                        "not a condition",
                    )
                    .with_help(format!(
                        "write one of {}, e.g. `dirichlet(0)`",
                        one_of(KINDS)
                    )),
                );
                return None;
            }
        };
        let arity = match name.name.as_str() {
            "dirichlet" | "neumann" => 1,
            "robin" => 3,
            "periodic" => 0,
            other => {
                let mut diagnostic = Diagnostic::error(
                    Code::E0223,
                    format!("unknown boundary condition `{other}`"),
                    name.span,
                    "not a condition kind",
                );
                diagnostic = match crate::suggest::closest(other, KINDS.iter().copied()) {
                    Some(s) => diagnostic.with_help(format!(
                        "did you mean `{s}`? the kinds are {}",
                        one_of(KINDS)
                    )),
                    None => diagnostic.with_help(format!("the kinds are {}", one_of(KINDS))),
                };
                self.error(diagnostic);
                return None;
            }
        };
        if args.len() != arity || args.iter().any(|a| a.name.is_some()) {
            let usage = match arity {
                0 => "`periodic`",
                1 => "one value, e.g. `dirichlet(0)`",
                _ => "`robin(alpha, beta, value)` for alpha·u + beta·∂u/∂n = value",
            };
            self.error(
                Diagnostic::error(
                    Code::E0105,
                    format!(
                        "`{}` takes {arity} argument{}",
                        name.name,
                        if arity == 1 { "" } else { "s" }
                    ),
                    condition.span,
                    format!("{} given", args.len()),
                )
                .with_help(format!("write {usage}")),
            );
            return None;
        }
        let mut values = Vec::new();
        for arg in args {
            let typed = self.lower(&arg.value, Place::Model)?;
            if typed.expr.any(|e| {
                matches!(
                    e,
                    Expr::Field(_) | Expr::Channel(..) | Expr::Input(_) | Expr::Label(_)
                )
            }) {
                self.invalid_operand(
                    arg.value.span,
                    "a boundary value cannot depend on a field",
                    "use numbers, constants, parameters, coordinates and `t`",
                );
                return None;
            }
            if !self.fits_field(&typed, field, None, arg.value.span) {
                return None;
            }
            values.push(typed.expr);
        }
        let mut values = values.into_iter();
        Some(match name.name.as_str() {
            "dirichlet" => BoundaryKind::Dirichlet(values.next()?),
            "neumann" => BoundaryKind::Neumann(values.next()?),
            "robin" => BoundaryKind::Robin {
                alpha: values.next()?,
                beta: values.next()?,
                value: values.next()?,
            },
            _ => BoundaryKind::Periodic,
        })
    }

    /// Resolves `x`, `x.min`, `x.max` and `all` into axes and sides of the field.
    fn boundary_sides(
        &mut self,
        sides: &[ast::Expr],
        field: FieldId,
    ) -> Option<Vec<(AxisId, Vec<Side>, Span)>> {
        let field_axes = self.model.fields[field.0].axes.clone();
        let axis_names: Vec<String> = field_axes
            .iter()
            .map(|a| self.model.axes[a.0].name.clone())
            .collect();
        let mut out = Vec::new();
        for side in sides {
            let (axis_ident, which) = match &side.kind {
                ExprKind::Name(n) if n.name == "all" => {
                    out.extend(
                        field_axes
                            .iter()
                            .map(|a| (*a, vec![Side::Min, Side::Max], side.span)),
                    );
                    continue;
                }
                ExprKind::Name(n) => (n, None),
                ExprKind::Member { base, member } if base.as_name().is_some() => {
                    (base.as_name()?, Some(member))
                }
                _ => {
                    self.bad_side(side.span, &axis_names);
                    return None;
                }
            };
            let axis = field_axes
                .iter()
                .zip(&axis_names)
                .find(|(_, name)| **name == axis_ident.name)
                .map(|(a, _)| *a);
            let Some(axis) = axis else {
                let field_name = self.model.fields[field.0].name.clone();
                self.error(
                    Diagnostic::error(
                        Code::E0224,
                        format!("`{}` is not an axis of `{field_name}`", axis_ident.name),
                        axis_ident.span,
                        "invalid side",
                    )
                    .with_help(format!(
                        "the axes of `{field_name}` are {}; write `x`, `x.min`, `x.max` or `all`",
                        one_of(&axis_names)
                    )),
                );
                return None;
            };
            if let Some(index) = self.lookup(&axis_ident.name) {
                self.decls[index].used = true;
            }
            let list = match which.map(|m| m.name.as_str()) {
                None => vec![Side::Min, Side::Max],
                Some("min") => vec![Side::Min],
                Some("max") => vec![Side::Max],
                Some(other) => {
                    self.error(
                        Diagnostic::error(
                            Code::E0224,
                            format!("unknown side `{other}`"),
                            which.map_or(side.span, |m| m.span),
                            "not a side",
                        )
                        .with_help(format!(
                            "the sides of `{}` are `{0}.min` and `{0}.max`",
                            axis_ident.name
                        )),
                    );
                    return None;
                }
            };
            out.push((axis, list, side.span));
        }
        Some(out)
    }

    fn bad_side(&mut self, span: Span, axis_names: &[String]) {
        self.error(
            Diagnostic::error(Code::E0224, "expected a side", span, "not a side").with_help(
                format!(
                    "write an axis ({}), one side such as `x.min`, or `all`",
                    one_of(axis_names)
                ),
            ),
        );
    }

    /// Marks axes periodic, and reports fields that disagree about an axis's periodicity.
    fn mark_periodic_axes(&mut self) {
        for axis in 0..self.model.axes.len() {
            let axis_id = AxisId(axis);
            let on_axis: Vec<&BoundaryCondition> = self
                .model
                .boundaries
                .iter()
                .filter(|b| b.axis == axis_id)
                .collect();
            let periodic: Vec<&&BoundaryCondition> = on_axis
                .iter()
                .filter(|b| matches!(b.kind, BoundaryKind::Periodic))
                .collect();
            if periodic.is_empty() {
                continue;
            }
            if let Some(other) = on_axis
                .iter()
                .find(|b| !matches!(b.kind, BoundaryKind::Periodic))
            {
                let axis_name = self.model.axes[axis].name.clone();
                let periodic_field = &self.model.fields[periodic[0].field.0].name;
                let other_field = &self.model.fields[other.field.0].name;
                // A periodic condition covers both ends, so one field with both kinds also gets the
                // error for two conditions on a side. This one explains why both ends are taken.
                let (message, help) = if other.field == periodic[0].field {
                    (
                        format!("`{other_field}` has both a periodic and a non-periodic condition on axis `{axis_name}`"),
                        format!("a periodic condition covers both ends of `{axis_name}`, so keep either it or the conditions on `{axis_name}.min` and `{axis_name}.max`"),
                    )
                } else {
                    (
                        format!("axis `{axis_name}` is periodic for `{periodic_field}` but not for `{other_field}`"),
                        "a periodic axis excludes its right end point, so every field on it must be periodic".to_string(),
                    )
                };
                let diagnostic =
                    Diagnostic::error(Code::E0222, message, other.span, "not periodic")
                        .with_label(periodic[0].span, "periodic here")
                        .with_help(help);
                self.diagnostics.push(diagnostic);
                continue;
            }
            self.model.axes[axis].periodic = true;
        }
    }

    pub(crate) fn lower_initials(&mut self, module: &ast::Module) {
        // Every initial statement that lowers adds one condition, so a shortfall means one failed.
        let statements = module
            .items
            .iter()
            .filter(|item| matches!(item.kind, ItemKind::Initial { .. }))
            .count();
        self.lower_initial_statements(module);
        self.conditions_incomplete |= self.model.initials.len() != statements;
    }

    fn lower_initial_statements(&mut self, module: &ast::Module) {
        for item in &module.items {
            let ItemKind::Initial { target, value } = &item.kind else {
                continue;
            };
            let (order, target_expr) = match is_time_derivative(target) {
                Some((1, inner)) => (1u8, inner),
                Some(_) => {
                    self.error(
                        Diagnostic::error(Code::E0226, "only `u` and `dt(u)` have initial conditions", target.span, "invalid target")
                            .with_help("write `initial u = ...`, and `initial dt(u) = ...` for a second-order equation"),
                    );
                    continue;
                }
                None => (0u8, target),
            };
            let Some(name) = target_expr.as_name() else {
                self.error(
                    Diagnostic::error(
                        Code::E0226,
                        "an initial condition names a field",
                        target_expr.span,
                        "not a field",
                    )
                    .with_help("write `initial u = ...`"),
                );
                continue;
            };
            let Some(index) = self.lookup(&name.name) else {
                self.unknown_field(name);
                continue;
            };
            self.decls[index].used = true;
            let DeclKind::Field(field) = self.decls[index].kind else {
                if let DeclKind::Unparsed = self.decls[index].kind {
                    continue;
                }
                let what = self.decls[index].kind.describe();
                self.error(
                    Diagnostic::error(
                        Code::E0226,
                        format!("`{}` is a {what}, not a field", name.name),
                        name.span,
                        "not a field",
                    )
                    .with_help("initial conditions apply to fields"),
                );
                continue;
            };
            let Some(field) = field else { continue };
            let Some(typed) = self.lower(value, Place::Model) else {
                continue;
            };
            if typed.expr.mentions_field(field) || typed.expr.any(|e| matches!(e, Expr::Field(_))) {
                self.invalid_operand(
                    value.span,
                    "an initial value cannot depend on a field",
                    "use coordinates, constants, parameters and data",
                );
                continue;
            }
            if !self.fits_field(&typed, field, None, value.span) {
                continue;
            }
            if let Some(first) = self.model.initial(field, order) {
                let first = first.span;
                self.error(
                    Diagnostic::error(
                        Code::E0226,
                        format!("initial condition for `{}` given twice", name.name),
                        item.span,
                        "second initial condition",
                    )
                    .with_label(first, "first given here")
                    .with_help("keep one"),
                );
                continue;
            }
            if order == 1
                && !self
                    .model
                    .equations
                    .iter()
                    .any(|e| e.field == field && e.time_order == 2)
            {
                self.error(
                    Diagnostic::error(Code::E0226, format!("`dt({})` has an initial value but `{}` is not second order in time", name.name, name.name), target.span, "not needed")
                        .with_help("only fields with a `dt2(u) = ...` equation take `initial dt(u) = ...`; remove it"),
                );
                continue;
            }
            self.model.initials.push(InitialCondition {
                field,
                time_derivative: order,
                value: typed.expr,
                span: item.span,
            });
        }
    }

    /// Reports fields without the initial and boundary conditions their equations need.
    pub(crate) fn check_conditions_complete(&mut self) {
        let mut required: BTreeMap<(FieldId, AxisId), Span> = BTreeMap::new();
        let mut used_without_value: BTreeMap<FieldId, Span> = BTreeMap::new();
        let evolving: BTreeSet<FieldId> = self.model.equations.iter().map(|e| e.field).collect();
        for equation in &self.model.equations {
            for term in &equation.terms {
                let mut note = |fields: Vec<FieldId>, axes: Option<Vec<AxisId>>| {
                    for f in fields {
                        let field_axes = &self.model.fields[f.0].axes;
                        let axes = axes.clone().unwrap_or_else(|| field_axes.clone());
                        for a in axes.into_iter().filter(|a| field_axes.contains(a)) {
                            required.entry((f, a)).or_insert(term.span);
                        }
                    }
                };
                term.expr.walk(&mut |e| match e {
                    Expr::Derivative { operand, axes } => {
                        note(fields_in(operand), Some(axes.clone()))
                    }
                    Expr::Upwind { operand, axis, .. } => {
                        note(fields_in(operand), Some(vec![*axis]))
                    }
                    Expr::Laplace(operand)
                    | Expr::Convolution { operand, .. }
                    | Expr::DivGrad { operand, .. } => note(fields_in(operand), None),
                    _ => {}
                });
                for f in fields_in(&term.expr) {
                    if !evolving.contains(&f) {
                        used_without_value.entry(f).or_insert(term.span);
                    }
                }
            }
        }

        let mut diagnostics = Vec::new();
        for equation in &self.model.equations {
            if equation.time_order == 0 {
                continue;
            }
            let name = &self.model.fields[equation.field.0].name;
            if self.model.initial(equation.field, 0).is_none() {
                diagnostics.push(
                    Diagnostic::error(
                        Code::E0220,
                        format!("field `{name}` has no initial condition"),
                        equation.span,
                        "evolved here",
                    )
                    .with_help(format!("add `initial {name} = ...`")),
                );
            }
            if equation.time_order == 2 && self.model.initial(equation.field, 1).is_none() {
                diagnostics.push(
                    Diagnostic::error(Code::E0220, format!("field `{name}` has no initial condition for `dt({name})`"), equation.span, "second order in time")
                        .with_help(format!("a second-order equation needs both `initial {name} = ...` and `initial dt({name}) = ...`")),
                );
            }
        }
        for (field, span) in used_without_value {
            if self.model.initial(field, 0).is_none() {
                let name = &self.model.fields[field.0].name;
                diagnostics.push(
                    Diagnostic::error(
                        Code::E0220,
                        format!("field `{name}` has no value"),
                        span,
                        "used here",
                    )
                    .with_help(format!(
                        "give it an equation, or a value with `initial {name} = ...`"
                    )),
                );
            }
        }
        for ((field, axis), span) in required {
            let missing: Vec<&str> = [Side::Min, Side::Max]
                .into_iter()
                .filter(|side| self.model.boundary(field, axis, *side).is_none())
                .map(|side| if side == Side::Min { "min" } else { "max" })
                .collect();
            if missing.is_empty() {
                continue;
            }
            let field_name = &self.model.fields[field.0].name;
            let axis_name = &self.model.axes[axis.0].name;
            let sides: Vec<String> = missing.iter().map(|s| format!("{axis_name}.{s}")).collect();
            let on = if missing.len() == 2 {
                axis_name.clone()
            } else {
                sides[0].clone()
            };
            diagnostics.push(
                Diagnostic::error(
                    Code::E0221,
                    format!("field `{field_name}` has no boundary condition on {}", one_of(&sides)),
                    span,
                    format!("this derivative of `{field_name}` needs it"),
                )
                .with_help(format!("add `boundary {field_name}: dirichlet(0) on {on}` (or `neumann`, `robin`, `periodic`)")),
            );
        }
        self.diagnostics.extend(diagnostics);
    }
}

fn fields_in(expr: &Expr) -> Vec<FieldId> {
    let mut fields = Vec::new();
    expr.walk(&mut |e| {
        if let Expr::Field(f) | Expr::Channel(f, _) = e {
            if !fields.contains(f) {
                fields.push(*f);
            }
        }
    });
    fields
}
