//! The adjoint benchmark: one forward step and one reverse step of training (the rates, their
//! vector–Jacobian product and the step update) on the tape and with the JIT's kernels, side by
//! side in one run. The cases are:
//! - a pointwise reaction–diffusion model over a 2-D field, one sample, Euler and RK4;
//! - a residual dense layer `D ∇²u + swish(W u + b)` like `examples/mnist_mlp.npde`, 784 points and
//!   a batch of 32;
//! - a residual convolution `tanh(K(t) ⋆ u + c)` like `examples/mnist_cnn.npde`, 16 × 16 pixels,
//!   4 channels and a batch of 16.
//!
//! `NPDEC_BENCH_QUICK=1` shrinks every case for a smoke run. Run with
//! `cargo bench -p npdec-jit --bench adjoint`. It prints one JSON object per case and step with the
//! median times of both engines and their ratio, tape over JIT, so a ratio above 1 means that the
//! JIT is faster.

use ndarray::Array2;
use npdec_jit::adjoint::CompiledTape;
use npdec_jit::JitOptions;
use npdec_runtime::train::adjoint::{Chunk, Network};
use npdec_runtime::train::lower::{lower_train_task, SampleShape};
use npdec_runtime::train::params::initialize_params;
use npdec_runtime::train::tape::ParamValues;
use npdec_symbolic::{Model, Task};
use std::path::Path;
use std::time::Instant;

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// One model of the benchmark: its source, the features of a sample and the batch of a chunk.
struct Case {
    name: String,
    source: String,
    features: usize,
    batch: usize,
}

/// Returns the reaction–diffusion model on a `points` × `points` grid under `scheme`.
fn reaction_diffusion(points: usize, scheme: &str) -> Case {
    Case {
        name: format!("{scheme}, reaction-diffusion {points}x{points}"),
        source: format!(
            "model bench
grid x in [0, 1] points {points}
grid y in [0, 1] points {points}
field u(x, y)
boundary u: neumann(0) on x
boundary u: periodic on y
data d = csv(\"data.csv\", label = last) split 2
param D = 0.01
param P(x, y) ~ normal(0.1, 0.01)
equation rd: dt(u) = D * laplace(u) + P * u - u^3 + 0.1 * tanh(u) * exp(-u^2)
initial u = 0.5 * sin(6 * x) * cos(4 * y)
readout s = integral(u)
train rd on d using {scheme}(steps = 4) until 1e-4 loss mse(s, label) optimizer adam() epochs 1 batch 2
"
        ),
        features: 1,
        batch: 1,
    }
}

/// Returns the residual dense layer of `examples/mnist_mlp.npde` on `points` pixels.
fn dense(points: usize, batch: usize) -> Case {
    Case {
        name: format!("euler, dense {points}x{points}, batch {batch}"),
        source: format!(
            "model bench_dense
use std::activations::swish
grid k index {points}
field u(k)
data d = csv(\"data.csv\", label = last) split 2
param D = 0.05
param W[{points}, {points}] ~ glorot
param b[{points}] = 0
param Wout[10, {points}] ~ glorot
equation net: dt(u) = D * laplace(u) + swish(W @ u + b)
boundary u: neumann(0) on k
initial u = d.input
readout y = Wout @ u
train net on d using euler(steps = 4) until 4 loss cross_entropy(y, label) optimizer adam() epochs 1 batch {batch}
"
        ),
        features: points,
        batch,
    }
}

/// Returns the residual convolution of `examples/mnist_cnn.npde` on a `side` × `side` image of
/// `channels` channels.
fn convolution(side: usize, channels: usize, batch: usize) -> Case {
    Case {
        name: format!("euler, convolution {side}x{side}x{channels}, batch {batch}"),
        source: format!(
            "model bench_conv
grid (row, col) image ({side}, {side})
field u(row, col)[{channels}]
data d = csv(\"data.csv\", label = last) split 2
param K(t)[{channels}, {channels}, 3, 3] ~ he
param c = 0
param Wout[10, {}] ~ glorot
equation net: dt(u) = tanh(conv(K, u) + c)
boundary u: periodic on row, col
initial u = d.input
readout y = Wout @ u
train net on d using euler(steps = 4) until 4 loss cross_entropy(y, label) optimizer adam() epochs 1 batch {batch}
",
            side * side * channels
        ),
        features: side * side,
        batch,
    }
}

/// Writes the case's model and a data file of four samples, and returns the checked model.
fn checked_model(dir: &Path, case: &Case) -> Model {
    let row: Vec<String> = (0..case.features)
        .map(|i| format!("{:.3}", 0.1 + 0.8 * ((i * 37 % 101) as f64 / 101.0)))
        .collect();
    let row = row.join(",");
    let data: String = (0..4).map(|label| format!("{row},{label}\n")).collect();
    std::fs::write(dir.join("data.csv"), data).expect("write data");
    let path = dir.join("bench.npde");
    std::fs::write(&path, &case.source).expect("write model");
    let (_, checked) = npdec_sema::check_path(&path).expect("read model");
    match checked.model {
        Some(model) => model,
        None => {
            eprintln!(
                "error: the benchmark model `{}` does not check: {:?}",
                case.name, checked.diagnostics
            );
            std::process::exit(1);
        }
    }
}

/// Returns the median milliseconds of runs `1..=repeats` of `run`, which gets the run's index,
/// after run 0 as a warm-up (the JIT allocates its buffers in its first run).
fn time(repeats: usize, mut run: impl FnMut(usize)) -> f64 {
    run(0);
    let times = (1..=repeats)
        .map(|repeat| {
            let started = Instant::now();
            run(repeat);
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median(times)
}

/// Times one forward and one reverse step of `case` on both engines and prints one JSON object per
/// step.
fn run_case(dir: &Path, case: &Case, repeats: usize) {
    let model = checked_model(dir, case);
    let task = model
        .tasks
        .iter()
        .find_map(|t| match t {
            Task::Train(t) => Some(t.clone()),
            _ => None,
        })
        .expect("a train task");
    let sample = SampleShape {
        features: case.features,
        dims: vec![case.features],
        label_width: 1,
    };
    let lowered = lower_train_task(&model, &task, &sample).expect("lowers");
    let params: ParamValues =
        initialize_params(&model, lowered.steps, &lowered.param_step_sizes, 0).expect("params");

    let compiled = match CompiledTape::<f64>::new(&lowered, &JitOptions::default()) {
        Ok(compiled) => compiled,
        Err(error) => {
            eprintln!("error: {}: {error}", case.name);
            std::process::exit(1);
        }
    };

    let batch = case.batch;
    let samples = Array2::from_shape_fn((batch, case.features), |(b, i)| {
        0.5 * ((b * 7 + i) as f64 * 0.13).sin()
    });
    let labels = Array2::zeros((batch, 1));
    let chunk = Chunk {
        samples: samples.view(),
        labels: labels.view(),
        classes: None,
        pass: None,
    };
    let states: Vec<Array2<f64>> = lowered
        .states
        .iter()
        .map(|slot| {
            Array2::from_shape_fn((batch, slot.len()), |(b, i)| {
                0.5 * ((b * 3 + i) as f64 * 0.37).sin()
            })
        })
        .collect();
    let lambda: Vec<Array2<f64>> = states
        .iter()
        .map(|s| Array2::from_shape_fn(s.raw_dim(), |(b, i)| ((b + i) as f64 * 0.11).cos()))
        .collect();

    let networks = [
        Network {
            model: &model,
            task: &lowered,
            compiled: None,
        },
        Network {
            model: &model,
            task: &lowered,
            compiled: Some(&compiled),
        },
    ];

    // Each repeat starts from other states, because the JIT reuses the forward sweep of the last
    // evaluation at equal inputs, which training meets only at some steps.
    let variants: Vec<Vec<Array2<f64>>> = (0..=repeats)
        .map(|repeat| {
            let mut variant = states.clone();
            variant[0][[0, 0]] += 1e-6 * repeat as f64;
            variant
        })
        .collect();

    let forward: Vec<f64> = networks
        .iter()
        .map(|network| {
            let mut next = variants.clone();
            time(repeats, |repeat| {
                network.step_forward(&params, &chunk, 1, &mut next[repeat]);
            })
        })
        .collect();
    let reverse: Vec<f64> = networks
        .iter()
        .map(|network| {
            let mut adjoints = vec![lambda.clone(); repeats + 1];
            let mut gradients = vec![params.zeros_like(); repeats + 1];
            time(repeats, |repeat| {
                network.step_reverse(
                    &params,
                    &chunk,
                    1,
                    &variants[repeat],
                    &mut adjoints[repeat],
                    &mut gradients[repeat],
                );
            })
        })
        .collect();

    for (step, medians) in [("forward step", forward), ("reverse step", reverse)] {
        println!(
            "{{\"case\":\"{step}, {}\",\"tape_ms\":{:.3},\"jit_ms\":{:.3},\"ratio\":{:.2},\"kernels\":{},\"compile_ms\":{:.1},\"repeats\":{repeats}}}",
            case.name,
            medians[0],
            medians[1],
            medians[0] / medians[1],
            compiled.kernel_count(),
            compiled.compile_time().as_secs_f64() * 1e3
        );
    }
}

fn main() {
    let quick = std::env::var_os("NPDEC_BENCH_QUICK").is_some();
    let repeats = if quick { 3 } else { 31 };
    let cases = if quick {
        vec![
            reaction_diffusion(32, "euler"),
            reaction_diffusion(32, "rk4"),
            dense(64, 4),
            convolution(8, 2, 4),
        ]
    } else {
        vec![
            reaction_diffusion(128, "euler"),
            reaction_diffusion(128, "rk4"),
            dense(784, 32),
            convolution(16, 4, 16),
        ]
    };
    let dir = std::env::temp_dir().join(format!("npdec-adjoint-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    for case in &cases {
        run_case(&dir, case, repeats);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
