//! Dead-node elimination: removes every node that no sink (`initial`, `time_step`, `expect`)
//! depends on.
//!
//! ```text
//! before:  %2 = stencil d/dx (%1)   with no users       after:  (gone)
//! ```
//!
//! Other passes leave such nodes behind when they bypass one; `npdec_ir::verify` rejects them
//! (invariant S3).

use super::rebuild::{rebuild, Action};
use npdec_ir::graph::Graph;

/// Removes the nodes no sink depends on.
pub fn eliminate_dead_nodes(graph: &Graph) -> Graph {
    rebuild(graph, |_, _| Action::Keep)
}
