//! Every train example run as the plain neural-network layers that `npdec explain` names, written
//! here with loops (matrix–vector products, direct convolutions, padding by the boundary
//! condition, activations, residual and RK4 updates), equals the interpreter's forward sweep to
//! 1e-12 relative in f64.
//!
//! The padding takes its ghost values from the boundary condition as `npdec_ir::ghost_cells`
//! defines them (polynomial extrapolation; periodic wrap), and stencils their weights from
//! `npdec_ir::fornberg`: those are the discretization's definitions, while everything that makes
//! the layers a network is independent of the interpreter's code.

use ndarray::Array2;
use npdec_ir::fornberg::centered_weights;
use npdec_ir::ghost_cells::{dirichlet_weights, extrapolation_degree, robin_degree, robin_weights};
use npdec_learn::data::ShuffleRng;
use npdec_runtime::train::adjoint::{Chunk, Network};
use npdec_runtime::train::tape::ParamValues;
use npdec_runtime::train::training::prepare;
use npdec_runtime::train::TrainOptions;
use npdec_symbolic::{Model, Task};
use std::path::{Path, PathBuf};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// A parameter's values at a step, by name.
fn param<'a>(model: &Model, params: &'a ParamValues, name: &str, step: usize) -> &'a [f64] {
    let index = model
        .params
        .iter()
        .position(|p| p.name == name)
        .unwrap_or_else(|| panic!("no parameter {name}"));
    let size = params.step_sizes[index];
    let values = &params.values[index];
    let steps = values.len() / size;
    let step = step.min(steps - 1);
    &values[step * size..(step + 1) * size]
}

/// `W x + b` with `W[rows, columns]` row-major.
fn dense(w: &[f64], x: &[f64], b: Option<&[f64]>) -> Vec<f64> {
    let columns = x.len();
    let rows = w.len() / columns;
    (0..rows)
        .map(|i| {
            let mut sum = 0.0;
            for j in 0..columns {
                sum += w[i * columns + j] * x[j];
            }
            sum + b.map_or(0.0, |b| b[i % b.len()])
        })
        .collect()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// How one side of an axis is padded.
#[derive(Clone, Copy)]
enum Side {
    Periodic,
    /// Zero-slope Neumann: the ghost is the extrapolation of a polynomial with zero slope.
    Neumann {
        degree: usize,
    },
    /// Dirichlet `value`: the ghost extrapolates the polynomial through the boundary value.
    Dirichlet {
        value: f64,
        degree: usize,
    },
}

/// Pads a line by `halo` ghost values on both sides.
fn pad_line(line: &[f64], halo: usize, side: Side) -> Vec<f64> {
    let n = line.len();
    let ghost = |j: usize, lower: bool| -> f64 {
        let node = |k: usize| if lower { line[k] } else { line[n - 1 - k] };
        match side {
            Side::Periodic => {
                if lower {
                    line[n - j]
                } else {
                    line[j - 1]
                }
            }
            Side::Neumann { degree } => {
                let (weights, _) = robin_weights(halo, degree);
                weights[j - 1]
                    .iter()
                    .enumerate()
                    .map(|(k, w)| w * node(k))
                    .sum()
            }
            Side::Dirichlet { value, degree } => {
                let weights = dirichlet_weights(halo, degree);
                weights[j - 1]
                    .iter()
                    .enumerate()
                    .map(|(k, w)| w * if k == 0 { value } else { node(k) })
                    .sum()
            }
        }
    };
    let mut padded = Vec::with_capacity(n + 2 * halo);
    for j in (1..=halo).rev() {
        padded.push(ghost(j, true));
    }
    padded.extend_from_slice(line);
    for j in 1..=halo {
        padded.push(ghost(j, false));
    }
    padded
}

/// Pads a `rows × columns` image by `halo` on every side: rows first, then columns.
fn pad_image(image: &[f64], rows: usize, columns: usize, halo: usize, side: Side) -> Vec<f64> {
    let wide = columns + 2 * halo;
    let mut by_rows = vec![0.0; rows * wide];
    for r in 0..rows {
        let line = pad_line(&image[r * columns..(r + 1) * columns], halo, side);
        by_rows[r * wide..(r + 1) * wide].copy_from_slice(&line);
    }
    let tall = rows + 2 * halo;
    let mut padded = vec![0.0; tall * wide];
    for c in 0..wide {
        let column: Vec<f64> = (0..rows).map(|r| by_rows[r * wide + c]).collect();
        let line = pad_line(&column, halo, side);
        for (r, v) in line.into_iter().enumerate() {
            padded[r * wide + c] = v;
        }
    }
    padded
}

/// A direct 3 × 3 convolution (cross-correlation) `K[out, in, 3, 3]` of `channels × rows × columns`
/// images padded by one, plus `bias`.
fn conv3x3(
    kernel: &[f64],
    input: &[f64],
    channels: usize,
    rows: usize,
    columns: usize,
    side: Side,
    bias: f64,
) -> Vec<f64> {
    let points = rows * columns;
    let padded: Vec<Vec<f64>> = (0..channels)
        .map(|c| pad_image(&input[c * points..(c + 1) * points], rows, columns, 1, side))
        .collect();
    let wide = columns + 2;
    let out_channels = kernel.len() / (channels * 9);
    let mut out = vec![0.0; out_channels * points];
    for o in 0..out_channels {
        for r in 0..rows {
            for c in 0..columns {
                let mut sum = 0.0;
                for (i, image) in padded.iter().enumerate() {
                    for a in 0..3 {
                        for b in 0..3 {
                            sum += kernel[((o * channels + i) * 3 + a) * 3 + b]
                                * image[(r + a) * wide + c + b];
                        }
                    }
                }
                out[o * points + r * columns + c] = sum + bias;
            }
        }
    }
    out
}

/// Average pooling with a `factor × factor` window and stride of `channels × size × size` images.
fn average_pool(input: &[f64], channels: usize, size: usize, factor: usize) -> Vec<f64> {
    let coarse = size / factor;
    let mut out = vec![0.0; channels * coarse * coarse];
    for ch in 0..channels {
        for r in 0..coarse {
            for c in 0..coarse {
                let mut sum = 0.0;
                for a in 0..factor {
                    for b in 0..factor {
                        let (row, column) = (r * factor + a, c * factor + b);
                        sum += input[(ch * size + row) * size + column];
                    }
                }
                out[(ch * coarse + r) * coarse + c] = sum / (factor * factor) as f64;
            }
        }
    }
    out
}

/// Nearest-neighbour upsampling of `channels × coarse × coarse` images by `factor`.
fn nearest_upsample(input: &[f64], channels: usize, coarse: usize, factor: usize) -> Vec<f64> {
    let size = coarse * factor;
    let mut out = vec![0.0; channels * size * size];
    for ch in 0..channels {
        for row in 0..size {
            for column in 0..size {
                out[(ch * size + row) * size + column] =
                    input[(ch * coarse + row / factor) * coarse + column / factor];
            }
        }
    }
    out
}

/// The second derivative of a line with the centered stencil of `order`, spacing `h`.
fn second_derivative(line: &[f64], order: usize, h: f64, side: Side) -> Vec<f64> {
    let weights = centered_weights(2, order);
    let radius = weights.len() / 2;
    let padded = pad_line(line, radius, side);
    (0..line.len())
        .map(|i| {
            let mut sum = 0.0;
            for (k, w) in weights.iter().enumerate() {
                sum += w * padded[i + k];
            }
            sum / (h * h)
        })
        .collect()
}

/// The network of each example, as layers.
fn reference(name: &str, model: &Model, params: &ParamValues, x: &[f64]) -> Vec<f64> {
    let p = |n: &str, step: usize| param(model, params, n, step);
    match name {
        // 4 × residual(conv 1 fixed (laplace, Neumann) + dense 784→784 + swish) → dense 784→10.
        "mnist_mlp" => {
            let degree = robin_degree(2, 784);
            let mut u = x.to_vec();
            for step in 0..4 {
                let lap = second_derivative(&u, 2, 1.0, Side::Neumann { degree });
                let z = dense(p("W", step), &u, Some(p("b", step)));
                let d = p("D", step)[0];
                for i in 0..u.len() {
                    u[i] += 1.0 * (d * lap[i] + z[i] * sigmoid(z[i]));
                }
            }
            dense(p("Wout", 0), &u, Some(p("bout", 0)))
        }
        // 4 × residual(conv 3×3 8→8 per step, circular padding + tanh) → dense 6272→10.
        "mnist_cnn" | "digits" => {
            let (side, size, dt) = if name == "digits" {
                (
                    Side::Neumann {
                        degree: robin_degree(2, 8),
                    },
                    8,
                    0.5,
                )
            } else {
                (Side::Periodic, 28, 1.0)
            };
            let mut u: Vec<f64> = (0..8).flat_map(|_| x.iter().copied()).collect();
            for step in 0..4 {
                let k = p("K", step);
                let c = p("c", step)[0];
                let conv = conv3x3(k, &u, 8, size, size, side, c);
                for i in 0..u.len() {
                    u[i] += dt * conv[i].tanh();
                }
            }
            dense(p("Wout", 0), &u, Some(p("bout", 0)))
        }
        // 4 × residual(conv 3×3 8→8 per step + tanh + avg pool 2×2 + upsample 2×2 nearest)
        // → avg pool 2×2 → dense 128→10.
        "digits_pool" => {
            let side = Side::Neumann {
                degree: robin_degree(2, 8),
            };
            let mut u: Vec<f64> = (0..8).flat_map(|_| x.iter().copied()).collect();
            for step in 0..4 {
                let conv = conv3x3(p("K", step), &u, 8, 8, 8, side, p("c", step)[0]);
                let coarse = nearest_upsample(&average_pool(&u, 8, 8, 2), 8, 4, 2);
                let a = p("a", step)[0];
                for i in 0..u.len() {
                    u[i] += 0.5 * (conv[i].tanh() + a * (coarse[i] - u[i]));
                }
            }
            dense(p("Wout", 0), &average_pool(&u, 8, 8, 2), Some(p("bout", 0)))
        }
        // 28 × plain leaky cell: h += Δt (−h + tanh(W h + U x_n + b)), then dense 128→10.
        "mnist_rnn" => {
            let mut h = vec![0.0; 128];
            for step in 0..28 {
                let row = &x[step * 28..(step + 1) * 28];
                let wh = dense(p("W", step), &h, None);
                let ux = dense(p("U", step), row, None);
                let b = p("b", step);
                for i in 0..128 {
                    h[i] += 0.5 * (-h[i] + (wh[i] + ux[i] + b[i]).tanh());
                }
            }
            dense(p("Wout", 0), &h, Some(p("bout", 0)))
        }
        // 100 × RK4 of D·laplace (order 4, Dirichlet 0): a 4-stage block of fixed convolutions.
        "identify_diffusion" => {
            let (points, dt, h) = (51, 0.1 / 100.0, 1.0 / 50.0);
            let side = Side::Dirichlet {
                value: 0.0,
                degree: extrapolation_degree(4, points),
            };
            let d = p("D", 0)[0];
            let rate = |u: &[f64]| -> Vec<f64> {
                second_derivative(u, 4, h, side)
                    .into_iter()
                    .map(|v| d * v)
                    .collect()
            };
            let hold = |u: &mut Vec<f64>| {
                u[0] = 0.0;
                u[points - 1] = 0.0;
            };
            let mut u = x.to_vec();
            hold(&mut u);
            for _ in 0..100 {
                let k1 = rate(&u);
                let mut v: Vec<f64> = (0..points).map(|i| u[i] + 0.5 * dt * k1[i]).collect();
                hold(&mut v);
                let k2 = rate(&v);
                let mut v: Vec<f64> = (0..points).map(|i| u[i] + 0.5 * dt * k2[i]).collect();
                hold(&mut v);
                let k3 = rate(&v);
                let mut v: Vec<f64> = (0..points).map(|i| u[i] + dt * k3[i]).collect();
                hold(&mut v);
                let k4 = rate(&v);
                for i in 0..points {
                    u[i] += dt * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]) / 6.0;
                }
                hold(&mut u);
            }
            u
        }
        other => panic!("no reference network for {other}"),
    }
}

#[test]
fn plain_layers_equal_the_interpreter_for_every_example() {
    for name in [
        "mnist_mlp",
        "mnist_cnn",
        "mnist_rnn",
        "digits",
        "digits_pool",
        "identify_diffusion",
    ] {
        let path = examples_dir().join(format!("{name}.npde"));
        let (_, checked) = npdec_sema::check_path(&path).expect("reads the example");
        let model = checked.model.expect("the example checks");
        let task = model
            .tasks
            .iter()
            .find_map(|t| match t {
                Task::Train(train) => Some(train),
                Task::Solve(_) => None,
            })
            .expect("a train task");
        let prepared = prepare(
            &model,
            task,
            &examples_dir(),
            &TrainOptions {
                seed: 5,
                ..TrainOptions::default()
            },
        )
        .expect("prepares");
        let features = prepared.train.features();
        let batch = 2;
        let mut rng = ShuffleRng::from_seed(13);
        let inputs = Array2::from_shape_fn((batch, features), |_| rng.uniform());
        let width = match &prepared.train.targets {
            npdec_learn::data::Targets::Values(values) => values.ncols(),
            npdec_learn::data::Targets::Classes { .. } => 1,
        };
        let labels = Array2::zeros((batch, width));
        let classes = vec![0usize; batch];
        let network = Network {
            model: &model,
            task: &prepared.lowered,
            compiled: None,
        };
        let chunk = Chunk {
            samples: inputs.view(),
            labels: labels.view(),
            classes: Some(&classes),
            pass: None,
        };
        let interpreted = network
            .evaluate(&prepared.params, &chunk)
            .expect("finite")
            .outputs;
        let mut worst: f64 = 0.0;
        let mut scale: f64 = 0.0;
        for r in 0..batch {
            let x = inputs.row(r).to_vec();
            let layers = reference(name, &model, &prepared.params, &x);
            assert_eq!(layers.len(), interpreted.ncols(), "{name}");
            for (c, v) in layers.iter().enumerate() {
                worst = worst.max((v - interpreted[[r, c]]).abs());
                scale = scale.max(interpreted[[r, c]].abs());
            }
        }
        println!("{name}: max |layers − interpreter| = {worst:.2e} (outputs up to {scale:.2e})");
        assert!(
            worst <= 1e-12 * scale.max(1e-300),
            "{name}: {worst:e} against outputs up to {scale:e}"
        );
    }
}
