//! Before/after tests of the optimization passes: each pass changes the graph as its documentation
//! says, the result passes `npdec_ir::verify`, and the interpreter computes the same right-hand
//! sides before and after.

mod common;

use common::{random_states, relative_error, solve_graph, Rng};
use npdec_ir::graph::{Graph, Node, NodeId, NodeKind, PointwiseExpr};
use npdec_ir::verify;
use npdec_jit::passes::{
    eliminate_common_subexpressions, eliminate_dead_nodes, factor_coefficients, fold_constants,
    fuse_pointwise, fuse_stencils, optimize_with, PASSES,
};
use npdec_runtime::evaluate::Evaluator;
use npdec_symbolic::{BinaryOp, Function};

fn model(rhs: &str) -> String {
    format!(
        "model passes\ngrid (x, y) in [0, 1] points 14\nfield u(x, y)\nconst nu = 0.05\n\
         equation e: dt(u) = {rhs}\nboundary u: dirichlet(0) on x\nboundary u: neumann(0.5) on y\n\
         initial u = 0.5\nsolve e using euler(dt = 1e-5) until 5e-5 order 4\n"
    )
}

/// Returns a copy of `graph` with pointwise nodes `exprs` (each reading the previous value as
/// `in0`) inserted between the time step and its right-hand side, as a less tidy front end would
/// leave them.
fn with_chain(graph: &Graph, exprs: &[PointwiseExpr]) -> Graph {
    let mut copy = Graph::new(
        graph.name.clone(),
        graph.axes.clone(),
        graph.fields.clone(),
        graph.params.clone(),
    );
    let mut mapped = std::collections::HashMap::new();
    for id in graph.node_ids() {
        let mut inputs: Vec<NodeId> = graph.inputs(id).iter().map(|i| mapped[i]).collect();
        if let NodeKind::TimeStep(_) = graph.node(id).kind {
            for expr in exprs {
                let value = copy.node(inputs[0]).value.clone();
                inputs[0] = copy.add_node(
                    Node {
                        kind: NodeKind::Pointwise(expr.clone()),
                        value,
                    },
                    &[inputs[0]],
                );
            }
        }
        mapped.insert(id, copy.add_node(graph.node(id).clone(), &inputs));
    }
    verify(&copy).expect("the chained graph is valid");
    copy
}

fn input() -> PointwiseExpr {
    PointwiseExpr::Input {
        index: 0,
        channel: None,
    }
}

fn binary(op: BinaryOp, a: PointwiseExpr, b: PointwiseExpr) -> PointwiseExpr {
    PointwiseExpr::Binary(op, Box::new(a), Box::new(b))
}

/// Returns the pointwise nodes the right-hand sides depend on.
fn rhs_pointwise(graph: &Graph) -> usize {
    let (step, _) = graph.time_step().expect("time step");
    graph
        .evaluation_order(&graph.inputs(step))
        .iter()
        .filter(|id| matches!(graph.node(**id).kind, NodeKind::Pointwise(_)))
        .count()
}

fn count(graph: &Graph, predicate: impl Fn(&NodeKind) -> bool) -> usize {
    graph.find(predicate).len()
}

fn stencils(graph: &Graph) -> usize {
    count(graph, |k| matches!(k, NodeKind::Stencil(_)))
}

/// Returns the interpreter's right-hand sides of a graph on a fixed random state.
fn right_hand_sides(graph: &Graph) -> Vec<npdec_runtime::Value<f64>> {
    let (step, _) = graph.time_step().expect("time step");
    let roots = graph.inputs(step);
    let states = random_states::<f64>(graph, &mut Rng(11));
    let values = Evaluator::<f64>::new(graph, &roots).evaluate(&states, 0.25);
    roots
        .iter()
        .map(|r| values[r.index()].clone().expect("root value"))
        .collect()
}

/// Asserts that a rewritten graph verifies and computes what the original computes.
fn assert_equivalent(before: &Graph, after: &Graph) {
    if let Err(errors) = verify(after) {
        panic!(
            "the rewritten graph is invalid: {errors:?}\n{}",
            npdec_ir::dump_graph(after)
        );
    }
    for (a, b) in right_hand_sides(after)
        .iter()
        .zip(right_hand_sides(before).iter())
    {
        let error = relative_error(a, b);
        assert!(error <= 1e-12, "values changed by {error:e}");
    }
}

#[test]
fn fold_constants_removes_unit_factor() {
    let unit = binary(
        BinaryOp::Mul,
        binary(
            BinaryOp::Mul,
            PointwiseExpr::Real(2.0),
            PointwiseExpr::Real(0.5),
        ),
        input(),
    );
    let before = with_chain(&solve_graph(&model("laplace(u)")), &[unit]);
    assert_eq!(rhs_pointwise(&before), 1);
    let after = fold_constants(&before);
    assert_equivalent(&before, &after);
    assert_eq!(rhs_pointwise(&after), 0, "{}", npdec_ir::dump_graph(&after));
}

#[test]
fn common_subexpressions_merge_boundaries() {
    let before = solve_graph(&model("nu * laplace(u) + nu * laplace(u)"));
    let after = eliminate_common_subexpressions(&before);
    assert_equivalent(&before, &after);
    let boundaries = |g: &Graph| count(g, |k| matches!(k, NodeKind::Boundary { .. }));
    assert_eq!(boundaries(&after), 1);
    assert!(after.node_count() <= before.node_count());
}

#[test]
fn factor_coefficients_scales_weights() {
    let scale = binary(BinaryOp::Mul, PointwiseExpr::Real(0.05), input());
    let before = with_chain(&solve_graph(&model("laplace(u)")), &[scale]);
    let after = factor_coefficients(&before);
    assert_equivalent(&before, &after);
    assert_eq!(rhs_pointwise(&before), 1);
    assert_eq!(rhs_pointwise(&after), 0, "{}", npdec_ir::dump_graph(&after));
    assert_eq!(stencils(&after), 1);
    let NodeKind::Stencil(stencil) = &after
        .node(after.find(|k| matches!(k, NodeKind::Stencil(_)))[0])
        .kind
    else {
        unreachable!()
    };
    let NodeKind::Stencil(original) = &before
        .node(before.find(|k| matches!(k, NodeKind::Stencil(_)))[0])
        .kind
    else {
        unreachable!()
    };
    let ratio = stencil.taps[0].weight / original.taps[0].weight;
    assert!((ratio - 0.05).abs() < 1e-15, "ratio {ratio}");
}

#[test]
fn fuse_stencils_merges_second_derivatives() {
    let before = solve_graph(&model("2 * diff(u, x, 2) - diff(u, y, 2)"));
    let after = fuse_stencils(&before);
    assert_equivalent(&before, &after);
    assert!(stencils(&before) >= 2, "{}", npdec_ir::dump_graph(&before));
    assert_eq!(stencils(&after), 1, "{}", npdec_ir::dump_graph(&after));
}

#[test]
fn fuse_pointwise_joins_chains() {
    let square = binary(BinaryOp::Pow, input(), PointwiseExpr::Real(2.0));
    let tanh = PointwiseExpr::Call(
        Function::Tanh,
        vec![binary(BinaryOp::Add, input(), PointwiseExpr::Real(1.0))],
    );
    let before = with_chain(&solve_graph(&model("nu * laplace(u) + u")), &[square, tanh]);
    let after = fuse_pointwise(&before);
    assert_equivalent(&before, &after);
    assert_eq!(
        rhs_pointwise(&before) - rhs_pointwise(&after),
        2,
        "{}",
        npdec_ir::dump_graph(&after)
    );
}

#[test]
fn dead_nodes_disappear() {
    // A graph with an unused stencil: the interpreter and the verifier see only what the sinks
    // read, so the rebuilt graph must lose exactly that node.
    let graph = solve_graph(&model("nu * laplace(u)"));
    let mut before = Graph::new(
        graph.name.clone(),
        graph.axes.clone(),
        graph.fields.clone(),
        graph.params.clone(),
    );
    let mut mapped = std::collections::HashMap::new();
    for id in graph.node_ids() {
        let inputs: Vec<NodeId> = graph.inputs(id).iter().map(|i| mapped[i]).collect();
        let new = before.add_node(graph.node(id).clone(), &inputs);
        if let NodeKind::Stencil(_) = graph.node(id).kind {
            before.add_node(graph.node(id).clone(), &inputs);
        }
        mapped.insert(id, new);
    }
    assert!(verify(&before).is_err(), "the unused copy breaks S3");
    let after = eliminate_dead_nodes(&before);
    assert_equivalent(&graph, &after);
    assert_eq!(after.node_count(), graph.node_count());
}

#[test]
fn pipeline_verifies_after_every_pass() {
    let sources = [
        model("nu * laplace(u) + u * (1 - u)"),
        model("2 * diff(u, x, 2) - diff(u, y, 2) + 0 * u"),
        model("div((1 + x) * grad(u)) + tanh(u)^2"),
        model("-upwind(0.5, u, x, order = 2) + nu * laplace(u^2)"),
    ];
    for source in &sources {
        let before = solve_graph(source);
        let mut visited = Vec::new();
        let after = optimize_with(&before, &mut |pass, graph| {
            if let Err(errors) = verify(graph) {
                panic!(
                    "invalid after {pass}: {errors:?}\n{}",
                    npdec_ir::dump_graph(graph)
                );
            }
            visited.push(pass.to_string());
        });
        assert_eq!(visited, PASSES);
        assert_equivalent(&before, &after);
        assert!(after.node_count() <= before.node_count());
    }
}

#[test]
fn optimized_heat_is_one_stencil() {
    let before = with_chain(
        &solve_graph(&model("diff(u, x, 2) + diff(u, y, 2)")),
        &[binary(BinaryOp::Mul, input(), PointwiseExpr::Real(0.05))],
    );
    let after = npdec_jit::passes::optimize(&before);
    assert_equivalent(&before, &after);
    assert_eq!(rhs_pointwise(&after), 0, "{}", npdec_ir::dump_graph(&after));
    assert_eq!(stencils(&after), 1);
}
