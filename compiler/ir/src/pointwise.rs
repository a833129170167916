//! Scalar evaluation and symbolic differentiation of pointwise expressions.
//!
//! The interpreter evaluates pointwise nodes on whole arrays; these helpers work at one point in
//! complex double precision, for analyses such as [`crate::stability`] that need the local slope of a
//! nonlinear term.

use crate::graph::PointwiseExpr;
use npdec_symbolic::{AxisId, BinaryOp, CompareOp, Function, UnaryOp};
use num_complex::Complex64;

/// Evaluates an expression at one point, given the values of its inputs there.
///
/// Functions that need an ordering (`relu`, `max`, `min`, comparisons) use real parts; `softmax` over
/// a single channel is 1.
pub fn evaluate_at(
    expr: &PointwiseExpr,
    inputs: &[Complex64],
    coordinate: &dyn Fn(AxisId) -> f64,
    time: f64,
) -> Complex64 {
    let eval = |e: &PointwiseExpr| evaluate_at(e, inputs, coordinate, time);
    match expr {
        PointwiseExpr::Input { index, .. } => inputs[*index],
        PointwiseExpr::Real(v) => Complex64::new(*v, 0.0),
        PointwiseExpr::Complex(re, im) => Complex64::new(*re, *im),
        PointwiseExpr::Coordinate(axis) => Complex64::new(coordinate(*axis), 0.0),
        PointwiseExpr::Time => Complex64::new(time, 0.0),
        PointwiseExpr::Unary(UnaryOp::Neg, a) => -eval(a),
        PointwiseExpr::Binary(op, a, b) => {
            let (a, b) = (eval(a), eval(b));
            match op {
                BinaryOp::Add => a + b,
                BinaryOp::Sub => a - b,
                BinaryOp::Mul => a * b,
                BinaryOp::Div => a / b,
                BinaryOp::Pow if b.im == 0.0 && b.re.fract() == 0.0 && b.re.abs() < 64.0 => {
                    a.powi(b.re as i32)
                }
                BinaryOp::Pow => a.powc(b),
            }
        }
        PointwiseExpr::Compare(op, a, b) => {
            let (a, b) = (eval(a).re, eval(b).re);
            Complex64::new(if compare(*op, a, b) { 1.0 } else { 0.0 }, 0.0)
        }
        PointwiseExpr::Call(function, args) => {
            let values: Vec<Complex64> = args.iter().map(eval).collect();
            let x = values.first().copied().unwrap_or_default();
            match function {
                Function::Tanh => x.tanh(),
                Function::Relu => Complex64::new(x.re.max(0.0), 0.0),
                Function::Sigmoid => 1.0 / (1.0 + (-x).exp()),
                Function::Exp => x.exp(),
                Function::Log => x.ln(),
                Function::Sin => x.sin(),
                Function::Cos => x.cos(),
                Function::Abs => Complex64::new(x.norm(), 0.0),
                Function::Sqrt => x.sqrt(),
                Function::Conj => x.conj(),
                Function::Re => Complex64::new(x.re, 0.0),
                Function::Im => Complex64::new(x.im, 0.0),
                Function::Max => {
                    Complex64::new(x.re.max(values.get(1).map_or(x.re, |y| y.re)), 0.0)
                }
                Function::Min => {
                    Complex64::new(x.re.min(values.get(1).map_or(x.re, |y| y.re)), 0.0)
                }
                Function::Softmax => Complex64::new(1.0, 0.0),
            }
        }
    }
}

/// Applies a comparison to two real numbers.
pub fn compare(op: CompareOp, a: f64, b: f64) -> bool {
    match op {
        CompareOp::Less => a < b,
        CompareOp::LessEqual => a <= b,
        CompareOp::Greater => a > b,
        CompareOp::GreaterEqual => a >= b,
        CompareOp::Equal => a == b,
        CompareOp::NotEqual => a != b,
    }
}

/// Returns `∂expr/∂input` symbolically, treating every function as holomorphic: `conj`, `re`, `im`
/// and `abs` differentiate like the identity, so the result bounds the slope of a real-valued term
/// but is only an estimate for non-holomorphic complex terms.
pub fn differentiate(expr: &PointwiseExpr, input: usize) -> PointwiseExpr {
    use PointwiseExpr as P;
    let d = |e: &PointwiseExpr| differentiate(e, input);
    let real = P::Real;
    let bin = |op, a: P, b: P| P::Binary(op, Box::new(a), Box::new(b));
    let call = |f, a: &P| P::Call(f, vec![a.clone()]);
    match expr {
        P::Input { index, .. } => real(if *index == input { 1.0 } else { 0.0 }),
        P::Real(_) | P::Complex(..) | P::Coordinate(_) | P::Time | P::Compare(..) => real(0.0),
        P::Unary(UnaryOp::Neg, a) => P::Unary(UnaryOp::Neg, Box::new(d(a))),
        P::Binary(op, a, b) => match op {
            BinaryOp::Add => bin(BinaryOp::Add, d(a), d(b)),
            BinaryOp::Sub => bin(BinaryOp::Sub, d(a), d(b)),
            BinaryOp::Mul => bin(
                BinaryOp::Add,
                bin(BinaryOp::Mul, d(a), (**b).clone()),
                bin(BinaryOp::Mul, (**a).clone(), d(b)),
            ),
            BinaryOp::Div => bin(
                BinaryOp::Div,
                bin(
                    BinaryOp::Sub,
                    bin(BinaryOp::Mul, d(a), (**b).clone()),
                    bin(BinaryOp::Mul, (**a).clone(), d(b)),
                ),
                bin(BinaryOp::Mul, (**b).clone(), (**b).clone()),
            ),
            // d(a^b) = b a^(b−1) a′ + a^b ln(a) b′.
            BinaryOp::Pow => bin(
                BinaryOp::Add,
                bin(
                    BinaryOp::Mul,
                    bin(
                        BinaryOp::Mul,
                        (**b).clone(),
                        bin(
                            BinaryOp::Pow,
                            (**a).clone(),
                            bin(BinaryOp::Sub, (**b).clone(), real(1.0)),
                        ),
                    ),
                    d(a),
                ),
                bin(
                    BinaryOp::Mul,
                    bin(BinaryOp::Mul, expr.clone(), call(Function::Log, a)),
                    d(b),
                ),
            ),
        },
        P::Call(function, args) => {
            let Some(a) = args.first() else {
                return real(0.0);
            };
            let slope = match function {
                Function::Tanh => bin(
                    BinaryOp::Sub,
                    real(1.0),
                    bin(BinaryOp::Mul, expr.clone(), expr.clone()),
                ),
                Function::Sigmoid => bin(
                    BinaryOp::Mul,
                    expr.clone(),
                    bin(BinaryOp::Sub, real(1.0), expr.clone()),
                ),
                Function::Exp => expr.clone(),
                Function::Log => bin(BinaryOp::Div, real(1.0), a.clone()),
                Function::Sin => call(Function::Cos, a),
                Function::Cos => P::Unary(UnaryOp::Neg, Box::new(call(Function::Sin, a))),
                Function::Sqrt => bin(BinaryOp::Div, real(0.5), expr.clone()),
                Function::Relu => {
                    P::Compare(CompareOp::Greater, Box::new(a.clone()), Box::new(real(0.0)))
                }
                Function::Abs
                | Function::Conj
                | Function::Re
                | Function::Im
                | Function::Softmax => real(1.0),
                Function::Max | Function::Min => {
                    let b = args.get(1).cloned().unwrap_or(real(0.0));
                    let op = if *function == Function::Max {
                        CompareOp::GreaterEqual
                    } else {
                        CompareOp::LessEqual
                    };
                    let first = P::Compare(op, Box::new(a.clone()), Box::new(b.clone()));
                    let second = bin(BinaryOp::Sub, real(1.0), first.clone());
                    return bin(
                        BinaryOp::Add,
                        bin(BinaryOp::Mul, first, d(a)),
                        bin(BinaryOp::Mul, second, d(&b)),
                    );
                }
            };
            bin(BinaryOp::Mul, slope, d(a))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> PointwiseExpr {
        PointwiseExpr::Input {
            index: 0,
            channel: None,
        }
    }

    #[test]
    fn derivative_of_logistic_term() {
        // d/du [u (1 − u)] = 1 − 2u.
        let expr = PointwiseExpr::Binary(
            BinaryOp::Mul,
            Box::new(input()),
            Box::new(PointwiseExpr::Binary(
                BinaryOp::Sub,
                Box::new(PointwiseExpr::Real(1.0)),
                Box::new(input()),
            )),
        );
        let slope = differentiate(&expr, 0);
        let value = evaluate_at(&slope, &[Complex64::new(0.25, 0.0)], &|_| 0.0, 0.0);
        assert!((value.re - 0.5).abs() < 1e-14);
    }

    #[test]
    fn derivative_of_tanh() {
        let expr = PointwiseExpr::Call(Function::Tanh, vec![input()]);
        let value = evaluate_at(
            &differentiate(&expr, 0),
            &[Complex64::new(0.3, 0.0)],
            &|_| 0.0,
            0.0,
        );
        assert!((value.re - (1.0 - 0.3f64.tanh().powi(2))).abs() < 1e-14);
    }
}
