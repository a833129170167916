//! Pointwise fusion: a pointwise node used only by another pointwise node is substituted into its
//! user's expression, so the pair is one sweep with no array in between.
//!
//! ```text
//! before:  %2 = pointwise in0 ^ 2 (%1)        %3 = pointwise tanh(in0) + in1 (%2, %0)
//! after:   %3 = pointwise tanh(in0 ^ 2) + in1 (%1, %0)
//! ```
//!
//! The substitution evaluates the same operations in the same order, so values do not change. It
//! applies when the producer is a grid value of the user's type and the user reads it whole (no
//! channel selection) or the producer has one channel. Fusing pointwise work into the stencil
//! sweeps that feed it happens in the JIT's lowering, which computes a stencil read by a pointwise
//! node inside that node's sweep.

use super::rebuild::{rebuild, user_counts, Action};
use npdec_ir::graph::{Graph, Grid, Node, NodeId, NodeKind, PointwiseExpr};

/// Renumbers the inputs of an expression.
fn renumber(expr: &PointwiseExpr, map: &dyn Fn(usize) -> usize) -> PointwiseExpr {
    match expr {
        PointwiseExpr::Input { index, channel } => PointwiseExpr::Input {
            index: map(*index),
            channel: *channel,
        },
        PointwiseExpr::Real(_)
        | PointwiseExpr::Complex(..)
        | PointwiseExpr::Coordinate(_)
        | PointwiseExpr::Time => expr.clone(),
        PointwiseExpr::Unary(op, a) => PointwiseExpr::Unary(*op, Box::new(renumber(a, map))),
        PointwiseExpr::Binary(op, a, b) => {
            PointwiseExpr::Binary(*op, Box::new(renumber(a, map)), Box::new(renumber(b, map)))
        }
        PointwiseExpr::Compare(op, a, b) => {
            PointwiseExpr::Compare(*op, Box::new(renumber(a, map)), Box::new(renumber(b, map)))
        }
        PointwiseExpr::Call(f, args) => {
            PointwiseExpr::Call(*f, args.iter().map(|a| renumber(a, map)).collect())
        }
    }
}

/// Replaces reads of input `target` by `replacement`.
fn substitute(expr: &PointwiseExpr, target: usize, replacement: &PointwiseExpr) -> PointwiseExpr {
    match expr {
        PointwiseExpr::Input { index, .. } if *index == target => replacement.clone(),
        PointwiseExpr::Input { .. }
        | PointwiseExpr::Real(_)
        | PointwiseExpr::Complex(..)
        | PointwiseExpr::Coordinate(_)
        | PointwiseExpr::Time => expr.clone(),
        PointwiseExpr::Unary(op, a) => {
            PointwiseExpr::Unary(*op, Box::new(substitute(a, target, replacement)))
        }
        PointwiseExpr::Binary(op, a, b) => PointwiseExpr::Binary(
            *op,
            Box::new(substitute(a, target, replacement)),
            Box::new(substitute(b, target, replacement)),
        ),
        PointwiseExpr::Compare(op, a, b) => PointwiseExpr::Compare(
            *op,
            Box::new(substitute(a, target, replacement)),
            Box::new(substitute(b, target, replacement)),
        ),
        PointwiseExpr::Call(f, args) => PointwiseExpr::Call(
            *f,
            args.iter()
                .map(|a| substitute(a, target, replacement))
                .collect(),
        ),
    }
}

/// Returns true when every read of input `index` in `expr` satisfies `accept(channel)`.
fn reads_of(expr: &PointwiseExpr, index: usize, accept: &dyn Fn(Option<usize>) -> bool) -> bool {
    let mut ok = true;
    expr.walk(&mut |e| {
        if let PointwiseExpr::Input { index: i, channel } = e {
            if *i == index && !accept(*channel) {
                ok = false;
            }
        }
    });
    ok
}

/// Substitutes single-use pointwise producers into their pointwise users, repeatedly.
pub fn fuse_pointwise(graph: &Graph) -> Graph {
    let users = user_counts(graph);
    // Expressions and inputs after fusion, by node, so chains fuse in one pass.
    let mut fused: std::collections::HashMap<NodeId, (PointwiseExpr, Vec<NodeId>)> =
        std::collections::HashMap::new();
    rebuild(graph, |graph, id| {
        let node = graph.node(id);
        let NodeKind::Pointwise(original) = &node.kind else {
            return Action::Keep;
        };
        if node.value.complex {
            return Action::Keep;
        }
        let mut expr = original.clone();
        let mut inputs = graph.inputs(id);
        let mut changed = false;
        let mut position = 0;
        while position < inputs.len() {
            let producer = inputs[position];
            let producer_node = graph.node(producer);
            let candidate = matches!(producer_node.kind, NodeKind::Pointwise(_))
                && users[&producer] == 1
                && matches!(producer_node.value.grid, Grid::Points { .. })
                && producer_node.value.grid == node.value.grid
                && !producer_node.value.complex
                && (producer_node.value.channels == 1
                    || reads_of(&expr, position, &|c| c.is_none()));
            if !candidate {
                position += 1;
                continue;
            }
            let (producer_expr, producer_inputs) = match fused.get(&producer) {
                Some(done) => done.clone(),
                None => match &producer_node.kind {
                    NodeKind::Pointwise(e) => (e.clone(), graph.inputs(producer)),
                    _ => unreachable!("the candidate test checked for a pointwise node"),
                },
            };
            // The producer's inputs go after the user's, skipping ones already present.
            let mut map = Vec::new();
            for input in &producer_inputs {
                match inputs.iter().position(|i| i == input) {
                    Some(p) => map.push(p),
                    None => {
                        inputs.push(*input);
                        map.push(inputs.len() - 1);
                    }
                }
            }
            let replacement = renumber(&producer_expr, &|i| map[i]);
            expr = substitute(&expr, position, &replacement);
            changed = true;
            position += 1;
        }
        if !changed {
            return Action::Keep;
        }
        // Drop operands no longer read and renumber the rest densely.
        let mut used = vec![false; inputs.len()];
        expr.walk(&mut |e| {
            if let PointwiseExpr::Input { index, .. } = e {
                used[*index] = true;
            }
        });
        let kept: Vec<usize> = (0..inputs.len()).filter(|i| used[*i]).collect();
        let expr = renumber(&expr, &|i| kept.iter().position(|k| *k == i).unwrap_or(i));
        let inputs: Vec<NodeId> = kept.iter().map(|i| inputs[*i]).collect();
        fused.insert(id, (expr.clone(), inputs.clone()));
        Action::Replace(
            Node {
                kind: NodeKind::Pointwise(expr),
                value: node.value.clone(),
            },
            inputs,
        )
    })
}
