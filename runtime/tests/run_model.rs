//! `run_model` end to end: outputs on disk, stability warnings and refusals, expectation results.

mod support;

use npdec_ir::model_builder::{expr::*, ModelBuilder};
use npdec_runtime::{run_model, Precision, RunOptions, StabilityPolicy};
use npdec_symbolic::{Model, Scheme};
use std::f64::consts::PI;

fn heat(dt: f64, steps: usize) -> Model {
    let mut b = ModelBuilder::new("heat1d");
    let x = b.interval("x", 0.0, 1.0, 21);
    let u = b.field("u", &[x]);
    let eq = b.equation(u, 1, vec![mul(real(1.0), laplace(field(u)))]);
    b.dirichlet_everywhere(u, real(0.0));
    b.initial(u, 0, sin(mul(real(PI), coordinate(x))));
    b.solve(&[eq], Scheme::Euler, dt, steps, 2);
    b.save_every(5);
    let exact = mul(
        exp(mul(real(-PI * PI), time())),
        sin(mul(real(PI), coordinate(x))),
    );
    b.expect(
        "max(abs(u - exact)) < 1e-2",
        less(max_error(field(u), exact.clone()), real(1e-2)),
    );
    b.expect(
        "max(abs(u - exact)) < 1e-9",
        less(max_error(field(u), exact), real(1e-9)),
    );
    b.build()
}

#[test]
fn writes_snapshots_plot_and_summary() {
    let dir = std::env::temp_dir().join(format!("npdec-run-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = RunOptions {
        out_dir: Some(dir.clone()),
        ..RunOptions::default()
    };
    let report = run_model(&heat(1e-3, 20), &options).expect("runs");

    assert!(report.expects[0].passed);
    assert!(!report.expects[1].passed);
    assert!(!report.all_passed());
    for name in [
        "u_000005.npy",
        "u_000010.npy",
        "u_000020.npy",
        "u.png",
        "summary.json",
    ] {
        assert!(dir.join(name).is_file(), "missing {name}");
    }
    let snapshot: ndarray::Array1<f64> =
        ndarray_npy::read_npy(dir.join("u_000020.npy")).expect("reads npy");
    assert_eq!(snapshot.len(), 21);

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["model"], "heat1d");
    assert_eq!(summary["expects"][0]["passed"], true);
    assert_eq!(summary["expects"][1]["passed"], false);
    assert_eq!(summary["metrics"]["steps"], 20);
    assert!(summary["expects"][0]["value"].as_f64().unwrap() < 1e-2);
    assert!(summary["metrics"]["wall_time_seconds"].as_f64().is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn step_above_limit_warns() {
    // h = 0.05, ν = 1: explicit Euler needs dt ≤ h²/2 = 1.25e-3.
    let report = run_model(&heat(2e-3, 2), &RunOptions::default()).expect("runs");
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert_eq!(report.warnings[0].code, npdec_diagnostics::Code::W0005);
    assert!(!report.warnings[0].is_error());
    assert!(
        report.warnings[0]
            .message
            .contains("exceeds the stability limit"),
        "{}",
        report.warnings[0].message
    );
    let limit = report.tasks[0].max_stable_dt.unwrap();
    assert!((limit - 1.25e-3).abs() < 1e-6, "{limit}");

    // summary.json keeps each warning as one string, which starts with the code.
    let summary = npdec_runtime::output::summary_json(&report, 0);
    let warning = summary["warnings"][0].as_str().expect("a string");
    assert!(
        warning.starts_with("W0005: step dt = 2e-3 exceeds the stability limit"),
        "{warning}"
    );
}

#[test]
fn step_above_limit_rejected_when_strict() {
    let options = RunOptions {
        stability: StabilityPolicy::Strict,
        ..RunOptions::default()
    };
    let errors = run_model(&heat(2e-3, 2), &options).unwrap_err();
    assert_eq!(errors[0].code, npdec_diagnostics::Code::E0242);
    assert!(errors[0].is_error());
}

#[test]
fn stable_step_has_no_warning() {
    let report = run_model(
        &heat(1e-3, 2),
        &RunOptions {
            stability: StabilityPolicy::Strict,
            ..RunOptions::default()
        },
    )
    .expect("runs");
    assert!(report.warnings.is_empty());
}

#[test]
fn euler_on_centered_advection_is_unstable() {
    let mut b = ModelBuilder::new("advection");
    let x = b.periodic("x", 0.0, 1.0, 32);
    let u = b.field("u", &[x]);
    let eq = b.equation(u, 1, vec![neg(derivative(field(u), &[x]))]);
    b.initial(u, 0, sin(mul(real(2.0 * PI), coordinate(x))));
    b.solve(&[eq], Scheme::Euler, 1e-3, 2, 2);
    let report = run_model(&b.build(), &RunOptions::default()).expect("runs");
    assert!(
        report.warnings[0]
            .message
            .contains("unstable for this equation at any step"),
        "{:?}",
        report.warnings
    );
}

#[test]
fn implicit_scheme_rejects_nonlinear_equation() {
    let mut b = ModelBuilder::new("fisher");
    let x = b.interval("x", 0.0, 1.0, 11);
    let u = b.field("u", &[x]);
    let eq = b.equation(
        u,
        1,
        vec![laplace(field(u)), mul(field(u), sub(real(1.0), field(u)))],
    );
    b.dirichlet_everywhere(u, real(0.0));
    b.initial(u, 0, real(0.0));
    b.solve(&[eq], Scheme::CrankNicolson, 1e-3, 2, 2);
    let errors = run_model(&b.build(), &RunOptions::default()).unwrap_err();
    assert_eq!(errors[0].code, npdec_diagnostics::Code::E0241);
}

#[test]
fn steady_scheme_rejects_time_dependent_equation() {
    let mut b = ModelBuilder::new("heat");
    let x = b.interval("x", 0.0, 1.0, 11);
    let u = b.field("u", &[x]);
    let eq = b.equation(u, 1, vec![laplace(field(u))]);
    b.dirichlet_everywhere(u, real(0.0));
    b.initial(u, 0, real(0.0));
    b.solve(
        &[eq],
        Scheme::Steady {
            tolerance: 1e-10,
            max_iterations: 100,
        },
        0.0,
        0,
        2,
    );
    let errors = run_model(&b.build(), &RunOptions::default()).unwrap_err();
    assert_eq!(errors[0].code, npdec_diagnostics::Code::E0241);
    assert!(errors[0].help.as_deref().unwrap_or("").contains("euler"));
}

#[test]
fn missing_initial_condition_is_reported() {
    let mut b = ModelBuilder::new("heat");
    let x = b.interval("x", 0.0, 1.0, 11);
    let u = b.field("u", &[x]);
    let eq = b.equation(u, 1, vec![laplace(field(u))]);
    b.dirichlet_everywhere(u, real(0.0));
    b.solve(&[eq], Scheme::Euler, 1e-3, 2, 2);
    let errors = run_model(&b.build(), &RunOptions::default()).unwrap_err();
    assert_eq!(errors[0].code, npdec_diagnostics::Code::E0220);
}

#[test]
fn helmholtz_steady_solution() {
    // Δu + k² u = f with u = sin(πx) sin(2πy) on the unit square.
    let mut b = ModelBuilder::new("helmholtz2d");
    let x = b.interval("x", 0.0, 1.0, 33);
    let y = b.interval("y", 0.0, 1.0, 33);
    let u = b.field("u", &[x, y]);
    let k2 = 10.0;
    let exact = mul(
        sin(mul(real(PI), coordinate(x))),
        sin(mul(real(2.0 * PI), coordinate(y))),
    );
    let source = mul(real(k2 - 5.0 * PI * PI), exact.clone());
    let eq = b.equation(
        u,
        0,
        vec![laplace(field(u)), mul(real(k2), field(u)), neg(source)],
    );
    b.dirichlet_everywhere(u, real(0.0));
    b.solve(
        &[eq],
        Scheme::Steady {
            tolerance: 1e-10,
            max_iterations: 5000,
        },
        0.0,
        0,
        4,
    );
    b.expect("error", less(max_error(field(u), exact), real(1e-4)));
    for precision in [Precision::F64, Precision::F32] {
        let report = support::run(&b.model().clone(), precision);
        assert!(
            report.expects[0].passed,
            "{precision:?}: {:?}",
            report.expects
        );
    }
}

#[test]
fn complex_field_crank_nicolson() {
    // Free Schrödinger ψ_t = (i/2) ψ_xx with a plane wave on a periodic axis.
    let mut b = ModelBuilder::new("schrodinger");
    let x = b.periodic("x", 0.0, 2.0 * PI, 64);
    let psi = b.field_with("psi", &[x], 1, true);
    let eq = b.equation(psi, 1, vec![mul(complex(0.0, 0.5), laplace(field(psi)))]);
    let wave = |t: npdec_symbolic::Expr| {
        exp(mul(
            complex(0.0, 1.0),
            sub(coordinate(x), mul(real(0.5), t)),
        ))
    };
    b.initial(psi, 0, wave(real(0.0)));
    b.solve(&[eq], Scheme::CrankNicolson, 0.01, 100, 8);
    b.expect(
        "error",
        less(max_error(field(psi), wave(time())), real(1e-4)),
    );
    let report = support::run(&b.build(), Precision::F64);
    assert!(report.expects[0].passed, "{:?}", report.expects);
}

#[test]
fn block_equation_listed_once() {
    let dir = std::env::temp_dir().join(format!("npdec-run-block-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let path = dir.join("exchange.npde");
    std::fs::write(
        &path,
        "model exchange
grid x in [0, 1] points 16
field u(x)
field v(x)
equation exchange {
    dt(u) = 0.01 * laplace(u) - u + v
    dt(v) = 0.01 * laplace(v) + u - v
}
boundary u: periodic on x
boundary v: periodic on x
initial u = 1
initial v = 0
solve exchange using euler(steps = 2) until 0.01
",
    )
    .expect("write model");
    let (_, checked) = npdec_sema::check_path(&path).expect("read model");
    let model = checked.model.expect("the model checks");
    assert_eq!(model.equations.len(), 2);
    let options = RunOptions {
        out_dir: Some(dir.join("out")),
        ..RunOptions::default()
    };
    let report = run_model(&model, &options).expect("runs");
    assert_eq!(report.tasks[0].equations, ["exchange"]);
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("out/summary.json")).expect("summary"),
    )
    .expect("JSON");
    assert_eq!(
        summary["metrics"]["tasks"][0]["equations"],
        serde_json::json!(["exchange"])
    );
    let _ = std::fs::remove_dir_all(&dir);
}
