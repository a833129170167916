//! Discretization cost against grid size: the IR stores stencils, not per-point data, so a 1024²
//! grid must discretize as fast as a 16² one.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use npdec_ir::discretize_model;
use npdec_ir::model_builder::{expr::*, ModelBuilder};
use npdec_symbolic::{Model, Scheme};

fn heat_2d(points: usize) -> Model {
    let mut b = ModelBuilder::new("heat2d");
    let x = b.interval("x", 0.0, 1.0, points);
    let y = b.interval("y", 0.0, 1.0, points);
    let u = b.field("u", &[x, y]);
    let eq = b.equation(
        u,
        1,
        vec![
            mul(real(0.1), laplace(field(u))),
            derivative(field(u), &[x, y]),
        ],
    );
    b.dirichlet_everywhere(u, real(0.0));
    b.initial(u, 0, mul(sin(coordinate(x)), sin(coordinate(y))));
    b.solve(&[eq], Scheme::Rk4, 1e-5, 10, 4);
    b.build()
}

fn discretize_by_grid_size(c: &mut Criterion) {
    let mut group = c.benchmark_group("discretize_heat2d_order4");
    for points in [16, 1024] {
        let model = heat_2d(points);
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{points}x{points}")),
            &model,
            |bench, model| bench.iter(|| discretize_model(model).map(|p| p.solves.len())),
        );
    }
    group.finish();
}

criterion_group!(benches, discretize_by_grid_size);
criterion_main!(benches);
