//! Symbolic simplification of expressions before discretization.
//!
//! Folds constants and removes neutral elements, bottom up, so that discretization sees the fewest
//! nodes and recognizes constant coefficients:
//!
//! ```text
//! 1 * (0 + nu) * laplace(u) - 0      ⇒  nu_value * laplace(u)
//! -(-u) / 1                           ⇒  u
//! sin(0) + x ^ 1                      ⇒  x
//! ```
//!
//! Multiplication by an exact zero removes the other factor, even a derivative: `0 · ∂u/∂x` is zero
//! for every finite `u`.

use npdec_symbolic::{BinaryOp, Expr, Function, UnaryOp};

/// Returns the simplified expression.
pub fn simplify(expr: &Expr) -> Expr {
    match expr {
        Expr::Real(_)
        | Expr::Complex(..)
        | Expr::Coordinate(_)
        | Expr::Time
        | Expr::Field(_)
        | Expr::Channel(..)
        | Expr::Param(_)
        | Expr::Input(_)
        | Expr::Label(_)
        | Expr::Sequence(_) => expr.clone(),
        Expr::Unary(UnaryOp::Neg, a) => simplify_negation(simplify(a)),
        Expr::Binary(op, a, b) => simplify_binary(*op, simplify(a), simplify(b)),
        Expr::Call(function, args) => simplify_call(*function, args.iter().map(simplify).collect()),
        Expr::Compare(op, a, b) => Expr::Compare(*op, Box::new(simplify(a)), Box::new(simplify(b))),
        Expr::Derivative { operand, axes } => {
            let operand = simplify(operand);
            if is_constant(&operand) && !axes.is_empty() {
                Expr::Real(0.0)
            } else {
                Expr::Derivative {
                    operand: Box::new(operand),
                    axes: axes.clone(),
                }
            }
        }
        Expr::Laplace(a) => {
            let a = simplify(a);
            if is_constant(&a) {
                Expr::Real(0.0)
            } else {
                Expr::Laplace(Box::new(a))
            }
        }
        Expr::DivGrad {
            coefficient,
            operand,
        } => Expr::DivGrad {
            coefficient: Box::new(simplify(coefficient)),
            operand: Box::new(simplify(operand)),
        },
        Expr::Upwind {
            velocity,
            operand,
            axis,
            order,
        } => {
            let velocity = simplify(velocity);
            if velocity == Expr::Real(0.0) {
                return Expr::Real(0.0);
            }
            Expr::Upwind {
                velocity: Box::new(velocity),
                operand: Box::new(simplify(operand)),
                axis: *axis,
                order: *order,
            }
        }
        Expr::Convolution { kernel, operand } => Expr::Convolution {
            kernel: *kernel,
            operand: Box::new(simplify(operand)),
        },
        Expr::Resample {
            kind,
            factor,
            operand,
            axes,
        } => Expr::Resample {
            kind: *kind,
            factor: *factor,
            operand: Box::new(simplify(operand)),
            axes: axes.clone(),
        },
        Expr::MatMul { matrix, operand } => Expr::MatMul {
            matrix: Box::new(simplify(matrix)),
            operand: Box::new(simplify(operand)),
        },
        Expr::Reduce(op, a) => Expr::Reduce(*op, Box::new(simplify(a))),
        Expr::Stack(items) => Expr::Stack(items.iter().map(simplify).collect()),
    }
}

/// Returns the value of a constant expression as `(re, im)`.
pub fn constant_value(expr: &Expr) -> Option<(f64, f64)> {
    match expr {
        Expr::Real(v) => Some((*v, 0.0)),
        Expr::Complex(re, im) => Some((*re, *im)),
        _ => None,
    }
}

fn is_constant(expr: &Expr) -> bool {
    constant_value(expr).is_some()
}

fn constant(re: f64, im: f64) -> Expr {
    if im == 0.0 {
        Expr::Real(re)
    } else {
        Expr::Complex(re, im)
    }
}

fn is_value(expr: &Expr, value: f64) -> bool {
    constant_value(expr) == Some((value, 0.0))
}

fn simplify_negation(a: Expr) -> Expr {
    match a {
        Expr::Real(v) => Expr::Real(-v),
        Expr::Complex(re, im) => Expr::Complex(-re, -im),
        Expr::Unary(UnaryOp::Neg, inner) => *inner,
        other => Expr::Unary(UnaryOp::Neg, Box::new(other)),
    }
}

fn simplify_binary(op: BinaryOp, a: Expr, b: Expr) -> Expr {
    if let (Some(x), Some(y)) = (constant_value(&a), constant_value(&b)) {
        if let Some((re, im)) = fold_binary(op, x, y) {
            return constant(re, im);
        }
    }
    match op {
        BinaryOp::Add if is_value(&a, 0.0) => b,
        BinaryOp::Add | BinaryOp::Sub if is_value(&b, 0.0) => a,
        BinaryOp::Sub if is_value(&a, 0.0) => simplify_negation(b),
        BinaryOp::Mul if is_value(&a, 0.0) || is_value(&b, 0.0) => Expr::Real(0.0),
        BinaryOp::Mul if is_value(&a, 1.0) => b,
        BinaryOp::Mul | BinaryOp::Div if is_value(&b, 1.0) => a,
        BinaryOp::Mul if is_value(&a, -1.0) => simplify_negation(b),
        BinaryOp::Mul | BinaryOp::Div if is_value(&b, -1.0) => simplify_negation(a),
        BinaryOp::Div if is_value(&a, 0.0) => Expr::Real(0.0),
        BinaryOp::Pow if is_value(&b, 1.0) => a,
        BinaryOp::Pow if is_value(&b, 0.0) => Expr::Real(1.0),
        _ => Expr::binary(op, a, b),
    }
}

/// Folds an operation on two complex constants; `None` where folding would hide a division by zero.
fn fold_binary(op: BinaryOp, (ar, ai): (f64, f64), (br, bi): (f64, f64)) -> Option<(f64, f64)> {
    match op {
        BinaryOp::Add => Some((ar + br, ai + bi)),
        BinaryOp::Sub => Some((ar - br, ai - bi)),
        BinaryOp::Mul => Some((ar * br - ai * bi, ar * bi + ai * br)),
        BinaryOp::Div => {
            let norm = br * br + bi * bi;
            if norm == 0.0 {
                return None;
            }
            Some(((ar * br + ai * bi) / norm, (ai * br - ar * bi) / norm))
        }
        BinaryOp::Pow if ai == 0.0 && bi == 0.0 && (ar >= 0.0 || br.fract() == 0.0) => {
            Some((ar.powf(br), 0.0))
        }
        BinaryOp::Pow => None,
    }
}

fn simplify_call(function: Function, args: Vec<Expr>) -> Expr {
    if let [Expr::Real(x)] = args.as_slice() {
        let x = *x;
        let folded = match function {
            Function::Tanh => Some(x.tanh()),
            Function::Relu => Some(x.max(0.0)),
            Function::Sigmoid => Some(1.0 / (1.0 + (-x).exp())),
            Function::Exp => Some(x.exp()),
            Function::Log if x > 0.0 => Some(x.ln()),
            Function::Sin => Some(x.sin()),
            Function::Cos => Some(x.cos()),
            Function::Abs => Some(x.abs()),
            Function::Sqrt if x >= 0.0 => Some(x.sqrt()),
            Function::Conj | Function::Re => Some(x),
            Function::Im => Some(0.0),
            Function::Log | Function::Sqrt | Function::Max | Function::Min | Function::Softmax => {
                None
            }
        };
        if let Some(value) = folded {
            return Expr::Real(value);
        }
    }
    if let [Expr::Real(x), Expr::Real(y)] = args.as_slice() {
        match function {
            Function::Max => return Expr::Real(x.max(*y)),
            Function::Min => return Expr::Real(x.min(*y)),
            Function::Tanh
            | Function::Relu
            | Function::Sigmoid
            | Function::Exp
            | Function::Log
            | Function::Sin
            | Function::Cos
            | Function::Abs
            | Function::Sqrt
            | Function::Conj
            | Function::Re
            | Function::Im
            | Function::Softmax => {}
        }
    }
    Expr::Call(function, args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use npdec_symbolic::FieldId;

    fn mul(a: Expr, b: Expr) -> Expr {
        Expr::binary(BinaryOp::Mul, a, b)
    }

    fn add(a: Expr, b: Expr) -> Expr {
        Expr::binary(BinaryOp::Add, a, b)
    }

    #[test]
    fn folds_constants() {
        let e = mul(
            add(Expr::Real(2.0), Expr::Real(3.0)),
            Expr::Call(Function::Cos, vec![Expr::Real(0.0)]),
        );
        assert_eq!(simplify(&e), Expr::Real(5.0));
    }

    #[test]
    fn removes_neutral_elements() {
        let u = Expr::Field(FieldId(0));
        let e = add(mul(Expr::Real(1.0), u.clone()), Expr::Real(0.0));
        assert_eq!(simplify(&e), u);
    }

    #[test]
    fn zero_factor_removes_derivative() {
        let u = Expr::Field(FieldId(0));
        let e = mul(Expr::Real(0.0), Expr::Laplace(Box::new(u)));
        assert_eq!(simplify(&e), Expr::Real(0.0));
    }

    #[test]
    fn keeps_division_by_zero() {
        let e = Expr::binary(BinaryOp::Div, Expr::Real(1.0), Expr::Real(0.0));
        assert_eq!(simplify(&e), e);
    }

    #[test]
    fn double_negation_cancels() {
        let u = Expr::Field(FieldId(0));
        let e = Expr::Unary(
            UnaryOp::Neg,
            Box::new(Expr::Unary(UnaryOp::Neg, Box::new(u.clone()))),
        );
        assert_eq!(simplify(&e), u);
    }

    #[test]
    fn complex_product_folds() {
        let e = mul(Expr::Complex(0.0, 1.0), Expr::Complex(0.0, 1.0));
        assert_eq!(simplify(&e), Expr::Real(-1.0));
    }
}
