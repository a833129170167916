//! Common-subexpression elimination: nodes of equal kind and type that read the same inputs are
//! computed once.
//!
//! ```text
//! before:  %1 = boundary u (%0)   %2 = boundary u (%0)   %3 = stencil d2/dx2 (%1)   %4 = stencil d2/dx2 (%2)
//! after:   %1 = boundary u (%0)   %3 = stencil d2/dx2 (%1), read wherever %4 was
//! ```
//!
//! Parameters are never merged: each parameter node draws its own random values. Sinks are never
//! merged either.

use super::rebuild::{rebuild, stable_order, Action};
use npdec_ir::graph::{Graph, NodeId, NodeKind};
use std::collections::HashMap;

/// Merges nodes that compute the same value.
pub fn eliminate_common_subexpressions(graph: &Graph) -> Graph {
    // Representatives are found in topological order, so inputs are already canonical.
    let mut canonical: HashMap<NodeId, NodeId> = HashMap::new();
    let mut seen: HashMap<String, NodeId> = HashMap::new();
    for id in stable_order(graph) {
        let node = graph.node(id);
        let mergeable = match &node.kind {
            NodeKind::Param { .. }
            | NodeKind::Initial { .. }
            | NodeKind::TimeStep(_)
            | NodeKind::Expect { .. } => false,
            NodeKind::State { .. }
            | NodeKind::Boundary { .. }
            | NodeKind::Pointwise(_)
            | NodeKind::Stencil(_)
            | NodeKind::DivGrad { .. }
            | NodeKind::Upwind { .. }
            | NodeKind::Dense
            | NodeKind::Resample { .. }
            | NodeKind::Convolution { .. }
            | NodeKind::Reduce(_) => true,
        };
        if !mergeable {
            continue;
        }
        let inputs: Vec<usize> = graph
            .inputs(id)
            .iter()
            .map(|i| canonical.get(i).copied().unwrap_or(*i).index())
            .collect();
        // The debug form spells out every field, floats included, so equal keys mean equal nodes.
        let key = format!("{:?}|{:?}|{inputs:?}", node.kind, node.value);
        match seen.get(&key) {
            Some(first) => {
                canonical.insert(id, *first);
            }
            None => {
                seen.insert(key, id);
            }
        }
    }
    rebuild(graph, |_, id| match canonical.get(&id) {
        Some(first) => Action::Forward(*first),
        None => Action::Keep,
    })
}
