//! Lowering expressions: name resolution, inlining of functions, and types and shapes.
//!
//! Every lowered expression carries its type (real or complex) and its [`Shape`]:
//! - `Scalar`: one number per model (constants, scalar parameters, `t`, reductions);
//! - `Grid`: one value per point of a product of axes, with a number of channels;
//! - `Tensor`: a parameter tensor such as a weight matrix, or the result of a matrix product;
//! - `Data`: a data sample, whose shape is only known once the file is read.
//!
//! Scalars broadcast everywhere; grid functions on different axes broadcast to the union of their
//! axes; channel counts must agree or be 1; a vector of `n` entries stands for a one-axis grid
//! function on an axis of `n` points.

use crate::scope::{Checker, DeclKind, Lazy};
use npdec_diagnostics::{one_of, Code, Diagnostic, Span};
use npdec_symbolic::{AxisId, BinaryOp, CompareOp, Expr, Function, ReduceOp, Resample, UnaryOp};
use npdec_syntax::ast::{self, ExprKind};
use num_complex::Complex64;
use std::collections::HashMap;

/// The largest whole number a count, size or index may have. Larger values are far beyond any grid
/// or network that fits in memory, and every whole number up to it is exact in an `f64`.
const MAX_WHOLE_NUMBER: f64 = 1e12;
const MAX_WHOLE_NUMBER_TEXT: &str = "10^12";

/// The deepest chain of function calls inlined into one expression. Inlining recurses, so without a
/// bound a long chain of functions would overflow the stack instead of getting a diagnostic.
const MAX_INLINE_DEPTH: usize = 64;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Shape {
    Scalar,
    Grid { axes: Vec<AxisId>, channels: usize },
    Tensor(Vec<usize>),
    Data,
}

/// A lowered expression with its type and shape.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Typed {
    pub expr: Expr,
    pub complex: bool,
    pub shape: Shape,
}

impl Typed {
    fn scalar(expr: Expr, complex: bool) -> Self {
        Typed {
            expr,
            complex,
            shape: Shape::Scalar,
        }
    }

    /// Returns true if the value depends on no field, parameter, coordinate, time or data.
    pub(crate) fn is_constant(&self) -> bool {
        !self.expr.any(|e| {
            matches!(
                e,
                Expr::Field(_)
                    | Expr::Channel(..)
                    | Expr::Param(_)
                    | Expr::Coordinate(_)
                    | Expr::Time
                    | Expr::Input(_)
                    | Expr::Label(_)
            )
        })
    }

    /// Returns the axis if this expression is exactly an axis name.
    pub(crate) fn as_axis(&self) -> Option<AxisId> {
        match self.expr {
            Expr::Coordinate(axis) => Some(axis),
            _ => None,
        }
    }
}

/// Where an expression appears, which decides what it may refer to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// A constant, a grid size, a clause value: no fields, parameters, coordinates or time.
    Constant,
    /// Anything else.
    Model,
}

/// Evaluates a constant expression to a number.
pub(crate) fn fold(expr: &Expr) -> Option<Complex64> {
    Some(match expr {
        Expr::Real(v) => Complex64::new(*v, 0.0),
        Expr::Complex(re, im) => Complex64::new(*re, *im),
        Expr::Unary(UnaryOp::Neg, a) => -fold(a)?,
        Expr::Binary(op, a, b) => {
            let (a, b) = (fold(a)?, fold(b)?);
            match op {
                BinaryOp::Add => a + b,
                BinaryOp::Sub => a - b,
                BinaryOp::Mul => a * b,
                BinaryOp::Div => a / b,
                BinaryOp::Pow
                    if a.im == 0.0 && b.im == 0.0 && (a.re >= 0.0 || b.re.fract() == 0.0) =>
                {
                    Complex64::new(a.re.powf(b.re), 0.0)
                }
                BinaryOp::Pow => a.powc(b),
            }
        }
        Expr::Call(function, args) => {
            let a = fold(args.first()?)?;
            match function {
                Function::Tanh => a.tanh(),
                Function::Relu => Complex64::new(a.re.max(0.0), 0.0),
                Function::Sigmoid => Complex64::new(1.0 / (1.0 + (-a.re).exp()), 0.0),
                Function::Exp => a.exp(),
                Function::Log => a.ln(),
                Function::Sin => a.sin(),
                Function::Cos => a.cos(),
                Function::Abs => Complex64::new(a.norm(), 0.0),
                Function::Sqrt if a.im == 0.0 && a.re >= 0.0 => Complex64::new(a.re.sqrt(), 0.0),
                Function::Sqrt => a.sqrt(),
                Function::Conj => a.conj(),
                Function::Re => Complex64::new(a.re, 0.0),
                Function::Im => Complex64::new(a.im, 0.0),
                Function::Max => Complex64::new(a.re.max(fold(args.get(1)?)?.re), 0.0),
                Function::Min => Complex64::new(a.re.min(fold(args.get(1)?)?.re), 0.0),
                Function::Softmax => Complex64::new(1.0, 0.0),
            }
        }
        _ => return None,
    })
}

fn number(value: Complex64) -> Expr {
    if value.im == 0.0 {
        Expr::Real(value.re)
    } else {
        Expr::Complex(value.re, value.im)
    }
}

const POINTWISE: &[(&str, Function)] = &[
    ("tanh", Function::Tanh),
    ("relu", Function::Relu),
    ("sigmoid", Function::Sigmoid),
    ("exp", Function::Exp),
    ("log", Function::Log),
    ("sin", Function::Sin),
    ("cos", Function::Cos),
    ("abs", Function::Abs),
    ("sqrt", Function::Sqrt),
    ("conj", Function::Conj),
    ("re", Function::Re),
    ("im", Function::Im),
    ("softmax", Function::Softmax),
];

impl Checker<'_> {
    /// Lowers an expression; returns `None` after reporting an error.
    pub(crate) fn lower(&mut self, expr: &ast::Expr, place: Place) -> Option<Typed> {
        let span = expr.span;
        match &expr.kind {
            ExprKind::Number(v) => Some(Typed::scalar(Expr::Real(*v), false)),
            ExprKind::Imaginary(v) => Some(Typed::scalar(Expr::Complex(0.0, *v), true)),
            ExprKind::String(_) => {
                self.invalid_operand(
                    span,
                    "a string is not a value here",
                    "strings only name files in `data` declarations",
                );
                None
            }
            ExprKind::List(items) if place == Place::Model && !items.is_empty() => {
                self.lower_stack(items)
            }
            ExprKind::Tuple(_) | ExprKind::List(_) => {
                self.invalid_operand(
                    span,
                    "a list is not a value here",
                    "lists appear in declarations such as `grid x in [0, 1]`, and as vectors of numbers such as `[integral(u), integral(v)]` in readouts",
                );
                None
            }
            ExprKind::Name(ident) => self.lower_name(ident, place),
            ExprKind::Unary(op, operand) => {
                let operand = self.lower(operand, place)?;
                Some(match op {
                    ast::UnaryOp::Plus => operand,
                    ast::UnaryOp::Neg => self.simplify(Typed {
                        expr: Expr::Unary(UnaryOp::Neg, Box::new(operand.expr)),
                        ..operand
                    }),
                })
            }
            ExprKind::Binary(op, a, b) => {
                let left = self.lower(a, place);
                let right = self.lower(b, place);
                let (left, right) = (left?, right?);
                self.binary(*op, left, right, a.span, b.span, span)
            }
            ExprKind::Compare(op, a, b) => {
                let left = self.lower(a, place);
                let right = self.lower(b, place);
                let (left, right) = (left?, right?);
                let op = match op {
                    ast::CompareOp::Less => CompareOp::Less,
                    ast::CompareOp::LessEqual => CompareOp::LessEqual,
                    ast::CompareOp::Greater => CompareOp::Greater,
                    ast::CompareOp::GreaterEqual => CompareOp::GreaterEqual,
                    ast::CompareOp::Equal => CompareOp::Equal,
                    ast::CompareOp::NotEqual => CompareOp::NotEqual,
                };
                for (side, side_span) in [(&left, a.span), (&right, b.span)] {
                    if side.shape != Shape::Scalar {
                        self.error(
                            Diagnostic::error(Code::E0270, "a comparison needs a number on each side", side_span, "this is a field, not a number")
                                .with_help("a comparison gives one number, 1 or 0: reduce the field with `max`, `min`, `mean`, `sum`, `norm` or `integral`, e.g. `max(abs(u - exact))`, or for a switch at every point use `max(u, 0)`, `relu(u)` or `sigmoid(10 * u)`"),
                        );
                        return None;
                    }
                }
                Some(Typed::scalar(
                    Expr::Compare(op, Box::new(left.expr), Box::new(right.expr)),
                    false,
                ))
            }
            ExprKind::Call { callee, args } => self.lower_call(callee, args, span, place),
            ExprKind::Index { base, indices } => self.lower_index(base, indices, span, place),
            ExprKind::Member { base, member } => self.lower_member(base, member, span),
        }
    }

    /// Folds constant subexpressions to a single number.
    fn simplify(&self, typed: Typed) -> Typed {
        if typed.is_constant() {
            if let Some(value) = fold(&typed.expr) {
                if value.re.is_finite() && value.im.is_finite() {
                    return Typed {
                        expr: number(value),
                        ..typed
                    };
                }
            }
        }
        typed
    }

    /// Lowers `[a, b, …]`, a vector of real numbers such as the class scores of a readout.
    fn lower_stack(&mut self, items: &[ast::Expr]) -> Option<Typed> {
        let mut lowered = Vec::with_capacity(items.len());
        let mut failed = false;
        for item in items {
            match self.lower(item, Place::Model) {
                Some(typed) if typed.shape == Shape::Scalar && !typed.complex => {
                    lowered.push(typed.expr)
                }
                Some(typed) => {
                    failed = true;
                    let what = if typed.complex {
                        "a complex value".to_string()
                    } else {
                        self.describe_shape(&typed.shape)
                    };
                    self.error(
                        Diagnostic::error(
                            Code::E0202,
                            "an entry of a vector must be a real number",
                            item.span,
                            format!("this is {what}"),
                        )
                        .with_help("reduce a field to a number first, as in `[integral(abs(E)^2 * mask), …]`"),
                    );
                }
                None => failed = true,
            }
        }
        if failed {
            return None;
        }
        let n = lowered.len();
        Some(Typed {
            expr: Expr::Stack(lowered),
            complex: false,
            shape: Shape::Tensor(vec![n]),
        })
    }

    pub(crate) fn invalid_operand(&mut self, span: Span, message: &str, help: &str) {
        self.error(
            Diagnostic::error(Code::E0207, message, span, "invalid operand").with_help(help),
        );
    }

    fn lower_name(&mut self, ident: &ast::Ident, place: Place) -> Option<Typed> {
        let name = ident.name.as_str();
        if let Some(local) = self.locals.last().and_then(|scope| scope.get(name)) {
            return Some(local.clone());
        }
        match name {
            "pi" => return Some(Typed::scalar(Expr::Real(std::f64::consts::PI), false)),
            "t" | "input" | "label" if place == Place::Constant => {
                self.not_constant(ident.span, name);
                return None;
            }
            "t" => return Some(Typed::scalar(Expr::Time, false)),
            "input" | "label" => return self.data_reference(ident, None),
            _ => {}
        }
        let Some(index) = self.resolve(name) else {
            self.unknown_name(ident);
            return None;
        };
        self.decls[index].used = true;
        let kind = self.decls[index].kind.clone();
        let constant_only = |checker: &mut Self| {
            if place == Place::Constant {
                checker.not_constant(ident.span, name);
                true
            } else {
                false
            }
        };
        match kind {
            DeclKind::Axis(axis) => {
                if constant_only(self) {
                    return None;
                }
                let axis = axis?;
                Some(Typed {
                    expr: Expr::Coordinate(axis),
                    complex: false,
                    shape: Shape::Grid {
                        axes: vec![axis],
                        channels: 1,
                    },
                })
            }
            DeclKind::Field(field) => {
                if constant_only(self) {
                    return None;
                }
                let field = field?;
                let f = &self.model.fields[field.0];
                Some(Typed {
                    expr: Expr::Field(field),
                    complex: f.complex,
                    shape: Shape::Grid {
                        axes: f.axes.clone(),
                        channels: f.channels,
                    },
                })
            }
            DeclKind::Param(param) => {
                if constant_only(self) {
                    return None;
                }
                let param = param?;
                let p = &self.model.params[param.0];
                let shape = if !p.axes.is_empty() {
                    Shape::Grid {
                        axes: p.axes.clone(),
                        channels: p.dims.iter().product::<usize>().max(1),
                    }
                } else if p.dims.is_empty() {
                    Shape::Scalar
                } else {
                    Shape::Tensor(p.dims.clone())
                };
                Some(Typed {
                    expr: Expr::Param(param),
                    complex: p.complex,
                    shape,
                })
            }
            DeclKind::Unparsed => None,
            DeclKind::Const { .. } => self.const_value(index),
            DeclKind::Readout { .. } => {
                if constant_only(self) {
                    return None;
                }
                self.readout_value(index)
            }
            DeclKind::Data(_) => {
                self.error(
                    Diagnostic::error(
                        Code::E0109,
                        format!("data source `{name}` is not a value"),
                        ident.span,
                        "a data source",
                    )
                    .with_help(format!(
                        "use `{name}.input` for the current sample or `{name}.label` for its label"
                    )),
                );
                None
            }
            DeclKind::Function { .. } => {
                self.error(
                    Diagnostic::error(
                        Code::E0109,
                        format!("function `{name}` is used without arguments"),
                        ident.span,
                        "a function",
                    )
                    .with_help(format!("call it: `{name}(...)`")),
                );
                None
            }
            DeclKind::Equation(_) => {
                self.error(
                    Diagnostic::error(Code::E0109, format!("equation `{name}` is not a value"), ident.span, "an equation")
                        .with_help("equations are named by `solve` and `train`; refer to the field it evolves instead"),
                );
                None
            }
        }
    }

    /// Finds a declaration, preferring the current library module's own functions.
    pub(crate) fn resolve(&self, name: &str) -> Option<usize> {
        if let Some(module) = self.module_stack.last() {
            if let Some(index) = self.lookup(&format!("{module}::{name}")) {
                return Some(index);
            }
        }
        self.lookup(name)
    }

    fn not_constant(&mut self, span: Span, name: &str) {
        self.error(
            Diagnostic::error(
                Code::E0130,
                format!("`{name}` is not a constant"),
                span,
                "varies in space, time or training",
            )
            .with_help("only numbers, `pi` and other constants may appear here"),
        );
    }

    pub(crate) fn unknown_name(&mut self, ident: &ast::Ident) {
        let mut candidates: Vec<&str> = self
            .names
            .keys()
            .filter(|n| !n.contains("::"))
            .map(String::as_str)
            .collect();
        candidates.extend(["t", "pi", "input", "label"]);
        if let Some(scope) = self.locals.last() {
            candidates.extend(scope.keys().map(String::as_str));
        }
        let mut diagnostic = Diagnostic::error(
            Code::E0100,
            format!("unknown name `{}`", ident.name),
            ident.span,
            "not declared",
        );
        diagnostic = match crate::suggest::closest(&ident.name, candidates) {
            Some(s) => diagnostic.with_help(format!("did you mean `{s}`?")),
            None => diagnostic.with_help(format!(
                "declare it, for example `const {} = 1.0`",
                ident.name
            )),
        };
        self.error(diagnostic);
    }

    /// Reports an unknown name where only a field fits: after `dt(`, `boundary` or `initial`.
    pub(crate) fn unknown_field(&mut self, ident: &ast::Ident) {
        let fields: Vec<String> = self.model.fields.iter().map(|f| f.name.clone()).collect();
        let help = match crate::suggest::closest(&ident.name, fields.iter().map(String::as_str)) {
            Some(s) => format!("did you mean `{s}`?"),
            None if fields.is_empty() => format!("declare it: `field {}(x)`", ident.name),
            None => format!(
                "the fields are {}; or declare it: `field {}(x)`",
                one_of(&fields),
                ident.name
            ),
        };
        self.error(
            Diagnostic::error(
                Code::E0100,
                format!("unknown field `{}`", ident.name),
                ident.span,
                "not declared",
            )
            .with_help(help),
        );
    }

    fn const_value(&mut self, index: usize) -> Option<Typed> {
        let DeclKind::Const { value, ty, state } = self.decls[index].kind.clone() else {
            return None;
        };
        match state {
            Lazy::Done(typed) => typed,
            Lazy::InProgress => {
                let span = self.decls[index].span;
                let name = self.decls[index].name.clone();
                self.error(
                    Diagnostic::error(
                        Code::E0131,
                        format!("constant `{name}` depends on itself"),
                        span,
                        "defined in terms of itself",
                    )
                    .with_help("give it a value that does not refer back to it"),
                );
                self.set_const_state(index, Lazy::Done(None));
                None
            }
            Lazy::Pending => {
                self.set_const_state(index, Lazy::InProgress);
                let result = self.evaluate_const(&value, ty.as_ref());
                self.set_const_state(index, Lazy::Done(result.clone()));
                result
            }
        }
    }

    fn set_const_state(&mut self, index: usize, new_state: Lazy) {
        if let DeclKind::Const { state, .. } = &mut self.decls[index].kind {
            *state = new_state;
        }
    }

    fn evaluate_const(&mut self, value: &ast::Expr, ty: Option<&ast::Ident>) -> Option<Typed> {
        let lowered = self.lower(value, Place::Constant)?;
        let Some(number_value) = fold(&lowered.expr).filter(|_| lowered.shape == Shape::Scalar)
        else {
            self.error(
                Diagnostic::error(
                    Code::E0130,
                    "constant value is not a number",
                    value.span,
                    "cannot be evaluated before running",
                )
                .with_help(
                    "a constant is a number or an expression of numbers and other constants",
                ),
            );
            return None;
        };
        if !number_value.re.is_finite() || !number_value.im.is_finite() {
            self.error(
                Diagnostic::error(
                    Code::E0131,
                    "constant value is not finite",
                    value.span,
                    format!("evaluates to {number_value}"),
                )
                .with_help("check for a division by zero or an overflow"),
            );
            return None;
        }
        let complex = number_value.im != 0.0;
        if let Some(ty) = ty {
            match ty.name.as_str() {
                "real" if complex => {
                    self.error(
                        Diagnostic::error(
                            Code::E0200,
                            "complex value for a real constant",
                            value.span,
                            "this value is complex",
                        )
                        .with_label(ty.span, "declared real here")
                        .with_help("declare it `: complex`, or take `re(...)` of the value"),
                    );
                    return None;
                }
                "real" => {}
                "complex" => {
                    return Some(Typed::scalar(
                        Expr::Complex(number_value.re, number_value.im),
                        true,
                    ))
                }
                _ => {
                    self.unknown_type(ty);
                    return None;
                }
            }
        }
        Some(Typed::scalar(number(number_value), complex))
    }

    pub(crate) fn unknown_type(&mut self, ty: &ast::Ident) {
        self.error(
            Diagnostic::error(
                Code::E0123,
                format!("unknown value type `{}`", ty.name),
                ty.span,
                "not a value type",
            )
            .with_help("the value types are `real` and `complex`"),
        );
    }

    fn readout_value(&mut self, index: usize) -> Option<Typed> {
        let DeclKind::Readout { value, state } = self.decls[index].kind.clone() else {
            return None;
        };
        let set = |checker: &mut Self, new_state: Lazy| {
            if let DeclKind::Readout { state, .. } = &mut checker.decls[index].kind {
                *state = new_state;
            }
        };
        match state {
            Lazy::Done(typed) => typed,
            Lazy::InProgress => {
                let span = self.decls[index].span;
                self.error(
                    Diagnostic::error(
                        Code::E0131,
                        "readout depends on itself",
                        span,
                        "defined in terms of itself",
                    )
                    .with_help("compute the readout from fields and parameters"),
                );
                set(self, Lazy::Done(None));
                None
            }
            Lazy::Pending => {
                set(self, Lazy::InProgress);
                let result = self.lower(&value, Place::Model);
                set(self, Lazy::Done(result.clone()));
                if let Some(typed) = &result {
                    let name = self.decls[index].name.clone();
                    let span = self.decls[index].span;
                    self.model.readouts.push(npdec_symbolic::Readout {
                        name,
                        expr: typed.expr.clone(),
                        span,
                    });
                }
                result
            }
        }
    }

    /// Resolves `input`, `label`, `mnist.input` or `mnist.label`.
    fn data_reference(&mut self, ident: &ast::Ident, source: Option<&ast::Ident>) -> Option<Typed> {
        let data = match source {
            Some(source) => {
                let Some(index) = self.resolve(&source.name) else {
                    self.unknown_name(source);
                    return None;
                };
                self.decls[index].used = true;
                let DeclKind::Data(data) = self.decls[index].kind else {
                    if let DeclKind::Unparsed = self.decls[index].kind {
                        return None;
                    }
                    self.invalid_operand(
                        source.span,
                        "`.input` and `.label` belong to data sources",
                        "name a `data` declaration",
                    );
                    return None;
                };
                data?
            }
            None => {
                let sources: Vec<usize> = (0..self.decls.len())
                    .filter(|&i| matches!(self.decls[i].kind, DeclKind::Data(_)))
                    .collect();
                if sources.len() != 1 {
                    let message = if sources.is_empty() {
                        "no data source is declared"
                    } else {
                        "several data sources are declared"
                    };
                    self.error(
                        Diagnostic::error(
                            Code::E0109,
                            format!("`{}` needs one data source: {message}", ident.name),
                            ident.span,
                            "which data?",
                        )
                        .with_help(
                            "declare one `data` source, or write `NAME.input` / `NAME.label`",
                        ),
                    );
                    return None;
                }
                self.decls[sources[0]].used = true;
                let DeclKind::Data(data) = self.decls[sources[0]].kind else {
                    return None;
                };
                data?
            }
        };
        let expr = if ident.name == "label" {
            Expr::Label(data)
        } else if ident.name == "sequence" {
            Expr::Sequence(data)
        } else {
            Expr::Input(data)
        };
        Some(Typed {
            expr,
            complex: false,
            shape: Shape::Data,
        })
    }

    fn lower_member(&mut self, base: &ast::Expr, member: &ast::Ident, span: Span) -> Option<Typed> {
        if let (Some(source), "input" | "label" | "sequence") =
            (base.as_name(), member.name.as_str())
        {
            return self.data_reference(member, Some(source));
        }
        self.invalid_operand(
            span,
            "`.` is only used for sides and data",
            "write `x.min` or `x.max` after `on` in a boundary condition, and `NAME.input`, `NAME.label` or `NAME.sequence` for data",
        );
        None
    }

    fn lower_index(
        &mut self,
        base: &ast::Expr,
        indices: &[ast::Expr],
        span: Span,
        place: Place,
    ) -> Option<Typed> {
        let typed = self.lower(base, place)?;
        let (Expr::Field(field), Shape::Grid { axes, channels }) = (&typed.expr, &typed.shape)
        else {
            self.invalid_operand(
                span,
                "only fields with channels can be indexed",
                "index a channel of a field declared as `field u(x)[3]`",
            );
            return None;
        };
        if indices.len() != 1 {
            self.invalid_operand(span, "a channel index is one number", "write `u[0]`");
            return None;
        }
        let channel = self.const_integer(&indices[0], 0)?;
        if channel >= *channels {
            self.error(
                Diagnostic::error(
                    Code::E0122,
                    format!("channel {channel} is out of range"),
                    indices[0].span,
                    format!(
                        "the field has {channels} channel{}",
                        if *channels == 1 { "" } else { "s" }
                    ),
                )
                .with_help(format!("use a channel from 0 to {}", channels - 1)),
            );
            return None;
        }
        Some(Typed {
            expr: Expr::Channel(*field, channel),
            complex: typed.complex,
            shape: Shape::Grid {
                axes: axes.clone(),
                channels: 1,
            },
        })
    }

    /// Lowers a constant integer at least `min`.
    pub(crate) fn const_integer(&mut self, expr: &ast::Expr, min: usize) -> Option<usize> {
        self.const_count(expr, min, None)
    }

    /// Lowers a constant integer from `min` to [`MAX_WHOLE_NUMBER`]. `too_small_help`, when given,
    /// replaces the help of a value below `min` with the reason for the minimum.
    pub(crate) fn const_count(
        &mut self,
        expr: &ast::Expr,
        min: usize,
        too_small_help: Option<&str>,
    ) -> Option<usize> {
        let value = self.const_real(expr)?;
        let range = format!("use a whole number from {min} to {MAX_WHOLE_NUMBER_TEXT}");
        let found = self.number_text(expr, value);
        let diagnostic = if value > MAX_WHOLE_NUMBER {
            Diagnostic::error(
                Code::E0131,
                format!(
                    "`{found}` is too large: expected a whole number of at most {MAX_WHOLE_NUMBER_TEXT}"
                ),
                expr.span,
                "too large",
            )
            .with_help(range)
        } else if value < min as f64 {
            Diagnostic::error(
                Code::E0131,
                format!("expected a whole number of at least {min}, found `{found}`"),
                expr.span,
                if value < 0.0 { "negative" } else { "too small" },
            )
            .with_help(too_small_help.map_or(range, str::to_string))
        } else if value.fract() != 0.0 {
            Diagnostic::error(
                Code::E0131,
                format!("expected a whole number, found `{found}`"),
                expr.span,
                "not a whole number",
            )
            .with_help(range)
        } else {
            return Some(value as usize);
        };
        self.error(diagnostic);
        None
    }

    /// Returns a constant's value as the user wrote it: the source text of a number literal, with
    /// its sign, so that `99999999999999999999999` is not echoed as `1e23`, and the computed value
    /// of any other expression.
    fn number_text(&self, expr: &ast::Expr, value: f64) -> String {
        let literal = match &expr.kind {
            ast::ExprKind::Number(_) => true,
            ast::ExprKind::Unary(_, operand) => matches!(operand.kind, ast::ExprKind::Number(_)),
            _ => false,
        };
        let text = &self.sources.get(expr.span.file).text;
        match text.get(expr.span.start as usize..expr.span.end as usize) {
            Some(source) if literal => source.to_string(),
            _ => value.to_string(),
        }
    }

    /// Lowers a real constant.
    pub(crate) fn const_real(&mut self, expr: &ast::Expr) -> Option<f64> {
        let typed = self.lower(expr, Place::Constant)?;
        match fold(&typed.expr) {
            Some(value)
                if value.im == 0.0 && value.re.is_finite() && typed.shape == Shape::Scalar =>
            {
                Some(value.re)
            }
            Some(value) if value.im != 0.0 => {
                self.error(
                    Diagnostic::error(
                        Code::E0200,
                        "expected a real number",
                        expr.span,
                        "this value is complex",
                    )
                    .with_help("use a real value here"),
                );
                None
            }
            _ => {
                self.error(
                    Diagnostic::error(
                        Code::E0130,
                        "expected a constant number",
                        expr.span,
                        "not a finite constant",
                    )
                    .with_help("use a number, or an expression of numbers and constants"),
                );
                None
            }
        }
    }

    /// Combines the shapes of two operands of a pointwise operation.
    pub(crate) fn combine(
        &mut self,
        a: &Shape,
        b: &Shape,
        a_span: Span,
        b_span: Span,
    ) -> Option<Shape> {
        Some(match (a, b) {
            (Shape::Scalar, other) | (other, Shape::Scalar) => other.clone(),
            (Shape::Data, other) | (other, Shape::Data) => other.clone(),
            (
                Shape::Grid {
                    axes: x,
                    channels: c,
                },
                Shape::Grid {
                    axes: y,
                    channels: d,
                },
            ) => {
                if c != d && *c != 1 && *d != 1 {
                    self.error(
                        Diagnostic::error(Code::E0201, format!("channel count mismatch: {c} and {d}"), b_span, format!("{d} channels"))
                            .with_label(a_span, format!("{c} channels"))
                            .with_help("combine fields with the same number of channels, or index one channel with `u[k]`"),
                    );
                    return None;
                }
                let related = x.iter().find_map(|a| {
                    y.iter()
                        .find(|b| *b != a && self.model.base_axis(*a) == self.model.base_axis(**b))
                        .map(|b| (*a, *b))
                });
                if let Some((a, b)) = related {
                    let (a_name, b_name) = (
                        self.model.axes[a.0].name.clone(),
                        self.model.axes[b.0].name.clone(),
                    );
                    self.error(
                        Diagnostic::error(
                            Code::E0202,
                            format!("values on `{a_name}` and `{b_name}` are on grids of different resolution"),
                            b_span,
                            format!("lives on `{b_name}` ({} points)", self.model.axes[b.0].points),
                        )
                        .with_label(a_span, format!("lives on `{a_name}` ({} points)", self.model.axes[a.0].points))
                        .with_help("bring both to one grid with `pool(…, k)` or `upsample(…, k)` first"),
                    );
                    return None;
                }
                let mut axes = x.clone();
                axes.extend(y.iter().filter(|axis| !x.contains(axis)));
                Shape::Grid {
                    axes,
                    channels: (*c).max(*d),
                }
            }
            (Shape::Tensor(x), Shape::Tensor(y)) => {
                if x != y {
                    self.error(
                        Diagnostic::error(
                            Code::E0203,
                            format!("shape mismatch: {x:?} and {y:?}"),
                            b_span,
                            format!("shape {y:?}"),
                        )
                        .with_label(a_span, format!("shape {x:?}"))
                        .with_help("pointwise operations need operands of the same shape"),
                    );
                    return None;
                }
                a.clone()
            }
            (Shape::Tensor(v), Shape::Grid { axes, channels: 1 })
            | (Shape::Grid { axes, channels: 1 }, Shape::Tensor(v))
                if v.len() == 1 && axes.len() == 1 && self.model.axes[axes[0].0].points == v[0] =>
            {
                Shape::Grid {
                    axes: axes.clone(),
                    channels: 1,
                }
            }
            _ => {
                let (da, db) = (self.describe_shape(a), self.describe_shape(b));
                self.error(
                    Diagnostic::error(
                        Code::E0202,
                        format!("cannot combine {da} with {db}"),
                        b_span,
                        db,
                    )
                    .with_label(a_span, da)
                    .with_help(
                        "a vector of n entries combines only with a field on one axis of n points",
                    ),
                );
                return None;
            }
        })
    }

    pub(crate) fn describe_shape(&self, shape: &Shape) -> String {
        match shape {
            Shape::Scalar => "a number".to_string(),
            Shape::Data => "a data sample".to_string(),
            Shape::Tensor(dims) if dims.len() == 1 => format!("a vector of {} entries", dims[0]),
            Shape::Tensor(dims) => format!("a tensor of shape {dims:?}"),
            Shape::Grid { axes, channels } => {
                let names: Vec<&str> = axes
                    .iter()
                    .map(|a| self.model.axes[a.0].name.as_str())
                    .collect();
                let channels = if *channels > 1 {
                    format!(" with {channels} channels")
                } else {
                    String::new()
                };
                format!("a field on ({}){channels}", names.join(", "))
            }
        }
    }

    fn binary(
        &mut self,
        op: ast::BinaryOp,
        a: Typed,
        b: Typed,
        a_span: Span,
        b_span: Span,
        span: Span,
    ) -> Option<Typed> {
        let complex = a.complex || b.complex;
        let op = match op {
            ast::BinaryOp::MatMul => return self.matmul(a, b, a_span, b_span),
            ast::BinaryOp::Add => BinaryOp::Add,
            ast::BinaryOp::Sub => BinaryOp::Sub,
            ast::BinaryOp::Mul => BinaryOp::Mul,
            ast::BinaryOp::Div => BinaryOp::Div,
            ast::BinaryOp::Pow => {
                if b.shape != Shape::Scalar {
                    self.invalid_operand(
                        b_span,
                        "an exponent must be a number",
                        "raise to a constant or scalar power, e.g. `u^2`",
                    );
                    return None;
                }
                BinaryOp::Pow
            }
        };
        if op == BinaryOp::Div && b.is_constant() && fold(&b.expr).is_some_and(|v| v.norm() == 0.0)
        {
            self.error(
                Diagnostic::error(Code::E0131, "division by zero", b_span, "this is zero")
                    .with_help("divide by a non-zero value"),
            );
            return None;
        }
        let _ = span;
        let shape = self.combine(&a.shape, &b.shape, a_span, b_span)?;
        Some(self.simplify(Typed {
            expr: Expr::binary(op, a.expr, b.expr),
            complex,
            shape,
        }))
    }

    fn matmul(&mut self, a: Typed, b: Typed, a_span: Span, b_span: Span) -> Option<Typed> {
        let Shape::Tensor(dims) = &a.shape else {
            self.error(
                Diagnostic::error(
                    Code::E0203,
                    "the left operand of `@` must be a matrix",
                    a_span,
                    self.describe_shape(&a.shape),
                )
                .with_help("declare a matrix parameter such as `param W[64, 784] ~ glorot`"),
            );
            return None;
        };
        if dims.len() != 2 {
            self.error(
                Diagnostic::error(
                    Code::E0203,
                    "the left operand of `@` must be a matrix",
                    a_span,
                    format!("shape {dims:?}"),
                )
                .with_help("give the parameter two dimensions: `[rows, columns]`"),
            );
            return None;
        }
        let (rows, columns) = (dims[0], dims[1]);
        // A field on several axes or with several channels is flattened in array order (channels
        // first, then the axes), as a dense layer reads a feature map.
        let operand_length = match &b.shape {
            Shape::Tensor(v) if v.len() == 1 => Some(v[0]),
            Shape::Grid { axes, channels } => Some(
                axes.iter()
                    .map(|a| self.model.axes[a.0].points)
                    .product::<usize>()
                    * channels,
            ),
            Shape::Data => None,
            other => {
                let description = self.describe_shape(other);
                self.error(
                    Diagnostic::error(
                        Code::E0203,
                        "the right operand of `@` must be a vector",
                        b_span,
                        description,
                    )
                    .with_help("multiply a field on one axis, a vector, or a data sample"),
                );
                return None;
            }
        };
        if let Some(length) = operand_length {
            if length != columns {
                self.error(
                    Diagnostic::error(
                        Code::E0203,
                        format!("matrix has {columns} columns but the vector has {length} entries"),
                        b_span,
                        format!("{length} entries"),
                    )
                    .with_label(a_span, format!("shape [{rows}, {columns}]"))
                    .with_help(format!("use a matrix of shape [rows, {length}]")),
                );
                return None;
            }
        }
        // A square product keeps a field on its axis; otherwise the result is a vector that stands for
        // any one-axis field of that many points.
        let shape = match &b.shape {
            Shape::Grid { axes, channels: 1 } if axes.len() == 1 && rows == columns => {
                Shape::Grid {
                    axes: axes.clone(),
                    channels: 1,
                }
            }
            _ => Shape::Tensor(vec![rows]),
        };
        let expr = Expr::MatMul {
            matrix: Box::new(a.expr),
            operand: Box::new(b.expr),
        };
        Some(Typed {
            expr,
            complex: a.complex || b.complex,
            shape,
        })
    }

    fn lower_call(
        &mut self,
        callee: &ast::Ident,
        args: &[ast::Arg],
        span: Span,
        place: Place,
    ) -> Option<Typed> {
        let name = callee.name.as_str();
        if self
            .locals
            .last()
            .is_none_or(|scope| !scope.contains_key(name))
        {
            if let Some(index) = self.resolve(name) {
                if let DeclKind::Function {
                    params,
                    body,
                    module,
                } = self.decls[index].kind.clone()
                {
                    self.decls[index].used = true;
                    return self.inline(callee, &params, &body, module, args, span, place);
                }
                if let DeclKind::Unparsed = self.decls[index].kind {
                    return None;
                }
                let what = self.decls[index].kind.describe();
                self.error(
                    Diagnostic::error(
                        Code::E0109,
                        format!("`{name}` is a {what}, not a function"),
                        callee.span,
                        "cannot be called",
                    )
                    .with_help("only functions and operators take arguments in parentheses"),
                );
                return None;
            }
        }
        self.used_builtins.insert(name.to_string());
        match name {
            "dt" | "dt2" => {
                self.error(
                    Diagnostic::error(Code::E0210, format!("`{name}` outside the left-hand side of an equation"), span, "time derivative here")
                        .with_help("time derivatives appear only on the left: `equation e: dt(u) = ...` or `initial dt(u) = ...`"),
                );
                None
            }
            "diff" => self.lower_diff(args, span, place),
            "laplace" => {
                let [operand] = self.positional::<1>(callee, args, span)?;
                let operand = self.lower(&operand, place)?;
                self.require_grid(&operand, span, "laplace")?;
                Some(Typed {
                    expr: Expr::Laplace(Box::new(operand.expr)),
                    ..operand
                })
            }
            "grad" => {
                self.invalid_operand(span, "`grad` is only supported inside `div`", "write `div(D * grad(u))` for variable-coefficient diffusion, or `diff(u, x)` for one component");
                None
            }
            "div" => self.lower_div(callee, args, span, place),
            "upwind" => self.lower_upwind(callee, args, span, place),
            "conv" => self.lower_conv(callee, args, span, place),
            "pool" => self.lower_resample(Resample::Pool, callee, args, span, place),
            "upsample" => self.lower_resample(Resample::Upsample, callee, args, span, place),
            "max" | "min" if args.len() == 2 => {
                let [a, b] = self.positional::<2>(callee, args, span)?;
                let (a_span, b_span) = (a.span, b.span);
                let (a, b) = (self.lower(&a, place), self.lower(&b, place));
                let (a, b) = (a?, b?);
                if a.complex || b.complex {
                    self.complex_not_ordered(span, name);
                    return None;
                }
                let shape = self.combine(&a.shape, &b.shape, a_span, b_span)?;
                let function = if name == "max" {
                    Function::Max
                } else {
                    Function::Min
                };
                Some(self.simplify(Typed {
                    expr: Expr::Call(function, vec![a.expr, b.expr]),
                    complex: false,
                    shape,
                }))
            }
            "max" | "min" | "sum" | "mean" | "norm" | "integral" => {
                let [operand] = self.positional::<1>(callee, args, span)?;
                let operand = self.lower(&operand, place)?;
                let op = match name {
                    "max" => ReduceOp::Max,
                    "min" => ReduceOp::Min,
                    "sum" => ReduceOp::Sum,
                    "mean" => ReduceOp::Mean,
                    "norm" => ReduceOp::Norm,
                    _ => ReduceOp::Integral,
                };
                if operand.complex && matches!(op, ReduceOp::Max | ReduceOp::Min) {
                    self.complex_not_ordered(span, name);
                    return None;
                }
                if operand.shape == Shape::Scalar {
                    return Some(operand);
                }
                let complex = operand.complex && op != ReduceOp::Norm;
                Some(Typed::scalar(
                    Expr::Reduce(op, Box::new(operand.expr)),
                    complex,
                ))
            }
            _ => {
                if let Some(&(_, function)) = POINTWISE.iter().find(|(n, _)| *n == name) {
                    let [operand] = self.positional::<1>(callee, args, span)?;
                    let operand = self.lower(&operand, place)?;
                    if operand.complex
                        && matches!(
                            function,
                            Function::Relu | Function::Sigmoid | Function::Softmax
                        )
                    {
                        self.error(
                            Diagnostic::error(
                                Code::E0200,
                                format!("`{name}` needs a real argument"),
                                span,
                                "the argument is complex",
                            )
                            .with_help(
                                "apply it to `re(...)`, `im(...)` or `abs(...)` of the value",
                            ),
                        );
                        return None;
                    }
                    let complex = operand.complex
                        && !matches!(function, Function::Abs | Function::Re | Function::Im);
                    return Some(self.simplify(Typed {
                        expr: Expr::Call(function, vec![operand.expr]),
                        complex,
                        shape: operand.shape,
                    }));
                }
                self.used_builtins.remove(name);
                let mut candidates: Vec<&str> = crate::scope::BUILTINS.to_vec();
                let functions: Vec<String> = self
                    .decls
                    .iter()
                    .filter(|d| {
                        matches!(d.kind, DeclKind::Function { .. }) && !d.name.contains("::")
                    })
                    .map(|d| d.name.clone())
                    .collect();
                candidates.extend(functions.iter().map(String::as_str));
                let library =
                    crate::modules::STDLIB_MODULES
                        .iter()
                        .find_map(|(module, _, source)| {
                            source.contains(&format!("fn {name}(")).then_some(*module)
                        });
                let mut diagnostic = Diagnostic::error(
                    Code::E0104,
                    format!("unknown function `{name}`"),
                    callee.span,
                    "not a function or operator",
                );
                diagnostic = match (library, crate::suggest::closest(name, candidates)) {
                    (Some(module), _) => diagnostic.with_help(format!(
                        "import it from the standard library: `use std::{module}::{name}`"
                    )),
                    (None, Some(s)) => diagnostic.with_help(format!("did you mean `{s}`?")),
                    (None, None) => {
                        diagnostic.with_help(format!("define it: `fn {name}(x) = ...`"))
                    }
                };
                self.error(diagnostic);
                None
            }
        }
    }

    fn complex_not_ordered(&mut self, span: Span, name: &str) {
        self.error(
            Diagnostic::error(
                Code::E0200,
                format!("`{name}` of complex values"),
                span,
                "complex numbers are not ordered",
            )
            .with_help(format!("compare magnitudes: `{name}(abs(...))`")),
        );
    }

    /// Checks the argument count of a built-in that takes only positional arguments.
    fn positional<const N: usize>(
        &mut self,
        callee: &ast::Ident,
        args: &[ast::Arg],
        span: Span,
    ) -> Option<[ast::Expr; N]> {
        if let Some(named) = args.iter().find_map(|a| a.name.as_ref()) {
            self.error(
                Diagnostic::error(
                    Code::E0106,
                    format!("`{}` takes no named arguments", callee.name),
                    named.span,
                    "named argument",
                )
                .with_help("pass the arguments by position"),
            );
            return None;
        }
        if args.len() != N {
            self.wrong_arity(&callee.name, N.to_string(), args.len(), span);
            return None;
        }
        let values: Vec<ast::Expr> = args.iter().map(|a| a.value.clone()).collect();
        values.try_into().ok()
    }

    pub(crate) fn wrong_arity(&mut self, name: &str, expected: String, found: usize, span: Span) {
        self.error(
            Diagnostic::error(
                Code::E0105,
                format!(
                    "`{name}` takes {expected} argument{}, found {found}",
                    if expected == "1" { "" } else { "s" }
                ),
                span,
                format!(
                    "{found} argument{} given",
                    if found == 1 { "" } else { "s" }
                ),
            )
            .with_help(format!(
                "pass {expected} argument{}",
                if expected == "1" { "" } else { "s" }
            )),
        );
    }

    fn require_grid(&mut self, operand: &Typed, span: Span, operator: &str) -> Option<()> {
        if matches!(operand.shape, Shape::Grid { .. }) {
            if operand.expr.any(|e| matches!(e, Expr::Resample { .. })) {
                self.error(
                    Diagnostic::error(
                        Code::E0208,
                        format!("`{operator}` reads a pooled or upsampled value"),
                        span,
                        "the operand is resampled",
                    )
                    .with_help(format!(
                        "a resampled value has no boundary conditions for the ghost layers `{operator}` reads; apply `{operator}` to the field first, as in `pool(conv(K, u), 2)`"
                    )),
                );
                return None;
            }
            return Some(());
        }
        let description = self.describe_shape(&operand.shape);
        self.error(
            Diagnostic::error(
                Code::E0206,
                format!("`{operator}` needs a field"),
                span,
                format!("the operand is {description}"),
            )
            .with_help(
                "apply spatial operators to fields, parameters or coordinates that live on a grid",
            ),
        );
        None
    }

    fn lower_diff(&mut self, args: &[ast::Arg], span: Span, place: Place) -> Option<Typed> {
        if args.len() < 2 || args.iter().any(|a| a.name.is_some()) {
            self.wrong_arity("diff", "at least 2".to_string(), args.len(), span);
            return None;
        }
        let operand = self.lower(&args[0].value, place)?;
        self.require_grid(&operand, span, "diff")?;
        let Shape::Grid {
            axes: operand_axes, ..
        } = &operand.shape
        else {
            return None;
        };
        let mut axes = Vec::new();
        for arg in &args[1..] {
            if let ExprKind::Number(_) = arg.value.kind {
                let count = self.const_integer(&arg.value, 1)?;
                let Some(&last) = axes.last() else {
                    self.invalid_operand(
                        arg.value.span,
                        "a derivative count must follow an axis",
                        "write `diff(u, x, 2)` for the second derivative along `x`",
                    );
                    return None;
                };
                axes.extend(std::iter::repeat_n(last, count - 1));
                continue;
            }
            let Some(axis) = self.lower(&arg.value, place).and_then(|t| t.as_axis()) else {
                self.invalid_operand(
                    arg.value.span,
                    "expected an axis name",
                    "name an axis of a grid, e.g. `diff(u, x)`",
                );
                return None;
            };
            if !operand_axes.contains(&axis) {
                let axis_name = self.model.axes[axis.0].name.clone();
                let names: Vec<String> = operand_axes
                    .iter()
                    .map(|a| self.model.axes[a.0].name.clone())
                    .collect();
                self.error(
                    Diagnostic::error(
                        Code::E0205,
                        format!("derivative along `{axis_name}`, which the operand does not have"),
                        arg.value.span,
                        "not an axis of the operand",
                    )
                    .with_label(
                        args[0].value.span,
                        format!("lives on ({})", names.join(", ")),
                    )
                    .with_help(format!("differentiate along {}", one_of(&names))),
                );
                return None;
            }
            axes.push(axis);
        }
        if axes.len() > 4 {
            self.invalid_operand(
                span,
                "derivatives of order above 4 are not supported",
                "use at most four differentiations",
            );
            return None;
        }
        Some(Typed {
            expr: Expr::Derivative {
                operand: Box::new(operand.expr),
                axes,
            },
            ..operand
        })
    }

    fn lower_div(
        &mut self,
        callee: &ast::Ident,
        args: &[ast::Arg],
        span: Span,
        place: Place,
    ) -> Option<Typed> {
        let [argument] = self.positional::<1>(callee, args, span)?;
        let is_grad = |e: &ast::Expr| matches!(&e.kind, ExprKind::Call { callee, args } if callee.name == "grad" && args.len() == 1);
        let (coefficient, gradient) = match &argument.kind {
            _ if is_grad(&argument) => (None, &argument),
            ExprKind::Binary(ast::BinaryOp::Mul, a, b) if is_grad(b) => {
                (Some(a.as_ref()), b.as_ref())
            }
            ExprKind::Binary(ast::BinaryOp::Mul, a, b) if is_grad(a) => {
                (Some(b.as_ref()), a.as_ref())
            }
            _ => {
                self.invalid_operand(
                    argument.span,
                    "`div` supports `div(grad(u))` and `div(c * grad(u))`",
                    "write the flux as a coefficient times `grad(u)`",
                );
                return None;
            }
        };
        let ExprKind::Call {
            args: grad_args, ..
        } = &gradient.kind
        else {
            return None;
        };
        self.used_builtins.insert("grad".to_string());
        let operand = self.lower(&grad_args[0].value, place)?;
        self.require_grid(&operand, gradient.span, "grad")?;
        let coefficient = match coefficient {
            Some(c) => {
                let c_span = c.span;
                let c = self.lower(c, place)?;
                self.combine(&c.shape, &operand.shape, c_span, gradient.span)?;
                c
            }
            None => Typed::scalar(Expr::Real(1.0), false),
        };
        let complex = operand.complex || coefficient.complex;
        Some(Typed {
            expr: Expr::DivGrad {
                coefficient: Box::new(coefficient.expr),
                operand: Box::new(operand.expr),
            },
            complex,
            shape: operand.shape,
        })
    }

    fn lower_upwind(
        &mut self,
        callee: &ast::Ident,
        args: &[ast::Arg],
        span: Span,
        place: Place,
    ) -> Option<Typed> {
        let mut order = 1u8;
        let mut positional = Vec::new();
        for arg in args {
            match &arg.name {
                Some(name) if name.name == "order" => {
                    let value = self.const_integer(&arg.value, 1)?;
                    if !(1..=2).contains(&value) {
                        self.error(
                            Diagnostic::error(
                                Code::E0230,
                                format!("upwind order {value} is not supported"),
                                arg.value.span,
                                "invalid order",
                            )
                            .with_help("the upwind orders are `1` and `2`"),
                        );
                        return None;
                    }
                    order = value as u8;
                }
                Some(name) => {
                    self.error(
                        Diagnostic::error(
                            Code::E0106,
                            format!("unknown named argument `{}`", name.name),
                            name.span,
                            "not an argument of `upwind`",
                        )
                        .with_help("`upwind` takes `order = 1` or `order = 2`"),
                    );
                    return None;
                }
                None => positional.push(&arg.value),
            }
        }
        if positional.len() != 3 {
            self.wrong_arity(&callee.name, "3".to_string(), positional.len(), span);
            return None;
        }
        let velocity = self.lower(positional[0], place);
        let operand = self.lower(positional[1], place);
        let (velocity, operand) = (velocity?, operand?);
        self.require_grid(&operand, span, "upwind")?;
        let Some(axis) = self.lower(positional[2], place).and_then(|t| t.as_axis()) else {
            self.invalid_operand(
                positional[2].span,
                "expected an axis name",
                "name the axis of the advection: `upwind(a, u, x)`",
            );
            return None;
        };
        if velocity.complex || operand.complex {
            self.error(
                Diagnostic::error(
                    Code::E0200,
                    "`upwind` needs real values",
                    span,
                    "complex operand",
                )
                .with_help("the upwind direction follows the sign of a real velocity"),
            );
            return None;
        }
        let Shape::Grid { axes, .. } = &operand.shape else {
            return None;
        };
        if !axes.contains(&axis) {
            self.error(
                Diagnostic::error(
                    Code::E0205,
                    "advection along an axis the operand does not have",
                    positional[2].span,
                    "not an axis of the operand",
                )
                .with_help("advect along one of the operand's axes"),
            );
            return None;
        }
        self.combine(
            &velocity.shape,
            &operand.shape,
            positional[0].span,
            positional[1].span,
        )?;
        Some(Typed {
            expr: Expr::Upwind {
                velocity: Box::new(velocity.expr),
                operand: Box::new(operand.expr),
                axis,
                order,
            },
            complex: false,
            shape: operand.shape,
        })
    }

    /// Lowers `pool(u, k)` or `upsample(u, k)`: the operand's axes are replaced by the axes of `k`
    /// times fewer or more points, which the model gains the first time they are used.
    fn lower_resample(
        &mut self,
        kind: Resample,
        callee: &ast::Ident,
        args: &[ast::Arg],
        span: Span,
        place: Place,
    ) -> Option<Typed> {
        let name = kind.name();
        let [operand_expr, factor_expr] = self.positional::<2>(callee, args, span)?;
        let operand = self.lower(&operand_expr, place);
        let factor = self.resample_factor(&factor_expr, name);
        let (operand, factor) = (operand?, factor?);
        let Shape::Grid { axes, channels } = &operand.shape else {
            let description = self.describe_shape(&operand.shape);
            self.error(
                Diagnostic::error(
                    Code::E0208,
                    format!("`{name}` needs a field"),
                    operand_expr.span,
                    format!("the operand is {description}"),
                )
                .with_help(format!(
                    "{name} a value that lives on a grid, such as a field `u` or `relu(conv(K, u))`"
                )),
            );
            return None;
        };
        let mut resampled = Vec::with_capacity(axes.len());
        for axis in axes {
            let points = self.model.axes[axis.0].points;
            let axis_name = self.model.axes[axis.0].name.clone();
            if kind == Resample::Pool && (!points.is_multiple_of(factor) || points / factor < 2) {
                let reason = if points.is_multiple_of(factor) {
                    format!("pooling by {factor} would leave 1 point along `{axis_name}`, and an axis needs at least 2")
                } else {
                    format!("{factor} does not divide the {points} points of `{axis_name}`")
                };
                let divisors: Vec<String> = (2..=points / 2)
                    .filter(|d| points.is_multiple_of(*d))
                    .map(|d| d.to_string())
                    .collect();
                let help = if divisors.is_empty() {
                    format!("an axis of {points} points cannot be pooled; use `mean(...)` for a global average")
                } else {
                    format!(
                        "pool `{axis_name}` by a factor that divides {points} and leaves at least 2 points: {}",
                        divisors.join(", ")
                    )
                };
                self.error(
                    Diagnostic::error(
                        Code::E0208,
                        format!("`pool` by {factor} does not fit axis `{axis_name}`"),
                        factor_expr.span,
                        reason,
                    )
                    .with_label(
                        operand_expr.span,
                        format!("lives on `{axis_name}` ({points} points)"),
                    )
                    .with_help(help),
                );
                return None;
            }
            let id = match kind {
                Resample::Pool => self.model.resampled_axis(*axis, factor, 1),
                Resample::Upsample => self.model.resampled_axis(*axis, 1, factor),
            };
            resampled.push(id);
        }
        Some(Typed {
            expr: Expr::Resample {
                kind,
                factor,
                operand: Box::new(operand.expr),
                axes: resampled.clone(),
            },
            complex: operand.complex,
            shape: Shape::Grid {
                axes: resampled,
                channels: *channels,
            },
        })
    }

    /// Lowers the factor of `pool` or `upsample`: a constant whole number of at least 2.
    fn resample_factor(&mut self, expr: &ast::Expr, name: &str) -> Option<usize> {
        let value = self.const_real(expr)?;
        if value.fract() == 0.0 && (2.0..=1e6).contains(&value) {
            return Some(value as usize);
        }
        let reason = if value.fract() != 0.0 {
            format!("{value} is not a whole number")
        } else {
            format!("{value} is below 2")
        };
        self.error(
            Diagnostic::error(
                Code::E0208,
                format!("invalid factor of `{name}`"),
                expr.span,
                reason,
            )
            .with_help(format!(
                "the factor is the whole number of fine points per coarse point along each axis, at least 2: `{name}(u, 2)`"
            )),
        );
        None
    }

    fn lower_conv(
        &mut self,
        callee: &ast::Ident,
        args: &[ast::Arg],
        span: Span,
        place: Place,
    ) -> Option<Typed> {
        let [kernel_expr, operand_expr] = self.positional::<2>(callee, args, span)?;
        let kernel = self.lower(&kernel_expr, place);
        let operand = self.lower(&operand_expr, place);
        let (kernel, operand) = (kernel?, operand?);
        let Expr::Param(kernel_id) = kernel.expr else {
            self.invalid_operand(
                kernel_expr.span,
                "the kernel of `conv` must be a parameter",
                "declare it: `param K[out, in, 3, 3] ~ glorot`",
            );
            return None;
        };
        self.require_grid(&operand, span, "conv")?;
        let Shape::Grid { axes, channels } = operand.shape.clone() else {
            return None;
        };
        let dims = self.model.params[kernel_id.0].dims.clone();
        let expected_rank = 2 + axes.len();
        if dims.len() != expected_rank
            || dims[1] != channels
            || dims[2..].iter().any(|k| k % 2 == 0)
        {
            let mut expected = vec!["out".to_string(), channels.to_string()];
            expected.extend(std::iter::repeat_n("k".to_string(), axes.len()));
            self.error(
                Diagnostic::error(
                    Code::E0204,
                    "convolution kernel shape does not fit the field",
                    kernel_expr.span,
                    format!("kernel shape {dims:?}"),
                )
                .with_label(
                    operand_expr.span,
                    format!(
                        "{} with {channels} channel{}",
                        self.describe_shape(&Shape::Grid {
                            axes: axes.clone(),
                            channels: 1
                        }),
                        if channels == 1 { "" } else { "s" }
                    ),
                )
                .with_help(format!(
                    "use a kernel of shape [{}] with odd sizes k",
                    expected.join(", ")
                )),
            );
            return None;
        }
        Some(Typed {
            expr: Expr::Convolution {
                kernel: kernel_id,
                operand: Box::new(operand.expr),
            },
            complex: operand.complex || kernel.complex,
            shape: Shape::Grid {
                axes,
                channels: dims[0],
            },
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn inline(
        &mut self,
        callee: &ast::Ident,
        params: &[ast::Ident],
        body: &ast::Expr,
        module: Option<String>,
        args: &[ast::Arg],
        span: Span,
        place: Place,
    ) -> Option<Typed> {
        let name = &callee.name;
        if self.call_stack.len() >= MAX_INLINE_DEPTH {
            self.error(
                Diagnostic::error(
                    Code::E0108,
                    format!("functions call each other more than {MAX_INLINE_DEPTH} deep"),
                    span,
                    "too deep",
                )
                .with_help("functions are inlined; write some of the nested calls out"),
            );
            return None;
        }
        if self.call_stack.contains(name) {
            self.error(
                Diagnostic::error(
                    Code::E0108,
                    format!("function `{name}` calls itself"),
                    span,
                    "recursive call",
                )
                .with_help(
                    "functions are inlined, so they cannot be recursive; write the expression out",
                ),
            );
            return None;
        }
        let mut bound: Vec<Option<Typed>> = vec![None; params.len()];
        // Where each parameter got its argument, to point at the first of two.
        let mut bound_at: Vec<Option<Span>> = vec![None; params.len()];
        let mut next_positional = 0;
        let mut ok = true;
        for arg in args {
            let slot = match &arg.name {
                Some(arg_name) => match params.iter().position(|p| p.name == arg_name.name) {
                    Some(i) if bound_at[i].is_none() => i,
                    Some(i) => {
                        self.repeated_argument(&arg_name.name, name, arg_name.span, bound_at[i]);
                        ok = false;
                        continue;
                    }
                    None => {
                        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
                        self.error(
                            Diagnostic::error(
                                Code::E0106,
                                format!("unknown argument `{}` of `{name}`", arg_name.name),
                                arg_name.span,
                                format!("not a parameter of `{name}`"),
                            )
                            .with_help(format!(
                                "the parameters of `{name}` are {}",
                                one_of(&names)
                            )),
                        );
                        ok = false;
                        continue;
                    }
                },
                None => {
                    while next_positional < params.len() && bound_at[next_positional].is_some() {
                        next_positional += 1;
                    }
                    if next_positional >= params.len() {
                        self.wrong_arity(name, params.len().to_string(), args.len(), span);
                        return None;
                    }
                    next_positional
                }
            };
            bound_at[slot] = Some(arg.name.as_ref().map_or(arg.value.span, |n| n.span));
            match self.lower(&arg.value, place) {
                Some(typed) => bound[slot] = Some(typed),
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        if let Some(missing) = bound.iter().position(Option::is_none) {
            self.error(
                Diagnostic::error(
                    Code::E0107,
                    format!("missing argument `{}` of `{name}`", params[missing].name),
                    span,
                    "argument missing",
                )
                .with_help(format!(
                    "pass `{}` too: `{name}` takes ({})",
                    params[missing].name,
                    params
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
            return None;
        }
        let scope: HashMap<String, Typed> = params
            .iter()
            .map(|p| p.name.clone())
            .zip(bound.into_iter().flatten())
            .collect();
        self.locals.push(scope);
        self.call_stack.push(name.clone());
        let pushed_module = module.is_some();
        if let Some(module) = module {
            self.module_stack.push(module);
        }
        let result = self.lower(body, place);
        if pushed_module {
            self.module_stack.pop();
        }
        self.call_stack.pop();
        self.locals.pop();
        if result.is_none() && self.sources.get(body.span.file).name.starts_with("stdlib/") {
            // The library body reported the problem at its own span; show where the call is too.
            if let Some(last) = self.diagnostics.last_mut() {
                last.labels.push(npdec_diagnostics::Label {
                    span,
                    message: format!("in this call of `{name}`"),
                });
            }
        }
        result
    }
}
