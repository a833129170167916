//! Optimization passes over the dataflow IR, each one file with one public entry that returns the
//! rewritten graph, and [`optimize`], the pipeline that runs them in order.
//!
//! Every pass keeps the graph valid for `npdec_ir::verify`, and the tests verify after every pass.

pub mod eliminate_common_subexpressions;
pub mod eliminate_dead_nodes;
pub mod factor_coefficients;
pub mod fold_constants;
pub mod fuse_pointwise;
pub mod fuse_stencils;
mod rebuild;

pub use eliminate_common_subexpressions::eliminate_common_subexpressions;
pub use eliminate_dead_nodes::eliminate_dead_nodes;
pub use factor_coefficients::factor_coefficients;
pub use fold_constants::fold_constants;
pub use fuse_pointwise::fuse_pointwise;
pub use fuse_stencils::fuse_stencils;

use npdec_ir::graph::Graph;

/// The passes of [`optimize`] in the order it runs them, by the names `--dump-ir after:PASS`
/// takes.
pub const PASSES: [&str; 6] = [
    "fold_constants",
    "eliminate_common_subexpressions",
    "fuse_pointwise",
    "factor_coefficients",
    "fuse_stencils",
    "eliminate_dead_nodes",
];

/// Runs every pass in order and calls `after(pass, graph)` with each result, for dumps and for the
/// verifier in tests.
///
/// Folding comes first so the fusions see plain constants, and pointwise fusion runs before
/// factoring and stencil fusion, so that `ν · (s₁ + s₂)` written as two pointwise nodes reaches
/// them as one expression.
pub fn optimize_with(graph: &Graph, after: &mut dyn FnMut(&str, &Graph)) -> Graph {
    let graph = fold_constants(graph);
    after(PASSES[0], &graph);
    let graph = eliminate_common_subexpressions(&graph);
    after(PASSES[1], &graph);
    let graph = fuse_pointwise(&graph);
    after(PASSES[2], &graph);
    let graph = factor_coefficients(&graph);
    after(PASSES[3], &graph);
    let graph = fuse_stencils(&graph);
    after(PASSES[4], &graph);
    let graph = eliminate_dead_nodes(&graph);
    after(PASSES[5], &graph);
    graph
}

/// Runs every pass in order.
pub fn optimize(graph: &Graph) -> Graph {
    optimize_with(graph, &mut |_, _| {})
}
