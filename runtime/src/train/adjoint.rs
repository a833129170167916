//! The discrete adjoint of a lowered train task (discretize, then optimize). Explicit Euler and
//! classical RK4 steps run forward, then their exact transposes run backward. The reverse sweep
//! recomputes forward states from binomial checkpoints (Griewank & Walther, "Algorithm 799:
//! revolve", ACM TOMS 26(1), 2000) through `npdec_learn::revolve`.
//!
//! For `u_{n+1} = D(u_n + Δt F(u_n, θ))`, with `D` the map that holds Dirichlet nodes at their
//! values, the reverse step is `λ_n = P λ + Δt F_uᵀ P λ` and `∇θ += Δt F_θᵀ P λ`, where `P` zeroes
//! the Dirichlet entries. RK4 reverses its four stages in the opposite order the same way.
//!
//! With `gradient continuous` the reverse step instead solves the adjoint equation of the
//! space-discretized system, `−dλ/dt = F_uᵀ λ` with `dg/dt = −F_θᵀ λ`, backwards from `t_{n+1}` to
//! `t_n` with the task's scheme (optimize, then discretize in time). Euler evaluates the Jacobians at
//! `u_{n+1}`, where the discrete adjoint uses `u_n`. RK4 needs the state at `t_n + Δt/2`, which the
//! cubic Hermite interpolant of `u_n`, `u_{n+1}`, `F(u_n)` and `F(u_{n+1})` gives to fourth order.
//! The result is not the exact gradient of the discrete loss, so optimizers see a gradient with an
//! error of the scheme's order in `Δt`.

use crate::train::compiled::{CompiledRates, Pass};
use crate::train::lower::{ExplicitScheme, Head, LoweredTask, StateSlot};
use crate::train::tape::{Env, NodeIndex, ParamValues};
use ndarray::{s, Array2, ArrayView2};
use npdec_learn::revolve::{reverse_with_checkpoints, ReverseError};
use npdec_symbolic::GradientMethod;
use npdec_symbolic::Model;

/// A value that stopped being finite during the forward sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct NonFinite {
    /// The time step after which the state was not finite (0 for the initial value).
    pub step: usize,
    /// The field whose state was not finite, or `None` when it was the loss.
    pub field: Option<String>,
}

/// One chunk of a mini-batch: samples and labels.
#[derive(Clone, Copy, Debug)]
pub struct Chunk<'a> {
    pub samples: ArrayView2<'a, f64>,
    /// Labels as reals `[batch, width]` for tapes that read `label`.
    pub labels: ArrayView2<'a, f64>,
    /// Class labels for cross-entropy.
    pub classes: Option<&'a [usize]>,
    /// The evaluation this chunk belongs to: `Some` only while the parameter values, samples and
    /// labels stay unchanged (a [`Network::gradient`] call sets it), `None` otherwise.
    pub pass: Option<Pass>,
}

/// The loss and outputs of a forward sweep over a chunk.
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkResult {
    /// The loss summed over the chunk's samples (divide by the batch size for the mean).
    pub loss_sum: f64,
    /// The scores (cross-entropy) or predictions (MSE) per sample.
    pub outputs: Array2<f64>,
}

/// The seed of the reverse sweep at the head: either the loss, or a given output cotangent.
#[derive(Clone, Debug)]
pub enum HeadSeed<'a> {
    /// The gradient of the summed loss, divided by `normalizer` (the full batch size).
    Loss { normalizer: f64 },
    /// A cotangent on the head's outputs (scores or prediction), for dot tests.
    Outputs(ArrayView2<'a, f64>),
}

/// Runs a lowered task on fixed parameters: forward sweeps, reverse sweeps and the head.
pub struct Network<'a> {
    pub model: &'a Model,
    pub task: &'a LoweredTask,
    /// Compiled rates and their adjoint, used in place of the `rhs` tape inside the Euler, RK4
    /// and split steps when present. Tangent-linear sweeps always run on the tape.
    pub compiled: Option<&'a dyn CompiledRates>,
}

impl<'a> Network<'a> {
    fn env<'b>(
        &self,
        states: &'b [Array2<f64>],
        params: &'b ParamValues,
        chunk: &'b Chunk<'_>,
        step: usize,
        time: f64,
    ) -> Env<'b> {
        Env {
            states,
            params,
            samples: Some(chunk.samples.view()),
            labels: Some(chunk.labels.view()),
            step,
            time,
            batch: chunk.samples.nrows(),
        }
    }

    /// Returns the initial states of a chunk and the values of the initial tape.
    pub fn initial_states(
        &self,
        params: &ParamValues,
        chunk: &Chunk,
    ) -> (Vec<Array2<f64>>, Vec<Array2<f64>>) {
        let env = self.env(&[], params, chunk, 0, 0.0);
        let values = self.task.initial.forward(&env);
        let batch = chunk.samples.nrows();
        let states = self
            .task
            .states
            .iter()
            .map(|slot| {
                let mut state = broadcast_rows(&values[slot.initial], batch);
                impose_dirichlet(slot, &mut state);
                state
            })
            .collect();
        (states, values)
    }

    /// Evaluates the right-hand sides `F(states)` at step `step` and time `time`: the rates and
    /// the values of the `rhs` tape, which are empty when compiled code computed the rates.
    fn rhs(
        &self,
        params: &ParamValues,
        chunk: &Chunk,
        states: &[Array2<f64>],
        step: usize,
        time: f64,
    ) -> (Vec<Array2<f64>>, Vec<Array2<f64>>) {
        match self.compiled_rates() {
            Some(compiled) => (
                compiled.rates(
                    states,
                    chunk.samples,
                    chunk.labels,
                    chunk.pass,
                    params,
                    step,
                    time,
                ),
                Vec::new(),
            ),
            None => self.rhs_tape(params, chunk, states, step, time),
        }
    }

    /// Returns the compiled rates, which the steps use in place of the `rhs` tape when present.
    /// Under split-step Fourier they are the rates `a = re + i·im` of the split slots.
    fn compiled_rates(&self) -> Option<&'a dyn CompiledRates> {
        self.compiled
    }

    /// Returns the tape values [`Self::rhs_backward`] needs at the given states: none when
    /// compiled code runs the reverse sweep, which recomputes what it needs.
    fn backward_values(
        &self,
        params: &ParamValues,
        chunk: &Chunk,
        states: &[Array2<f64>],
        step: usize,
        time: f64,
    ) -> Vec<Array2<f64>> {
        match self.compiled_rates() {
            Some(_) => Vec::new(),
            None => self.rhs_tape(params, chunk, states, step, time).1,
        }
    }

    /// Evaluates the right-hand sides on the tape: the rates and the values of every tape node.
    fn rhs_tape(
        &self,
        params: &ParamValues,
        chunk: &Chunk,
        states: &[Array2<f64>],
        step: usize,
        time: f64,
    ) -> (Vec<Array2<f64>>, Vec<Array2<f64>>) {
        let env = self.env(states, params, chunk, step, time);
        let values = self.task.rhs.forward(&env);
        let batch = chunk.samples.nrows();
        let rates = self
            .task
            .states
            .iter()
            .map(|slot| {
                let mut rate = Array2::zeros((batch, slot.len()));
                for (channel, node) in &slot.rhs {
                    let value = &values[*node];
                    match channel {
                        None => add_rows(&mut rate.view_mut(), value),
                        Some(c) => add_rows(
                            &mut rate.slice_mut(s![.., c * slot.points..(c + 1) * slot.points]),
                            value,
                        ),
                    }
                }
                rate
            })
            .collect();
        (rates, values)
    }

    /// Backpropagates the rate cotangents `d_rates` through `F` at the given states, adding to
    /// `state_adjoints` (skipped when `None`) and `gradients`.
    #[allow(clippy::too_many_arguments)]
    fn rhs_backward(
        &self,
        params: &ParamValues,
        chunk: &Chunk,
        states: &[Array2<f64>],
        values: &[Array2<f64>],
        step: usize,
        time: f64,
        d_rates: &[Array2<f64>],
        state_adjoints: Option<&mut [Array2<f64>]>,
        gradients: &mut ParamValues,
    ) {
        if let Some(compiled) = self.compiled_rates() {
            compiled.rates_backward(
                states,
                chunk.samples,
                chunk.labels,
                chunk.pass,
                params,
                step,
                time,
                d_rates,
                state_adjoints,
                gradients,
            );
            return;
        }
        let env = self.env(states, params, chunk, step, time);
        let mut seeds: Vec<(NodeIndex, Array2<f64>)> = Vec::new();
        for (slot, d_rate) in self.task.states.iter().zip(d_rates) {
            for (channel, node) in &slot.rhs {
                let seed = match channel {
                    None => d_rate.clone(),
                    Some(c) => d_rate
                        .slice(s![.., c * slot.points..(c + 1) * slot.points])
                        .to_owned(),
                };
                seeds.push((*node, seed));
            }
        }
        match state_adjoints {
            Some(state_adjoints) => {
                self.task
                    .rhs
                    .backward(&env, values, seeds, state_adjoints, gradients)
            }
            None => self
                .task
                .rhs
                .backward_to_params(&env, values, seeds, gradients),
        }
    }

    /// Advances `states` by one step `step` (from time `step · Δt`).
    pub fn step_forward(
        &self,
        params: &ParamValues,
        chunk: &Chunk,
        step: usize,
        states: &mut [Array2<f64>],
    ) {
        self.step_forward_recorded(params, chunk, step, states);
    }

    /// Advances `states` by one step like [`Network::step_forward`] and returns the
    /// right-hand-side values it computed, which the discrete reverse step at the same state
    /// would compute again (`None` for split-step Fourier).
    fn step_forward_recorded(
        &self,
        params: &ParamValues,
        chunk: &Chunk,
        step: usize,
        states: &mut [Array2<f64>],
    ) -> Option<StepRecord> {
        let dt = self.task.dt;
        let time = step as f64 * dt;
        match self.task.scheme {
            ExplicitScheme::Euler => {
                let (rates, values) = self.rhs(params, chunk, states, step, time);
                for ((state, rate), slot) in states.iter_mut().zip(&rates).zip(&self.task.states) {
                    state.scaled_add(dt, rate);
                    impose_dirichlet(slot, state);
                }
                Some(StepRecord::Euler(values))
            }
            ExplicitScheme::SplitStep => {
                let (rates, _) = self.split_rates(params, chunk, step, states);
                for ((state, slot), rate) in states.iter_mut().zip(&self.task.states).zip(&rates) {
                    if let (Some(split), Some((re, im))) = (&slot.split, rate) {
                        apply_rate(state, re, im, dt, false);
                        split.half_step.apply(state, false);
                    }
                }
                None
            }
            ExplicitScheme::Rk4 => {
                let stages = self.rk4_stages(params, chunk, states, step);
                for (s_index, (state, slot)) in states.iter_mut().zip(&self.task.states).enumerate()
                {
                    for (stage, weight) in stages.iter().zip(RK4_WEIGHTS) {
                        state.scaled_add(dt * weight, &stage.rates[s_index]);
                    }
                    impose_dirichlet(slot, state);
                }
                Some(StepRecord::Rk4(stages))
            }
        }
    }

    /// Applies the first Fourier half step of a split step to `states` and returns the values of
    /// the right-hand-side tape (the rates) at the half step.
    fn split_first_half(
        &self,
        params: &ParamValues,
        chunk: &Chunk,
        step: usize,
        states: &mut [Array2<f64>],
    ) -> Vec<Array2<f64>> {
        for (state, slot) in states.iter_mut().zip(&self.task.states) {
            if let Some(split) = &slot.split {
                split.half_step.apply(state, false);
            }
        }
        let time = (step as f64 + 0.5) * self.task.dt;
        let (_, values) = self.rhs_tape(params, chunk, states, step, time);
        values
    }

    /// Applies the first Fourier half step of a split step to `states` and returns the rates
    /// `a = re + i·im` of each split slot at the half step as `(re, im)`, `None` for a slot
    /// without a split, and the values of the right-hand-side tape, which are empty when compiled
    /// code computed the rates.
    #[allow(clippy::type_complexity)]
    fn split_rates(
        &self,
        params: &ParamValues,
        chunk: &Chunk,
        step: usize,
        states: &mut [Array2<f64>],
    ) -> (Vec<Option<(Array2<f64>, Array2<f64>)>>, Vec<Array2<f64>>) {
        let Some(compiled) = self.compiled_rates() else {
            let values = self.split_first_half(params, chunk, step, states);
            let rates = self
                .task
                .states
                .iter()
                .map(|slot| {
                    let split = slot.split.as_ref()?;
                    Some((values[split.rate_re].clone(), values[split.rate_im].clone()))
                })
                .collect();
            return (rates, values);
        };
        for (state, slot) in states.iter_mut().zip(&self.task.states) {
            if let Some(split) = &slot.split {
                split.half_step.apply(state, false);
            }
        }
        let time = (step as f64 + 0.5) * self.task.dt;
        let rates = compiled.rates(
            states,
            chunk.samples,
            chunk.labels,
            chunk.pass,
            params,
            step,
            time,
        );
        let rates = rates
            .into_iter()
            .zip(&self.task.states)
            .map(|(rate, slot)| {
                slot.split.as_ref()?;
                let points = slot.points;
                Some((
                    rate.slice(s![.., ..points]).to_owned(),
                    rate.slice(s![.., points..2 * points]).to_owned(),
                ))
            })
            .collect();
        (rates, Vec::new())
    }

    fn rk4_stages(
        &self,
        params: &ParamValues,
        chunk: &Chunk,
        states: &[Array2<f64>],
        step: usize,
    ) -> Vec<Stage> {
        let dt = self.task.dt;
        let time = step as f64 * dt;
        let mut stages: Vec<Stage> = Vec::with_capacity(4);
        for (index, offset) in RK4_OFFSETS.iter().enumerate() {
            let stage_states: Vec<Array2<f64>> = if index == 0 {
                states.to_vec()
            } else {
                let previous = &stages[index - 1].rates;
                states
                    .iter()
                    .zip(previous)
                    .zip(&self.task.states)
                    .map(|((u, k), slot)| {
                        let mut v = u.clone();
                        v.scaled_add(dt * offset, k);
                        impose_dirichlet(slot, &mut v);
                        v
                    })
                    .collect()
            };
            let stage_time = time + offset * dt;
            let (rates, values) = self.rhs(params, chunk, &stage_states, step, stage_time);
            stages.push(Stage {
                states: stage_states,
                rates,
                values,
                time: stage_time,
            });
        }
        stages
    }

    /// Runs the adjoint of step `step` given the state at its start; `adjoint` contains `λ_{n+1}` on
    /// entry and `λ_n` on return.
    pub fn step_reverse(
        &self,
        params: &ParamValues,
        chunk: &Chunk,
        step: usize,
        states: &[Array2<f64>],
        adjoint: &mut [Array2<f64>],
        gradients: &mut ParamValues,
    ) {
        self.step_reverse_recorded(params, chunk, step, states, adjoint, gradients, None, true);
    }

    /// Runs the adjoint of step `step` like [`Network::step_reverse`], using the values of
    /// `recorded` (from [`Network::step_forward_recorded`] at the same state) instead of
    /// recomputing them. Without `lambda_needed`, only the gradients are exact: `adjoint` is left
    /// partly updated, which is enough when nothing reads `λ_n` (the initial values do not depend
    /// on parameters and `step` is 0).
    #[allow(clippy::too_many_arguments)]
    fn step_reverse_recorded(
        &self,
        params: &ParamValues,
        chunk: &Chunk,
        step: usize,
        states: &[Array2<f64>],
        adjoint: &mut [Array2<f64>],
        gradients: &mut ParamValues,
        recorded: Option<StepRecord>,
        lambda_needed: bool,
    ) {
        let dt = self.task.dt;
        let time = step as f64 * dt;
        for (lambda, slot) in adjoint.iter_mut().zip(&self.task.states) {
            zero_dirichlet(slot, lambda);
        }
        match self.task.scheme {
            ExplicitScheme::Euler => {
                let values = match recorded {
                    Some(StepRecord::Euler(values)) => values,
                    _ => self.backward_values(params, chunk, states, step, time),
                };
                let d_rates: Vec<Array2<f64>> = adjoint.iter().map(|l| l * dt).collect();
                self.rhs_backward(
                    params,
                    chunk,
                    states,
                    &values,
                    step,
                    time,
                    &d_rates,
                    lambda_needed.then_some(adjoint),
                    gradients,
                );
            }
            ExplicitScheme::SplitStep => {
                let mut half = states.to_vec();
                let (rates, values) = self.split_rates(params, chunk, step, &mut half);
                // Per slot, the cotangents of the rate's real parts, then of its imaginary parts
                // (zero for a slot without a split).
                let mut d_rates: Vec<Array2<f64>> = Vec::with_capacity(adjoint.len());
                for (((lambda, slot), u), rate) in adjoint
                    .iter_mut()
                    .zip(&self.task.states)
                    .zip(&half)
                    .zip(&rates)
                {
                    let (rows, _) = lambda.dim();
                    let mut d_rate = Array2::zeros((rows, slot.len()));
                    let (Some(split), Some((re, im))) = (&slot.split, rate) else {
                        d_rates.push(d_rate);
                        continue;
                    };
                    let mut v = u.clone();
                    apply_rate(&mut v, re, im, dt, false);
                    split.half_step.apply(lambda, true);
                    let points = slot.points;
                    for b in 0..rows {
                        for i in 0..points {
                            let (lr, li) = (lambda[[b, i]], lambda[[b, points + i]]);
                            let (vr, vi) = (v[[b, i]], v[[b, points + i]]);
                            d_rate[[b, i]] = dt * (lr * vr + li * vi);
                            d_rate[[b, points + i]] = dt * (li * vr - lr * vi);
                        }
                    }
                    d_rates.push(d_rate);
                    apply_rate(lambda, re, im, dt, true);
                    split.half_step.apply(lambda, true);
                }
                // The rates read no field (the lowering rejects them otherwise), so only the
                // parameter gradients receive their adjoint.
                let half_time = time + 0.5 * dt;
                match self.compiled_rates() {
                    Some(compiled) => compiled.rates_backward(
                        &half,
                        chunk.samples,
                        chunk.labels,
                        chunk.pass,
                        params,
                        step,
                        half_time,
                        &d_rates,
                        None,
                        gradients,
                    ),
                    None => {
                        let mut seeds: Vec<(NodeIndex, Array2<f64>)> = Vec::new();
                        for (slot, d_rate) in self.task.states.iter().zip(&d_rates) {
                            if let Some(split) = &slot.split {
                                let points = slot.points;
                                let (re, im) = (s![.., ..points], s![.., points..]);
                                seeds.push((split.rate_re, d_rate.slice(re).to_owned()));
                                seeds.push((split.rate_im, d_rate.slice(im).to_owned()));
                            }
                        }
                        let env = self.env(&half, params, chunk, step, half_time);
                        let mut unused: Vec<Array2<f64>> =
                            half.iter().map(|u| Array2::zeros(u.raw_dim())).collect();
                        self.task
                            .rhs
                            .backward(&env, &values, seeds, &mut unused, gradients);
                    }
                }
            }
            ExplicitScheme::Rk4 => {
                let stages = match recorded {
                    Some(StepRecord::Rk4(stages)) => stages,
                    _ => self.rk4_stages(params, chunk, states, step),
                };
                let mut d_rates: Vec<Vec<Array2<f64>>> = RK4_WEIGHTS
                    .iter()
                    .map(|w| adjoint.iter().map(|l| l * (dt * w)).collect())
                    .collect();
                for index in (0..4).rev() {
                    let stage = &stages[index];
                    let mut stage_adjoint: Vec<Array2<f64>> = stage
                        .states
                        .iter()
                        .map(|u| Array2::zeros(u.raw_dim()))
                        .collect();
                    // Stage 0 only adds to λ_n, the later stages also feed earlier stages.
                    let needs_lambda = lambda_needed || index > 0;
                    self.rhs_backward(
                        params,
                        chunk,
                        &stage.states,
                        &stage.values,
                        step,
                        stage.time,
                        &d_rates[index],
                        needs_lambda.then_some(&mut stage_adjoint[..]),
                        gradients,
                    );
                    if index == 0 {
                        for (lambda, a) in adjoint.iter_mut().zip(&stage_adjoint) {
                            *lambda += a;
                        }
                    } else {
                        let offset = RK4_OFFSETS[index];
                        for (s_index, (a, slot)) in
                            stage_adjoint.iter_mut().zip(&self.task.states).enumerate()
                        {
                            zero_dirichlet(slot, a);
                            adjoint[s_index] += &*a;
                            d_rates[index - 1][s_index].scaled_add(dt * offset, a);
                        }
                    }
                }
            }
        }
    }

    /// Solves the continuous adjoint equation backwards over step `step` given the state at its
    /// start; `adjoint` contains `λ(t_{n+1})` on entry and `λ(t_n)` on return.
    pub fn step_reverse_continuous(
        &self,
        params: &ParamValues,
        chunk: &Chunk,
        step: usize,
        states: &[Array2<f64>],
        adjoint: &mut [Array2<f64>],
        gradients: &mut ParamValues,
    ) {
        let dt = self.task.dt;
        let (start, end) = (step as f64 * dt, (step + 1) as f64 * dt);
        let mut next = states.to_vec();
        self.step_forward(params, chunk, step, &mut next);
        for (lambda, slot) in adjoint.iter_mut().zip(&self.task.states) {
            zero_dirichlet(slot, lambda);
        }
        match self.task.scheme {
            // Split-step Fourier has no continuous adjoint here: its exact discrete reverse step
            // serves both gradient methods.
            ExplicitScheme::SplitStep => {
                self.step_reverse(params, chunk, step, states, adjoint, gradients)
            }
            ExplicitScheme::Euler => {
                // λ_n = λ + Δt F_u(u_{n+1})ᵀ λ and g += Δt F_θ(u_{n+1})ᵀ λ.
                let values = self.backward_values(params, chunk, &next, step, end);
                let d_rates: Vec<Array2<f64>> = adjoint.iter().map(|l| l * dt).collect();
                self.rhs_backward(
                    params,
                    chunk,
                    &next,
                    &values,
                    step,
                    end,
                    &d_rates,
                    Some(adjoint),
                    gradients,
                );
                for (lambda, slot) in adjoint.iter_mut().zip(&self.task.states) {
                    zero_dirichlet(slot, lambda);
                }
            }
            ExplicitScheme::Rk4 => {
                let (rate_start, _) = self.rhs(params, chunk, states, step, start);
                let (rate_end, _) = self.rhs(params, chunk, &next, step, end);
                // u(t_n + Δt/2) = (u_n + u_{n+1}) / 2 + Δt (F(u_n) − F(u_{n+1})) / 8.
                let middle: Vec<Array2<f64>> = (0..states.len())
                    .map(|s| {
                        let mut m = (&states[s] + &next[s]) * 0.5;
                        m.scaled_add(dt / 8.0, &rate_start[s]);
                        m.scaled_add(-dt / 8.0, &rate_end[s]);
                        impose_dirichlet(&self.task.states[s], &mut m);
                        m
                    })
                    .collect();
                // The adjoint system runs in reversed time s = t_{n+1} − t, so its RK4 stages sit
                // at t_{n+1}, t_n + Δt/2 twice, and t_n.
                let stage_states = [&next, &middle, &middle, &states.to_vec()];
                let stage_times = [end, start + 0.5 * dt, start + 0.5 * dt, start];
                let lambda = adjoint.to_vec();
                let mut total: Vec<Array2<f64>> = lambda.clone();
                let mut previous: Option<Vec<Array2<f64>>> = None;
                for (index, (stage_state, time)) in stage_states.iter().zip(stage_times).enumerate()
                {
                    let mut argument = lambda.clone();
                    if let Some(k) = &previous {
                        for (a, k) in argument.iter_mut().zip(k) {
                            a.scaled_add(dt * RK4_OFFSETS[index], k);
                        }
                    }
                    for (a, slot) in argument.iter_mut().zip(&self.task.states) {
                        zero_dirichlet(slot, a);
                    }
                    let values = self.backward_values(params, chunk, stage_state, step, time);
                    let mut k: Vec<Array2<f64>> = argument
                        .iter()
                        .map(|a| Array2::zeros(a.raw_dim()))
                        .collect();
                    let mut stage_gradient = gradients.zeros_like();
                    self.rhs_backward(
                        params,
                        chunk,
                        stage_state,
                        &values,
                        step,
                        time,
                        &argument,
                        Some(&mut k),
                        &mut stage_gradient,
                    );
                    for (a, slot) in k.iter_mut().zip(&self.task.states) {
                        zero_dirichlet(slot, a);
                    }
                    gradients.add_scaled(&stage_gradient, dt * RK4_WEIGHTS[index]);
                    for (t, k) in total.iter_mut().zip(&k) {
                        t.scaled_add(dt * RK4_WEIGHTS[index], k);
                    }
                    previous = Some(k);
                }
                for (lambda, t) in adjoint.iter_mut().zip(total) {
                    *lambda = t;
                }
            }
        }
    }

    /// Evaluates the head on the final states: the summed loss and the outputs.
    fn head_forward(
        &self,
        params: &ParamValues,
        chunk: &Chunk,
        states: &[Array2<f64>],
    ) -> (Vec<Array2<f64>>, ChunkResult) {
        let steps = self.task.steps;
        let env = self.env(states, params, chunk, steps, steps as f64 * self.task.dt);
        let values = self.task.head_tape.forward(&env);
        let batch = chunk.samples.nrows();
        let result = match self.task.head {
            Head::CrossEntropy { scores } => {
                let scores = broadcast_rows(&values[scores], batch);
                let classes = chunk.classes.unwrap_or(&[]);
                let log_probabilities = npdec_learn::loss::log_softmax(scores.view());
                let loss_sum = classes
                    .iter()
                    .enumerate()
                    .map(|(b, &c)| -log_probabilities[[b, c.min(scores.ncols() - 1)]])
                    .sum();
                ChunkResult {
                    loss_sum,
                    outputs: scores,
                }
            }
            Head::Mse { prediction, target } => {
                let prediction = broadcast_rows(&values[prediction], batch);
                let target = &values[target];
                let width = prediction.ncols();
                let mut loss_sum = 0.0;
                for b in 0..batch {
                    for i in 0..width {
                        let t = target[[b.min(target.nrows() - 1), i % target.ncols()]];
                        loss_sum += (prediction[[b, i]] - t).powi(2);
                    }
                }
                ChunkResult {
                    loss_sum: loss_sum / width as f64,
                    outputs: prediction,
                }
            }
        };
        (values, result)
    }

    /// Backpropagates the head: returns `λ_N` and adds readout gradients.
    #[allow(clippy::too_many_arguments)]
    fn head_backward(
        &self,
        params: &ParamValues,
        chunk: &Chunk,
        states: &[Array2<f64>],
        values: &[Array2<f64>],
        result: &ChunkResult,
        seed: &HeadSeed,
        gradients: &mut ParamValues,
    ) -> Vec<Array2<f64>> {
        let steps = self.task.steps;
        let env = self.env(states, params, chunk, steps, steps as f64 * self.task.dt);
        let batch = chunk.samples.nrows();
        let (node, d_outputs) = match (self.task.head, seed) {
            (Head::CrossEntropy { scores }, HeadSeed::Loss { normalizer }) => {
                let mut d = npdec_learn::loss::softmax(result.outputs.view());
                let last_class = d.ncols() - 1;
                for (b, &c) in chunk.classes.unwrap_or(&[]).iter().enumerate() {
                    d[[b, c.min(last_class)]] -= 1.0;
                }
                (scores, d / *normalizer)
            }
            (Head::Mse { prediction, target }, HeadSeed::Loss { normalizer }) => {
                let target = &values[target];
                let width = result.outputs.ncols();
                let d = Array2::from_shape_fn((batch, width), |(b, i)| {
                    let t = target[[b.min(target.nrows() - 1), i % target.ncols()]];
                    2.0 * (result.outputs[[b, i]] - t) / (normalizer * width as f64)
                });
                (prediction, d)
            }
            (
                Head::CrossEntropy { scores: node }
                | Head::Mse {
                    prediction: node, ..
                },
                HeadSeed::Outputs(w),
            ) => (node, w.to_owned()),
        };
        let mut adjoint: Vec<Array2<f64>> =
            states.iter().map(|u| Array2::zeros(u.raw_dim())).collect();
        self.task.head_tape.backward(
            &env,
            values,
            vec![(node, d_outputs)],
            &mut adjoint,
            gradients,
        );
        adjoint
    }

    /// Runs the forward sweep and returns the loss and outputs, without gradients.
    pub fn evaluate(&self, params: &ParamValues, chunk: &Chunk) -> Result<ChunkResult, NonFinite> {
        let (mut states, _) = self.initial_states(params, chunk);
        self.check_finite(&states, 0)?;
        for step in 0..self.task.steps {
            self.step_forward(params, chunk, step, &mut states);
            self.check_finite(&states, step + 1)?;
        }
        let (_, result) = self.head_forward(params, chunk, &states);
        Ok(result)
    }

    /// Returns the final states of a forward sweep (the hidden states for a readout fit).
    pub fn final_states(&self, params: &ParamValues, chunk: &Chunk) -> Vec<Array2<f64>> {
        let (mut states, _) = self.initial_states(params, chunk);
        for step in 0..self.task.steps {
            self.step_forward(params, chunk, step, &mut states);
        }
        states
    }

    /// Runs the forward sweep and the adjoint sweep with `snapshots` checkpoints, adding the
    /// gradient to `gradients`.
    pub fn gradient(
        &self,
        params: &ParamValues,
        chunk: &Chunk,
        seed: &HeadSeed,
        snapshots: usize,
        gradients: &mut ParamValues,
    ) -> Result<ChunkResult, NonFinite> {
        // `params` and the chunk are borrowed for the whole call, so its forward and reverse
        // sweeps form one pass.
        let chunk = &Chunk {
            pass: Some(Pass::fresh()),
            ..*chunk
        };
        let (initial, initial_values) = self.initial_states(params, chunk);
        self.check_finite(&initial, 0)?;
        let steps = self.task.steps;
        // λ_0 only seeds the reverse sweep of the initial values, which is skipped when they do
        // not depend on parameters.
        let initial_needed = self.task.initial.adjoint_needed(false);
        let initial_needs_adjoint = self
            .task
            .states
            .iter()
            .any(|slot| initial_needed[slot.initial]);
        let mut adjoint: Vec<Array2<f64>> = Vec::new();
        let mut outcome: Option<ChunkResult> = None;
        let mut recorded: Option<StepRecord> = None;
        let reversal = reverse_with_checkpoints(
            initial.clone(),
            steps,
            snapshots.clamp(1, steps),
            |step, states: &mut Vec<Array2<f64>>| {
                self.step_forward(params, chunk, step, states);
                self.check_finite(states, step + 1)
            },
            |step, states: &Vec<Array2<f64>>| {
                if step + 1 == steps {
                    // The first turn: advance once more to the final state and seed λ_N.
                    let mut last = states.clone();
                    recorded = self.step_forward_recorded(params, chunk, step, &mut last);
                    self.check_finite(&last, steps)?;
                    let (values, result) = self.head_forward(params, chunk, &last);
                    if !result.loss_sum.is_finite() {
                        return Err(NonFinite {
                            step: steps,
                            field: None,
                        });
                    }
                    adjoint =
                        self.head_backward(params, chunk, &last, &values, &result, seed, gradients);
                    outcome = Some(result);
                }
                match self.task.gradient {
                    GradientMethod::Discrete => self.step_reverse_recorded(
                        params,
                        chunk,
                        step,
                        states,
                        &mut adjoint,
                        gradients,
                        recorded.take(),
                        step > 0 || initial_needs_adjoint,
                    ),
                    GradientMethod::Continuous => self.step_reverse_continuous(
                        params,
                        chunk,
                        step,
                        states,
                        &mut adjoint,
                        gradients,
                    ),
                }
                Ok(())
            },
        );
        match reversal {
            Ok(_) => {}
            Err(ReverseError::Step(non_finite)) => return Err(non_finite),
            Err(ReverseError::Schedule(error)) => {
                unreachable!("snapshots are clamped to 1..=steps: {error}")
            }
        }

        // The initial values may depend on parameters too.
        if !initial_needs_adjoint {
            return Ok(outcome.expect("the reverse sweep visits the last step"));
        }
        let env = self.env(&[], params, chunk, 0, 0.0);
        let seeds: Vec<(NodeIndex, Array2<f64>)> = self
            .task
            .states
            .iter()
            .zip(&adjoint)
            .map(|(slot, lambda)| {
                let mut lambda = lambda.clone();
                zero_dirichlet(slot, &mut lambda);
                (slot.initial, lambda)
            })
            .collect();
        let mut no_states: Vec<Array2<f64>> = Vec::new();
        self.task
            .initial
            .backward(&env, &initial_values, seeds, &mut no_states, gradients);
        Ok(outcome.expect("the reverse sweep visits the last step"))
    }

    /// Returns the outputs of the head and their derivative in the parameter direction
    /// `direction` (tangent-linear mode through the initial values, every step and the head).
    pub fn tangent_outputs(
        &self,
        params: &ParamValues,
        chunk: &Chunk,
        direction: &ParamValues,
    ) -> (Array2<f64>, Array2<f64>) {
        let batch = chunk.samples.nrows();
        let (mut states, initial_values) = self.initial_states(params, chunk);
        let env = self.env(&[], params, chunk, 0, 0.0);
        let initial_tangents = self
            .task
            .initial
            .tangent(&env, &initial_values, &[], direction);
        let mut tangents: Vec<Array2<f64>> = self
            .task
            .states
            .iter()
            .map(|slot| {
                let mut t = match &initial_tangents[slot.initial] {
                    Some(t) => broadcast_rows(t, batch),
                    None => Array2::zeros((batch, slot.len())),
                };
                zero_dirichlet(slot, &mut t);
                t
            })
            .collect();
        let dt = self.task.dt;
        for step in 0..self.task.steps {
            let time = step as f64 * dt;
            match self.task.scheme {
                ExplicitScheme::Euler => {
                    let rate_tangents =
                        self.rhs_tangent(params, chunk, &states, &tangents, step, time, direction);
                    for ((t, dr), slot) in tangents
                        .iter_mut()
                        .zip(&rate_tangents)
                        .zip(&self.task.states)
                    {
                        t.scaled_add(dt, dr);
                        zero_dirichlet(slot, t);
                    }
                }
                ExplicitScheme::SplitStep => {
                    let mut half = states.clone();
                    let values = self.split_first_half(params, chunk, step, &mut half);
                    for (t, slot) in tangents.iter_mut().zip(&self.task.states) {
                        if let Some(split) = &slot.split {
                            split.half_step.apply(t, false);
                        }
                    }
                    let env = self.env(&half, params, chunk, step, time + 0.5 * dt);
                    let node_tangents = self.task.rhs.tangent(&env, &values, &tangents, direction);
                    for ((t, slot), u) in tangents.iter_mut().zip(&self.task.states).zip(&half) {
                        let Some(split) = &slot.split else {
                            continue;
                        };
                        let (re, im) = (&values[split.rate_re], &values[split.rate_im]);
                        let mut v = u.clone();
                        apply_rate(&mut v, re, im, dt, false);
                        apply_rate(t, re, im, dt, false);
                        let points = slot.points;
                        let (rows, _) = t.dim();
                        let at = |m: &Option<Array2<f64>>, b: usize, i: usize| {
                            m.as_ref().map_or(0.0, |m| m[[b.min(m.nrows() - 1), i]])
                        };
                        let (t_re, t_im) =
                            (&node_tangents[split.rate_re], &node_tangents[split.rate_im]);
                        for b in 0..rows {
                            for i in 0..points {
                                let (da_re, da_im) = (dt * at(t_re, b, i), dt * at(t_im, b, i));
                                let (vr, vi) = (
                                    v[[b.min(v.nrows() - 1), i]],
                                    v[[b.min(v.nrows() - 1), points + i]],
                                );
                                t[[b, i]] += vr * da_re - vi * da_im;
                                t[[b, points + i]] += vi * da_re + vr * da_im;
                            }
                        }
                        split.half_step.apply(t, false);
                    }
                }
                ExplicitScheme::Rk4 => {
                    let stages = self.rk4_stages(params, chunk, &states, step);
                    let mut stage_rate_tangents: Vec<Vec<Array2<f64>>> = Vec::new();
                    for (index, stage) in stages.iter().enumerate() {
                        let stage_tangents: Vec<Array2<f64>> = if index == 0 {
                            tangents.clone()
                        } else {
                            tangents
                                .iter()
                                .zip(&stage_rate_tangents[index - 1])
                                .zip(&self.task.states)
                                .map(|((t, dk), slot)| {
                                    let mut v = t.clone();
                                    v.scaled_add(dt * RK4_OFFSETS[index], dk);
                                    zero_dirichlet(slot, &mut v);
                                    v
                                })
                                .collect()
                        };
                        stage_rate_tangents.push(self.rhs_tangent(
                            params,
                            chunk,
                            &stage.states,
                            &stage_tangents,
                            step,
                            stage.time,
                            direction,
                        ));
                    }
                    for (s_index, (t, slot)) in
                        tangents.iter_mut().zip(&self.task.states).enumerate()
                    {
                        for (rates, weight) in stage_rate_tangents.iter().zip(RK4_WEIGHTS) {
                            t.scaled_add(dt * weight, &rates[s_index]);
                        }
                        zero_dirichlet(slot, t);
                    }
                }
            }
            self.step_forward(params, chunk, step, &mut states);
        }
        let (values, result) = self.head_forward(params, chunk, &states);
        let steps = self.task.steps;
        let env = self.env(&states, params, chunk, steps, steps as f64 * dt);
        let head_tangents = self
            .task
            .head_tape
            .tangent(&env, &values, &tangents, direction);
        let node = match self.task.head {
            Head::CrossEntropy { scores } => scores,
            Head::Mse { prediction, .. } => prediction,
        };
        let tangent = match &head_tangents[node] {
            Some(t) => broadcast_rows(t, batch),
            None => Array2::zeros(result.outputs.raw_dim()),
        };
        (result.outputs, tangent)
    }

    #[allow(clippy::too_many_arguments)]
    fn rhs_tangent(
        &self,
        params: &ParamValues,
        chunk: &Chunk,
        states: &[Array2<f64>],
        tangents: &[Array2<f64>],
        step: usize,
        time: f64,
        direction: &ParamValues,
    ) -> Vec<Array2<f64>> {
        let (_, values) = self.rhs_tape(params, chunk, states, step, time);
        let env = self.env(states, params, chunk, step, time);
        let node_tangents = self.task.rhs.tangent(&env, &values, tangents, direction);
        let batch = chunk.samples.nrows();
        self.task
            .states
            .iter()
            .map(|slot| {
                let mut rate = Array2::zeros((batch, slot.len()));
                for (channel, node) in &slot.rhs {
                    let Some(value) = &node_tangents[*node] else {
                        continue;
                    };
                    match channel {
                        None => add_rows(&mut rate.view_mut(), value),
                        Some(c) => add_rows(
                            &mut rate.slice_mut(s![.., c * slot.points..(c + 1) * slot.points]),
                            value,
                        ),
                    }
                }
                rate
            })
            .collect()
    }

    fn check_finite(&self, states: &[Array2<f64>], step: usize) -> Result<(), NonFinite> {
        for (state, slot) in states.iter().zip(&self.task.states) {
            if state.iter().any(|x| !x.is_finite()) {
                return Err(NonFinite {
                    step,
                    field: Some(self.model.field(slot.field).name.clone()),
                });
            }
        }
        Ok(())
    }
}

/// The stage times of classical RK4 as fractions of the step.
pub const RK4_OFFSETS: [f64; 4] = [0.0, 0.5, 0.5, 1.0];
/// The weights of the stages of classical RK4.
pub const RK4_WEIGHTS: [f64; 4] = [1.0 / 6.0, 2.0 / 6.0, 2.0 / 6.0, 1.0 / 6.0];

/// The right-hand-side values of one forward step, for the reverse step from the same state.
enum StepRecord {
    Euler(Vec<Array2<f64>>),
    Rk4(Vec<Stage>),
}

struct Stage {
    states: Vec<Array2<f64>>,
    rates: Vec<Array2<f64>>,
    values: Vec<Array2<f64>>,
    time: f64,
}

fn broadcast_rows(value: &Array2<f64>, batch: usize) -> Array2<f64> {
    if value.nrows() == batch {
        value.clone()
    } else {
        let row = value.row(0);
        Array2::from_shape_fn((batch, value.ncols()), |(_, i)| row[i])
    }
}

fn add_rows(target: &mut ndarray::ArrayViewMut2<f64>, value: &Array2<f64>) {
    let (rows, len) = target.dim();
    if value.ncols() == len && (value.nrows() == rows || value.nrows() == 1) {
        if let Some(value) = value.broadcast((rows, len)) {
            *target += &value;
            return;
        }
    }
    for r in 0..rows {
        for i in 0..len {
            target[[r, i]] += value[[r.min(value.nrows() - 1), i % value.ncols()]];
        }
    }
}

/// Multiplies each complex row `[re block, im block]` of `state` by `g = exp(Δt·a)` (or by
/// `conj(g)` when `conjugate`), with `a = re + i·im` given per entry (rows broadcast).
fn apply_rate(
    state: &mut Array2<f64>,
    re: &Array2<f64>,
    im: &Array2<f64>,
    dt: f64,
    conjugate: bool,
) {
    let (rows, len) = state.dim();
    let points = len / 2;
    let sign = if conjugate { -1.0 } else { 1.0 };
    for b in 0..rows {
        for i in 0..points {
            let a_re = re[[b.min(re.nrows() - 1), i]];
            let a_im = im[[b.min(im.nrows() - 1), i]];
            let magnitude = (dt * a_re).exp();
            let (g_re, g_im) = (
                magnitude * (dt * a_im).cos(),
                sign * magnitude * (dt * a_im).sin(),
            );
            let (u_re, u_im) = (state[[b, i]], state[[b, points + i]]);
            state[[b, i]] = u_re * g_re - u_im * g_im;
            state[[b, points + i]] = u_re * g_im + u_im * g_re;
        }
    }
}

fn impose_dirichlet(slot: &StateSlot, state: &mut Array2<f64>) {
    for mut row in state.rows_mut() {
        for c in 0..slot.channels {
            for (node, value) in &slot.dirichlet {
                row[c * slot.points + node] = *value;
            }
        }
    }
}

fn zero_dirichlet(slot: &StateSlot, adjoint: &mut Array2<f64>) {
    for mut row in adjoint.rows_mut() {
        for c in 0..slot.channels {
            for (node, _) in &slot.dirichlet {
                row[c * slot.points + node] = 0.0;
            }
        }
    }
}
