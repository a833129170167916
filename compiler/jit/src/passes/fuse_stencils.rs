//! Stencil fusion: a linear combination of stencils of one field becomes one stencil, so one sweep
//! reads the field once.
//!
//! ```text
//! before:  %3 = stencil d2/dx2 (%1)   %4 = stencil d2/dy2 (%1)   %5 = pointwise 2 * in0 − in1 (%3, %4)
//! after:   %5 = stencil 2·d2/dx2 − d2/dy2 (%1)   taps at equal offsets added
//! ```
//!
//! Applies to a pointwise node whose expression is a sum of terms `c · in_k`, `in_k · c`,
//! `in_k / c`, `−in_k` or `in_k` with constant `c`, when every `in_k` is a stencil used only here,
//! of the pointwise node's type, and all read one node. Stencils that read different boundary
//! paddings of one state (`d2/dx2` padded along x, `d2/dy2` along y) fuse too: they then read a new
//! padding with, on each axis, the rules of the padding with the larger halo there. Its ghost
//! cells read by each stencil hold the values the original padding had, because each axis fills
//! its ghosts from the same nodes by the same rule.

use super::rebuild::{rebuild, user_counts, Action, Operand};
use npdec_ir::graph::{
    AxisPadding, Graph, Grid, Node, NodeId, NodeKind, PointwiseExpr, Stencil, Tap, ValueType,
};
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
        let mut sources = Vec::new();
        for input in &inputs {
            let input_node = graph.node(*input);
            if !matches!(input_node.kind, NodeKind::Stencil(_))
                || users[input] != 1
                || input_node.value != node.value
            {
                return Action::Keep;
            }
            let read = graph.inputs(*input)[0];
            if !sources.contains(&read) {
                sources.push(read);
            }
        }
        let Some(source) = common_source(graph, &sources) else {
            return Action::Keep;
        };
        let Grid::Points {
            halo: output_halo, ..
        } = &node.value.grid
        else {
            return Action::Keep;
        };
        let source_value = match &source {
            Source::Existing(id) => &graph.node(*id).value,
            Source::Merged(padding, _) => &padding.value,
        };
        let Grid::Points {
            halo: input_halo, ..
        } = &source_value.grid
        else {
            return Action::Keep;
        };
        let radius: Vec<usize> = input_halo
            .iter()
            .zip(output_halo)
            .map(|(i, o)| i - o)
            .collect();

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
        let fused = Node {
            kind: NodeKind::Stencil(Stencil {
                label: labels.join(" + "),
                taps,
                radius,
            }),
            value: node.value.clone(),
        };
        match source {
            Source::Existing(id) => Action::Replace(fused, vec![id]),
            Source::Merged(padding, state) => {
                Action::ReplaceWithFresh(fused, vec![Operand::Fresh(padding, vec![state])])
            }
        }
    })
}

/// The node a fused stencil reads.
enum Source {
    Existing(NodeId),
    /// A new boundary node and the state it pads.
    Merged(Node, NodeId),
}

/// Returns the one node all stencils read, or a boundary padding that serves them all when they
/// read paddings of one state whose rules agree on every axis where both have ghosts.
fn common_source(graph: &Graph, sources: &[NodeId]) -> Option<Source> {
    if let [only] = sources {
        return Some(Source::Existing(*only));
    }
    let mut merged: Option<(npdec_symbolic::FieldId, Vec<AxisPadding>, NodeId, ValueType)> = None;
    for source in sources {
        let node = graph.node(*source);
        let NodeKind::Boundary { field, axes } = &node.kind else {
            return None;
        };
        let state = graph.inputs(*source)[0];
        merged = Some(match merged {
            None => (*field, axes.clone(), state, node.value.clone()),
            Some((f, paddings, s, value)) => {
                if f != *field || s != state || paddings.len() != axes.len() {
                    return None;
                }
                let mut combined = Vec::new();
                for (a, b) in paddings.iter().zip(axes) {
                    let wider = if a.halo >= b.halo { a } else { b };
                    if a.halo == b.halo && a != b {
                        return None;
                    }
                    combined.push(wider.clone());
                }
                let Grid::Points {
                    axes: grid_axes, ..
                } = &value.grid
                else {
                    return None;
                };
                let halo = combined.iter().map(|p| p.halo).collect();
                let value = ValueType {
                    grid: Grid::Points {
                        axes: grid_axes.clone(),
                        halo,
                    },
                    ..value.clone()
                };
                (f, combined, s, value)
            }
        });
    }
    let (field, paddings, state, value) = merged?;
    Some(Source::Merged(
        Node {
            kind: NodeKind::Boundary {
                field,
                axes: paddings,
            },
            value,
        },
        state,
    ))
}
