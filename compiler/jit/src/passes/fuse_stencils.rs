//! Stencil fusion: a linear combination of stencils of one field becomes one stencil, so one sweep
//! reads the field once.
//!
//! ```text
//! before:  %3 = stencil d2/dx2 (%1)   %4 = stencil d2/dy2 (%1)   %5 = pointwise 2 * in0 − in1 (%3, %4)
//! after:   %5 = stencil 2·d2/dx2 − d2/dy2 (%1)   taps at equal offsets added
//! ```
//!
//! Applies to a pointwise node whose expression is a sum of terms `c · in_k`, `in_k · c`,
//! `in_k / c`, `−in_k` or `in_k` with constant `c`, when every `in_k` is a stencil that reads the
//! same node, is used only here, and has the pointwise node's type.

use super::rebuild::{rebuild, user_counts, Action};
use npdec_ir::graph::{Graph, Node, NodeKind, PointwiseExpr, Stencil, Tap};
use npdec_symbolic::{BinaryOp, UnaryOp};

/// Returns the terms `(input index, coefficient)` of a linear combination of inputs.
fn linear_terms(expr: &PointwiseExpr) -> Option<Vec<(usize, f64)>> {
    let scale = |terms: Vec<(usize, f64)>, c: f64| {
        terms
            .into_iter()
            .map(|(i, w)| (i, w * c))
            .collect::<Vec<_>>()
    };
    match expr {
        PointwiseExpr::Input {
            index,
            channel: None,
        } => Some(vec![(*index, 1.0)]),
        PointwiseExpr::Unary(UnaryOp::Neg, a) => Some(scale(linear_terms(a)?, -1.0)),
        PointwiseExpr::Binary(BinaryOp::Add, a, b) => {
            let mut terms = linear_terms(a)?;
            terms.extend(linear_terms(b)?);
            Some(terms)
        }
        PointwiseExpr::Binary(BinaryOp::Sub, a, b) => {
            let mut terms = linear_terms(a)?;
            terms.extend(scale(linear_terms(b)?, -1.0));
            Some(terms)
        }
        PointwiseExpr::Binary(BinaryOp::Mul, a, b) => match (&**a, &**b) {
            (PointwiseExpr::Real(c), e) | (e, PointwiseExpr::Real(c)) => {
                Some(scale(linear_terms(e)?, *c))
            }
            _ => None,
        },
        PointwiseExpr::Binary(BinaryOp::Div, a, b) => match &**b {
            PointwiseExpr::Real(c) if *c != 0.0 => Some(scale(linear_terms(a)?, 1.0 / c)),
            _ => None,
        },
        _ => None,
    }
}

/// Merges linear combinations of stencils of one field into single stencils.
pub fn fuse_stencils(graph: &Graph) -> Graph {
    let users = user_counts(graph);
    rebuild(graph, |graph, id| {
        let node = graph.node(id);
        let NodeKind::Pointwise(expr) = &node.kind else {
            return Action::Keep;
        };
        let Some(terms) = linear_terms(expr) else {
            return Action::Keep;
        };
        let inputs = graph.inputs(id);
        if inputs.len() < 2 {
            return Action::Keep;
        }
        let mut source = None;
        let mut radius: Option<Vec<usize>> = None;
        for input in &inputs {
            let input_node = graph.node(*input);
            let NodeKind::Stencil(stencil) = &input_node.kind else {
                return Action::Keep;
            };
            let read = graph.inputs(*input)[0];
            if users[input] != 1
                || input_node.value != node.value
                || source.is_some_and(|s| s != read)
            {
                return Action::Keep;
            }
            if radius.as_ref().is_some_and(|r| *r != stencil.radius) {
                return Action::Keep;
            }
            source = Some(read);
            radius = Some(stencil.radius.clone());
        }
        let (Some(source), Some(radius)) = (source, radius) else {
            return Action::Keep;
        };

        let mut taps: Vec<Tap> = Vec::new();
        let mut labels = Vec::new();
        for (index, coefficient) in terms {
            let NodeKind::Stencil(stencil) = &graph.node(inputs[index]).kind else {
                return Action::Keep;
            };
            labels.push(if coefficient == 1.0 {
                stencil.label.clone()
            } else {
                format!("{coefficient}·{}", stencil.label)
            });
            for tap in &stencil.taps {
                match taps.iter_mut().find(|t| t.offset == tap.offset) {
                    Some(existing) => existing.weight += coefficient * tap.weight,
                    None => taps.push(Tap {
                        offset: tap.offset.clone(),
                        weight: coefficient * tap.weight,
                    }),
                }
            }
        }
        taps.retain(|t| t.weight != 0.0);
        if taps.is_empty() {
            return Action::Keep;
        }
        let fused = Stencil {
            label: labels.join(" + "),
            taps,
            radius,
        };
        Action::Replace(
            Node {
                kind: NodeKind::Stencil(fused),
                value: node.value.clone(),
            },
            vec![source],
        )
    })
}
