//! The training tape's conservative `div(c * grad(u))` and `upwind` operators, and spatial
//! operators of nonlinear operands: Taylor and dot tests of their discrete adjoints on small
//! random models with every boundary kind, under both explicit schemes, and a check that the
//! tape computes the same right-hand side as the reference interpreter.

use ndarray::{Array2, ArrayD, IxDyn};
use npdec_runtime::evaluate::Evaluator;
use npdec_runtime::train::gradcheck::{check_gradients, DOT_TOLERANCE, TAYLOR_RATE_TOLERANCE};
use npdec_runtime::train::lower::{lower_train_task, SampleShape};
use npdec_runtime::train::params::initialize_params;
use npdec_runtime::train::tape::{Env, Op};
use npdec_runtime::Value;
use npdec_symbolic::{BinaryOp, Model, Task};
use std::path::{Path, PathBuf};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("npdec-ops-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir
}

/// A linear congruential generator: small, seeded, enough for test data.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Writes `samples` rows of `features` values in [−1, 1) with a class label in `0..3` last.
fn write_csv(path: &Path, samples: usize, features: usize, seed: u64) {
    let mut rng = Lcg(seed);
    let mut text = String::new();
    for i in 0..samples {
        let row: Vec<String> = (0..features)
            .map(|_| format!("{:.6}", 2.0 * rng.next() - 1.0))
            .collect();
        text.push_str(&row.join(","));
        text.push_str(&format!(",{}\n", i % 3));
    }
    std::fs::write(path, text).expect("write CSV");
}

fn checked_model(dir: &Path, source: &str) -> Model {
    let path = dir.join("model.npde");
    std::fs::write(&path, source).expect("write model");
    let (_, checked) = npdec_sema::check_path(&path).expect("read model");
    match checked.model {
        Some(model) => model,
        None => panic!(
            "the test model does not check: {:#?}\n{source}",
            checked.diagnostics
        ),
    }
}

/// The boundary declarations of every kind on one axis, and the same kind on both sides.
const BOUNDARIES: [(&str, &str); 5] = [
    ("periodic", "boundary u: periodic on x"),
    ("dirichlet", "boundary u: dirichlet(0.2) on x"),
    ("neumann", "boundary u: neumann(0.5) on x"),
    ("robin", "boundary u: robin(1, 2, 0.1) on x"),
    (
        "mixed",
        "boundary u: dirichlet(-0.1) on x.min\nboundary u: robin(2, 1, 0.3) on x.max",
    ),
];

/// A classifier over a 1-D grid of 9 points whose equation is `dt(u) = body`.
fn line_model(boundary: &str, scheme: &str, body: &str, extra: &str) -> String {
    let grid = "grid x in [0, 1] points 9";
    format!(
        "model line
{grid}
field u(x)
{boundary}
data d = csv(\"data.csv\", label = last) split 6
param Wout[3, 9] ~ glorot
param bout[3] ~ normal(0, 0.1)
{extra}
equation net: dt(u) = {body}
initial u = d.input
readout y = Wout @ u + bout
train net on d using {scheme}(steps = 3) until 0.03 loss cross_entropy(y, label) optimizer adam() epochs 1 batch 3
"
    )
}

fn assert_gradients(name: &str, source: &str, features: usize) {
    let dir = temp_dir(name);
    write_csv(&dir.join("data.csv"), 8, features, 99);
    let model = checked_model(&dir, source);
    let report = check_gradients(&model, &dir, 11).expect("gradient check runs");
    for check in &report.checks {
        assert!(check.epsilons.len() >= 4 && check.rates.len() >= 3);
        assert!(
            check
                .rates
                .iter()
                .all(|r| (r - 2.0).abs() <= TAYLOR_RATE_TOLERANCE),
            "{name}: Taylor rates {:?} (remainders {:?})",
            check.rates,
            check.remainders
        );
        assert!(
            check.dot_relative_error <= DOT_TOLERANCE,
            "{name}: dot test {} vs {} (relative {:e})",
            check.dot_tangent,
            check.dot_adjoint,
            check.dot_relative_error
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

const SCHEMES: [&str; 2] = ["euler", "rk4"];

#[test]
fn div_grad_gradients_for_every_boundary_kind() {
    for (kind, boundary) in BOUNDARIES {
        for scheme in SCHEMES {
            let source = line_model(
                boundary,
                scheme,
                "div((D + P + 0.2 * u^2 + 0.1 * x) * grad(u)) + tanh(W @ u)",
                "param D = 0.3\nparam P(x) ~ normal(0.1, 0.02)\nparam W[9, 9] ~ normal(0, 0.3)",
            );
            assert_gradients(&format!("div-{kind}-{scheme}"), &source, 9);
        }
    }
}

#[test]
fn upwind_gradients_for_every_boundary_kind() {
    for (kind, boundary) in BOUNDARIES {
        for scheme in SCHEMES {
            for order in [1, 2] {
                let source = line_model(
                    boundary,
                    scheme,
                    &format!("-upwind(a + 0.5 * u, u, x, order = {order}) + 0.3 * upwind(x - 0.5, tanh(u), x) + tanh(W @ u)"),
                    "param a = 0.3\nparam W[9, 9] ~ normal(0, 0.3)",
                );
                assert_gradients(&format!("upwind{order}-{kind}-{scheme}"), &source, 9);
            }
        }
    }
}

#[test]
fn derivatives_of_nonlinear_operands_gradients() {
    for (kind, boundary) in BOUNDARIES {
        for scheme in SCHEMES {
            let source = line_model(
                boundary,
                scheme,
                "D * laplace(tanh(u)) - diff(u^2, x) + 1e-4 * laplace(laplace(u)) + tanh(W @ u)",
                "param D = 0.3\nparam W[9, 9] ~ normal(0, 0.3)",
            );
            assert_gradients(&format!("nonlinear-{kind}-{scheme}"), &source, 9);
        }
    }
}

#[test]
fn two_dimensional_div_grad_and_upwind_gradients() {
    for scheme in SCHEMES {
        let source = format!(
            "model plane
grid x in [0, 1] points 5
grid y in [0, 1] points 4
field u(x, y)[2]
boundary u: neumann(0.2) on x.min
boundary u: dirichlet(0.1) on x.max
boundary u: periodic on y
data d = csv(\"data.csv\", label = last) split 6
param K[2, 2, 3, 3] ~ normal(0, 0.2)
param D(x, y) ~ normal(0.4, 0.05)
param Wout[3, 40] ~ glorot
equation net: dt(u) = div(D * (1 + 0.2 * u^2) * grad(u)) - upwind(u + 0.1, u, y, order = 2) + tanh(conv(K, u))
initial u = d.input
readout s = Wout @ u
train net on d using {scheme}(steps = 2) until 0.01 loss cross_entropy(s, label) optimizer adam() epochs 1 batch 3
"
        );
        assert_gradients(&format!("plane-{scheme}"), &source, 20);
    }
}

/// Evaluates a train task's right-hand side on the tape and the same equation, solved, in the
/// interpreter, on one random state; returns the largest relative difference.
fn rhs_difference(boundary: &str, body: &str, seed: u64) -> f64 {
    let grid = "grid x in [0, 1] points 11";
    let source = format!(
        "model both
{grid}
field u(x)
{boundary}
data d = csv(\"data.csv\", label = last) split 6
param Wout[3, 11] ~ glorot
equation net: dt(u) = {body}
initial u = 0.5 + 0.2 * sin(3 * x)
readout y = Wout @ u
solve net using euler(dt = 1e-4) until 1e-4
train net on d using euler(steps = 1) until 0.01 loss cross_entropy(y, label) optimizer adam() epochs 1 batch 3
"
    );
    let dir = temp_dir(&format!("rhs-{seed}"));
    write_csv(&dir.join("data.csv"), 8, 11, seed);
    let model = checked_model(&dir, &source);
    let _ = std::fs::remove_dir_all(&dir);

    let mut rng = Lcg(seed);
    let state: Vec<f64> = (0..11).map(|_| 2.0 * rng.next() - 1.0).collect();

    // The interpreter.
    let solve = model
        .tasks
        .iter()
        .find_map(|t| match t {
            Task::Solve(s) => Some(s.clone()),
            _ => None,
        })
        .expect("a solve task");
    let graph = npdec_ir::discretize::discretize_solve(&model, &solve).expect("discretizes");
    let (step_id, _) = graph.time_step().expect("a time step");
    let rhs = graph.inputs(step_id)[0];
    let evaluator = Evaluator::<f64>::new(&graph, &[rhs]);
    let states = vec![Some(Value::Real(
        ArrayD::from_shape_vec(IxDyn(&[1, 11]), state.clone()).expect("shape"),
    ))];
    let values = evaluator.evaluate(&states, 0.0);
    let expected = values[rhs.index()].as_ref().expect("rhs value").real_part();

    // The tape.
    let task = model
        .tasks
        .iter()
        .find_map(|t| match t {
            Task::Train(t) => Some(t.clone()),
            _ => None,
        })
        .expect("a train task");
    let sample = SampleShape {
        features: 11,
        dims: vec![11],
        label_width: 1,
    };
    let lowered = lower_train_task(&model, &task, &sample).expect("lowers");
    let params = initialize_params(&model, 1, &lowered.param_step_sizes, 0).expect("params");
    let states = vec![Array2::from_shape_vec((1, 11), state).expect("shape")];
    let env = Env {
        states: &states,
        params: &params,
        samples: None,
        labels: None,
        step: 0,
        time: 0.0,
        batch: 1,
    };
    let tape_values = lowered.rhs.forward(&env);
    let node = lowered.states[0].rhs[0].1;
    let got = &tape_values[node];
    let scale = expected.iter().fold(1e-300f64, |m, x| m.max(x.abs()));
    // Dirichlet nodes are held by time stepping in both, so they are left out.
    let held: Vec<usize> = lowered.states[0]
        .dirichlet
        .iter()
        .map(|(n, _)| *n)
        .collect();
    (0..11)
        .filter(|i| !held.contains(i))
        .map(|i| (got[[0, i % got.ncols()]] - expected[[0, i]]).abs() / scale)
        .fold(0.0, f64::max)
}

#[test]
fn tape_matches_the_interpreter_on_operators() {
    let bodies = [
        "div((0.5 + 0.3 * u^2 + 0.2 * x) * grad(u))",
        "div(grad(u))",
        "-upwind(u - 0.2, u, x)",
        "-upwind(0.3 - x, u, x, order = 2)",
        "laplace(tanh(u)) + diff(u^2, x)",
        "0.1 * laplace(laplace(u))",
    ];
    for (kind, boundary) in BOUNDARIES {
        for (index, body) in bodies.iter().enumerate() {
            let difference = rhs_difference(boundary, body, 5 + index as u64);
            assert!(
                difference <= 1e-12,
                "{kind}: `{body}` differs from the interpreter by {difference:e}"
            );
        }
    }
}

/// Boundary sets on a plane where each corner joins the rules of two sides, so that every corner
/// ghost is filled by two rules, one after the other, and values may vary along a side.
const PLANE_BOUNDARIES: [(&str, &str); 5] = [
    (
        "coordinate-values",
        "boundary u: dirichlet(0.2 * y - 0.1) on x.min\nboundary u: robin(1, 2, sin(3 * y) + x) on x.max\nboundary u: neumann(0.5 * x^2 - y) on y.min\nboundary u: dirichlet(cos(2 * x)) on y.max",
    ),
    (
        "dirichlet-dirichlet",
        "boundary u: dirichlet(0.2) on x\nboundary u: dirichlet(-0.3) on y",
    ),
    (
        "dirichlet-robin",
        "boundary u: dirichlet(0.2) on x.min\nboundary u: robin(1, 2, 0.1) on x.max\nboundary u: neumann(0.5) on y",
    ),
    (
        "neumann-periodic",
        "boundary u: neumann(-0.3) on x\nboundary u: periodic on y",
    ),
    (
        "robin-dirichlet",
        "boundary u: robin(2, 1, 0.4) on x\nboundary u: dirichlet(-0.1) on y.min\nboundary u: neumann(0.2) on y.max",
    ),
];

/// [`rhs_difference`] on a 6 × 5 plane, where mixed derivatives and wide stencils read the
/// corner ghosts.
fn plane_rhs_difference(boundary: &str, body: &str, seed: u64) -> f64 {
    let (nx, ny) = (6, 5);
    let points = nx * ny;
    let source = format!(
        "model plane
grid x in [0, 1] points {nx}
grid y in [0, 1] points {ny}
field u(x, y)
{boundary}
data d = csv(\"data.csv\", label = last) split 6
param Wout[3, {points}] ~ glorot
equation net: dt(u) = {body}
initial u = 0.5 + 0.2 * sin(3 * x) * cos(2 * y)
readout scores = Wout @ u
solve net using euler(dt = 1e-5) until 1e-5
train net on d using euler(steps = 1) until 0.01 loss cross_entropy(scores, label) optimizer adam() epochs 1 batch 3
"
    );
    let dir = temp_dir(&format!("plane-rhs-{seed}"));
    write_csv(&dir.join("data.csv"), 8, points, seed);
    let model = checked_model(&dir, &source);
    let _ = std::fs::remove_dir_all(&dir);

    let mut rng = Lcg(seed);
    let state: Vec<f64> = (0..points).map(|_| 2.0 * rng.next() - 1.0).collect();

    let solve = model
        .tasks
        .iter()
        .find_map(|t| match t {
            Task::Solve(s) => Some(s.clone()),
            _ => None,
        })
        .expect("a solve task");
    let graph = npdec_ir::discretize::discretize_solve(&model, &solve).expect("discretizes");
    let (step_id, _) = graph.time_step().expect("a time step");
    let rhs = graph.inputs(step_id)[0];
    let evaluator = Evaluator::<f64>::new(&graph, &[rhs]);
    let states = vec![Some(Value::Real(
        ArrayD::from_shape_vec(IxDyn(&[1, nx, ny]), state.clone()).expect("shape"),
    ))];
    let values = evaluator.evaluate(&states, 0.0);
    let expected = values[rhs.index()].as_ref().expect("rhs value").real_part();
    let expected: Vec<f64> = expected.iter().copied().collect();
    assert_eq!(
        expected.len(),
        points,
        "the interpreter's rhs has one value per point"
    );

    let task = model
        .tasks
        .iter()
        .find_map(|t| match t {
            Task::Train(t) => Some(t.clone()),
            _ => None,
        })
        .expect("a train task");
    let sample = SampleShape {
        features: points,
        dims: vec![nx, ny],
        label_width: 1,
    };
    let lowered = lower_train_task(&model, &task, &sample).expect("lowers");
    let params = initialize_params(&model, 1, &lowered.param_step_sizes, 0).expect("params");
    let states = vec![Array2::from_shape_vec((1, points), state).expect("shape")];
    let env = Env {
        states: &states,
        params: &params,
        samples: None,
        labels: None,
        step: 0,
        time: 0.0,
        batch: 1,
    };
    let tape_values = lowered.rhs.forward(&env);
    let node = lowered.states[0].rhs[0].1;
    let got = &tape_values[node];
    let scale = expected.iter().fold(1e-300f64, |m, x| m.max(x.abs()));
    let held: Vec<usize> = lowered.states[0]
        .dirichlet
        .iter()
        .map(|(n, _)| *n)
        .collect();
    (0..points)
        .filter(|i| !held.contains(i))
        .map(|i| (got[[0, i % got.ncols()]] - expected[i]).abs() / scale)
        .fold(0.0, f64::max)
}

#[test]
fn tape_matches_the_interpreter_at_plane_corners() {
    let bodies = [
        "laplace(u)",
        "diff(u, x, y)",
        "diff(u^2, x, y) + diff(u, y)",
        "div((0.5 + 0.3 * u^2) * grad(u))",
        "0.1 * laplace(laplace(u))",
        "-upwind(u - 0.2, u, y, order = 2)",
    ];
    for (kind, boundary) in PLANE_BOUNDARIES {
        for (index, body) in bodies.iter().enumerate() {
            let difference = plane_rhs_difference(boundary, body, 31 + index as u64);
            assert!(
                difference <= 1e-12,
                "{kind}: `{body}` differs from the interpreter by {difference:e}"
            );
        }
    }
}

#[test]
fn coordinate_boundary_values_gradients() {
    for scheme in SCHEMES {
        let source = format!(
            "model plane
grid x in [0, 1] points 5
grid y in [0, 1] points 4
field u(x, y)
boundary u: dirichlet(0.3 * y) on x.min
boundary u: robin(1, 2, sin(3 * y)) on x.max
boundary u: neumann(x - 0.5) on y
data d = csv(\"data.csv\", label = last) split 6
param a = 0.4
param Wout[3, 20] ~ glorot
equation net: dt(u) = a * laplace(u) + diff(u, x, y) + tanh(u)
initial u = d.input
readout s = Wout @ u
train net on d using {scheme}(steps = 2) until 0.01 loss cross_entropy(s, label) optimizer adam() epochs 1 batch 3
"
        );
        assert_gradients(&format!("coordinate-values-{scheme}"), &source, 20);
    }
}

#[test]
fn time_dependent_boundary_value_is_rejected() {
    let source = line_model(
        "boundary u: dirichlet(0.1 * t) on x",
        "euler",
        "laplace(u)",
        "",
    );
    let dir = temp_dir("time-boundary");
    write_csv(&dir.join("data.csv"), 8, 9, 3);
    let model = checked_model(&dir, &source);
    let _ = std::fs::remove_dir_all(&dir);
    let task = model
        .tasks
        .iter()
        .find_map(|t| match t {
            Task::Train(t) => Some(t.clone()),
            _ => None,
        })
        .expect("a train task");
    let sample = SampleShape {
        features: 9,
        dims: vec![9],
        label_width: 1,
    };
    let Err(error) = lower_train_task(&model, &task, &sample) else {
        panic!("a time-dependent boundary value was accepted");
    };
    assert!(
        error.contains("depends on the time `t`"),
        "unexpected message: {error}"
    );
}

/// `swish(W @ u + b)` inlines to `(W @ u + b) * sigmoid(W @ u + b)`: the lowering computes the
/// product, the sum and the sigmoid once each, and the gradients stay right with the product's
/// value read twice.
#[test]
fn repeated_subexpressions_are_lowered_once() {
    let source = line_model(
        "boundary u: neumann(0) on x",
        "euler",
        "swish(W @ u + b) + 0.1 * laplace(u)",
        "use std::activations::swish\nparam W[9, 9] ~ glorot\nparam b[9] = 0",
    );
    let dir = temp_dir("repeated");
    write_csv(&dir.join("data.csv"), 8, 9, 99);
    let model = checked_model(&dir, &source);
    let task = model
        .tasks
        .iter()
        .find_map(|t| match t {
            Task::Train(t) => Some(t.clone()),
            _ => None,
        })
        .expect("a train task");
    let sample = SampleShape {
        features: 9,
        dims: vec![9],
        label_width: 1,
    };
    let lowered = lower_train_task(&model, &task, &sample).expect("lowers");
    let count =
        |matches: fn(&Op) -> bool| lowered.rhs.nodes.iter().filter(|n| matches(&n.op)).count();
    assert_eq!(
        count(|op| matches!(op, Op::MatMul { .. })),
        1,
        "{:#?}",
        lowered.rhs.nodes
    );
    assert_eq!(
        count(|op| matches!(op, Op::Binary(BinaryOp::Add, ..))),
        2,
        "`W @ u + b` and the sum of the two terms: {:#?}",
        lowered.rhs.nodes
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_gradients("repeated-gradients", &source, 9);
}
