//! Native kernels for the dataflow IR: Cranelift JIT and object files, the optimization passes, and
//! the stencil benchmark.
//!
//! The pipeline of this crate, in order:
//! 1. [`passes::optimize`] rewrites a verified graph (constant folding, CSE, coefficient factoring,
//!    stencil fusion, pointwise fusion, dead-node elimination);
//! 2. [`plan`] lowers the nodes a set of roots needs into buffers and box kernels, fusing pointwise
//!    work into the stencil sweeps that feed it;
//! 3. [`codegen`] generates one Cranelift function per kernel;
//! 4. [`JitEvaluator`] runs them in place of the interpreter's evaluator, and [`EulerStepper`] runs
//!    whole explicit Euler steps with the right-hand side fused into the update, and the ghost
//!    columns and Dirichlet faces of the innermost axis computed by the update's rows
//!    ([`ghost_columns`], [`face_columns`]) and without kernels whose output nothing reads
//!    ([`dead_kernels`]);
//! 5. [`aot`] writes the same step as an object file with a C header;
//! 6. [`bench`] measures sweeps against the memory bandwidth of the machine.
//!
//! Training takes a separate path: [`adjoint::CompiledTape`] compiles the rates of a lowered train
//! task and their vector–Jacobian products from its tape, with the same code generator.
//!
//! A node the JIT cannot compile makes construction fail with [`Unsupported`], which names the
//! node, so the caller can fall back to the interpreter and report why once.

pub mod adjoint;
pub mod aot;
pub mod bench;
pub mod blocking;
pub mod codegen;
pub mod dead_kernels;
pub mod face_columns;
pub mod ghost_columns;
pub mod kexpr;
pub mod passes;
pub mod plan;
pub mod program;
pub mod step_faces;

use npdec_ir::graph::{Graph, NodeId};
use npdec_runtime::evaluate::{field_shape, value_shape, NodeValues};
use npdec_runtime::Value;
use npdec_symbolic::FieldId;
use plan::{build_plan, Mode};
use program::CompiledPlan;
use std::sync::Mutex;
use std::time::Duration;

pub use codegen::Precision;
pub use program::{JitFloat, JitOptions, OptLevel};

/// A node the JIT cannot compile.
#[derive(Clone, Debug, PartialEq)]
pub struct Unsupported {
    pub node: NodeId,
    /// The node kind's short name, as in IR dumps.
    pub kind: &'static str,
    pub reason: String,
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the JIT cannot compile node %{} ({}): {}",
            self.node.index(),
            self.kind,
            self.reason
        )
    }
}

impl std::error::Error for Unsupported {}

/// Evaluates the nodes a set of roots depends on with JIT-compiled kernels: the native counterpart
/// of the interpreter's `Evaluator`.
pub struct JitEvaluator<T: JitFloat> {
    compiled: Mutex<CompiledPlan<T>>,
    /// Root nodes with their value shapes.
    roots: Vec<(NodeId, Vec<usize>)>,
    node_bound: usize,
    compile_time: Duration,
}

impl<T: JitFloat> JitEvaluator<T> {
    /// Compiles the nodes `roots` depend on.
    pub fn new(graph: &Graph, roots: &[NodeId], options: &JitOptions) -> Result<Self, Unsupported> {
        let plan = build_plan(graph, roots, Mode::Evaluate)?;
        let compiled = CompiledPlan::<T>::new(graph, plan, options)?;
        let roots = roots
            .iter()
            .map(|r| (*r, value_shape(graph, &graph.node(*r).value)))
            .collect();
        let node_bound = graph
            .node_ids()
            .iter()
            .map(|id| id.index() + 1)
            .max()
            .unwrap_or(0);
        let compile_time = compiled.compile_time;
        Ok(JitEvaluator {
            compiled: Mutex::new(compiled),
            roots,
            node_bound,
            compile_time,
        })
    }

    /// Returns the time spent generating and finalizing machine code.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// Evaluates the roots for the given field states (indexed by field id) and time. The result
    /// is indexed by node index, like the interpreter's, with values for the roots only.
    pub fn evaluate(&self, states: &[Option<Value<T>>], time: T) -> NodeValues<T> {
        let mut values: NodeValues<T> = vec![None; self.node_bound];
        // A poisoned lock only means another evaluation panicked, and the buffers are rewritten anyway.
        let mut compiled = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        let time = time.to_f64_lossy();
        compiled.run(states, time, time);
        for ((root, shape), (_, view)) in self.roots.iter().zip(compiled.plan.roots.clone()) {
            values[root.index()] =
                Some(Value::Real(compiled.read(view.buffer, &view.shift, shape)));
        }
        values
    }
}

/// Runs explicit Euler steps of a solve graph with fused kernels: per step, Dirichlet faces at
/// `t`, ghost cells, then one sweep per field computing `u + F(u, t) · dt` into a second buffer,
/// Dirichlet faces at `t + dt`, and a swap. Faces at `t` that repeat those at the end of the
/// previous step run only on the first step after a state is set.
pub struct EulerStepper<T: JitFloat> {
    compiled: CompiledPlan<T>,
    /// The blocked schedule of the step, when the plan allows one and it covers two or more steps.
    blocking: Option<blocking::Blocking>,
    /// Why the step runs unblocked, when it does.
    unblocked_reason: Option<String>,
    dt: f64,
    shapes: Vec<(FieldId, Vec<usize>)>,
    steps_taken: usize,
    /// The Dirichlet faces a step writes at its start only when the state did not come from the
    /// previous step (see [`step_faces`]): kernels at [`plan::Instant::Now`].
    start_faces: Vec<usize>,
    /// True until the start faces have run on the states last set.
    start_faces_pending: bool,
}

/// Runs the passes on the plan of a fused Euler step that the JIT and object files share: kernels
/// whose output nothing reads go, innermost ghost columns and faces move into the update's rows, and
/// the Dirichlet faces that repeat the previous step's end are split off. Returns the shape of
/// every evolved field and the split-off start faces, which must run once before the first step
/// after a state is set.
pub(crate) fn optimize_step_plan(
    graph: &Graph,
    plan: &mut plan::Plan,
) -> (Vec<(FieldId, Vec<usize>)>, Vec<usize>) {
    let shapes: Vec<(FieldId, Vec<usize>)> = plan
        .updates
        .iter()
        .map(|u| (u.field, field_shape(graph, u.field)))
        .collect();
    dead_kernels::remove_dead_kernels(plan, &shapes);
    ghost_columns::fuse_ghost_columns(plan);
    let mut start_faces = step_faces::split_start_faces(plan);
    face_columns::fuse_face_columns(plan, &mut start_faces);
    (shapes, start_faces)
}

impl<T: JitFloat> EulerStepper<T> {
    /// Compiles the step of a graph whose time step uses one first-order update per whole field.
    /// The step size is the graph's unless `dt` is given.
    pub fn new(graph: &Graph, dt: Option<f64>, options: &JitOptions) -> Result<Self, Unsupported> {
        let Some((step_id, step)) = graph.time_step() else {
            return Err(Unsupported {
                node: NodeId(petgraph::stable_graph::NodeIndex::new(0)),
                kind: "time_step",
                reason: "the graph has no time step".into(),
            });
        };
        let dt = dt.unwrap_or(step.dt);
        let roots = graph.inputs(step_id);
        let mut plan = build_plan(graph, &roots, Mode::EulerStep { dt })?;
        let (shapes, start_faces) = optimize_step_plan(graph, &mut plan);
        let compiled = CompiledPlan::<T>::new(graph, plan, options)?;
        let analyzed = if options.temporal_blocking {
            blocking::analyze(
                &compiled.plan,
                T::PRECISION.bytes() as usize,
                options.cache_bytes,
                options.block_steps,
                options.row_block,
            )
            .and_then(|b| {
                if b.steps_per_block >= 2 {
                    Ok(b)
                } else {
                    Err("a band of rows of two steps does not fit the cache".into())
                }
            })
        } else {
            Err("temporal blocking is off".into())
        };
        let (blocking, unblocked_reason) = match analyzed {
            Ok(b) => (Some(b), None),
            Err(reason) => (None, Some(reason)),
        };
        Ok(EulerStepper {
            compiled,
            blocking,
            unblocked_reason,
            dt,
            shapes,
            steps_taken: 0,
            start_faces,
            start_faces_pending: true,
        })
    }

    /// Returns the time spent generating and finalizing machine code.
    pub fn compile_time(&self) -> Duration {
        self.compiled.compile_time
    }

    /// Sets the state of an evolved field. Other fields are ignored. The memory of the field's
    /// current and next buffers is committed here, so that the first steps do not pay for it.
    pub fn set_state(&mut self, field: FieldId, value: &Value<T>) {
        let Some(update) = self
            .compiled
            .plan
            .updates
            .iter()
            .find(|u| u.field == field)
            .cloned()
        else {
            return;
        };
        let op = plan::Op::CopyState {
            field,
            view: plan::View {
                buffer: update.current,
                shift: update.shift.clone(),
            },
        };
        let mut states = vec![None; field.0 + 1];
        states[field.0] = Some(value.clone());
        let saved = std::mem::replace(&mut self.compiled.plan.ops, vec![op]);
        self.compiled.run(&states, 0.0, 0.0);
        self.compiled.plan.ops = saved;
        self.compiled.commit_memory(update.current);
        self.compiled.commit_memory(update.next);
        self.start_faces_pending = true;
    }

    /// Returns the current state of an evolved field.
    pub fn state(&self, field: FieldId) -> Option<Value<T>> {
        let update = self
            .compiled
            .plan
            .updates
            .iter()
            .find(|u| u.field == field)?;
        let (_, shape) = self.shapes.iter().find(|(f, _)| *f == field)?;
        Some(Value::Real(self.compiled.read(
            update.current,
            &update.shift,
            shape,
        )))
    }

    /// Takes `steps` steps. Step `n` (counted from the first call) runs at `t = n · dt`, as in the
    /// interpreter.
    pub fn run(&mut self, steps: usize) {
        if steps > 0 && self.start_faces_pending {
            let t = self.steps_taken as f64 * self.dt;
            for kernel in &self.start_faces {
                self.compiled.call(*kernel, t);
            }
            self.start_faces_pending = false;
        }
        let mut left = steps;
        if let Some(blocking) = &self.blocking {
            while left >= 2 {
                let pass = left.min(blocking.steps_per_block);
                let t0 = self.steps_taken as f64 * self.dt;
                self.compiled.run_blocked(blocking, pass, t0, self.dt);
                self.steps_taken += pass;
                left -= pass;
            }
        }
        for _ in 0..left {
            let t = self.steps_taken as f64 * self.dt;
            self.compiled.run(&[], t, t + self.dt);
            for update in self.compiled.plan.updates.clone() {
                self.compiled.buffers.swap(update.current, update.next);
            }
            self.steps_taken += 1;
        }
    }

    /// Returns the steps per blocked pass, or why the steps run one sweep at a time.
    pub fn blocking(&self) -> Result<usize, &str> {
        match (&self.blocking, &self.unblocked_reason) {
            (Some(b), _) => Ok(b.steps_per_block),
            (None, reason) => Err(reason.as_deref().unwrap_or("no blocked schedule")),
        }
    }

    /// Returns the number of slabs a full blocked pass runs on (0 when the steps are not blocked).
    pub fn blocked_slabs(&self) -> usize {
        match &self.blocking {
            Some(b) if self.compiled.threads() > 1 => {
                b.slabs(self.compiled.threads(), b.steps_per_block)
            }
            Some(_) => 1,
            None => 0,
        }
    }

    /// Returns the number of Dirichlet face kernels that run only on the first step after a state
    /// is set.
    pub fn start_face_kernels(&self) -> usize {
        self.start_faces.len()
    }

    /// Returns the number of kernels that store values in a row epilogue.
    pub fn kernels_with_row_epilogue(&self) -> usize {
        self.compiled
            .plan
            .kernels
            .iter()
            .filter(|k| !k.row_epilogue.is_empty())
            .count()
    }

    /// Returns the number of kernels that store values in a row prologue.
    pub fn kernels_with_row_prologue(&self) -> usize {
        self.compiled
            .plan
            .kernels
            .iter()
            .filter(|k| !k.row_prologue.is_empty())
            .count()
    }

    /// Returns the number of kernels that read their own output and whose rows a step without
    /// temporal blocking still splits across threads (when it has more than one).
    pub fn split_kernels_reading_their_output(&self) -> usize {
        self.compiled
            .plan
            .kernels
            .iter()
            .filter(|k| {
                !k.readonly_inputs
                    && k.work() >= crate::program::PARALLEL_MIN_POINTS
                    && crate::program::rows_independent(k)
            })
            .count()
    }

    /// Returns the number of grid points the updates write per step, over all fields.
    pub fn points_per_step(&self) -> usize {
        self.shapes
            .iter()
            .map(|(_, s)| s[1..].iter().product::<usize>())
            .sum()
    }
}
