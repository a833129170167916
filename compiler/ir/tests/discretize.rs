//! Discretization: golden IR dumps, the verifier on discretized graphs, graph size independent of
//! the grid, and diagnostics for models that cannot be discretized.

use npdec_ir::model_builder::{expr::*, ModelBuilder};
use npdec_ir::{discretize_model, dump_graph, verify, NodeKind};
use npdec_symbolic::{BoundaryKind, Model, Scheme, Side};
use std::path::PathBuf;

fn heat_2d(points: usize, order: u8) -> Model {
    let mut b = ModelBuilder::new("heat2d");
    let x = b.interval("x", 0.0, 1.0, points);
    let y = b.periodic("y", 0.0, 1.0, points);
    let u = b.field("u", &[x, y]);
    let eq = b.equation(
        u,
        1,
        vec![
            mul(real(0.1), laplace(field(u))),
            neg(upwind(real(1.0), field(u), y, 2)),
        ],
    );
    b.boundary(u, x, Side::Min, BoundaryKind::Dirichlet(sin(coordinate(y))));
    b.boundary(u, x, Side::Max, BoundaryKind::Neumann(real(0.0)));
    b.initial(u, 0, mul(coordinate(x), cos(coordinate(y))));
    b.solve(&[eq], Scheme::Rk4, 1e-4, 10, order);
    b.expect(
        "max(u) < 2",
        less(
            npdec_ir::model_builder::expr::reduce(npdec_symbolic::ReduceOp::Max, field(u)),
            real(2.0),
        ),
    );
    b.build()
}

/// Compares `actual` with the golden file, or rewrites the file when `NPDEC_BLESS=1`.
fn check_golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var("NPDEC_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, actual).expect("writes golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing {}; run with NPDEC_BLESS=1", path.display()));
    assert_eq!(
        expected,
        actual,
        "golden file {} differs; rerun with NPDEC_BLESS=1 to accept",
        path.display()
    );
}

#[test]
fn heat_2d_dump_matches_golden() {
    let program = discretize_model(&heat_2d(9, 4)).expect("discretizes");
    check_golden("heat2d_order4.txt", &dump_graph(&program.solves[0]));
    check_golden("heat2d_expects.txt", &dump_graph(&program.expects));
}

#[test]
fn discretized_graphs_verify() {
    for order in [2, 4, 6, 8] {
        let program = discretize_model(&heat_2d(17, order)).expect("discretizes");
        verify(&program.solves[0]).unwrap_or_else(|e| panic!("order {order}: {e:?}"));
        verify(&program.expects).expect("expect graph verifies");
    }
}

#[test]
fn graph_size_independent_of_grid() {
    let small = discretize_model(&heat_2d(16, 4)).unwrap();
    let large = discretize_model(&heat_2d(1024, 4)).unwrap();
    let (small, large) = (&small.solves[0], &large.solves[0]);
    assert_eq!(small.node_count(), large.node_count());
    let taps = |g: &npdec_ir::Graph| -> usize {
        g.node_ids()
            .iter()
            .map(|id| match &g.node(*id).kind {
                NodeKind::Stencil(s) => s.taps.len(),
                _ => 0,
            })
            .sum()
    };
    assert_eq!(taps(small), taps(large));
}

#[test]
fn verifier_reports_broken_halo() {
    let mut graph = discretize_model(&heat_2d(9, 2)).unwrap().solves.remove(0);
    let stencil = graph.find(|k| matches!(k, NodeKind::Stencil(_)))[0];
    if let NodeKind::Stencil(s) = &mut graph.node_mut(stencil).kind {
        s.radius = vec![3, 3];
    }
    let errors = verify(&graph).unwrap_err();
    assert!(
        errors.iter().any(|e| e.message.starts_with("T4")),
        "{errors:?}"
    );
}

#[test]
fn invalid_space_order_is_reported() {
    let errors = discretize_model(&heat_2d(9, 3)).unwrap_err();
    assert_eq!(errors[0].code, npdec_diagnostics::Code::E0230);
}

#[test]
fn missing_boundary_condition_is_reported() {
    let mut b = ModelBuilder::new("heat");
    let x = b.interval("x", 0.0, 1.0, 11);
    let u = b.field("u", &[x]);
    let eq = b.equation(u, 1, vec![laplace(field(u))]);
    b.boundary(u, x, Side::Min, BoundaryKind::Dirichlet(real(0.0)));
    b.initial(u, 0, real(0.0));
    b.solve(&[eq], Scheme::Euler, 1e-3, 1, 2);
    let errors = discretize_model(&b.build()).unwrap_err();
    assert_eq!(errors[0].code, npdec_diagnostics::Code::E0221);
}

#[test]
fn field_outside_reduction_in_expect_is_reported() {
    let mut b = ModelBuilder::new("heat");
    let x = b.interval("x", 0.0, 1.0, 11);
    let u = b.field("u", &[x]);
    b.expect("u < 1", less(field(u), real(1.0)));
    let errors = discretize_model(&b.build()).unwrap_err();
    assert_eq!(errors[0].code, npdec_diagnostics::Code::E0202);
    assert!(errors[0].help.as_deref().unwrap().contains("max"));
}
