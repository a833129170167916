//! Gradient checks of the discrete adjoint, as `npdec check --gradients` runs them.
//!
//! - The **Taylor test**: for a random direction `δ`, the remainder
//!   `r(ε) = |J(θ + εδ) − J(θ) − ε ∇J·δ|` of a correct gradient falls as `ε²`, so the observed
//!   rates `log(r(εₖ)/r(εₖ₊₁)) / log(εₖ/εₖ₊₁)` are 2 (Farrell, Ham, Funke & Rognes, "Automated
//!   derivation of the adjoint of high-level transient finite element programs", SIAM J. Sci.
//!   Comput. 35(4), 2013, section 5.1).
//! - The **dot test**: with the tangent-linear map `J` from parameters to the head's outputs,
//!   `⟨J v, w⟩ = ⟨v, Jᵀ w⟩` for random `v` and `w`. The adjoint sweep computes `Jᵀ w`.
//!
//! Both run on the first samples of the training set with freshly initialized parameters, on the
//! discrete adjoint whatever the task's `gradient` clause selects. For a task with `gradient
//! continuous` the relative difference of the continuous gradient from the discrete one is
//! reported too. The model is only read, and nothing is written.

use crate::engine::Compiler;
use crate::train::adjoint::{Chunk, HeadSeed, Network};
use crate::train::gemm::ProductPrecision;
use crate::train::params::{flatten_learnable, learnable, unflatten_learnable};
use crate::train::tape::ParamValues;
use crate::train::training::{compile_rates, label_matrix, prepare, TrainOptions};
use ndarray::{s, Array2};
use npdec_learn::data::{ShuffleRng, Targets};
use npdec_symbolic::{GradientMethod, Model, Task};
use serde::Serialize;
use std::path::Path;

/// The allowed distance of every Taylor rate from 2.
pub const TAYLOR_RATE_TOLERANCE: f64 = 0.1;
/// The largest relative difference of the two sides of the dot test.
pub const DOT_TOLERANCE: f64 = 1e-12;
/// Samples the checks run on.
pub const CHECK_SAMPLES: usize = 4;

/// The checks of one train task.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GradientCheck {
    /// The index of the task among the model's tasks.
    pub task: usize,
    pub parameters: usize,
    pub epsilons: Vec<f64>,
    pub remainders: Vec<f64>,
    pub rates: Vec<f64>,
    pub taylor_passed: bool,
    /// `⟨J v, w⟩`.
    pub dot_tangent: f64,
    /// `⟨v, Jᵀ w⟩`.
    pub dot_adjoint: f64,
    pub dot_relative_error: f64,
    pub dot_passed: bool,
    /// `‖g_continuous − g_discrete‖ / ‖g_discrete‖` for a task with `gradient continuous`.
    pub continuous_difference: Option<f64>,
    /// The engine of the adjoint of the rates: `JIT` or `tape`.
    pub adjoint_engine: String,
    /// The reason the given compiler could not compile the rates, if any.
    pub adjoint_fallback: Option<String>,
}

/// The checks of every train task of a model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GradientCheckReport {
    pub checks: Vec<GradientCheck>,
}

impl GradientCheckReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.taylor_passed && c.dot_passed)
    }
}

/// Runs the Taylor and dot tests on every train task of `model` with the tape's adjoint; data
/// paths are relative to `base_dir`.
pub fn check_gradients(
    model: &Model,
    base_dir: &Path,
    seed: u64,
) -> Result<GradientCheckReport, String> {
    check_gradients_compiled(model, base_dir, seed, None)
}

/// Runs the Taylor and dot tests on every train task of `model`, with the adjoint of the rates
/// compiled by `compiler` where it can compile them. The tangent of the dot test always runs on
/// the tape, so with a compiler the dot test compares the compiled adjoint against the tape.
pub fn check_gradients_compiled(
    model: &Model,
    base_dir: &Path,
    seed: u64,
    compiler: Option<&dyn Compiler>,
) -> Result<GradientCheckReport, String> {
    let mut checks = Vec::new();
    for (index, task) in model.tasks.iter().enumerate() {
        let Task::Train(task) = task else { continue };
        let options = TrainOptions {
            seed,
            max_train_samples: Some(CHECK_SAMPLES),
            ..TrainOptions::default()
        };
        let mut prepared = prepare(model, task, base_dir, &options).map_err(|e| e.message)?;
        let method = prepared.lowered.gradient;
        prepared.lowered.gradient = GradientMethod::Discrete;
        let (compiled, fallback) =
            compile_rates(compiler, &prepared.lowered, ProductPrecision::F64);
        let network = Network {
            model,
            task: &prepared.lowered,
            compiled: compiled.as_deref(),
        };
        let labels = label_matrix(&prepared.train.targets);
        let classes = match &prepared.train.targets {
            Targets::Classes { labels, .. } => Some(labels.as_slice()),
            Targets::Values(_) => None,
        };
        let count = prepared.train.len();
        let chunk = Chunk {
            samples: prepared.train.inputs.slice(s![..count, ..]),
            labels: labels.slice(s![..count, ..]),
            classes,
            pass: None,
        };
        let mut check = check_chunk(&network, &prepared.params, &chunk, seed)?;
        check.task = index;
        check.adjoint_engine = match &compiled {
            Some(_) => compiler.map_or("tape", |c| c.name()).to_string(),
            None => "tape".to_string(),
        };
        check.adjoint_fallback = fallback;
        if method == GradientMethod::Continuous {
            let mut continuous = prepared.lowered.clone();
            continuous.gradient = GradientMethod::Continuous;
            let (compiled_continuous, _) =
                compile_rates(compiler, &continuous, ProductPrecision::F64);
            let continuous_network = Network {
                model,
                task: &continuous,
                compiled: compiled_continuous.as_deref(),
            };
            check.continuous_difference = Some(gradient_difference(
                &network,
                &continuous_network,
                &prepared.params,
                &chunk,
            )?);
        }
        checks.push(check);
    }
    if checks.is_empty() {
        return Err("the model has no train task whose gradients could be checked".into());
    }
    Ok(GradientCheckReport { checks })
}

/// Returns `‖g_b − g_a‖ / ‖g_a‖` for the loss gradients of two networks of one task.
pub fn gradient_difference(
    a: &Network,
    b: &Network,
    params: &ParamValues,
    chunk: &Chunk,
) -> Result<f64, String> {
    let learnable = learnable(a.model);
    let seed = HeadSeed::Loss {
        normalizer: chunk.samples.nrows() as f64,
    };
    let mut gradients = Vec::new();
    for network in [a, b] {
        let mut gradient = params.zeros_like();
        network
            .gradient(params, chunk, &seed, network.task.steps, &mut gradient)
            .map_err(|e| format!("the forward sweep is not finite at step {}", e.step))?;
        gradients.push(flatten_learnable(&gradient, &learnable));
    }
    let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
    let difference = norm(&mut gradients[0].iter().zip(&gradients[1]).map(|(x, y)| y - x));
    let scale = norm(&mut gradients[0].iter().copied()).max(f64::MIN_POSITIVE);
    Ok(difference / scale)
}

/// Runs both tests on one chunk at the given parameters.
pub fn check_chunk(
    network: &Network,
    params: &ParamValues,
    chunk: &Chunk,
    seed: u64,
) -> Result<GradientCheck, String> {
    let learnable = learnable(network.model);
    let samples = chunk.samples.nrows() as f64;
    let steps = network.task.steps;
    let loss = |p: &ParamValues| -> Result<f64, String> {
        network
            .evaluate(p, chunk)
            .map(|r| r.loss_sum / samples)
            .map_err(|e| format!("the forward sweep is not finite at step {}", e.step))
    };

    // Taylor test.
    let mut gradient = params.zeros_like();
    let result = network
        .gradient(
            params,
            chunk,
            &HeadSeed::Loss {
                normalizer: samples,
            },
            steps,
            &mut gradient,
        )
        .map_err(|e| format!("the forward sweep is not finite at step {}", e.step))?;
    let value = result.loss_sum / samples;
    let theta = flatten_learnable(params, &learnable);
    let g = flatten_learnable(&gradient, &learnable);
    let mut rng = ShuffleRng::from_seed(seed ^ 0x5eed);
    // Directions scaled to each entry's magnitude keep every parameter's perturbation relative.
    let direction: Vec<f64> = theta
        .iter()
        .map(|t| (2.0 * rng.uniform() - 1.0) * t.abs().max(0.1))
        .collect();
    let slope: f64 = g.iter().zip(&direction).map(|(a, b)| a * b).sum();
    // The remainder falls as ε² only once ε is small enough for the third-order term not to
    // matter, and round-off limits how small ε may be. So three starting sizes are tried, largest
    // first, and the first sequence whose every rate is within tolerance is kept.
    let mut taylor = None;
    for start in [1e-2, 1e-3, 1e-4] {
        let epsilons: Vec<f64> = (0..5).map(|k| start / 2f64.powi(k)).collect();
        let mut remainders = Vec::new();
        for epsilon in &epsilons {
            let shifted: Vec<f64> = theta
                .iter()
                .zip(&direction)
                .map(|(t, d)| t + epsilon * d)
                .collect();
            let mut trial = params.clone();
            unflatten_learnable(&shifted, &mut trial, &learnable);
            remainders.push((loss(&trial)? - value - epsilon * slope).abs());
        }
        let rates: Vec<f64> = remainders
            .windows(2)
            .zip(epsilons.windows(2))
            .map(|(r, e)| (r[0] / r[1]).ln() / (e[0] / e[1]).ln())
            .collect();
        let passed = rates
            .iter()
            .all(|rate| (rate - 2.0).abs() <= TAYLOR_RATE_TOLERANCE);
        let done = passed || start == 1e-4;
        taylor = Some((epsilons, remainders, rates, passed));
        if done {
            break;
        }
    }
    let (epsilons, remainders, rates, taylor_passed) = taylor.expect("at least one sequence runs");

    // Dot test.
    let v: Vec<f64> = theta.iter().map(|_| 2.0 * rng.uniform() - 1.0).collect();
    let mut v_params = params.zeros_like();
    unflatten_learnable(&v, &mut v_params, &learnable);
    let (outputs, jv) = network.tangent_outputs(params, chunk, &v_params);
    let w = Array2::from_shape_fn(outputs.raw_dim(), |_| 2.0 * rng.uniform() - 1.0);
    let mut jt_w = params.zeros_like();
    network
        .gradient(
            params,
            chunk,
            &HeadSeed::Outputs(w.view()),
            steps,
            &mut jt_w,
        )
        .map_err(|e| format!("the forward sweep is not finite at step {}", e.step))?;
    let dot_tangent: f64 = jv.iter().zip(w.iter()).map(|(a, b)| a * b).sum();
    let jt_w = flatten_learnable(&jt_w, &learnable);
    let dot_adjoint: f64 = v.iter().zip(&jt_w).map(|(a, b)| a * b).sum();
    let scale = dot_tangent
        .abs()
        .max(dot_adjoint.abs())
        .max(f64::MIN_POSITIVE);
    let dot_relative_error = (dot_tangent - dot_adjoint).abs() / scale;

    Ok(GradientCheck {
        task: 0,
        parameters: theta.len(),
        epsilons,
        remainders,
        rates,
        taylor_passed,
        dot_tangent,
        dot_adjoint,
        dot_relative_error,
        dot_passed: dot_relative_error <= DOT_TOLERANCE,
        continuous_difference: None,
        adjoint_engine: "tape".to_string(),
        adjoint_fallback: None,
    })
}
