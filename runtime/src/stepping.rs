//! Time integration of a solve graph: explicit Euler, RK4, leapfrog, Crank–Nicolson, backward Euler,
//! split-step Fourier and steady solves.
//!
//! The state is one array per field, indexed by field id. The right-hand sides come from evaluating
//! the inputs of the graph's `time_step` node; Dirichlet faces are imposed after every step and stage.

use crate::evaluate::{field_shape, Evaluator, NodeValues};
use crate::krylov::{bicgstab, KrylovOutcome};
use crate::padding::impose_dirichlet;
use crate::spectral::{fft_spatial, wave_numbers};
use crate::value::{Element, Real, Value};
use ndarray::{ArrayD, Axis, IxDyn};
use npdec_ir::graph::{Graph, NodeId, NodeKind, TimeStep};
use npdec_symbolic::{AxisKind, FieldId, Scheme};
use num_complex::Complex;

/// Field states indexed by field id; `None` for fields the solve does not use.
pub type States<T> = Vec<Option<Value<T>>>;

/// Counters of a finished solve.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SolveCounters {
    pub steps: usize,
    pub final_time: f64,
    /// Krylov iterations summed over all linear solves.
    pub linear_iterations: usize,
    /// The largest relative residual left by a linear solve.
    pub worst_relative_residual: f64,
    /// Linear solves that stopped before reaching their tolerance.
    pub unconverged_solves: usize,
}

/// The tolerance and iteration budget of the linear solves in implicit steps.
pub const IMPLICIT_TOLERANCE_F64: f64 = 1e-12;
pub const IMPLICIT_TOLERANCE_F32: f64 = 1e-6;
pub const IMPLICIT_MAX_ITERATIONS: usize = 2000;

/// Who evaluates the right-hand sides of a time step.
enum Rhs<'g, T: Real> {
    Interpreter(Evaluator<'g, T>),
    Compiled(Box<dyn crate::engine::CompiledRhs<T> + 'g>),
}

impl<T: Real> Rhs<'_, T> {
    fn evaluate(&self, states: &States<T>, time: T) -> NodeValues<T> {
        match self {
            Rhs::Interpreter(evaluator) => evaluator.evaluate(states, time),
            Rhs::Compiled(compiled) => compiled.evaluate(states, time),
        }
    }
}

/// Advances one solve graph.
pub struct Stepper<'g, T: Real> {
    graph: &'g Graph,
    step: TimeStep,
    rhs_nodes: Vec<NodeId>,
    rhs: Rhs<'g, T>,
    initial_nodes: Vec<(FieldId, u8, NodeId)>,
    initial: Evaluator<'g, T>,
    /// Fields advanced by the updates, without repetition, in update order.
    evolved: Vec<FieldId>,
    /// Whole compiled Euler steps, used instead of `rhs` for explicit Euler solves.
    compiled_steps: Option<Box<dyn crate::engine::CompiledSteps<T>>>,
    counters: SolveCounters,
}

impl<'g, T: Real> Stepper<'g, T> {
    /// Returns the nodes whose values a time step needs: the right-hand sides of its updates.
    pub fn rhs_roots(&self) -> &[NodeId] {
        &self.rhs_nodes
    }

    /// Evaluates the right-hand sides with compiled code instead of the interpreter.
    pub fn use_compiled(&mut self, compiled: Box<dyn crate::engine::CompiledRhs<T> + 'g>) {
        self.rhs = Rhs::Compiled(compiled);
    }

    /// Prepares a stepper; `None` when the graph has no time step.
    /// Takes explicit Euler steps with compiled whole steps instead of evaluating the right-hand
    /// sides; only the Euler scheme uses them.
    pub fn use_compiled_steps(&mut self, steps: Box<dyn crate::engine::CompiledSteps<T>>) {
        self.compiled_steps = Some(steps);
    }

    pub fn new(graph: &'g Graph) -> Option<Self> {
        let (step_id, step) = graph.time_step()?;
        let rhs_nodes = graph.inputs(step_id);
        let mut initial_nodes = Vec::new();
        for id in graph.find(|k| matches!(k, NodeKind::Initial { .. })) {
            if let NodeKind::Initial {
                field,
                time_derivative,
            } = graph.node(id).kind
            {
                initial_nodes.push((field, time_derivative, graph.inputs(id)[0]));
            }
        }
        let initial_roots: Vec<NodeId> = initial_nodes.iter().map(|(_, _, n)| *n).collect();
        let mut evolved = Vec::new();
        for update in &step.updates {
            if !evolved.contains(&update.field) {
                evolved.push(update.field);
            }
        }
        Some(Stepper {
            graph,
            step: step.clone(),
            rhs: Rhs::Interpreter(Evaluator::new(graph, &rhs_nodes)),
            rhs_nodes,
            initial: Evaluator::new(graph, &initial_roots),
            initial_nodes,
            evolved,
            compiled_steps: None,
            counters: SolveCounters::default(),
        })
    }

    pub fn time_step(&self) -> &TimeStep {
        &self.step
    }

    pub fn counters(&self) -> &SolveCounters {
        &self.counters
    }

    fn complex_field(&self, field: FieldId) -> bool {
        self.graph.field(field).complex
    }

    /// Returns the initial states and the initial rates of second-order fields.
    pub fn initial_states(&self) -> (States<T>, States<T>) {
        let values = self.initial.evaluate(&[], T::zero());
        let mut states: States<T> = vec![None; self.graph.fields.len()];
        let mut rates: States<T> = vec![None; self.graph.fields.len()];
        for (field, derivative, node) in &self.initial_nodes {
            let shape = field_shape(self.graph, *field);
            let Some(value) = values[node.index()].clone() else {
                continue;
            };
            let value =
                crate::pointwise::broadcast_to(value, &shape).converted(self.complex_field(*field));
            if *derivative == 0 {
                states[field.0] = Some(value);
            } else {
                rates[field.0] = Some(value);
            }
        }
        self.impose(&mut states, T::zero());
        (states, rates)
    }

    /// Evaluates every node of the right-hand sides at a state; used by the stability analysis.
    /// The interpreter does this even when compiled code steps, because compiled code only returns
    /// the values of the right-hand sides themselves.
    pub fn evaluate_all(&self, states: &States<T>, time: T) -> NodeValues<T> {
        match &self.rhs {
            Rhs::Interpreter(evaluator) => evaluator.evaluate(states, time),
            Rhs::Compiled(_) => Evaluator::new(self.graph, &self.rhs_nodes).evaluate(states, time),
        }
    }

    /// Returns the right-hand side per evolved field, with zeros for channels without an equation.
    fn rates(&self, states: &States<T>, time: T) -> Vec<Value<T>> {
        let values = self.rhs.evaluate(states, time);
        let mut rates: Vec<Value<T>> = self
            .evolved
            .iter()
            .map(|f| Value::zeros(&field_shape(self.graph, *f), self.complex_field(*f)))
            .collect();
        for (update, node) in self.step.updates.iter().zip(&self.rhs_nodes) {
            let Some(value) = values[node.index()].clone() else {
                continue;
            };
            let slot = self
                .evolved
                .iter()
                .position(|f| *f == update.field)
                .unwrap_or(0);
            let complex = self.complex_field(update.field);
            let value = value.converted(complex);
            rates[slot] = match (update.channel, rates[slot].clone(), value) {
                (None, Value::Real(mut r), Value::Real(v)) => {
                    let v = v.broadcast(r.raw_dim()).map_or(v.clone(), |b| b.to_owned());
                    r.zip_mut_with(&v, |a, b| *a += *b);
                    Value::Real(r)
                }
                (None, Value::Complex(mut r), Value::Complex(v)) => {
                    let v = v.broadcast(r.raw_dim()).map_or(v.clone(), |b| b.to_owned());
                    r.zip_mut_with(&v, |a, b| *a += *b);
                    Value::Complex(r)
                }
                (Some(c), Value::Real(mut r), Value::Real(v)) => {
                    r.index_axis_mut(Axis(0), c)
                        .assign(&v.index_axis(Axis(0), 0));
                    Value::Real(r)
                }
                (Some(c), Value::Complex(mut r), Value::Complex(v)) => {
                    r.index_axis_mut(Axis(0), c)
                        .assign(&v.index_axis(Axis(0), 0));
                    Value::Complex(r)
                }
                (_, r, _) => r,
            };
        }
        rates
    }

    fn impose(&self, states: &mut States<T>, time: T) {
        for update in &self.step.updates {
            if update.dirichlet.is_empty() {
                continue;
            }
            let axes = &self.graph.field(update.field).axes;
            match &mut states[update.field.0] {
                Some(Value::Real(a)) => {
                    impose_dirichlet(self.graph, axes, &update.dirichlet, a, time)
                }
                Some(Value::Complex(a)) => {
                    impose_dirichlet(self.graph, axes, &update.dirichlet, a, time)
                }
                None => {}
            }
        }
    }

    /// Returns a mask per evolved field that is 1 on Dirichlet nodes.
    fn dirichlet_masks(&self) -> Vec<ArrayD<T>> {
        self.evolved
            .iter()
            .map(|field| {
                let mut mask = ArrayD::<T>::zeros(IxDyn(&field_shape(self.graph, *field)));
                let axes = &self.graph.field(*field).axes;
                for update in self.step.updates.iter().filter(|u| u.field == *field) {
                    let faces: Vec<_> = update
                        .dirichlet
                        .iter()
                        .map(|f| npdec_ir::graph::DirichletFace {
                            value: npdec_ir::graph::PointwiseExpr::Real(1.0),
                            ..f.clone()
                        })
                        .collect();
                    impose_dirichlet(self.graph, axes, &faces, &mut mask, T::zero());
                }
                mask
            })
            .collect()
    }

    fn order(&self, field: FieldId) -> u8 {
        self.step
            .updates
            .iter()
            .filter(|u| u.field == field)
            .map(|u| u.time_order)
            .max()
            .unwrap_or(1)
    }

    /// Runs the whole solve from the initial state, calling `snapshot(step, time, states)` every
    /// `every` steps and at the end.
    pub fn run(&mut self, snapshot: &mut dyn FnMut(usize, f64, &States<T>)) -> States<T> {
        let (mut states, rates) = self.initial_states();
        let dt = self.step.dt;
        let steps = self.step.steps;
        let every = self.step.every;
        match self.step.scheme.clone() {
            Scheme::Steady {
                tolerance,
                max_iterations,
            } => {
                self.steady(&mut states, tolerance, max_iterations);
                self.counters.final_time = 0.0;
                snapshot(0, 0.0, &states);
                return states;
            }
            Scheme::Euler if self.compiled_steps.is_some() => {
                let mut compiled = self.compiled_steps.take();
                if let Some(compiled) = compiled.as_mut() {
                    for field in &self.evolved {
                        if let Some(state) = &states[field.0] {
                            compiled.set_state(*field, state);
                        }
                    }
                    let mut n = 0;
                    while n < steps {
                        let next = match every {
                            Some(e) if e > 0 => (n / e + 1) * e,
                            _ => steps,
                        }
                        .min(steps);
                        compiled.run(next - n);
                        n = next;
                        for field in &self.evolved {
                            states[field.0] = compiled.state(*field);
                        }
                        self.after_step(n, every, steps, snapshot, &states);
                    }
                }
                self.compiled_steps = compiled;
            }
            Scheme::Euler | Scheme::Rk4 => {
                let mut velocities = rates;
                for n in 0..steps {
                    let t = n as f64 * dt;
                    self.explicit_step(&mut states, &mut velocities, t, dt);
                    self.after_step(n + 1, every, steps, snapshot, &states);
                }
            }
            Scheme::Leapfrog => {
                let mut velocities = rates;
                let mut previous = states.clone();
                // The first step has no previous state: take it with RK4, which is accurate enough
                // not to spoil the second order of the scheme.
                let scheme = std::mem::replace(&mut self.step.scheme, Scheme::Rk4);
                if steps > 0 {
                    self.explicit_step(&mut states, &mut velocities, 0.0, dt);
                    self.after_step(1, every, steps, snapshot, &states);
                }
                self.step.scheme = scheme;
                for n in 1..steps {
                    let t = n as f64 * dt;
                    let rates = self.rates(&states, T::of(t));
                    let mut next = states.clone();
                    for (slot, field) in self.evolved.iter().enumerate() {
                        let (Some(u), Some(u_old)) = (&states[field.0], &previous[field.0]) else {
                            continue;
                        };
                        next[field.0] = Some(if self.order(*field) == 2 {
                            // u⁺ = 2u − u⁻ + dt² F(u)
                            u.plus_scaled(T::one(), u)
                                .plus_scaled(-T::one(), u_old)
                                .plus_scaled(T::of(dt * dt), &rates[slot])
                        } else {
                            // u⁺ = u⁻ + 2 dt F(u)
                            u_old.plus_scaled(T::of(2.0 * dt), &rates[slot])
                        });
                    }
                    previous = std::mem::replace(&mut states, next);
                    self.impose(&mut states, T::of(t + dt));
                    self.after_step(n + 1, every, steps, snapshot, &states);
                }
            }
            Scheme::CrankNicolson | Scheme::BackwardEuler => {
                let theta = if self.step.scheme == Scheme::CrankNicolson {
                    0.5
                } else {
                    1.0
                };
                for n in 0..steps {
                    self.theta_step(&mut states, theta, n as f64 * dt, dt);
                    self.after_step(n + 1, every, steps, snapshot, &states);
                }
            }
            Scheme::SplitStep => {
                for n in 0..steps {
                    self.split_step(&mut states, n as f64 * dt, dt);
                    self.after_step(n + 1, every, steps, snapshot, &states);
                }
            }
        }
        self.counters.steps = steps;
        self.counters.final_time = steps as f64 * dt;
        states
    }

    fn after_step(
        &self,
        n: usize,
        every: Option<usize>,
        steps: usize,
        snapshot: &mut dyn FnMut(usize, f64, &States<T>),
        states: &States<T>,
    ) {
        let due = every.is_some_and(|e| e > 0 && n.is_multiple_of(e));
        if due || n == steps {
            snapshot(n, n as f64 * self.step.dt, states);
        }
    }

    /// Advances one explicit Euler or RK4 step. Second-order fields advance as the system
    /// `u′ = v, v′ = F(u)`.
    fn explicit_step(&self, states: &mut States<T>, velocities: &mut States<T>, t: f64, dt: f64) {
        // The augmented state: evolved fields, then the velocities of second-order fields.
        let second: Vec<FieldId> = self
            .evolved
            .iter()
            .copied()
            .filter(|f| self.order(*f) == 2)
            .collect();
        let mut y: Vec<Value<T>> = self
            .evolved
            .iter()
            .filter_map(|f| states[f.0].clone())
            .collect();
        y.extend(second.iter().map(|f| {
            velocities[f.0].clone().unwrap_or_else(|| {
                Value::zeros(&field_shape(self.graph, *f), self.complex_field(*f))
            })
        }));
        if y.len() != self.evolved.len() + second.len() {
            return;
        }
        let mut work = states.clone();
        let mut derivative = |y: &[Value<T>], time: f64| -> Vec<Value<T>> {
            for (slot, field) in self.evolved.iter().enumerate() {
                work[field.0] = Some(y[slot].clone());
            }
            self.impose(&mut work, T::of(time));
            let rates = self.rates(&work, T::of(time));
            let mut d = Vec::with_capacity(y.len());
            for (slot, field) in self.evolved.iter().enumerate() {
                match second.iter().position(|f| f == field) {
                    Some(k) => d.push(y[self.evolved.len() + k].clone()),
                    None => d.push(rates[slot].clone()),
                }
            }
            for field in &second {
                let slot = self.evolved.iter().position(|f| f == field).unwrap_or(0);
                d.push(rates[slot].clone());
            }
            d
        };
        let combine = |y: &[Value<T>], factor: f64, d: &[Value<T>]| -> Vec<Value<T>> {
            y.iter()
                .zip(d)
                .map(|(a, b)| a.plus_scaled(T::of(factor), b))
                .collect()
        };
        let next = if self.step.scheme == Scheme::Euler {
            let k1 = derivative(&y, t);
            combine(&y, dt, &k1)
        } else {
            let k1 = derivative(&y, t);
            let k2 = derivative(&combine(&y, dt / 2.0, &k1), t + dt / 2.0);
            let k3 = derivative(&combine(&y, dt / 2.0, &k2), t + dt / 2.0);
            let k4 = derivative(&combine(&y, dt, &k3), t + dt);
            let mut next = combine(&y, dt / 6.0, &k1);
            next = combine(&next, dt / 3.0, &k2);
            next = combine(&next, dt / 3.0, &k3);
            combine(&next, dt / 6.0, &k4)
        };
        for (slot, field) in self.evolved.iter().enumerate() {
            states[field.0] = Some(next[slot].clone().converted(self.complex_field(*field)));
        }
        for (k, field) in second.iter().enumerate() {
            velocities[field.0] = Some(next[self.evolved.len() + k].clone());
        }
        self.impose(states, T::of(t + dt));
    }

    fn flatten(&self, values: &[Value<T>]) -> Vec<Complex<T>> {
        values
            .iter()
            .flat_map(|v| v.to_complex().into_iter())
            .collect()
    }

    fn unflatten(&self, flat: &[Complex<T>]) -> Vec<Value<T>> {
        let mut offset = 0;
        self.evolved
            .iter()
            .map(|field| {
                let shape = field_shape(self.graph, *field);
                let count: usize = shape.iter().product();
                let array =
                    ArrayD::from_shape_vec(IxDyn(&shape), flat[offset..offset + count].to_vec())
                        .unwrap_or_else(|_| ArrayD::zeros(IxDyn(&shape)));
                offset += count;
                Value::Complex(array).converted(self.complex_field(*field))
            })
            .collect()
    }

    fn with_evolved(&self, states: &States<T>, values: &[Value<T>]) -> States<T> {
        let mut work = states.clone();
        for (slot, field) in self.evolved.iter().enumerate() {
            work[field.0] = Some(values[slot].clone());
        }
        work
    }

    fn linear_tolerance(&self) -> f64 {
        if std::mem::size_of::<T>() == 4 {
            IMPLICIT_TOLERANCE_F32
        } else {
            IMPLICIT_TOLERANCE_F64
        }
    }

    fn record(&mut self, outcome: &KrylovOutcome) {
        self.counters.linear_iterations += outcome.iterations;
        self.counters.worst_relative_residual = self
            .counters
            .worst_relative_residual
            .max(outcome.relative_residual);
        if !outcome.converged {
            self.counters.unconverged_solves += 1;
        }
    }

    /// Advances one θ-method step: `u⁺ − θ dt F(u⁺, t + dt) = u + (1 − θ) dt F(u, t)`, with `F` affine so that
    /// `F(w) − F(0)` applies its linear part. Dirichlet rows become `u⁺ = g(t + dt)`.
    fn theta_step(&mut self, states: &mut States<T>, theta: f64, t: f64, dt: f64) {
        let t_next = T::of(t + dt);
        let masks = self.dirichlet_masks();
        let mask: Vec<T> = masks.iter().flat_map(|m| m.iter().copied()).collect();
        let current: Vec<Value<T>> = self
            .evolved
            .iter()
            .filter_map(|f| states[f.0].clone())
            .collect();
        let zeros: Vec<Value<T>> = self
            .evolved
            .iter()
            .map(|f| Value::zeros(&field_shape(self.graph, *f), self.complex_field(*f)))
            .collect();
        let affine = self.flatten(&self.rates(&self.with_evolved(states, &zeros), t_next));
        let explicit = self.flatten(&self.rates(states, T::of(t)));
        let u = self.flatten(&current);

        // The target of the Dirichlet rows: the current state with the new boundary values imposed.
        let mut boundary_states = states.clone();
        self.impose(&mut boundary_states, t_next);
        let boundary: Vec<Value<T>> = self
            .evolved
            .iter()
            .filter_map(|f| boundary_states[f.0].clone())
            .collect();
        let boundary = self.flatten(&boundary);

        let (a, b) = (T::of(theta * dt), T::of((1.0 - theta) * dt));
        let rhs: Vec<Complex<T>> = (0..u.len())
            .map(|i| {
                if mask[i] > T::zero() {
                    boundary[i]
                } else {
                    u[i] + explicit[i] * b + affine[i] * a
                }
            })
            .collect();
        let mut apply = |w: &[Complex<T>]| -> Vec<Complex<T>> {
            let values = self.unflatten(w);
            let fw = self.flatten(&self.rates(&self.with_evolved(states, &values), t_next));
            (0..w.len())
                .map(|i| {
                    if mask[i] > T::zero() {
                        w[i]
                    } else {
                        w[i] - (fw[i] - affine[i]) * a
                    }
                })
                .collect()
        };
        let mut x = boundary.clone();
        let outcome = bicgstab(
            &mut apply,
            &rhs,
            &mut x,
            self.linear_tolerance(),
            IMPLICIT_MAX_ITERATIONS,
        );
        self.record(&outcome);
        let next = self.unflatten(&x);
        for (slot, field) in self.evolved.iter().enumerate() {
            states[field.0] = Some(next[slot].clone());
        }
        self.impose(states, t_next);
    }

    /// Solves the steady equations `F(u) = 0` with `F` affine: `(F(w) − F(0)) = −F(0)`, Dirichlet rows
    /// `u = g`.
    fn steady(&mut self, states: &mut States<T>, tolerance: f64, max_iterations: usize) {
        let time = T::zero();
        let masks = self.dirichlet_masks();
        let mask: Vec<T> = masks.iter().flat_map(|m| m.iter().copied()).collect();
        let zeros: Vec<Value<T>> = self
            .evolved
            .iter()
            .map(|f| Value::zeros(&field_shape(self.graph, *f), self.complex_field(*f)))
            .collect();
        let affine = self.flatten(&self.rates(&self.with_evolved(states, &zeros), time));
        let start: Vec<Value<T>> = self
            .evolved
            .iter()
            .filter_map(|f| states[f.0].clone())
            .collect();
        let mut x = self.flatten(&start);
        let rhs: Vec<Complex<T>> = (0..x.len())
            .map(|i| {
                if mask[i] > T::zero() {
                    x[i]
                } else {
                    -affine[i]
                }
            })
            .collect();
        let mut apply = |w: &[Complex<T>]| -> Vec<Complex<T>> {
            let values = self.unflatten(w);
            let fw = self.flatten(&self.rates(&self.with_evolved(states, &values), time));
            (0..w.len())
                .map(|i| {
                    if mask[i] > T::zero() {
                        w[i]
                    } else {
                        fw[i] - affine[i]
                    }
                })
                .collect()
        };
        let tolerance = tolerance.max(if std::mem::size_of::<T>() == 4 {
            IMPLICIT_TOLERANCE_F32
        } else {
            0.0
        });
        let outcome = bicgstab(&mut apply, &rhs, &mut x, tolerance, max_iterations);
        self.record(&outcome);
        let solution = self.unflatten(&x);
        for (slot, field) in self.evolved.iter().enumerate() {
            states[field.0] = Some(solution[slot].clone());
        }
    }

    /// Advances one Strang step: half a step of `c ∇²u` in Fourier space, a full step of `u′ = a u` as the
    /// exact phase factor `exp(dt · a)` with `a` frozen at the half step, and another half step.
    fn split_step(&self, states: &mut States<T>, t: f64, dt: f64) {
        self.spectral_half_step(states, dt / 2.0);
        let rates = self.rhs.evaluate(states, T::of(t + dt / 2.0));
        for (update, node) in self.step.updates.iter().zip(&self.rhs_nodes) {
            let Some(rate) = rates[node.index()].as_ref() else {
                continue;
            };
            let Some(state) = states[update.field.0].as_ref() else {
                continue;
            };
            let mut u = state.to_complex();
            let factor = crate::pointwise::broadcast_to(rate.clone(), u.shape()).to_complex();
            u.zip_mut_with(&factor, |x, a| *x *= (*a * T::of(dt)).exp());
            states[update.field.0] =
                Some(Value::Complex(u).converted(self.complex_field(update.field)));
        }
        self.spectral_half_step(states, dt / 2.0);
    }

    fn spectral_half_step(&self, states: &mut States<T>, dt: f64) {
        for update in &self.step.updates {
            let Some(c) = update.spectral_laplace else {
                continue;
            };
            let Some(state) = states[update.field.0].as_ref() else {
                continue;
            };
            let axes = &self.graph.field(update.field).axes;
            let mut u = state.to_complex();
            fft_spatial(&mut u, false);
            let numbers: Vec<Vec<f64>> = axes
                .iter()
                .map(|a| {
                    let axis = self.graph.axis(*a);
                    let length = match axis.kind {
                        AxisKind::Interval { min, max } => max - min,
                        AxisKind::Index => axis.points as f64,
                    };
                    wave_numbers(axis.points, length)
                })
                .collect();
            let coefficient = Complex::new(c.re, c.im) * dt;
            for (index, x) in u.indexed_iter_mut() {
                let k2: f64 = numbers
                    .iter()
                    .enumerate()
                    .map(|(p, k)| k[index[p + 1]] * k[index[p + 1]])
                    .sum();
                let factor = (coefficient * -k2).exp();
                *x *= Complex::new(T::of(factor.re), T::of(factor.im));
            }
            fft_spatial(&mut u, true);
            states[update.field.0] =
                Some(Value::Complex(u).converted(self.complex_field(update.field)));
        }
    }
}

/// Returns an array of the given element kind, for callers that need one kind.
pub fn array_of<T: Real, E: Element<T>>(value: &Value<T>) -> ArrayD<E> {
    E::array_of(value)
}
