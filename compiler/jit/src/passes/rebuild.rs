//! Graph rewriting by reconstruction: `npdec_ir::Graph` can add nodes but not remove them or move
//! edges, so every pass builds a new graph from the old one, node by node, and keeps only the
//! nodes a sink still depends on.
//!
//! NOTE: the rebuilt graph numbers its nodes anew, and the interpreter seeds random parameter
//! values by node index, so a parameter drawn from a random initializer gets other values after
//! any pass that removes a node before it.

use npdec_ir::graph::{Graph, Node, NodeId, NodeKind};
use std::collections::HashMap;

/// The fate of one node of the old graph.
pub enum Action {
    Keep,
    /// Every use of the node reads this earlier node of the old graph instead.
    Forward(NodeId),
    /// A new node whose inputs are nodes of the old graph that come earlier.
    Replace(Node, Vec<NodeId>),
    /// A new node whose inputs are fresh nodes, each with inputs from the old graph, added just
    /// before it.
    ReplaceWithFresh(Node, Vec<Operand>),
}

/// An input of a node built by [`Action::ReplaceWithFresh`]: a new node and its old-graph inputs.
pub enum Operand {
    Fresh(Node, Vec<NodeId>),
}

/// Returns the nodes in insertion order when that order is topological (as discretization builds
/// graphs), else in a topological order.
pub fn stable_order(graph: &Graph) -> Vec<NodeId> {
    let ids = graph.node_ids();
    let position: HashMap<NodeId, usize> = ids.iter().enumerate().map(|(p, id)| (*id, p)).collect();
    let topological = ids
        .iter()
        .all(|id| graph.inputs(*id).iter().all(|i| position[i] < position[id]));
    if topological {
        ids
    } else {
        graph.topological_order().unwrap_or(ids)
    }
}

fn is_sink(kind: &NodeKind) -> bool {
    match kind {
        NodeKind::Initial { .. } | NodeKind::TimeStep(_) | NodeKind::Expect { .. } => true,
        NodeKind::State { .. }
        | NodeKind::Param { .. }
        | NodeKind::Boundary { .. }
        | NodeKind::Pointwise(_)
        | NodeKind::Stencil(_)
        | NodeKind::DivGrad { .. }
        | NodeKind::Upwind { .. }
        | NodeKind::Dense
        | NodeKind::Resample { .. }
        | NodeKind::Convolution { .. }
        | NodeKind::Reduce(_) => false,
    }
}

/// Builds a new graph by asking `decide` about every node, in a topological order of the old
/// graph, and drops every node that no sink depends on.
///
/// `decide` reads the old graph and may only name nodes that come earlier in that order.
pub fn rebuild(graph: &Graph, mut decide: impl FnMut(&Graph, NodeId) -> Action) -> Graph {
    let order = stable_order(graph);

    // Decide first, so that liveness can follow the rewritten inputs.
    let mut actions: HashMap<NodeId, Action> = HashMap::new();
    for id in &order {
        actions.insert(*id, decide(graph, *id));
    }
    let resolve = |mut id: NodeId, actions: &HashMap<NodeId, Action>| {
        while let Some(Action::Forward(target)) = actions.get(&id) {
            id = *target;
        }
        id
    };
    let inputs_of = |id: NodeId, actions: &HashMap<NodeId, Action>| -> Vec<NodeId> {
        let raw = match &actions[&id] {
            Action::Replace(_, inputs) => inputs.clone(),
            Action::ReplaceWithFresh(_, operands) => operands
                .iter()
                .flat_map(|o| match o {
                    Operand::Fresh(_, inputs) => inputs.clone(),
                })
                .collect(),
            Action::Keep | Action::Forward(_) => graph.inputs(id),
        };
        raw.into_iter().map(|i| resolve(i, actions)).collect()
    };

    // Mark the nodes the sinks depend on.
    let mut live: HashMap<NodeId, bool> = HashMap::new();
    let mut stack: Vec<NodeId> = order
        .iter()
        .copied()
        .filter(|id| is_sink(&graph.node(*id).kind))
        .collect();
    while let Some(id) = stack.pop() {
        if live.insert(id, true).is_none() {
            stack.extend(inputs_of(id, &actions));
        }
    }

    let mut rebuilt = Graph::new(
        graph.name.clone(),
        graph.axes.clone(),
        graph.fields.clone(),
        graph.params.clone(),
    );
    let mut mapped: HashMap<NodeId, NodeId> = HashMap::new();
    for id in &order {
        if !live.contains_key(id) || matches!(actions[id], Action::Forward(_)) {
            continue;
        }
        if let Action::ReplaceWithFresh(node, operands) = &actions[id] {
            let mut inputs = Vec::new();
            for operand in operands {
                inputs.push(match operand {
                    Operand::Fresh(fresh, fresh_inputs) => {
                        let fresh_inputs: Vec<NodeId> = fresh_inputs
                            .iter()
                            .map(|i| mapped[&resolve(*i, &actions)])
                            .collect();
                        rebuilt.add_node(fresh.clone(), &fresh_inputs)
                    }
                });
            }
            mapped.insert(*id, rebuilt.add_node(node.clone(), &inputs));
            continue;
        }
        let inputs: Vec<NodeId> = inputs_of(*id, &actions).iter().map(|i| mapped[i]).collect();
        let node = match &actions[id] {
            Action::Replace(node, _) => node.clone(),
            Action::Keep | Action::Forward(_) | Action::ReplaceWithFresh(..) => {
                graph.node(*id).clone()
            }
        };
        mapped.insert(*id, rebuilt.add_node(node, &inputs));
    }
    rebuilt
}

/// Returns the number of users of every node.
pub fn user_counts(graph: &Graph) -> HashMap<NodeId, usize> {
    graph
        .node_ids()
        .into_iter()
        .map(|id| (id, graph.users(id).len()))
        .collect()
}
