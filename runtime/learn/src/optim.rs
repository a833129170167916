//! Optimizers: SGD with momentum, Adam, L-BFGS with a strong-Wolfe line search, and the closed-form
//! least-squares fit of a linear readout (pseudoinverse learning).
//!
//! Parameters and gradients are flat `f64` slices: a training loop concatenates its parameter
//! arrays in a fixed order. Every optimizer state derives `Serialize`/`Deserialize`, and
//! [`crate::checkpoint`] stores it exactly.
//!
//! Sources:
//! - momentum: Sutskever, Martens, Dahl & Hinton, "On the importance of initialization and
//!   momentum in deep learning" (ICML 2013);
//! - Adam: Kingma & Ba, "Adam: a method for stochastic optimization" (ICLR 2015), Algorithm 1;
//! - L-BFGS: Nocedal & Wright, "Numerical Optimization" (2nd ed., 2006), Algorithm 7.4
//!   (two-loop recursion), Algorithms 3.5 and 3.6 (line search and zoom) and equation 3.59
//!   (cubic interpolation).

use std::collections::VecDeque;
use std::fmt;

use ndarray::{Array2, ArrayView2};
use npdec_symbolic::model::Optimizer;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// An invalid optimizer setting, mismatched lengths or a non-finite objective.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimError {
    pub message: String,
}

impl fmt::Display for OptimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OptimError {}

fn error(message: String) -> OptimError {
    OptimError { message }
}

/// Entries per task when an elementwise update is split across threads.
const PARALLEL_CHUNK: usize = 1 << 14;

fn check_positive(name: &str, value: f64) -> Result<(), OptimError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(error(format!(
            "invalid {name} {value}: expected a positive finite number"
        )))
    }
}

fn check_unit_interval(name: &str, value: f64) -> Result<(), OptimError> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(error(format!(
            "invalid {name} {value}: expected a number in [0, 1)"
        )))
    }
}

/// Checks the gradient length and sizes the state vectors on the first step.
fn prepare_state(
    what: &str,
    state: &mut [&mut Vec<f64>],
    parameters: &[f64],
    gradient: &[f64],
) -> Result<(), OptimError> {
    if parameters.len() != gradient.len() {
        return Err(error(format!(
            "{what}: {} but a gradient of length {}",
            crate::count(parameters.len(), "parameter"),
            gradient.len()
        )));
    }
    for vector in state.iter_mut() {
        if vector.is_empty() {
            vector.resize(parameters.len(), 0.0);
        } else if vector.len() != parameters.len() {
            return Err(error(format!(
                "{what}: the state was built for {}, this step has {}",
                crate::count(vector.len(), "parameter"),
                parameters.len()
            )));
        }
    }
    Ok(())
}

/// Stochastic gradient descent with heavy-ball momentum: `v ← μ v + g`, `θ ← θ − η v`
/// (the form of Sutskever et al. 2013 with the learning rate outside the velocity, as PyTorch
/// uses). `μ = 0` is plain SGD.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sgd {
    pub learning_rate: f64,
    pub momentum: f64,
    pub velocity: Vec<f64>,
}

impl Sgd {
    pub fn new(learning_rate: f64, momentum: f64) -> Result<Sgd, OptimError> {
        check_positive("learning rate", learning_rate)?;
        check_unit_interval("momentum", momentum)?;
        Ok(Sgd {
            learning_rate,
            momentum,
            velocity: Vec::new(),
        })
    }

    /// Updates the parameters in place with one gradient.
    pub fn step(&mut self, parameters: &mut [f64], gradient: &[f64]) -> Result<(), OptimError> {
        prepare_state("SGD", &mut [&mut self.velocity], parameters, gradient)?;
        for ((p, v), g) in parameters.iter_mut().zip(&mut self.velocity).zip(gradient) {
            *v = self.momentum * *v + g;
            *p -= self.learning_rate * *v;
        }
        Ok(())
    }
}

/// Adam (Kingma & Ba 2015, Algorithm 1): `m ← β₁ m + (1 − β₁) g`, `v ← β₂ v + (1 − β₂) g²`,
/// `θ ← θ − α m̂ / (√v̂ + ε)` with the bias-corrected moments `m̂ = m / (1 − β₁ᵗ)`,
/// `v̂ = v / (1 − β₂ᵗ)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adam {
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    /// The number of steps taken so far.
    pub step_count: u64,
    pub first_moment: Vec<f64>,
    pub second_moment: Vec<f64>,
}

impl Adam {
    pub fn new(
        learning_rate: f64,
        beta1: f64,
        beta2: f64,
        epsilon: f64,
    ) -> Result<Adam, OptimError> {
        check_positive("learning rate", learning_rate)?;
        check_unit_interval("beta1", beta1)?;
        check_unit_interval("beta2", beta2)?;
        check_positive("epsilon", epsilon)?;
        Ok(Adam {
            learning_rate,
            beta1,
            beta2,
            epsilon,
            step_count: 0,
            first_moment: Vec::new(),
            second_moment: Vec::new(),
        })
    }

    /// Updates the parameters in place with one gradient.
    pub fn step(&mut self, parameters: &mut [f64], gradient: &[f64]) -> Result<(), OptimError> {
        prepare_state(
            "Adam",
            &mut [&mut self.first_moment, &mut self.second_moment],
            parameters,
            gradient,
        )?;
        let update = self.next_update();
        // Each entry is updated on its own, so splitting the vectors across the current rayon
        // pool gives the same values as one sequential pass.
        parameters
            .par_chunks_mut(PARALLEL_CHUNK)
            .zip(self.first_moment.par_chunks_mut(PARALLEL_CHUNK))
            .zip(self.second_moment.par_chunks_mut(PARALLEL_CHUNK))
            .zip(gradient.par_chunks(PARALLEL_CHUNK))
            .for_each(|(((p, m), v), g)| {
                for (((p, m), v), g) in p.iter_mut().zip(m).zip(v).zip(g) {
                    update.apply(p, m, v, *g);
                }
            });
        Ok(())
    }

    /// Counts a step and returns the constants of its update.
    fn next_update(&mut self) -> AdamUpdate {
        self.step_count += 1;
        let t = self.step_count as f64;
        let first_correction = 1.0 - self.beta1.powf(t);
        let second_correction = 1.0 - self.beta2.powf(t);
        AdamUpdate {
            beta1: self.beta1,
            beta2: self.beta2,
            step_size: self.learning_rate / first_correction,
            second_scale: 1.0 / second_correction.sqrt(),
            epsilon: self.epsilon,
        }
    }
}

/// The constants of one Adam step, with the bias corrections folded into a step size and a scale
/// of the root of the second moment (one division and one square root per entry).
#[derive(Clone, Copy)]
struct AdamUpdate {
    beta1: f64,
    beta2: f64,
    step_size: f64,
    second_scale: f64,
    epsilon: f64,
}

impl AdamUpdate {
    /// Updates one parameter `p` and its moments `m`, `v` with its gradient `g`:
    /// `p ← p − α m̂ / (√v̂ + ε)` with `m̂ = m / (1 − β₁ᵗ)` and `v̂ = v / (1 − β₂ᵗ)`.
    #[inline]
    fn apply(self, p: &mut f64, m: &mut f64, v: &mut f64, g: f64) {
        *m = self.beta1 * *m + (1.0 - self.beta1) * g;
        *v = self.beta2 * *v + (1.0 - self.beta2) * g * g;
        *p -= self.step_size * *m / (v.sqrt() * self.second_scale + self.epsilon);
    }

    /// Updates the entries of one chunk with the gradient `g + l2 · p`, writes the new values
    /// rounded to `f32` into `rounded` when given, and returns whether a new value is not finite.
    /// All slices have the length of `p`.
    ///
    /// On x86-64 the loop runs in a copy compiled for the widest vector extension the processor
    /// has (the binary itself targets baseline x86-64, SSE2). Each entry is computed by the same
    /// IEEE operations in every copy (no contraction into fused multiply-adds), so the values are
    /// identical bit for bit.
    fn apply_chunk(
        self,
        p: &mut [f64],
        m: &mut [f64],
        v: &mut [f64],
        g: &[f64],
        l2: f64,
        rounded: Option<&mut [f32]>,
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the processor has the extension the copy is compiled for.
                return unsafe { self.apply_chunk_avx512(p, m, v, g, l2, rounded) };
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: as above.
                return unsafe { self.apply_chunk_avx2(p, m, v, g, l2, rounded) };
            }
        }
        self.apply_chunk_portable(p, m, v, g, l2, rounded)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn apply_chunk_avx512(
        self,
        p: &mut [f64],
        m: &mut [f64],
        v: &mut [f64],
        g: &[f64],
        l2: f64,
        rounded: Option<&mut [f32]>,
    ) -> bool {
        self.apply_chunk_portable(p, m, v, g, l2, rounded)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn apply_chunk_avx2(
        self,
        p: &mut [f64],
        m: &mut [f64],
        v: &mut [f64],
        g: &[f64],
        l2: f64,
        rounded: Option<&mut [f32]>,
    ) -> bool {
        self.apply_chunk_portable(p, m, v, g, l2, rounded)
    }

    #[inline(always)]
    fn apply_chunk_portable(
        self,
        p: &mut [f64],
        m: &mut [f64],
        v: &mut [f64],
        g: &[f64],
        l2: f64,
        rounded: Option<&mut [f32]>,
    ) -> bool {
        let n = p.len();
        let (m, v, g) = (&mut m[..n], &mut v[..n], &g[..n]);
        let mut bad = false;
        match rounded {
            Some(rounded) => {
                let rounded = &mut rounded[..n];
                for i in 0..n {
                    let gradient = g[i] + l2 * p[i];
                    self.apply(&mut p[i], &mut m[i], &mut v[i], gradient);
                    rounded[i] = p[i] as f32;
                    bad |= !p[i].is_finite();
                }
            }
            None => {
                for i in 0..n {
                    let gradient = g[i] + l2 * p[i];
                    self.apply(&mut p[i], &mut m[i], &mut v[i], gradient);
                    bad |= !p[i].is_finite();
                }
            }
        }
        bad
    }
}

impl Adam {
    /// Updates parameters stored as several slices, in the order of one flat vector, after
    /// adding `l2 · θ` to each gradient entry. The values equal those of `add_l2_gradient`
    /// followed by [`Adam::step`] on the concatenated vectors, without copying them.
    pub fn step_segments(
        &mut self,
        parameters: &mut [&mut [f64]],
        gradients: &[&[f64]],
        l2: f64,
    ) -> Result<(), OptimError> {
        self.step_segments_rounded(parameters, gradients, &mut [], l2)
            .map(|_| ())
    }

    /// Updates the parameters as [`Adam::step_segments`] does, in the same pass writes the new
    /// values rounded to `f32` into `rounded[i]` for segment `i` when `rounded` is not empty, and
    /// returns for each segment whether all its new values are finite. One pass over memory
    /// instead of three, for training whose products read `f32` copies of the parameters.
    pub fn step_segments_rounded(
        &mut self,
        parameters: &mut [&mut [f64]],
        gradients: &[&[f64]],
        rounded: &mut [&mut [f32]],
        l2: f64,
    ) -> Result<Vec<bool>, OptimError> {
        if parameters.len() != gradients.len()
            || parameters
                .iter()
                .zip(gradients)
                .any(|(p, g)| p.len() != g.len())
        {
            return Err(error(format!(
                "Adam: parameter segments of lengths {:?} but gradient segments of lengths {:?}",
                parameters.iter().map(|p| p.len()).collect::<Vec<_>>(),
                gradients.iter().map(|g| g.len()).collect::<Vec<_>>()
            )));
        }
        if !rounded.is_empty()
            && (rounded.len() != parameters.len()
                || rounded
                    .iter()
                    .zip(parameters.iter())
                    .any(|(r, p)| r.len() != p.len()))
        {
            return Err(error(format!(
                "Adam: parameter segments of lengths {:?} but rounded copies of lengths {:?}",
                parameters.iter().map(|p| p.len()).collect::<Vec<_>>(),
                rounded.iter().map(|r| r.len()).collect::<Vec<_>>()
            )));
        }

        let total: usize = parameters.iter().map(|p| p.len()).sum();
        for vector in [&mut self.first_moment, &mut self.second_moment] {
            if vector.is_empty() {
                vector.resize(total, 0.0);
            } else if vector.len() != total {
                return Err(error(format!(
                    "Adam: the state was built for {}, this step has {total}",
                    crate::count(vector.len(), "parameter")
                )));
            }
        }

        let update = self.next_update();
        let mut finite = Vec::with_capacity(parameters.len());
        let mut offset = 0;
        for (index, (parameters, gradient)) in parameters.iter_mut().zip(gradients).enumerate() {
            let range = offset..offset + parameters.len();
            offset = range.end;
            let moments = parameters
                .par_chunks_mut(PARALLEL_CHUNK)
                .zip(self.first_moment[range.clone()].par_chunks_mut(PARALLEL_CHUNK))
                .zip(self.second_moment[range].par_chunks_mut(PARALLEL_CHUNK))
                .zip(gradient.par_chunks(PARALLEL_CHUNK));
            // Each chunk reports whether a new value is not finite; `reduce` visits every chunk.
            let bad = match rounded.get_mut(index) {
                Some(rounded) => moments
                    .zip(rounded.par_chunks_mut(PARALLEL_CHUNK))
                    .map(|((((p, m), v), g), r)| update.apply_chunk(p, m, v, g, l2, Some(r)))
                    .reduce(|| false, |a, b| a | b),
                None => moments
                    .map(|(((p, m), v), g)| update.apply_chunk(p, m, v, g, l2, None))
                    .reduce(|| false, |a, b| a | b),
            };
            finite.push(!bad);
        }
        Ok(finite)
    }
}

/// A mini-batch optimizer chosen by a model's `train` task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StepOptimizer {
    Sgd(Sgd),
    Adam(Adam),
}

impl StepOptimizer {
    /// Builds SGD or Adam from a model's optimizer. L-BFGS and the pseudoinverse are not
    /// mini-batch methods and are rejected: use [`minimize`] and [`fit_linear_readout`].
    pub fn from_model(optimizer: &Optimizer) -> Result<StepOptimizer, OptimError> {
        match optimizer {
            Optimizer::Sgd { lr, momentum } => Ok(StepOptimizer::Sgd(Sgd::new(*lr, *momentum)?)),
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
            } => Ok(StepOptimizer::Adam(Adam::new(*lr, *beta1, *beta2, *eps)?)),
            Optimizer::Lbfgs { .. } => Err(error(
                "L-BFGS works on the full batch and has no per-batch step: call `minimize`".into(),
            )),
            Optimizer::Pseudoinverse { .. } => Err(error(
                "the pseudoinverse is solved in closed form and has no per-batch step: call `fit_linear_readout`".into(),
            )),
        }
    }

    /// The step size the next update uses.
    pub fn learning_rate(&self) -> f64 {
        match self {
            StepOptimizer::Sgd(sgd) => sgd.learning_rate,
            StepOptimizer::Adam(adam) => adam.learning_rate,
        }
    }

    /// Changes the step size of later updates (a learning-rate schedule); the moments and the
    /// velocity are kept.
    pub fn set_learning_rate(&mut self, learning_rate: f64) {
        match self {
            StepOptimizer::Sgd(sgd) => sgd.learning_rate = learning_rate,
            StepOptimizer::Adam(adam) => adam.learning_rate = learning_rate,
        }
    }

    pub fn step(&mut self, parameters: &mut [f64], gradient: &[f64]) -> Result<(), OptimError> {
        match self {
            StepOptimizer::Sgd(sgd) => sgd.step(parameters, gradient),
            StepOptimizer::Adam(adam) => adam.step(parameters, gradient),
        }
    }
}

/// Settings of [`minimize`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LbfgsOptions {
    pub max_iterations: usize,
    /// The number of correction pairs `(s, y)` kept (`m` in Nocedal & Wright).
    pub history: usize,
    /// Stop when the largest gradient component in absolute value is at most this.
    pub gradient_tolerance: f64,
    /// Stop after this many evaluations of the objective, line searches included.
    pub max_evaluations: usize,
    /// Sufficient-decrease constant `c₁` of the Wolfe conditions.
    pub c1: f64,
    /// Curvature constant `c₂` of the strong Wolfe conditions.
    pub c2: f64,
}

impl Default for LbfgsOptions {
    fn default() -> Self {
        LbfgsOptions {
            max_iterations: 1000,
            history: 10,
            gradient_tolerance: 1e-8,
            max_evaluations: 20_000,
            c1: 1e-4,
            c2: 0.9,
        }
    }
}

impl LbfgsOptions {
    /// Builds the options from a model's `Lbfgs` optimizer, with defaults for the rest.
    pub fn from_model(optimizer: &Optimizer) -> Result<LbfgsOptions, OptimError> {
        match optimizer {
            Optimizer::Lbfgs {
                max_iterations,
                history,
                tolerance,
            } => {
                let options = LbfgsOptions {
                    max_iterations: *max_iterations,
                    history: *history,
                    gradient_tolerance: *tolerance,
                    ..LbfgsOptions::default()
                };
                options.validate()?;
                Ok(options)
            }
            other => Err(error(format!(
                "expected an L-BFGS optimizer, found {other:?}"
            ))),
        }
    }

    fn validate(&self) -> Result<(), OptimError> {
        if self.history == 0 {
            return Err(error(
                "invalid L-BFGS history 0: expected at least 1".into(),
            ));
        }
        if self.gradient_tolerance.is_nan() || self.gradient_tolerance < 0.0 {
            return Err(error(format!(
                "invalid L-BFGS gradient tolerance {}: expected a non-negative number",
                self.gradient_tolerance
            )));
        }
        if !(0.0 < self.c1 && self.c1 < self.c2 && self.c2 < 1.0) {
            return Err(error(format!(
                "invalid Wolfe constants c1 = {}, c2 = {}: expected 0 < c1 < c2 < 1",
                self.c1, self.c2
            )));
        }
        Ok(())
    }
}

/// The reason [`minimize`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Termination {
    /// The gradient fell below the tolerance.
    Converged,
    MaxIterations,
    MaxEvaluations,
    /// No step satisfying the Wolfe conditions was found, even along the steepest descent; the
    /// current point is the best one seen. This happens near a minimum when differences in the
    /// objective fall below its rounding error.
    LineSearchFailed,
}

/// The state of an L-BFGS run between iterations: the current point, its value and gradient,
/// and the most recent correction pairs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lbfgs {
    pub options: LbfgsOptions,
    pub x: Vec<f64>,
    pub value: f64,
    pub gradient: Vec<f64>,
    /// Steps `s = x_{k+1} − x_k`, oldest first.
    pub steps: VecDeque<Vec<f64>>,
    /// Gradient changes `y = g_{k+1} − g_k`, oldest first.
    pub gradient_changes: VecDeque<Vec<f64>>,
    pub iterations: usize,
    pub evaluations: usize,
}

/// The result of [`minimize`].
#[derive(Clone, Debug, PartialEq)]
pub struct LbfgsResult {
    pub x: Vec<f64>,
    pub value: f64,
    pub gradient_norm_max: f64,
    pub iterations: usize,
    pub evaluations: usize,
    pub termination: Termination,
}

/// A point evaluated during a line search.
struct Trial {
    alpha: f64,
    value: f64,
    slope: f64,
    x: Vec<f64>,
    gradient: Vec<f64>,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm_max(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

impl Lbfgs {
    /// Evaluates the objective at `x0` and returns the starting state. `f_and_grad(x, g)`
    /// returns `f(x)` and writes `∇f(x)` into `g`.
    pub fn start<F>(
        x0: Vec<f64>,
        options: LbfgsOptions,
        f_and_grad: &mut F,
    ) -> Result<Lbfgs, OptimError>
    where
        F: FnMut(&[f64], &mut [f64]) -> f64,
    {
        options.validate()?;
        if x0.is_empty() {
            return Err(error("L-BFGS needs at least one parameter".into()));
        }
        let mut gradient = vec![0.0; x0.len()];
        let value = f_and_grad(&x0, &mut gradient);
        if !value.is_finite() || gradient.iter().any(|g| !g.is_finite()) {
            return Err(error(format!(
                "L-BFGS: the objective or its gradient is not finite at the starting point (value {value})"
            )));
        }
        Ok(Lbfgs {
            options,
            x: x0,
            value,
            gradient,
            steps: VecDeque::new(),
            gradient_changes: VecDeque::new(),
            iterations: 0,
            evaluations: 1,
        })
    }

    /// Returns why the run should stop before the next iteration, if it should.
    pub fn termination(&self) -> Option<Termination> {
        if norm_max(&self.gradient) <= self.options.gradient_tolerance {
            Some(Termination::Converged)
        } else if self.iterations >= self.options.max_iterations {
            Some(Termination::MaxIterations)
        } else if self.evaluations >= self.options.max_evaluations {
            Some(Termination::MaxEvaluations)
        } else {
            None
        }
    }

    /// Computes `−H g` by the two-loop recursion (Nocedal & Wright, Algorithm 7.4), with the
    /// initial matrix `H₀ = γ I`, `γ = sᵀy / yᵀy` of the newest pair (equation 7.20).
    fn search_direction(&self) -> Vec<f64> {
        let mut q = self.gradient.clone();
        let pairs = self.steps.len();
        let mut alphas = vec![0.0; pairs];
        for i in (0..pairs).rev() {
            let (s, y) = (&self.steps[i], &self.gradient_changes[i]);
            let rho = 1.0 / dot(y, s);
            alphas[i] = rho * dot(s, &q);
            for (qj, yj) in q.iter_mut().zip(y) {
                *qj -= alphas[i] * yj;
            }
        }
        if let (Some(s), Some(y)) = (self.steps.back(), self.gradient_changes.back()) {
            let gamma = dot(s, y) / dot(y, y);
            q.iter_mut().for_each(|qj| *qj *= gamma);
        }
        for ((s, y), alpha) in self.steps.iter().zip(&self.gradient_changes).zip(&alphas) {
            let rho = 1.0 / dot(y, s);
            let beta = rho * dot(y, &q);
            for (qj, sj) in q.iter_mut().zip(s) {
                *qj += (alpha - beta) * sj;
            }
        }
        q.iter_mut().for_each(|qj| *qj = -*qj);
        q
    }

    /// Performs one iteration. Returns `Some` when the run has stopped, in which case the state
    /// is unchanged by this call.
    pub fn iterate<F>(&mut self, f_and_grad: &mut F) -> Result<Option<Termination>, OptimError>
    where
        F: FnMut(&[f64], &mut [f64]) -> f64,
    {
        if let Some(termination) = self.termination() {
            return Ok(Some(termination));
        }

        // Search along the quasi-Newton direction; if that fails, forget the curvature pairs and
        // retry once along the steepest descent.
        let mut trial = None;
        for attempt in 0..2 {
            let mut direction = self.search_direction();
            let mut slope = dot(&direction, &self.gradient);
            // A NaN slope fails `slope < 0.0` too, and falls back to the steepest descent.
            let descent = slope < 0.0;
            if !descent || attempt == 1 {
                self.steps.clear();
                self.gradient_changes.clear();
                direction = self.gradient.iter().map(|g| -g).collect();
                slope = dot(&direction, &self.gradient);
            }
            // Without curvature pairs the direction is unscaled: start with a step of length
            // at most 1 in the max norm.
            let initial = if self.steps.is_empty() {
                (1.0 / norm_max(&direction)).min(1.0)
            } else {
                1.0
            };
            trial = self.line_search(f_and_grad, &direction, slope, initial)?;
            if trial.is_some() || self.termination().is_some() {
                break;
            }
        }
        let Some(trial) = trial else {
            return Ok(Some(
                self.termination().unwrap_or(Termination::LineSearchFailed),
            ));
        };

        // Store the new correction pair unless its curvature is too small to keep H positive
        // definite in floating point.
        let s: Vec<f64> = trial.x.iter().zip(&self.x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = trial
            .gradient
            .iter()
            .zip(&self.gradient)
            .map(|(a, b)| a - b)
            .collect();
        let curvature = dot(&s, &y);
        if curvature > f64::EPSILON * dot(&y, &y) {
            if self.steps.len() == self.options.history {
                self.steps.pop_front();
                self.gradient_changes.pop_front();
            }
            self.steps.push_back(s);
            self.gradient_changes.push_back(y);
        }
        self.x = trial.x;
        self.value = trial.value;
        self.gradient = trial.gradient;
        self.iterations += 1;
        Ok(None)
    }

    fn evaluate<F>(&mut self, f_and_grad: &mut F, direction: &[f64], alpha: f64) -> Trial
    where
        F: FnMut(&[f64], &mut [f64]) -> f64,
    {
        let x: Vec<f64> = self
            .x
            .iter()
            .zip(direction)
            .map(|(x, d)| x + alpha * d)
            .collect();
        let mut gradient = vec![0.0; x.len()];
        let value = f_and_grad(&x, &mut gradient);
        self.evaluations += 1;
        let slope = dot(&gradient, direction);
        Trial {
            alpha,
            value,
            slope,
            x,
            gradient,
        }
    }

    /// Finds a step satisfying the strong Wolfe conditions (Nocedal & Wright, Algorithm 3.5).
    /// Non-finite trial values count as too long a step. Returns `None` if no such step was
    /// found within the evaluation budget.
    fn line_search<F>(
        &mut self,
        f_and_grad: &mut F,
        direction: &[f64],
        slope0: f64,
        initial_alpha: f64,
    ) -> Result<Option<Trial>, OptimError>
    where
        F: FnMut(&[f64], &mut [f64]) -> f64,
    {
        const MAX_BRACKETING_STEPS: usize = 40;
        let (c1, c2) = (self.options.c1, self.options.c2);
        let value0 = self.value;
        let mut previous = Trial {
            alpha: 0.0,
            value: value0,
            slope: slope0,
            x: self.x.clone(),
            gradient: self.gradient.clone(),
        };
        let mut alpha = initial_alpha;
        for i in 0..MAX_BRACKETING_STEPS {
            if self.evaluations >= self.options.max_evaluations {
                return Ok(None);
            }
            let trial = self.evaluate(f_and_grad, direction, alpha);
            let finite = trial.value.is_finite() && trial.slope.is_finite();
            if !finite
                || trial.value > value0 + c1 * alpha * slope0
                || (i > 0 && trial.value >= previous.value)
            {
                return Ok(self.zoom(f_and_grad, direction, value0, slope0, previous, trial));
            }
            if trial.slope.abs() <= -c2 * slope0 {
                return Ok(Some(trial));
            }
            if trial.slope >= 0.0 {
                return Ok(self.zoom(f_and_grad, direction, value0, slope0, trial, previous));
            }
            previous = trial;
            alpha *= 2.0;
        }
        Ok(None)
    }

    /// Narrows a bracket `[low, high]` that contains a strong-Wolfe step (Nocedal & Wright,
    /// Algorithm 3.6). `low` has the lower value and satisfies sufficient decrease.
    fn zoom<F>(
        &mut self,
        f_and_grad: &mut F,
        direction: &[f64],
        value0: f64,
        slope0: f64,
        mut low: Trial,
        mut high: Trial,
    ) -> Option<Trial>
    where
        F: FnMut(&[f64], &mut [f64]) -> f64,
    {
        const MAX_ZOOM_STEPS: usize = 60;
        let (c1, c2) = (self.options.c1, self.options.c2);
        for _ in 0..MAX_ZOOM_STEPS {
            if self.evaluations >= self.options.max_evaluations {
                return None;
            }
            let width = (high.alpha - low.alpha).abs();
            if width <= f64::EPSILON * low.alpha.abs().max(high.alpha.abs()) {
                return None;
            }
            let alpha = interpolate(&low, &high);
            let trial = self.evaluate(f_and_grad, direction, alpha);
            let finite = trial.value.is_finite() && trial.slope.is_finite();
            if !finite || trial.value > value0 + c1 * alpha * slope0 || trial.value >= low.value {
                high = trial;
            } else {
                if trial.slope.abs() <= -c2 * slope0 {
                    return Some(trial);
                }
                if trial.slope * (high.alpha - low.alpha) >= 0.0 {
                    high = low;
                }
                low = trial;
            }
        }
        None
    }
}

/// Returns the minimizer of the cubic through the values and slopes at both ends (Nocedal &
/// Wright, equation 3.59), kept at least a tenth of the bracket away from either end. Falls back
/// to the midpoint when the cubic has no usable minimizer or an end is not finite.
fn interpolate(low: &Trial, high: &Trial) -> f64 {
    let (a, b) = (low.alpha, high.alpha);
    let (lo, hi) = (a.min(b), a.max(b));
    let margin = 0.1 * (hi - lo);
    let midpoint = 0.5 * (a + b);
    if !(high.value.is_finite() && high.slope.is_finite()) {
        return midpoint;
    }
    let d1 = low.slope + high.slope - 3.0 * (low.value - high.value) / (a - b);
    let discriminant = d1 * d1 - low.slope * high.slope;
    if discriminant.is_nan() || discriminant < 0.0 {
        return midpoint;
    }
    let d2 = (b - a).signum() * discriminant.sqrt();
    let denominator = high.slope - low.slope + 2.0 * d2;
    let alpha = b - (b - a) * (high.slope + d2 - d1) / denominator;
    if alpha.is_finite() && alpha >= lo + margin && alpha <= hi - margin {
        alpha
    } else {
        midpoint
    }
}

/// Minimizes a smooth function with L-BFGS from `x0`. `f_and_grad(x, g)` returns `f(x)` and
/// writes `∇f(x)` into `g`.
pub fn minimize<F>(
    mut f_and_grad: F,
    x0: Vec<f64>,
    options: &LbfgsOptions,
) -> Result<LbfgsResult, OptimError>
where
    F: FnMut(&[f64], &mut [f64]) -> f64,
{
    let mut state = Lbfgs::start(x0, options.clone(), &mut f_and_grad)?;
    let termination = loop {
        if let Some(termination) = state.iterate(&mut f_and_grad)? {
            break termination;
        }
    };
    Ok(LbfgsResult {
        gradient_norm_max: norm_max(&state.gradient),
        x: state.x,
        value: state.value,
        iterations: state.iterations,
        evaluations: state.evaluations,
        termination,
    })
}

/// Fits the linear readout `V = Y H⁺` in closed form (pseudoinverse learning), with the ridge
/// (Tikhonov) variant `V = Y Hᵀ (H Hᵀ + λ I)⁻¹` when `ridge = λ > 0`.
///
/// `hidden` is `H`, features × samples (one column per sample); `targets` is `Y`, outputs ×
/// samples (one-hot columns for classes). The result `V` is outputs × features. Append a row of
/// ones to `H` to fit a bias.
///
/// Method: the singular value decomposition `H = U Σ Wᵀ` from nalgebra (Golub–Kahan
/// bidiagonalization), then `V = (Y W) diag(σ / (σ² + λ)) Uᵀ`. With more samples than features,
/// a Householder QR factorization of `Hᵀ` first shrinks the matrix to features × features.
/// Neither step forms `H Hᵀ`, so the condition number is not squared. With `λ = 0`, singular values at most
/// `max(features, samples) · ε · σ_max` count as zero, which gives the minimum-norm solution when
/// `H` is rank-deficient.
pub fn fit_linear_readout(
    hidden: ArrayView2<f64>,
    targets: ArrayView2<f64>,
    ridge: f64,
) -> Result<Array2<f64>, OptimError> {
    let (features, samples) = hidden.dim();
    if targets.ncols() != samples {
        return Err(error(format!(
            "readout fit: the hidden states have {samples} samples (columns) but the targets have {}",
            targets.ncols()
        )));
    }
    if features == 0 || samples == 0 {
        return Err(error(format!(
            "readout fit: the hidden states are empty ({features} × {samples})"
        )));
    }
    if !(ridge >= 0.0 && ridge.is_finite()) {
        return Err(error(format!(
            "invalid ridge {ridge}: expected a non-negative finite number"
        )));
    }
    if hidden.iter().chain(targets.iter()).any(|v| !v.is_finite()) {
        return Err(error(
            "readout fit: the hidden states or targets contain NaN or infinity".into(),
        ));
    }

    let outputs = targets.nrows();
    let y = nalgebra::DMatrix::from_fn(outputs, samples, |i, j| targets[[i, j]]);

    // Reduce to a square problem when there are more samples than features: with the thin QR
    // factorization Hᵀ = Q R, H = Rᵀ Qᵀ has the singular values of R, and Y H⁺ = (Y Q) (Rᵀ)⁺
    // (also with the ridge, because H Hᵀ = Rᵀ R). The SVD then works on a features × features
    // matrix instead of features × samples.
    let (reduced, projected_targets) = if samples > features {
        let transposed = nalgebra::DMatrix::from_fn(samples, features, |i, j| hidden[[j, i]]);
        let qr = transposed.qr();
        let mut rotated = y.transpose();
        qr.q_tr_mul(&mut rotated);
        let projected = rotated.rows(0, features).transpose();
        (qr.unpack_r().transpose(), projected)
    } else {
        (
            nalgebra::DMatrix::from_fn(features, samples, |i, j| hidden[[i, j]]),
            y,
        )
    };

    let svd =
        nalgebra::linalg::SVD::try_new(reduced, true, true, f64::EPSILON, 0).ok_or_else(|| {
            error("readout fit: the singular value decomposition did not converge".into())
        })?;
    let u = svd.u.as_ref().expect("U was requested");
    let w_transposed = svd.v_t.as_ref().expect("Vᵀ was requested");
    let largest = svd.singular_values.max();
    let cutoff = if ridge == 0.0 {
        features.max(samples) as f64 * f64::EPSILON * largest
    } else {
        0.0
    };
    let factors: Vec<f64> = svd
        .singular_values
        .iter()
        .map(|&sigma| {
            if sigma <= cutoff || sigma == 0.0 {
                0.0
            } else {
                sigma / (sigma * sigma + ridge)
            }
        })
        .collect();

    // V = ((Y W) diag(factors)) Uᵀ.
    let mut scaled = projected_targets * w_transposed.transpose();
    for (k, factor) in factors.iter().enumerate() {
        scaled.column_mut(k).scale_mut(*factor);
    }
    let readout = scaled * u.transpose();
    Ok(Array2::from_shape_fn((outputs, features), |(i, j)| {
        readout[(i, j)]
    }))
}

/// Everything an optimizer carries between steps, for checkpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OptimizerState {
    /// No state, e.g. after a closed-form readout fit.
    None,
    Sgd(Sgd),
    Adam(Adam),
    Lbfgs(Lbfgs),
}

impl From<StepOptimizer> for OptimizerState {
    fn from(optimizer: StepOptimizer) -> Self {
        match optimizer {
            StepOptimizer::Sgd(sgd) => OptimizerState::Sgd(sgd),
            StepOptimizer::Adam(adam) => OptimizerState::Adam(adam),
        }
    }
}
