//! Coefficient factoring: a constant that multiplies a stencil moves into the stencil's weights.
//!
//! ```text
//! before:  %3 = stencil laplace (%1)  weights 1, −2, 1      %4 = pointwise 0.1 * in0 (%3)
//! after:   %4 = stencil laplace (%1)  weights 0.1, −0.2, 0.1
//! ```
//!
//! This removes a multiplication per point and, for a right-hand side such as `ν ∇²u`, leaves one
//! stencil whose sweep the JIT fuses into the time update. The second half of factoring happens in
//! code generation: taps of equal weight are summed before the one multiplication by that weight
//! (`w·a + w·b → w·(a + b)`), which cuts the multiplications of a symmetric order-8 3-D Laplacian
//! from 25 to 5.
//!
//! Applies to `c · s`, `s · c`, `s / c` and `−s` where `s` is a stencil used only by this node and
//! both have the same type.

use super::rebuild::{rebuild, user_counts, Action};
use npdec_ir::graph::{Graph, Node, NodeKind, PointwiseExpr, Stencil, Tap};
use npdec_symbolic::{BinaryOp, UnaryOp};

/// Returns the constant factor of `expr` when it is `factor · in0`.
pub(crate) fn scaled_input(expr: &PointwiseExpr) -> Option<f64> {
    let is_input = |e: &PointwiseExpr| {
        matches!(
            e,
            PointwiseExpr::Input {
                index: 0,
                channel: None
            }
        )
    };
    match expr {
        PointwiseExpr::Binary(BinaryOp::Mul, a, b) => match (&**a, &**b) {
            (PointwiseExpr::Real(c), e) | (e, PointwiseExpr::Real(c)) if is_input(e) => Some(*c),
            _ => None,
        },
        PointwiseExpr::Binary(BinaryOp::Div, a, b) => match (&**a, &**b) {
            (e, PointwiseExpr::Real(c)) if is_input(e) && *c != 0.0 => Some(1.0 / c),
            _ => None,
        },
        PointwiseExpr::Unary(UnaryOp::Neg, a) if is_input(a) => Some(-1.0),
        _ => None,
    }
}

/// Moves constant factors of pointwise products into the weights of the stencils they scale.
pub fn factor_coefficients(graph: &Graph) -> Graph {
    let users = user_counts(graph);
    rebuild(graph, |graph, id| {
        let node = graph.node(id);
        let NodeKind::Pointwise(expr) = &node.kind else {
            return Action::Keep;
        };
        let Some(factor) = scaled_input(expr) else {
            return Action::Keep;
        };
        let inputs = graph.inputs(id);
        let [stencil_id] = inputs.as_slice() else {
            return Action::Keep;
        };
        let stencil_node = graph.node(*stencil_id);
        let NodeKind::Stencil(stencil) = &stencil_node.kind else {
            return Action::Keep;
        };
        if users[stencil_id] != 1 || stencil_node.value != node.value {
            return Action::Keep;
        }
        let scaled = Stencil {
            label: stencil.label.clone(),
            taps: stencil
                .taps
                .iter()
                .map(|t| Tap {
                    offset: t.offset.clone(),
                    weight: t.weight * factor,
                })
                .collect(),
            radius: stencil.radius.clone(),
        };
        Action::Replace(
            Node {
                kind: NodeKind::Stencil(scaled),
                value: node.value.clone(),
            },
            graph.inputs(*stencil_id),
        )
    })
}
