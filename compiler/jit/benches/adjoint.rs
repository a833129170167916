//! The adjoint benchmark: one reverse step of training (the vector–Jacobian product of the rates
//! and the step update) on the tape and with the JIT's kernels, side by side in one run, on a
//! reaction–diffusion model over a 2-D field. `NPDEC_BENCH_QUICK=1` shrinks the grid for a smoke
//! run.
//!
//! Run with `cargo bench -p npdec-jit --bench adjoint`; it prints one JSON object per case with the
//! median times of both engines and their ratio.

use ndarray::Array2;
use npdec_jit::adjoint::CompiledTape;
use npdec_jit::JitOptions;
use npdec_runtime::train::adjoint::{Chunk, Network};
use npdec_runtime::train::lower::{lower_train_task, SampleShape};
use npdec_runtime::train::params::initialize_params;
use npdec_symbolic::Task;
use std::time::Instant;

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let quick = std::env::var_os("NPDEC_BENCH_QUICK").is_some();
    let points = if quick { 32 } else { 128 };
    let repeats = if quick { 3 } else { 11 };
    let dir = std::env::temp_dir().join(format!("npdec-adjoint-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    std::fs::write(dir.join("data.csv"), "0.1,0\n0.2,1\n0.3,0\n0.4,1\n").expect("write data");
    for scheme in ["euler", "rk4"] {
        let source = format!(
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
        );
        let path = dir.join("bench.npde");
        std::fs::write(&path, source).expect("write model");
        let (_, checked) = npdec_sema::check_path(&path).expect("read model");
        let Some(model) = checked.model else {
            eprintln!(
                "error: the benchmark model does not check: {:?}",
                checked.diagnostics
            );
            std::process::exit(1);
        };
        let task = model
            .tasks
            .iter()
            .find_map(|t| match t {
                Task::Train(t) => Some(t.clone()),
                _ => None,
            })
            .expect("a train task");
        let sample = SampleShape {
            features: 1,
            dims: vec![1],
            label_width: 1,
        };
        let lowered = lower_train_task(&model, &task, &sample).expect("lowers");
        let params =
            initialize_params(&model, lowered.steps, &lowered.param_step_sizes, 0).expect("params");
        let compiled = match CompiledTape::<f64>::new(&lowered, &JitOptions::default()) {
            Ok(compiled) => compiled,
            Err(error) => {
                eprintln!("error: {error}");
                std::process::exit(1);
            }
        };
        let samples = Array2::zeros((1, 1));
        let labels = Array2::zeros((1, 1));
        let chunk = Chunk {
            samples: samples.view(),
            labels: labels.view(),
            classes: None,
        };
        let len = lowered.states[0].len();
        let states = vec![Array2::from_shape_fn((1, len), |(_, i)| {
            0.5 * ((i as f64) * 0.37).sin()
        })];
        let lambda = vec![Array2::from_shape_fn((1, len), |(_, i)| {
            ((i as f64) * 0.11).cos()
        })];
        let networks = [
            (
                "tape",
                Network {
                    model: &model,
                    task: &lowered,
                    compiled: None,
                },
            ),
            (
                "jit",
                Network {
                    model: &model,
                    task: &lowered,
                    compiled: Some(&compiled),
                },
            ),
        ];
        let mut medians = Vec::new();
        for (_, network) in &networks {
            let mut times = Vec::new();
            for _ in 0..repeats {
                let mut adjoint = lambda.clone();
                let mut gradient = params.zeros_like();
                let started = Instant::now();
                network.step_reverse(&params, &chunk, 1, &states, &mut adjoint, &mut gradient);
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
            medians.push(median(times));
        }
        println!(
            "{{\"case\":\"reverse step, {scheme}, {points}x{points}\",\"tape_ms\":{:.3},\"jit_ms\":{:.3},\"ratio\":{:.2},\"kernels\":{},\"compile_ms\":{:.1},\"repeats\":{repeats}}}",
            medians[0],
            medians[1],
            medians[0] / medians[1],
            compiled.kernel_count(),
            compiled.compile_time().as_secs_f64() * 1e3
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
