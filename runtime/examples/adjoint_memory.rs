//! Peak memory of a checkpointed adjoint: one gradient of a 1000-step explicit Euler solve of the
//! heat equation on a 512 × 512 periodic grid, either with the default number of binomial
//! checkpoints or storing every step. `bench/adjoint_memory.sh` runs both under
//! `/usr/bin/time -v` and compares their maximum resident set sizes.
//!
//! Usage: `adjoint_memory default|all [POINTS] [STEPS]`

use ndarray::Array2;
use npdec_learn::revolve::default_snapshots;
use npdec_runtime::train::adjoint::{Chunk, HeadSeed, Network};
use npdec_runtime::train::training::{label_matrix, prepare};
use npdec_runtime::train::TrainOptions;
use npdec_symbolic::Task;
use std::time::Instant;

fn main() -> Result<(), String> {
    let arguments: Vec<String> = std::env::args().collect();
    let mode = arguments.get(1).map_or("default", String::as_str);
    let points: usize = arguments
        .get(2)
        .map_or(Ok(512), |a| a.parse())
        .map_err(|e| format!("invalid POINTS: {e}"))?;
    let steps: usize = arguments
        .get(3)
        .map_or(Ok(1000), |a| a.parse())
        .map_err(|e| format!("invalid STEPS: {e}"))?;

    // One sample: a smooth initial state and a target, written as NPY next to the model.
    let dir = std::env::temp_dir().join(format!("npdec-adjoint-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let n = points * points;
    let initial = Array2::from_shape_fn((1, n), |(_, i)| {
        let (x, y) = (
            (i / points) as f64 / points as f64,
            (i % points) as f64 / points as f64,
        );
        (2.0 * std::f64::consts::PI * x).sin() * (2.0 * std::f64::consts::PI * y).cos()
    });
    let target = initial.mapv(|v| 0.9 * v);
    ndarray_npy::write_npy(dir.join("u0.npy"), &initial).map_err(|e| e.to_string())?;
    ndarray_npy::write_npy(dir.join("u1.npy"), &target).map_err(|e| e.to_string())?;
    // The explicit step stays stable for D Δt · 8 / h² ≤ 2 with h = 1/points.
    let dt = 0.2 / (points * points) as f64;
    let source = format!(
        "model adjoint_memory
grid (x, y) in ([0, 1], [0, 1]) points ({points}, {points})
field u(x, y)
data d = npy(\"u0.npy\", labels = \"u1.npy\") split 1
param D = 0.1
equation heat: dt(u) = D * laplace(u)
boundary u: periodic on x, y
initial u = d.input
train heat on d using euler(steps = {steps}) until {} loss mse(u, label) optimizer lbfgs(max_iter = 1) batch 1
",
        dt * steps as f64
    );
    let path = dir.join("model.npde");
    std::fs::write(&path, source).map_err(|e| e.to_string())?;
    let (_, checked) = npdec_sema::check_path(&path).map_err(|e| e.to_string())?;
    let model = checked
        .model
        .ok_or_else(|| format!("the model does not check: {:?}", checked.diagnostics))?;
    let Task::Train(task) = &model.tasks[0] else {
        return Err("the model has no train task".into());
    };
    let prepared = prepare(&model, task, &dir, &TrainOptions::default()).map_err(|e| e.message)?;
    let network = Network {
        model: &model,
        task: &prepared.lowered,
        compiled: None,
    };
    let labels = label_matrix(&prepared.train.targets);
    let chunk = Chunk {
        samples: prepared.train.inputs.view(),
        labels: labels.view(),
        classes: None,
        pass: None,
    };
    let snapshots = match mode {
        "all" => steps,
        "default" => default_snapshots(steps),
        other => {
            return Err(format!(
                "unknown mode `{other}`: expected one of `default`, `all`"
            ))
        }
    };

    let started = Instant::now();
    let mut gradient = prepared.params.zeros_like();
    let result = network
        .gradient(
            &prepared.params,
            &chunk,
            &HeadSeed::Loss { normalizer: 1.0 },
            snapshots,
            &mut gradient,
        )
        .map_err(|e| format!("not finite at step {}", e.step))?;
    println!(
        "{{\"mode\": \"{mode}\", \"points\": {points}, \"steps\": {steps}, \"snapshots\": {snapshots}, \"state_bytes\": {}, \"loss\": {:e}, \"dD\": {:e}, \"seconds\": {:.2}}}",
        n * 8,
        result.loss_sum,
        gradient.values[0][0],
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
