//! Constant folding in pointwise expressions.
//!
//! Folds operations whose operands are all constants, and the identities that hold for every
//! IEEE value: `x · 1`, `1 · x`, `x / 1`, `x + 0` where `x` is not `-0`, `x − 0` and `x ^ 1`.
//! A pointwise node left as the plain copy of an input of the same type is removed, and its users
//! read that input.
//!
//! ```text
//! before:  %4 = pointwise (2 * 0.5) * in0 + 0 * 1      after:  %4 = pointwise in0 (removed: reads %3)
//! ```
//!
//! Products with zero stay: `0 · x` is NaN for an infinite `x`.

use super::rebuild::{rebuild, Action};
use npdec_ir::graph::{Graph, Node, NodeKind, PointwiseExpr};
use npdec_symbolic::{BinaryOp, Function, UnaryOp};

/// Folds constants in every pointwise node and removes pointwise copies.
pub fn fold_constants(graph: &Graph) -> Graph {
    rebuild(graph, |graph, id| {
        let node = graph.node(id);
        let NodeKind::Pointwise(expr) = &node.kind else {
            return Action::Keep;
        };
        let folded = fold_expression(expr);
        let inputs = graph.inputs(id);
        if let PointwiseExpr::Input {
            index: 0,
            channel: None,
        } = folded
        {
            if inputs.len() == 1 && graph.node(inputs[0]).value == node.value {
                return Action::Forward(inputs[0]);
            }
        }
        if folded == *expr {
            return Action::Keep;
        }
        // Folding never drops the input with the largest index unless it drops all uses of it,
        // so keep the operand list only when the arity is unchanged.
        if folded.input_count() != expr.input_count() {
            return Action::Keep;
        }
        Action::Replace(
            Node {
                kind: NodeKind::Pointwise(folded),
                value: node.value.clone(),
            },
            inputs,
        )
    })
}

fn real(e: &PointwiseExpr) -> Option<f64> {
    match e {
        PointwiseExpr::Real(v) => Some(*v),
        PointwiseExpr::Input { .. }
        | PointwiseExpr::Complex(..)
        | PointwiseExpr::Coordinate(_)
        | PointwiseExpr::Time
        | PointwiseExpr::Unary(..)
        | PointwiseExpr::Binary(..)
        | PointwiseExpr::Call(..)
        | PointwiseExpr::Compare(..) => None,
    }
}

/// Returns the expression with constant subtrees folded.
pub(crate) fn fold_expression(expr: &PointwiseExpr) -> PointwiseExpr {
    match expr {
        PointwiseExpr::Input { .. }
        | PointwiseExpr::Real(_)
        | PointwiseExpr::Complex(..)
        | PointwiseExpr::Coordinate(_)
        | PointwiseExpr::Time => expr.clone(),
        PointwiseExpr::Unary(UnaryOp::Neg, a) => {
            let a = fold_expression(a);
            match real(&a) {
                Some(v) => PointwiseExpr::Real(-v),
                None => PointwiseExpr::Unary(UnaryOp::Neg, Box::new(a)),
            }
        }
        PointwiseExpr::Binary(op, a, b) => {
            let (a, b) = (fold_expression(a), fold_expression(b));
            match (real(&a), real(&b), op) {
                (Some(x), Some(y), _) => PointwiseExpr::Real(match op {
                    BinaryOp::Add => x + y,
                    BinaryOp::Sub => x - y,
                    BinaryOp::Mul => x * y,
                    BinaryOp::Div => x / y,
                    BinaryOp::Pow if y.fract() == 0.0 && y.abs() < 64.0 => x.powi(y as i32),
                    BinaryOp::Pow => x.powf(y),
                }),
                (_, Some(1.0), BinaryOp::Mul | BinaryOp::Div | BinaryOp::Pow) => a,
                (Some(1.0), _, BinaryOp::Mul) => b,
                (_, Some(0.0), BinaryOp::Sub) => a,
                // x + 0 is x except for x = −0, which becomes +0; the two compare equal.
                (_, Some(0.0), BinaryOp::Add) => a,
                (Some(0.0), _, BinaryOp::Add) => b,
                _ => PointwiseExpr::Binary(*op, Box::new(a), Box::new(b)),
            }
        }
        PointwiseExpr::Compare(op, a, b) => {
            let (a, b) = (fold_expression(a), fold_expression(b));
            match (real(&a), real(&b)) {
                (Some(x), Some(y)) => {
                    PointwiseExpr::Real(if npdec_ir::pointwise::compare(*op, x, y) {
                        1.0
                    } else {
                        0.0
                    })
                }
                _ => PointwiseExpr::Compare(*op, Box::new(a), Box::new(b)),
            }
        }
        PointwiseExpr::Call(function, args) => {
            let args: Vec<PointwiseExpr> = args.iter().map(fold_expression).collect();
            let values: Option<Vec<f64>> = args.iter().map(real).collect();
            match values.as_deref() {
                Some([x]) => match function {
                    Function::Tanh => PointwiseExpr::Real(x.tanh()),
                    Function::Exp => PointwiseExpr::Real(x.exp()),
                    Function::Sin => PointwiseExpr::Real(x.sin()),
                    Function::Cos => PointwiseExpr::Real(x.cos()),
                    Function::Abs => PointwiseExpr::Real(x.abs()),
                    Function::Relu => PointwiseExpr::Real(x.max(0.0)),
                    Function::Re | Function::Conj => PointwiseExpr::Real(*x),
                    Function::Im => PointwiseExpr::Real(0.0),
                    // Logarithms and roots of negative numbers are complex: leave them to run time.
                    Function::Log
                    | Function::Sqrt
                    | Function::Sigmoid
                    | Function::Max
                    | Function::Min
                    | Function::Softmax => PointwiseExpr::Call(*function, args),
                },
                _ => PointwiseExpr::Call(*function, args),
            }
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

    fn bin(op: BinaryOp, a: PointwiseExpr, b: PointwiseExpr) -> PointwiseExpr {
        PointwiseExpr::Binary(op, Box::new(a), Box::new(b))
    }

    #[test]
    fn folds_constant_products() {
        let expr = bin(
            BinaryOp::Mul,
            bin(
                BinaryOp::Mul,
                PointwiseExpr::Real(2.0),
                PointwiseExpr::Real(0.5),
            ),
            input(),
        );
        assert_eq!(fold_expression(&expr), input());
    }

    #[test]
    fn keeps_products_with_zero() {
        let expr = bin(BinaryOp::Mul, PointwiseExpr::Real(0.0), input());
        assert_eq!(fold_expression(&expr), expr);
    }

    #[test]
    fn folds_calls_of_constants() {
        let expr = PointwiseExpr::Call(Function::Exp, vec![PointwiseExpr::Real(0.0)]);
        assert_eq!(fold_expression(&expr), PointwiseExpr::Real(1.0));
    }
}
