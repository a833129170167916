//! The continuous adjoint (`gradient continuous`) against the discrete one: their difference is the
//! time discretization error of the adjoint equation, so it falls at the scheme's order as `Δt → 0`,
//! and under the diffusive refinement `Δt ∝ h²` as well.

use ndarray::{s, Array2};
use npdec_runtime::train::adjoint::{Chunk, Network};
use npdec_runtime::train::gradcheck::{check_gradients, gradient_difference};
use npdec_runtime::train::training::{label_matrix, prepare};
use npdec_runtime::train::TrainOptions;
use npdec_symbolic::{GradientMethod, Model, Task};
use std::path::{Path, PathBuf};

/// Returns a new directory for one call, unique across the tests that run in parallel in this process.
fn temp_dir(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "npdec-continuous-{name}-{}-{call}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir
}

fn checked_model(dir: &Path, source: &str) -> Model {
    let path = dir.join("model.npde");
    std::fs::write(&path, source).expect("write model");
    let (_, checked) = npdec_sema::check_path(&path).expect("read model");
    match checked.model {
        Some(model) => model,
        None => panic!("the test model does not check: {:#?}", checked.diagnostics),
    }
}

/// A reaction–advection–diffusion model whose parameters do not depend on the grid, on `points`
/// points, trained through `steps` steps of `scheme` up to `t = 0.5`.
fn source(boundary: &str, scheme: &str, points: usize, steps: usize) -> String {
    format!(
        "model refine
grid x in [0, 1] points {points}
field u(x)
{boundary}
data d = npy(\"x.npy\", labels = \"y.npy\") split 4
param D = 0.05
param r = 1.0
param c = 0.4
equation pde: dt(u) = div((D + 0.1 * u^2) * grad(u)) + r * u * (1 - u) - upwind(c, u, x) + 0.01 * d.input
initial u = 0.5 + 0.3 * sin(2 * pi * x)
readout s = integral(u^2)
train pde on d using {scheme}(steps = {steps}) until 0.5 loss mse(s, label) optimizer adam() gradient continuous
"
    )
}

/// Returns the relative difference of the continuous gradient from the discrete one.
fn difference(boundary: &str, scheme: &str, points: usize, steps: usize) -> f64 {
    let dir = temp_dir(&format!("{scheme}-{points}-{steps}"));
    let inputs = Array2::from_shape_fn((8, 1), |(i, _)| i as f64 / 8.0);
    ndarray_npy::write_npy(dir.join("x.npy"), &inputs).expect("write samples");
    let labels = Array2::from_shape_fn((8, 1), |(i, _)| 0.1 + 0.01 * i as f64);
    ndarray_npy::write_npy(dir.join("y.npy"), &labels).expect("write labels");
    let model = checked_model(&dir, &source(boundary, scheme, points, steps));
    let Task::Train(task) = &model.tasks[0] else {
        panic!("a train task")
    };
    assert_eq!(task.gradient, GradientMethod::Continuous);
    let options = TrainOptions {
        max_train_samples: Some(4),
        ..TrainOptions::default()
    };
    let prepared = prepare(&model, task, &dir, &options).expect("prepares");
    let _ = std::fs::remove_dir_all(&dir);
    let mut discrete = prepared.lowered.clone();
    discrete.gradient = GradientMethod::Discrete;
    let labels = label_matrix(&prepared.train.targets);
    let count = prepared.train.len();
    let chunk = Chunk {
        samples: prepared.train.inputs.slice(s![..count, ..]),
        labels: labels.slice(s![..count, ..]),
        classes: None,
        pass: None,
    };
    let a = Network {
        model: &model,
        task: &discrete,
        compiled: None,
    };
    let b = Network {
        model: &model,
        task: &prepared.lowered,
        compiled: None,
    };
    gradient_difference(&a, &b, &prepared.params, &chunk).expect("gradients")
}

fn rates(differences: &[f64], refinement: f64) -> Vec<f64> {
    differences
        .windows(2)
        .map(|d| (d[0] / d[1]).ln() / refinement.ln())
        .collect()
}

const BOUNDARIES: [&str; 2] = [
    "boundary u: periodic on x",
    "boundary u: neumann(0.1) on x.min\nboundary u: robin(1, 2, 0.3) on x.max",
];

#[test]
fn euler_difference_falls_at_first_order() {
    for boundary in BOUNDARIES {
        let differences: Vec<f64> = [50, 100, 200, 400]
            .iter()
            .map(|steps| difference(boundary, "euler", 17, *steps))
            .collect();
        let observed = rates(&differences, 2.0);
        eprintln!("euler: differences {differences:?}, rates {observed:?}");
        assert!(
            differences[0] > 1e-6,
            "the continuous and discrete gradients differ by only {:e}",
            differences[0]
        );
        for rate in &observed {
            assert!(
                (rate - 1.0).abs() < 0.1,
                "{boundary}: rates {observed:?} (differences {differences:?})"
            );
        }
    }
}

#[test]
fn rk4_difference_falls_at_high_order() {
    for boundary in BOUNDARIES {
        let differences: Vec<f64> = [40, 80, 160]
            .iter()
            .map(|steps| difference(boundary, "rk4", 17, *steps))
            .collect();
        let observed = rates(&differences, 2.0);
        eprintln!("rk4: differences {differences:?}, rates {observed:?}");
        for rate in &observed {
            assert!(
                *rate > 3.5,
                "{boundary}: rates {observed:?} (differences {differences:?})"
            );
        }
    }
}

#[test]
fn euler_difference_falls_as_grid_and_step_shrink() {
    // Δt ∝ h², so the first-order time error falls as h².
    let differences: Vec<f64> = [(17, 50), (33, 200), (65, 800)]
        .iter()
        .map(|(points, steps)| difference(BOUNDARIES[0], "euler", *points, *steps))
        .collect();
    let observed = rates(&differences, 2.0);
    eprintln!("euler, Δt ∝ h²: differences {differences:?}, rates in h {observed:?}");
    for rate in &observed {
        assert!(
            (rate - 2.0).abs() < 0.2,
            "rates in h {observed:?} (differences {differences:?})"
        );
    }
}

#[test]
fn gradient_check_reports_continuous_difference() {
    let dir = temp_dir("check");
    let inputs = Array2::from_shape_fn((8, 1), |(i, _)| i as f64 / 8.0);
    ndarray_npy::write_npy(dir.join("x.npy"), &inputs).expect("write samples");
    let labels = Array2::from_shape_fn((8, 1), |(i, _)| 0.1 + 0.01 * i as f64);
    ndarray_npy::write_npy(dir.join("y.npy"), &labels).expect("write labels");
    let model = checked_model(&dir, &source(BOUNDARIES[1], "rk4", 17, 40));
    let report = check_gradients(&model, &dir, 5).expect("gradient check runs");
    let _ = std::fs::remove_dir_all(&dir);
    let check = &report.checks[0];
    // The Taylor and dot tests run on the discrete adjoint, which is exact.
    assert!(check.taylor_passed, "rates {:?}", check.rates);
    assert!(check.dot_passed, "dot {:e}", check.dot_relative_error);
    let difference = check
        .continuous_difference
        .expect("a continuous difference");
    assert!(
        difference > 0.0 && difference < 1e-3,
        "difference {difference:e}"
    );
}
