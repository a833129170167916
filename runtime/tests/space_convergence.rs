//! Observed orders of the space discretization against exact solutions, in 1-D and 2-D, for
//! Dirichlet, Neumann and periodic boundaries, with time errors made negligible (RK4 at a step far
//! below the stability limit).

mod support;

use npdec_ir::model_builder::{expr::*, ModelBuilder};
use npdec_runtime::Precision;
use npdec_symbolic::{BoundaryKind, ReduceOp, Scheme, Side};
use std::f64::consts::PI;
use support::{assert_orders, error_of};

#[derive(Clone, Copy, PartialEq)]
enum Boundary {
    Dirichlet,
    Neumann,
    Periodic,
}

/// Heat equation `u_t = ν u_xx` with one exact Fourier mode; returns the max error at `t = 0.02`.
fn heat_1d(points: usize, boundary: Boundary, order: u8, precision: Precision) -> f64 {
    let nu = 0.5;
    let mut b = ModelBuilder::new("heat1d");
    let x = match boundary {
        Boundary::Periodic => b.periodic("x", 0.0, 1.0, points),
        Boundary::Dirichlet | Boundary::Neumann => b.interval("x", 0.0, 1.0, points),
    };
    let u = b.field("u", &[x]);
    let eq = b.equation(u, 1, vec![mul(real(nu), laplace(field(u)))]);
    let (mode, k) = match boundary {
        Boundary::Dirichlet => (sin(mul(real(PI), coordinate(x))), PI),
        Boundary::Neumann => (cos(mul(real(PI), coordinate(x))), PI),
        Boundary::Periodic => (sin(mul(real(2.0 * PI), coordinate(x))), 2.0 * PI),
    };
    match boundary {
        Boundary::Dirichlet => b.dirichlet_everywhere(u, real(0.0)),
        Boundary::Neumann => {
            b.boundary(u, x, Side::Min, BoundaryKind::Neumann(real(0.0)));
            b.boundary(u, x, Side::Max, BoundaryKind::Neumann(real(0.0)));
        }
        Boundary::Periodic => {}
    }
    b.initial(u, 0, mode.clone());
    let h = 1.0 / (points - 1) as f64;
    let until = 0.02;
    let steps = ((until / (0.05 * h * h / nu)).ceil() as usize).max(10);
    b.solve(&[eq], Scheme::Rk4, until / steps as f64, steps, order);
    let exact = mul(exp(mul(real(-nu * k * k), time())), mode);
    b.expect("error", less(max_error(field(u), exact), real(1.0)));
    error_of(b, precision)
}

#[test]
fn heat_1d_dirichlet_order_2() {
    let errors: Vec<f64> = [11, 21, 41, 81]
        .iter()
        .map(|n| heat_1d(*n, Boundary::Dirichlet, 2, Precision::F64))
        .collect();
    assert_orders("dirichlet order 2", &errors, 2.0, 2.0);
}

#[test]
fn heat_1d_dirichlet_order_4() {
    let errors: Vec<f64> = [21, 41, 81]
        .iter()
        .map(|n| heat_1d(*n, Boundary::Dirichlet, 4, Precision::F64))
        .collect();
    assert_orders("dirichlet order 4", &errors, 2.0, 4.0);
}

#[test]
fn heat_1d_neumann_order_2() {
    let errors: Vec<f64> = [11, 21, 41, 81]
        .iter()
        .map(|n| heat_1d(*n, Boundary::Neumann, 2, Precision::F64))
        .collect();
    assert_orders("neumann order 2", &errors, 2.0, 2.0);
}

#[test]
fn heat_1d_neumann_order_4() {
    let errors: Vec<f64> = [21, 41, 81]
        .iter()
        .map(|n| heat_1d(*n, Boundary::Neumann, 4, Precision::F64))
        .collect();
    assert_orders("neumann order 4", &errors, 2.0, 4.0);
}

#[test]
fn heat_1d_periodic_orders_2_4_6() {
    for (order, expected) in [(2u8, 2.0), (4, 4.0), (6, 6.0)] {
        // Periodic grids exclude the right end point, so the spacing halves with the point count.
        let errors: Vec<f64> = [16, 32, 64]
            .iter()
            .map(|n| heat_1d_periodic(*n, order))
            .collect();
        assert_orders(&format!("periodic order {order}"), &errors, 2.0, expected);
    }
}

fn heat_1d_periodic(points: usize, order: u8) -> f64 {
    heat_1d(points, Boundary::Periodic, order, Precision::F64)
}

#[test]
fn heat_1d_dirichlet_f32_order_2() {
    let errors: Vec<f64> = [6, 11, 21]
        .iter()
        .map(|n| heat_1d(*n, Boundary::Dirichlet, 2, Precision::F32))
        .collect();
    assert_orders("dirichlet order 2 f32", &errors, 2.0, 2.0);
}

/// Heat equation on the unit square with a product mode; `boundaries` gives the x and y kinds.
fn heat_2d(points: usize, x_kind: Boundary, y_kind: Boundary, order: u8) -> f64 {
    let nu = 0.2;
    let mut b = ModelBuilder::new("heat2d");
    let axis = |b: &mut ModelBuilder, name: &str, kind: Boundary| match kind {
        Boundary::Periodic => b.periodic(name, 0.0, 1.0, points - 1),
        Boundary::Dirichlet | Boundary::Neumann => b.interval(name, 0.0, 1.0, points),
    };
    let x = axis(&mut b, "x", x_kind);
    let y = axis(&mut b, "y", y_kind);
    let u = b.field("u", &[x, y]);
    let eq = b.equation(u, 1, vec![mul(real(nu), laplace(field(u)))]);
    let factor = |kind: Boundary, axis| match kind {
        Boundary::Dirichlet => (sin(mul(real(PI), coordinate(axis))), PI),
        Boundary::Neumann => (cos(mul(real(PI), coordinate(axis))), PI),
        Boundary::Periodic => (sin(mul(real(2.0 * PI), coordinate(axis))), 2.0 * PI),
    };
    let (fx, kx) = factor(x_kind, x);
    let (fy, ky) = factor(y_kind, y);
    for (axis, kind) in [(x, x_kind), (y, y_kind)] {
        for side in [Side::Min, Side::Max] {
            match kind {
                Boundary::Dirichlet => {
                    b.boundary(u, axis, side, BoundaryKind::Dirichlet(real(0.0)))
                }
                Boundary::Neumann => b.boundary(u, axis, side, BoundaryKind::Neumann(real(0.0))),
                Boundary::Periodic => {}
            }
        }
    }
    let mode = mul(fx, fy);
    b.initial(u, 0, mode.clone());
    let h = 1.0 / (points - 1) as f64;
    let until = 0.02;
    let steps = ((until / (0.05 * h * h / nu)).ceil() as usize).max(10);
    b.solve(&[eq], Scheme::Rk4, until / steps as f64, steps, order);
    let exact = mul(exp(mul(real(-nu * (kx * kx + ky * ky)), time())), mode);
    b.expect("error", less(max_error(field(u), exact), real(1.0)));
    error_of(b, Precision::F64)
}

#[test]
fn heat_2d_dirichlet_order_2() {
    let errors: Vec<f64> = [9, 17, 33]
        .iter()
        .map(|n| heat_2d(*n, Boundary::Dirichlet, Boundary::Dirichlet, 2))
        .collect();
    assert_orders("2-D dirichlet order 2", &errors, 2.0, 2.0);
}

#[test]
fn heat_2d_doubly_periodic_order_4() {
    let errors: Vec<f64> = [9, 17, 33]
        .iter()
        .map(|n| heat_2d(*n, Boundary::Periodic, Boundary::Periodic, 4))
        .collect();
    assert_orders("2-D periodic order 4", &errors, 2.0, 4.0);
}

#[test]
fn heat_2d_mixed_dirichlet_neumann_order_2() {
    let errors: Vec<f64> = [9, 17, 33]
        .iter()
        .map(|n| heat_2d(*n, Boundary::Dirichlet, Boundary::Neumann, 2))
        .collect();
    assert_orders("2-D dirichlet/neumann order 2", &errors, 2.0, 2.0);
}

/// Steady `Δu + c·u_xy − u = f` on the unit square with the exact solution's Dirichlet values on x
/// and its normal derivative (Neumann) on y, so corners carry nonzero values.
fn mixed_steady(points: usize, order: u8, mixed_coefficient: f64, neumann_y: bool) -> f64 {
    let mut b = ModelBuilder::new("mixed");
    let x = b.interval("x", 0.0, 1.0, points);
    let y = b.interval("y", 0.0, 1.0, points);
    let u = b.field("u", &[x, y]);
    let (a, c) = (1.3, 0.9);
    // u = sin(a x + 0.4) cos(c y + 0.2) + x y
    let sx = sin(add(mul(real(a), coordinate(x)), real(0.4)));
    let cx = cos(add(mul(real(a), coordinate(x)), real(0.4)));
    let sy = sin(add(mul(real(c), coordinate(y)), real(0.2)));
    let cy = cos(add(mul(real(c), coordinate(y)), real(0.2)));
    let exact = add(
        mul(sx.clone(), cy.clone()),
        mul(coordinate(x), coordinate(y)),
    );
    let laplacian = mul(real(-(a * a + c * c)), mul(sx.clone(), cy.clone()));
    let mixed = add(mul(real(-a * c), mul(cx.clone(), sy.clone())), real(1.0));
    let source = sub(
        add(laplacian, mul(real(mixed_coefficient), mixed)),
        exact.clone(),
    );
    let eq = b.equation(
        u,
        0,
        vec![
            laplace(field(u)),
            mul(real(mixed_coefficient), derivative(field(u), &[x, y])),
            neg(field(u)),
            neg(source),
        ],
    );
    for side in [Side::Min, Side::Max] {
        b.boundary(u, x, side, BoundaryKind::Dirichlet(exact.clone()));
    }
    // ∂u/∂y = −c sin(a x + 0.4) sin(c y + 0.2) + x; the outward normal is −y at y = 0 and +y at y = 1.
    let dudy = add(mul(real(-c), mul(sx, sy)), coordinate(x));
    if neumann_y {
        b.boundary(u, y, Side::Min, BoundaryKind::Neumann(neg(dudy.clone())));
        b.boundary(u, y, Side::Max, BoundaryKind::Neumann(dudy));
    } else {
        for side in [Side::Min, Side::Max] {
            b.boundary(u, y, side, BoundaryKind::Dirichlet(exact.clone()));
        }
    }
    b.solve(
        &[eq],
        Scheme::Steady {
            tolerance: 1e-12,
            max_iterations: 20_000,
        },
        0.0,
        0,
        order,
    );
    b.expect("error", less(max_error(field(u), exact), real(1.0)));
    error_of(b, Precision::F64)
}

#[test]
fn steady_mixed_derivative_dirichlet_order_4() {
    let errors: Vec<f64> = [17, 33, 65]
        .iter()
        .map(|n| mixed_steady(*n, 4, 1.0, false))
        .collect();
    assert_orders("mixed derivative, dirichlet, order 4", &errors, 2.0, 4.0);
}

#[test]
fn steady_mixed_dirichlet_neumann_order_2() {
    let errors: Vec<f64> = [9, 17, 33]
        .iter()
        .map(|n| mixed_steady(*n, 2, 1.0, true))
        .collect();
    assert_orders(
        "mixed derivative, dirichlet/neumann, order 2",
        &errors,
        2.0,
        2.0,
    );
}

#[test]
fn mixed_derivative_term_is_kept() {
    // The manufactured source contains u_xy; dropping the term would leave an O(1) error.
    let with_term = mixed_steady(17, 2, 1.0, false);
    assert!(with_term < 1e-3, "error with the mixed term: {with_term}");
    let npdec_model = {
        let mut b = ModelBuilder::new("check");
        let x = b.interval("x", 0.0, 1.0, 9);
        let y = b.interval("y", 0.0, 1.0, 9);
        let u = b.field("u", &[x, y]);
        b.dirichlet_everywhere(u, real(0.0));
        b.initial(u, 0, real(0.0));
        let eq = b.equation(u, 1, vec![derivative(field(u), &[x, y])]);
        b.solve(&[eq], Scheme::Euler, 1e-3, 1, 2);
        b.build()
    };
    let program = npdec_ir::discretize_model(&npdec_model).unwrap();
    let text = npdec_ir::dump_graph(&program.solves[0]);
    assert!(text.contains("stencil d/dx/dy"), "{text}");
    assert!(text.contains("[1, 1]: 1.600000e1"), "{text}");
}

#[test]
fn integral_of_exact_field() {
    let mut b = ModelBuilder::new("integral");
    let x = b.interval("x", 0.0, 1.0, 101);
    let u = b.field("u", &[x]);
    b.dirichlet_everywhere(u, real(0.0));
    b.initial(u, 0, sin(mul(real(PI), coordinate(x))));
    let eq = b.equation(u, 1, vec![real(0.0)]);
    b.solve(&[eq], Scheme::Euler, 1e-3, 1, 2);
    b.expect(
        "integral",
        less(
            abs(sub(reduce(ReduceOp::Integral, field(u)), real(2.0 / PI))),
            real(1e-4),
        ),
    );
    let report = support::run(&b.build(), Precision::F64);
    assert!(report.expects[0].passed, "{:?}", report.expects);
}
