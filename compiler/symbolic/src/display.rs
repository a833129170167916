//! Printing expressions and declarations back in the syntax of the language, with names resolved
//! through the model. Used by hover text in editors and by `npdec explain`.

use crate::expr::{BinaryOp, CompareOp, Expr, ReduceOp, UnaryOp};
use crate::model::{Field, Model, Param};

impl Model {
    /// Formats an expression with the model's names, fully parenthesized where precedence needs it.
    pub fn display_expr(&self, expr: &Expr) -> String {
        self.format(expr, 0)
    }

    /// Formats the terms of a sum, such as the right-hand side of an equation in normal form. A
    /// negated term is subtracted, so `[a, -b]` prints as `a - b`.
    pub fn display_sum<'a>(&self, terms: impl IntoIterator<Item = &'a Expr>) -> String {
        let mut text = String::new();
        for (index, term) in terms.into_iter().enumerate() {
            if index == 0 {
                text = self.format(term, 0);
                continue;
            }
            match negated(term) {
                Some(positive) => {
                    text.push_str(" - ");
                    text.push_str(&self.format(&positive, 2));
                }
                None => {
                    text.push_str(" + ");
                    text.push_str(&self.format(term, 1));
                }
            }
        }
        text
    }

    fn format(&self, expr: &Expr, parent: u8) -> String {
        // Adding a negated term subtracts it, and subtracting one adds it.
        if let Expr::Binary(op @ (BinaryOp::Add | BinaryOp::Sub), a, b) = expr {
            if let Some(positive) = negated(b) {
                let flipped = if *op == BinaryOp::Add {
                    BinaryOp::Sub
                } else {
                    BinaryOp::Add
                };
                return self.format(
                    &Expr::Binary(flipped, a.clone(), Box::new(positive)),
                    parent,
                );
            }
        }
        let (text, precedence) = match expr {
            // A negative number reads as a negation, so `(-2)^x` keeps its parentheses.
            Expr::Real(v) if *v < 0.0 => (format_number(*v), 3),
            Expr::Real(v) => (format_number(*v), 5),
            Expr::Complex(re, im) if *re == 0.0 && *im < 0.0 => {
                (format!("{}i", format_number(*im)), 3)
            }
            Expr::Complex(re, im) if *re == 0.0 => (format!("{}i", format_number(*im)), 5),
            Expr::Complex(re, im) if *im < 0.0 => (
                format!("{} - {}i", format_number(*re), format_number(-*im)),
                1,
            ),
            Expr::Complex(re, im) => (
                format!("{} + {}i", format_number(*re), format_number(*im)),
                1,
            ),
            Expr::Coordinate(axis) => (self.axis(*axis).name.clone(), 5),
            Expr::Time => ("t".to_string(), 5),
            Expr::Field(field) => (self.field(*field).name.clone(), 5),
            Expr::Channel(field, k) => (format!("{}[{k}]", self.field(*field).name), 5),
            Expr::Param(param) => (self.param(*param).name.clone(), 5),
            Expr::Input(data) => (format!("{}.input", self.data[data.0].name), 5),
            Expr::Label(data) => (format!("{}.label", self.data[data.0].name), 5),
            Expr::Sequence(data) => (format!("{}.sequence", self.data[data.0].name), 5),
            // `-(a * b)` prints as `-a * b`, which parses as `(-a) * b` and has the same value.
            Expr::Unary(UnaryOp::Neg, a)
                if matches!(**a, Expr::Binary(BinaryOp::Mul | BinaryOp::Div, ..)) =>
            {
                (format!("-{}", self.format(a, 2)), 2)
            }
            Expr::Unary(UnaryOp::Neg, a) => (format!("-{}", self.format(a, 4)), 3),
            Expr::Binary(op, a, b) => {
                let (symbol, precedence, right_extra) = match op {
                    BinaryOp::Add => ("+", 1, 0),
                    BinaryOp::Sub => ("-", 1, 1),
                    BinaryOp::Mul => ("*", 2, 0),
                    BinaryOp::Div => ("/", 2, 1),
                    BinaryOp::Pow => ("^", 4, 0),
                };
                let (left, right) = if *op == BinaryOp::Pow {
                    (self.format(a, precedence + 1), self.format(b, precedence))
                } else {
                    (
                        self.format(a, precedence),
                        self.format(b, precedence + right_extra),
                    )
                };
                let spaced = if *op == BinaryOp::Pow {
                    format!("{left}^{right}")
                } else {
                    format!("{left} {symbol} {right}")
                };
                (spaced, precedence)
            }
            Expr::Compare(op, a, b) => {
                let symbol = match op {
                    CompareOp::Less => "<",
                    CompareOp::LessEqual => "<=",
                    CompareOp::Greater => ">",
                    CompareOp::GreaterEqual => ">=",
                    CompareOp::Equal => "==",
                    CompareOp::NotEqual => "!=",
                };
                (
                    format!("{} {symbol} {}", self.format(a, 1), self.format(b, 1)),
                    0,
                )
            }
            Expr::Call(function, args) => (format!("{}({})", function.name(), self.list(args)), 5),
            Expr::Stack(items) => (format!("[{}]", self.list(items)), 5),
            Expr::Derivative { operand, axes } => {
                let names: Vec<&str> = axes.iter().map(|a| self.axis(*a).name.as_str()).collect();
                (
                    format!("diff({}, {})", self.format(operand, 0), names.join(", ")),
                    5,
                )
            }
            Expr::Laplace(operand) => (format!("laplace({})", self.format(operand, 0)), 5),
            Expr::DivGrad {
                coefficient,
                operand,
            } => (
                format!(
                    "div({} * grad({}))",
                    self.format(coefficient, 2),
                    self.format(operand, 0)
                ),
                5,
            ),
            Expr::Upwind {
                velocity,
                operand,
                axis,
                order,
            } => (
                format!(
                    "upwind({}, {}, {}, order = {order})",
                    self.format(velocity, 0),
                    self.format(operand, 0),
                    self.axis(*axis).name
                ),
                5,
            ),
            Expr::Convolution { kernel, operand } => (
                format!(
                    "conv({}, {})",
                    self.param(*kernel).name,
                    self.format(operand, 0)
                ),
                5,
            ),
            Expr::Resample {
                kind,
                factor,
                operand,
                ..
            } => (
                format!("{}({}, {factor})", kind.name(), self.format(operand, 0)),
                5,
            ),
            Expr::MatMul { matrix, operand } => (
                format!("{} @ {}", self.format(matrix, 2), self.format(operand, 3)),
                2,
            ),
            Expr::Reduce(op, operand) => {
                let name = match op {
                    ReduceOp::Max => "max",
                    ReduceOp::Min => "min",
                    ReduceOp::Sum => "sum",
                    ReduceOp::Mean => "mean",
                    ReduceOp::Norm => "norm",
                    ReduceOp::Integral => "integral",
                };
                (format!("{name}({})", self.format(operand, 0)), 5)
            }
        };
        if precedence < parent {
            format!("({text})")
        } else {
            text
        }
    }

    fn list(&self, args: &[Expr]) -> String {
        args.iter()
            .map(|a| self.format(a, 0))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Describes a field's declaration: axes with point counts, channels and type.
    pub fn describe_field(&self, field: &Field) -> String {
        let axes: Vec<String> = field
            .axes
            .iter()
            .map(|a| format!("{} ({} points)", self.axis(*a).name, self.axis(*a).points))
            .collect();
        let channels = if field.channels > 1 {
            format!(", {} channels", field.channels)
        } else {
            String::new()
        };
        let ty = if field.complex { "complex" } else { "real" };
        format!(
            "field {} on {}{channels}, {ty}",
            field.name,
            axes.join(" × ")
        )
    }

    /// Describes a parameter: shape, type, and whether training changes it.
    pub fn describe_param(&self, param: &Param) -> String {
        let mut shape: Vec<String> = param
            .axes
            .iter()
            .map(|a| format!("{} ({} points)", self.axis(*a).name, self.axis(*a).points))
            .collect();
        if !param.dims.is_empty() {
            shape.push(format!("{:?}", param.dims));
        }
        let shape = if shape.is_empty() {
            "scalar".to_string()
        } else {
            shape.join(" × ")
        };
        let per_step = if param.per_step {
            ", one value per time step"
        } else {
            ""
        };
        let mode = if param.learnable {
            "learnable"
        } else {
            "fixed"
        };
        let ty = if param.complex { "complex" } else { "real" };
        format!("parameter {}: {shape}, {ty}, {mode}{per_step}", param.name)
    }
}

/// Returns `x` for a term that is `-x`: a negation, or a negative number.
fn negated(expr: &Expr) -> Option<Expr> {
    match expr {
        Expr::Unary(UnaryOp::Neg, operand) => Some((**operand).clone()),
        Expr::Real(v) if *v < 0.0 => Some(Expr::Real(-*v)),
        Expr::Complex(re, im) if *re == 0.0 && *im < 0.0 => Some(Expr::Complex(0.0, -*im)),
        _ => None,
    }
}

fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}
