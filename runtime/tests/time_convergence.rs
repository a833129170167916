//! Observed orders of the time schemes. The references are exact solutions of the *space-discrete*
//! problem (a single discrete eigenmode), so the measured error is the time error alone.

mod support;

use npdec_ir::model_builder::{expr::*, ModelBuilder};
use npdec_runtime::Precision;
use npdec_symbolic::{Function, Scheme};
use std::f64::consts::PI;
use support::{assert_orders, error_of, run};

/// The eigenvalue of the order-2 discrete `d²/dx²` for the mode `sin(kx)` on spacing `h`.
fn discrete_eigenvalue(k: f64, h: f64) -> f64 {
    -4.0 / (h * h) * (k * h / 2.0).sin().powi(2)
}

/// `u_t = ν Δu` on `[0, 1]^dims` with zero Dirichlet values and a `sin(πx)…` mode.
fn heat_time(dims: usize, scheme: Scheme, steps: usize, until: f64, precision: Precision) -> f64 {
    let (nu, points) = (0.5, 11);
    let h = 1.0 / (points - 1) as f64;
    let mut b = ModelBuilder::new("heat");
    let axes: Vec<_> = ["x", "y"][..dims]
        .iter()
        .map(|name| b.interval(name, 0.0, 1.0, points))
        .collect();
    let u = b.field("u", &axes);
    let eq = b.equation(u, 1, vec![mul(real(nu), laplace(field(u)))]);
    b.dirichlet_everywhere(u, real(0.0));
    let mode = axes
        .iter()
        .map(|a| sin(mul(real(PI), coordinate(*a))))
        .reduce(mul)
        .unwrap();
    b.initial(u, 0, mode.clone());
    b.solve(&[eq], scheme, until / steps as f64, steps, 2);
    let rate = nu * dims as f64 * discrete_eigenvalue(PI, h);
    b.expect(
        "error",
        less(
            max_error(field(u), mul(exp(mul(real(rate), time())), mode)),
            real(1.0),
        ),
    );
    error_of(b, precision)
}

fn orders_of(
    scheme: Scheme,
    dims: usize,
    steps: [usize; 3],
    until: f64,
    precision: Precision,
    expected: f64,
) {
    let name = format!("{} {dims}-D {precision:?}", scheme.name());
    let errors: Vec<f64> = steps
        .iter()
        .map(|n| heat_time(dims, scheme.clone(), *n, until, precision))
        .collect();
    assert_orders(&name, &errors, 2.0, expected);
}

#[test]
fn euler_first_order_1d_and_2d() {
    orders_of(Scheme::Euler, 1, [40, 80, 160], 0.2, Precision::F64, 1.0);
    orders_of(Scheme::Euler, 2, [80, 160, 320], 0.2, Precision::F64, 1.0);
}

#[test]
fn euler_first_order_f32() {
    orders_of(Scheme::Euler, 1, [40, 80, 160], 0.2, Precision::F32, 1.0);
}

#[test]
fn rk4_fourth_order_1d_and_2d() {
    orders_of(Scheme::Rk4, 1, [20, 40, 80], 0.2, Precision::F64, 4.0);
    orders_of(Scheme::Rk4, 2, [80, 160, 320], 0.4, Precision::F64, 4.0);
}

#[test]
fn crank_nicolson_second_order_1d_and_2d() {
    orders_of(
        Scheme::CrankNicolson,
        1,
        [10, 20, 40],
        0.2,
        Precision::F64,
        2.0,
    );
    orders_of(
        Scheme::CrankNicolson,
        2,
        [10, 20, 40],
        0.2,
        Precision::F64,
        2.0,
    );
}

#[test]
fn crank_nicolson_second_order_f32() {
    orders_of(
        Scheme::CrankNicolson,
        1,
        [5, 10, 20],
        0.2,
        Precision::F32,
        2.0,
    );
}

#[test]
fn backward_euler_first_order_1d_and_2d() {
    orders_of(
        Scheme::BackwardEuler,
        1,
        [20, 40, 80],
        0.2,
        Precision::F64,
        1.0,
    );
    orders_of(
        Scheme::BackwardEuler,
        2,
        [20, 40, 80],
        0.2,
        Precision::F64,
        1.0,
    );
}

/// `u_tt = c² Δu` with zero Dirichlet values, at rest at `t = 0`.
fn wave_time(dims: usize, scheme: Scheme, steps: usize, until: f64) -> f64 {
    let (c, points) = (1.0, 11);
    let h = 1.0 / (points - 1) as f64;
    let mut b = ModelBuilder::new("wave");
    let axes: Vec<_> = ["x", "y"][..dims]
        .iter()
        .map(|name| b.interval(name, 0.0, 1.0, points))
        .collect();
    let u = b.field("u", &axes);
    let eq = b.equation(u, 2, vec![mul(real(c * c), laplace(field(u)))]);
    b.dirichlet_everywhere(u, real(0.0));
    let mode = axes
        .iter()
        .map(|a| sin(mul(real(PI), coordinate(*a))))
        .reduce(mul)
        .unwrap();
    b.initial(u, 0, mode.clone());
    b.initial(u, 1, real(0.0));
    b.solve(&[eq], scheme, until / steps as f64, steps, 2);
    let omega = (-(c * c) * dims as f64 * discrete_eigenvalue(PI, h)).sqrt();
    b.expect(
        "error",
        less(
            max_error(field(u), mul(cos(mul(real(omega), time())), mode)),
            real(1.0),
        ),
    );
    error_of(b, Precision::F64)
}

#[test]
fn leapfrog_second_order_1d_and_2d() {
    for dims in [1, 2] {
        let errors: Vec<f64> = [40, 80, 160]
            .iter()
            .map(|n| wave_time(dims, Scheme::Leapfrog, *n, 1.0))
            .collect();
        assert_orders(&format!("leapfrog {dims}-D"), &errors, 2.0, 2.0);
    }
}

#[test]
fn rk4_on_second_order_equation() {
    // At t = 0.5 the phase is near π/2, where the phase error (fourth order) shows rather than the
    // amplitude error (fifth order).
    let errors: Vec<f64> = [20, 40, 80]
        .iter()
        .map(|n| wave_time(1, Scheme::Rk4, *n, 0.5))
        .collect();
    assert_orders("rk4 wave", &errors, 2.0, 4.0);
}

/// Schrödinger `ψ_t = (i/2) Δψ − i V ψ` with `V = cos x` on a periodic axis, by split-step Fourier.
fn schrodinger_final(steps: usize) -> Vec<f64> {
    let mut b = ModelBuilder::new("schrodinger");
    let x = b.periodic("x", 0.0, 2.0 * PI, 64);
    let psi = b.field_with("psi", &[x], 1, true);
    let potential = cos(coordinate(x));
    let eq = b.equation(
        psi,
        1,
        vec![
            mul(complex(0.0, 0.5), laplace(field(psi))),
            mul(mul(complex(0.0, -1.0), potential), field(psi)),
        ],
    );
    b.initial(psi, 0, exp(cos(coordinate(x))));
    b.solve(&[eq], Scheme::SplitStep, 1.0 / steps as f64, steps, 2);
    b.expect(
        "norm",
        less(
            reduce(npdec_symbolic::ReduceOp::Norm, field(psi)),
            real(1e9),
        ),
    );
    run(&b.build(), Precision::F64).final_fields[0].1.clone()
}

#[test]
fn split_step_second_order_self_convergence() {
    let solutions: Vec<Vec<f64>> = [10, 20, 40, 80]
        .iter()
        .map(|n| schrodinger_final(*n))
        .collect();
    let differences: Vec<f64> = solutions
        .windows(2)
        .map(|w| {
            w[0].iter()
                .zip(&w[1])
                .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
        })
        .collect();
    assert_orders("split step", &differences, 2.0, 2.0);
}

#[test]
fn split_step_conserves_norm() {
    let mut b = ModelBuilder::new("schrodinger");
    let x = b.periodic("x", 0.0, 2.0 * PI, 64);
    let psi = b.field_with("psi", &[x], 1, true);
    let density = mul(abs(field(psi)), abs(field(psi)));
    let eq = b.equation(
        psi,
        1,
        vec![
            mul(complex(0.0, 0.5), laplace(field(psi))),
            mul(mul(complex(0.0, -1.0), density), field(psi)),
        ],
    );
    b.initial(psi, 0, exp(cos(coordinate(x))));
    b.solve(&[eq], Scheme::SplitStep, 0.01, 100, 2);
    let norm0 = (0..64)
        .map(|i| (2.0 * (2.0 * PI * i as f64 / 64.0).cos()).exp())
        .sum::<f64>()
        * 2.0
        * PI
        / 64.0;
    let norm = call(Function::Sqrt, real(norm0));
    b.expect(
        "norm",
        less(
            abs(sub(
                reduce(npdec_symbolic::ReduceOp::Norm, field(psi)),
                norm,
            )),
            real(1e-10),
        ),
    );
    let report = run(&b.build(), Precision::F64);
    assert!(report.expects[0].passed, "{:?}", report.expects);
}

/// `u_t = −v u_x` on a periodic axis with upwind differences; RK4 at a small step.
fn advection(points: usize, order: u8) -> f64 {
    let v = 1.0;
    let mut b = ModelBuilder::new("advection");
    let x = b.periodic("x", 0.0, 1.0, points);
    let u = b.field("u", &[x]);
    let eq = b.equation(u, 1, vec![neg(upwind(real(v), field(u), x, order))]);
    b.initial(u, 0, sin(mul(real(2.0 * PI), coordinate(x))));
    let h = 1.0 / points as f64;
    let until = 0.25;
    let steps = (until / (0.1 * h)).ceil() as usize;
    b.solve(&[eq], Scheme::Rk4, until / steps as f64, steps, 2);
    let exact = sin(mul(
        real(2.0 * PI),
        sub(coordinate(x), mul(real(v), time())),
    ));
    b.expect("error", less(max_error(field(u), exact), real(1.0)));
    error_of(b, Precision::F64)
}

#[test]
fn upwind_first_and_second_order() {
    let first: Vec<f64> = [64, 128, 256].iter().map(|n| advection(*n, 1)).collect();
    assert_orders("upwind order 1", &first, 2.0, 1.0);
    let second: Vec<f64> = [32, 64, 128].iter().map(|n| advection(*n, 2)).collect();
    assert_orders("upwind order 2", &second, 2.0, 2.0);
}
