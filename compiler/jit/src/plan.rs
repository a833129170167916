//! Lowering of an IR graph into a plan: buffers, box kernels and the few operations that are not
//! sweeps (state copies, reductions, matrix products), in execution order.
//!
//! Which nodes get a buffer: states, parameters, boundary paddings, reductions, dense products, the
//! requested roots, and every node that more than one node reads. Any other node is *fused* into
//! its single user. A stencil, div-grad, upwind or convolution read by a pointwise node is computed
//! inside the pointwise sweep (pointwise work fused into the stencil sweep), and a small pointwise
//! node read by a stencil-like node is recomputed at every tap. A state read only by its boundary
//! node lives inside the padded buffer, so padding only fills the ghost layers.
//!
//! Ghost cells are filled by box kernels too, one per face, ghost layer and rule, in the order of
//! [`npdec_ir::graph::GhostRule`]: Dirichlet values first, then axis by axis, each over the padded
//! range of the axes before it.

use crate::codegen::{BufferLayout, KernelSpec};
use crate::kexpr::{integer_power, sum, Arithmetic, Intrinsic, Kexpr, MathFunction};
use crate::Unsupported;
use npdec_ir::graph::{
    AxisPadding, DirichletFace, GhostRule, Graph, Grid, NodeId, NodeKind, PointwiseExpr, ValueType,
};
use npdec_symbolic::{AxisId, BinaryOp, CompareOp, FieldId, Function, ReduceOp, Side, UnaryOp};
use std::collections::HashMap;

/// The location of a node's value: `buffer[channel, i + shift]` for the node-frame index `i`.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    pub buffer: usize,
    pub shift: Vec<isize>,
}

/// When a kernel runs within a time step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instant {
    /// At the time of the evaluation (the start of the step).
    Now,
    /// At the end of the step: Dirichlet imposition on the new state.
    Next,
}

/// One operation of a plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Copies a caller's state of `field` into a view.
    CopyState {
        field: FieldId,
        view: View,
    },
    Kernel {
        kernel: usize,
        instant: Instant,
    },
    /// A reduction of a halo-0 grid buffer to one number. `weights` contains the trapezoidal
    /// quadrature weights of each axis and `cell` the product of the spacings.
    Reduce {
        op: ReduceOp,
        input: usize,
        output: usize,
        weights: Vec<Vec<f64>>,
        cell: f64,
    },
    /// `output[c, i] = Σ_j matrix[i, j] · operand[c, j]`.
    Dense {
        matrix: usize,
        operand: usize,
        output: usize,
        rows: usize,
        channels: usize,
    },
}

/// An explicit Euler update of one field, for fused step kernels.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldUpdate {
    pub field: FieldId,
    /// The buffers holding the current and the next state; swapped after every step.
    pub current: usize,
    pub next: usize,
    /// The state's position inside those buffers.
    pub shift: Vec<isize>,
}

/// A lowered graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub layouts: Vec<BufferLayout>,
    pub kernels: Vec<KernelSpec>,
    pub ops: Vec<Op>,
    /// Parameter nodes and their buffers, filled once.
    pub params: Vec<(NodeId, usize)>,
    /// Requested roots and where their values are.
    pub roots: Vec<(NodeId, View)>,
    /// The evolved fields of a fused step plan.
    pub updates: Vec<FieldUpdate>,
}

/// The computation a plan performs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// The values of the roots at given states.
    Evaluate,
    /// One explicit Euler step `u ← u + dt · F(u, t)` of every field of the time step, with the
    /// right-hand sides fused into the update sweeps and the Dirichlet faces imposed before and
    /// after.
    EulerStep { dt: f64 },
}

/// Lowers the nodes that `roots` depend on.
pub fn build_plan(graph: &Graph, roots: &[NodeId], mode: Mode) -> Result<Plan, Unsupported> {
    let mut builder = PlanBuilder::new(graph, roots, mode)?;
    builder.allocate()?;
    builder.schedule()?;
    Ok(builder.plan)
}

struct PlanBuilder<'g> {
    graph: &'g Graph,
    roots: Vec<NodeId>,
    mode: Mode,
    order: Vec<NodeId>,
    views: HashMap<NodeId, View>,
    /// States that live inside their boundary node's buffer.
    aliased_states: HashMap<NodeId, NodeId>,
    plan: Plan,
}

fn unsupported(graph: &Graph, node: NodeId, reason: impl Into<String>) -> Unsupported {
    Unsupported {
        node,
        kind: graph.node(node).kind.name(),
        reason: reason.into(),
    }
}

/// Returns the halo of a grid value (empty for scalars and tensors).
fn halo_of(value: &ValueType) -> Vec<usize> {
    match &value.grid {
        Grid::Points { halo, .. } => halo.clone(),
        Grid::Scalar | Grid::Tensor { .. } => Vec::new(),
    }
}

fn add(a: &[isize], b: &[isize]) -> Vec<isize> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

impl<'g> PlanBuilder<'g> {
    fn new(graph: &'g Graph, roots: &[NodeId], mode: Mode) -> Result<Self, Unsupported> {
        let order = graph.evaluation_order(roots);
        for id in &order {
            let node = graph.node(*id);
            if node.value.complex {
                return Err(unsupported(graph, *id, "complex values are not compiled"));
            }
            match &node.kind {
                NodeKind::Initial { .. } | NodeKind::TimeStep(_) | NodeKind::Expect { .. } => {
                    return Err(unsupported(graph, *id, "a sink has no value to compute"));
                }
                NodeKind::Resample { .. } => {
                    return Err(unsupported(
                        graph,
                        *id,
                        "pooling and upsampling are not compiled",
                    ));
                }
                NodeKind::State { .. }
                | NodeKind::Param { .. }
                | NodeKind::Boundary { .. }
                | NodeKind::Pointwise(_)
                | NodeKind::Stencil(_)
                | NodeKind::DivGrad { .. }
                | NodeKind::Upwind { .. }
                | NodeKind::Dense
                | NodeKind::Convolution { .. }
                | NodeKind::Reduce(_) => {}
            }
        }
        let plan = Plan {
            layouts: Vec::new(),
            kernels: Vec::new(),
            ops: Vec::new(),
            params: Vec::new(),
            roots: Vec::new(),
            updates: Vec::new(),
        };
        Ok(PlanBuilder {
            graph,
            roots: roots.to_vec(),
            mode,
            order,
            views: HashMap::new(),
            aliased_states: HashMap::new(),
            plan,
        })
    }

    fn in_plan(&self, id: NodeId) -> bool {
        self.order.contains(&id)
    }

    /// Returns true when the node is computed inside the sweep of its single user.
    fn fused(&self, id: NodeId) -> bool {
        let graph = self.graph;
        let node = graph.node(id);
        let computed = match &node.kind {
            NodeKind::Pointwise(_)
            | NodeKind::Stencil(_)
            | NodeKind::DivGrad { .. }
            | NodeKind::Upwind { .. }
            | NodeKind::Convolution { .. } => true,
            NodeKind::State { .. }
            | NodeKind::Param { .. }
            | NodeKind::Boundary { .. }
            | NodeKind::Dense
            | NodeKind::Resample { .. }
            | NodeKind::Reduce(_)
            | NodeKind::Initial { .. }
            | NodeKind::TimeStep(_)
            | NodeKind::Expect { .. } => false,
        };
        if !computed || !matches!(node.value.grid, Grid::Points { .. }) {
            return false;
        }
        let users = graph.users(id);
        let [user] = users.as_slice() else {
            return false;
        };
        let is_root = self.roots.contains(&id);
        match &graph.node(*user).kind {
            NodeKind::TimeStep(_) => is_root && matches!(self.mode, Mode::EulerStep { .. }),
            _ if is_root => false,
            NodeKind::Pointwise(_) => true,
            NodeKind::Stencil(_)
            | NodeKind::DivGrad { .. }
            | NodeKind::Upwind { .. }
            | NodeKind::Convolution { .. } => match &node.kind {
                NodeKind::Pointwise(expr) => cheap_pointwise(expr),
                _ => false,
            },
            NodeKind::State { .. }
            | NodeKind::Param { .. }
            | NodeKind::Boundary { .. }
            | NodeKind::Dense
            | NodeKind::Resample { .. }
            | NodeKind::Reduce(_)
            | NodeKind::Initial { .. }
            | NodeKind::Expect { .. } => false,
        }
    }

    fn layout_of(&self, value: &ValueType) -> BufferLayout {
        match &value.grid {
            Grid::Scalar => BufferLayout {
                channels: value.channels,
                extents: Vec::new(),
            },
            Grid::Points { axes, halo } => BufferLayout {
                channels: value.channels,
                extents: self.graph.padded_extent(axes, halo),
            },
            Grid::Tensor { dims } => BufferLayout {
                channels: 1,
                extents: dims.clone(),
            },
        }
    }

    fn new_buffer(&mut self, layout: BufferLayout) -> usize {
        self.plan.layouts.push(layout);
        self.plan.layouts.len() - 1
    }

    /// Gives every materialized node a view.
    fn allocate(&mut self) -> Result<(), Unsupported> {
        let graph = self.graph;
        for id in self.order.clone() {
            let node = graph.node(id);
            if self.fused(id) {
                continue;
            }
            match &node.kind {
                NodeKind::State { .. } => {
                    let users = graph.users(id);
                    let boundary = match users.as_slice() {
                        [user]
                            if self.in_plan(*user)
                                && matches!(graph.node(*user).kind, NodeKind::Boundary { .. }) =>
                        {
                            Some(*user)
                        }
                        _ => None,
                    };
                    match boundary {
                        Some(boundary) => {
                            let layout = self.layout_of(&graph.node(boundary).value);
                            let buffer = self.new_buffer(layout);
                            let halo = halo_of(&graph.node(boundary).value);
                            self.views.insert(
                                id,
                                View {
                                    buffer,
                                    shift: halo.iter().map(|h| *h as isize).collect(),
                                },
                            );
                            self.views.insert(
                                boundary,
                                View {
                                    buffer,
                                    shift: vec![0; halo.len()],
                                },
                            );
                            self.aliased_states.insert(boundary, id);
                        }
                        None => {
                            let layout = self.layout_of(&node.value);
                            let buffer = self.new_buffer(layout);
                            self.views.insert(
                                id,
                                View {
                                    buffer,
                                    shift: vec![0; halo_of(&node.value).len()],
                                },
                            );
                        }
                    }
                }
                NodeKind::Boundary { .. } if self.views.contains_key(&id) => {}
                NodeKind::Boundary { .. }
                | NodeKind::Param { .. }
                | NodeKind::Pointwise(_)
                | NodeKind::Stencil(_)
                | NodeKind::DivGrad { .. }
                | NodeKind::Upwind { .. }
                | NodeKind::Dense
                | NodeKind::Resample { .. }
                | NodeKind::Convolution { .. }
                | NodeKind::Reduce(_) => {
                    let layout = self.layout_of(&node.value);
                    let buffer = self.new_buffer(layout);
                    self.views.insert(
                        id,
                        View {
                            buffer,
                            shift: vec![0; halo_of(&node.value).len()],
                        },
                    );
                    if matches!(node.kind, NodeKind::Param { .. }) {
                        self.plan.params.push((id, buffer));
                    }
                }
                NodeKind::Initial { .. } | NodeKind::TimeStep(_) | NodeKind::Expect { .. } => {
                    return Err(unsupported(graph, id, "a sink has no value to compute"));
                }
            }
        }
        Ok(())
    }

    /// Emits the operations in evaluation order.
    fn schedule(&mut self) -> Result<(), Unsupported> {
        let graph = self.graph;
        if let Mode::EulerStep { .. } = self.mode {
            self.prepare_updates()?;
        }
        for id in self.order.clone() {
            if self.fused(id) {
                continue;
            }
            let node = graph.node(id);
            let view = self.views[&id].clone();
            match &node.kind {
                NodeKind::State { field } => {
                    if let Mode::Evaluate = self.mode {
                        self.plan.ops.push(Op::CopyState {
                            field: *field,
                            view,
                        });
                    }
                }
                NodeKind::Param { .. } => {}
                NodeKind::Resample { .. } => {
                    return Err(unsupported(
                        graph,
                        id,
                        "pooling and upsampling are not compiled",
                    ))
                }
                NodeKind::Boundary { field, axes } => self.boundary(id, *field, axes)?,
                NodeKind::Reduce(op) => {
                    let input = graph.inputs(id)[0];
                    let Grid::Points { axes, .. } = &graph.node(input).value.grid else {
                        return Err(unsupported(
                            graph,
                            id,
                            "the reduced value is not a grid value",
                        ));
                    };
                    let input_buffer = self.views[&input].buffer;
                    let weights = axes
                        .iter()
                        .map(|a| crate::program::quadrature_weights(graph, *a))
                        .collect();
                    let cell = axes.iter().map(|a| graph.axis(*a).spacing()).product();
                    self.plan.ops.push(Op::Reduce {
                        op: *op,
                        input: input_buffer,
                        output: view.buffer,
                        weights,
                        cell,
                    });
                }
                NodeKind::Dense => {
                    let inputs = graph.inputs(id);
                    let Grid::Tensor { dims } = &graph.node(inputs[0]).value.grid else {
                        return Err(unsupported(graph, id, "the matrix is not a tensor"));
                    };
                    self.plan.ops.push(Op::Dense {
                        matrix: self.views[&inputs[0]].buffer,
                        operand: self.views[&inputs[1]].buffer,
                        output: view.buffer,
                        rows: dims[0],
                        channels: node.value.channels,
                    });
                }
                NodeKind::Pointwise(_)
                | NodeKind::Stencil(_)
                | NodeKind::DivGrad { .. }
                | NodeKind::Upwind { .. }
                | NodeKind::Convolution { .. } => {
                    let extents = match &node.value.grid {
                        Grid::Points { axes, halo } => graph.padded_extent(axes, halo),
                        Grid::Scalar | Grid::Tensor { .. } => Vec::new(),
                    };
                    let zero = vec![0; extents.len()];
                    let mut channels = Vec::new();
                    for c in 0..node.value.channels {
                        channels.push((c, self.definition(id, c, &zero)?));
                    }
                    let spec = KernelSpec {
                        name: format!("node{}", id.index()),
                        output: view.buffer,
                        output_shift: view.shift.clone(),
                        region: extents.iter().map(|e| (0, *e as isize)).collect(),
                        channels,
                        readonly_inputs: true,
                        row_prologue: Vec::new(),
                        row_epilogue: Vec::new(),
                    };
                    self.push_kernel(spec, Instant::Now);
                }
                NodeKind::Initial { .. } | NodeKind::TimeStep(_) | NodeKind::Expect { .. } => {
                    return Err(unsupported(graph, id, "a sink has no value to compute"));
                }
            }
        }
        match self.mode {
            Mode::Evaluate => {
                for root in self.roots.clone() {
                    let view = self
                        .views
                        .get(&root)
                        .cloned()
                        .ok_or_else(|| unsupported(graph, root, "the root was fused away"))?;
                    self.plan.roots.push((root, view));
                }
            }
            Mode::EulerStep { dt } => self.update_kernels(dt)?,
        }
        Ok(())
    }

    fn push_kernel(&mut self, spec: KernelSpec, instant: Instant) {
        self.plan.kernels.push(spec);
        self.plan.ops.push(Op::Kernel {
            kernel: self.plan.kernels.len() - 1,
            instant,
        });
    }

    /// Checks that a fused step can run and imposes the Dirichlet faces at the start of the step.
    fn prepare_updates(&mut self) -> Result<(), Unsupported> {
        let graph = self.graph;
        let Some((step_id, step)) = graph.time_step() else {
            return Err(Unsupported {
                node: NodeId(petgraph::stable_graph::NodeIndex::new(0)),
                kind: "time_step",
                reason: "the graph has no time step".into(),
            });
        };
        let mut seen = Vec::new();
        for update in &step.updates {
            if update.time_order != 1
                || update.channel.is_some()
                || update.spectral_laplace.is_some()
                || seen.contains(&update.field)
            {
                return Err(unsupported(
                    graph,
                    step_id,
                    "a fused Euler step needs one first-order update per whole field",
                ));
            }
            seen.push(update.field);
        }
        for (update, rhs) in step.updates.iter().zip(graph.inputs(step_id)) {
            let state = graph
                .find(|k| matches!(k, NodeKind::State { field } if *field == update.field))
                .into_iter()
                .find(|s| self.views.contains_key(s));
            let view = match state {
                Some(state) => self.views[&state].clone(),
                None => {
                    return Err(unsupported(
                        graph,
                        rhs,
                        "the right-hand side does not read the state it updates",
                    ))
                }
            };
            let layout = self.plan.layouts[view.buffer].clone();
            let next = self.new_buffer(layout);
            self.plan.updates.push(FieldUpdate {
                field: update.field,
                current: view.buffer,
                next,
                shift: view.shift.clone(),
            });
            let faces = update.dirichlet.clone();
            self.impose(update.field, &faces, &view, Instant::Now)?;
        }
        Ok(())
    }

    /// Emits the update sweeps `u⁺ = u + F · dt` and the Dirichlet faces on the new states.
    fn update_kernels(&mut self, dt: f64) -> Result<(), Unsupported> {
        let graph = self.graph;
        let Some((step_id, step)) = graph.time_step() else {
            return Ok(());
        };
        let step = step.clone();
        for ((update, rhs), target) in step
            .updates
            .iter()
            .zip(graph.inputs(step_id))
            .zip(self.plan.updates.clone())
        {
            let field = graph.field(update.field);
            let extents: Vec<usize> = field.axes.iter().map(|a| graph.axis(*a).points).collect();
            let zero = vec![0; extents.len()];
            let mut channels = Vec::new();
            for c in 0..field.channels {
                let current = Kexpr::Load {
                    buffer: target.current,
                    channel: c,
                    offset: target.shift.clone(),
                };
                let rate = self.expr_of(rhs, c, &zero)?;
                channels.push((
                    c,
                    Kexpr::binary(Arithmetic::Add, current, scale_rate(rate, dt)),
                ));
            }
            let spec = KernelSpec {
                name: format!("update{}", update.field.0),
                output: target.next,
                output_shift: target.shift.clone(),
                region: extents.iter().map(|e| (0, *e as isize)).collect(),
                channels,
                readonly_inputs: true,
                row_prologue: Vec::new(),
                row_epilogue: Vec::new(),
            };
            self.push_kernel(spec, Instant::Now);
        }
        for (update, target) in step.updates.iter().zip(self.plan.updates.clone()) {
            let view = View {
                buffer: target.next,
                shift: target.shift.clone(),
            };
            self.impose(update.field, &update.dirichlet, &view, Instant::Next)?;
        }
        Ok(())
    }

    /// Emits kernels writing the Dirichlet values of `faces` into the boundary nodes of a state.
    fn impose(
        &mut self,
        field: FieldId,
        faces: &[DirichletFace],
        view: &View,
        instant: Instant,
    ) -> Result<(), Unsupported> {
        let axes = self.graph.field(field).axes.clone();
        let channels = self.graph.field(field).channels;
        for face in faces {
            self.dirichlet_face(
                &axes,
                channels,
                face.axis,
                face.side,
                &face.value,
                view,
                instant,
                "impose",
            )?;
        }
        Ok(())
    }

    /// Emits one kernel writing `value` into the boundary nodes of one face, in the grid frame.
    #[allow(clippy::too_many_arguments)]
    fn dirichlet_face(
        &mut self,
        axes: &[AxisId],
        channels: usize,
        p: usize,
        side: Side,
        value: &PointwiseExpr,
        view: &View,
        instant: Instant,
        purpose: &str,
    ) -> Result<(), Unsupported> {
        let graph = self.graph;
        let points: Vec<usize> = axes.iter().map(|a| graph.axis(*a).points).collect();
        let index = match side {
            Side::Min => 0,
            Side::Max => points[p] as isize - 1,
        };
        let region: Vec<(isize, isize)> = (0..axes.len())
            .map(|q| {
                if q == p {
                    (index, index + 1)
                } else {
                    (0, points[q] as isize)
                }
            })
            .collect();
        let coordinates = |axis: AxisId| -> Option<Kexpr> {
            let q = axes.iter().position(|a| *a == axis)?;
            let declaration = graph.axis(axis);
            Some(Kexpr::Coordinate {
                axis: q,
                origin: declaration.coordinate(0),
                spacing: declaration.spacing(),
                shift: 0,
            })
        };
        let expr = lower_face_value(value, &coordinates).map_err(|reason| Unsupported {
            node: self.any_node(),
            kind: "boundary",
            reason,
        })?;
        let spec = KernelSpec {
            name: format!("{purpose}{}_{}_{:?}", self.plan.kernels.len(), p, side).to_lowercase(),
            output: view.buffer,
            output_shift: view.shift.clone(),
            region,
            channels: (0..channels).map(|c| (c, expr.clone())).collect(),
            readonly_inputs: true,
            row_prologue: Vec::new(),
            row_epilogue: Vec::new(),
        };
        self.push_kernel(spec, instant);
        Ok(())
    }

    fn any_node(&self) -> NodeId {
        self.order
            .first()
            .copied()
            .unwrap_or(NodeId(petgraph::stable_graph::NodeIndex::new(0)))
    }

    /// Emits the kernels of a boundary node: the copy of the state (unless it lives in the padded
    /// buffer already), the Dirichlet nodes, then the ghost layers axis by axis.
    fn boundary(
        &mut self,
        id: NodeId,
        field: FieldId,
        paddings: &[AxisPadding],
    ) -> Result<(), Unsupported> {
        let graph = self.graph;
        let view = self.views[&id].clone();
        let buffer = view.buffer;
        let axes = graph.field(field).axes.clone();
        let channels = graph.field(field).channels;
        let points: Vec<usize> = axes.iter().map(|a| graph.axis(*a).points).collect();
        let halo: Vec<usize> = paddings.iter().map(|p| p.halo).collect();
        let interior = View {
            buffer,
            shift: halo.iter().map(|h| *h as isize).collect(),
        };

        if !self.aliased_states.contains_key(&id) {
            let state = graph.inputs(id)[0];
            let source = self.views[&state].clone();
            let spec = KernelSpec {
                name: format!("copy{}", id.index()),
                output: buffer,
                output_shift: interior.shift.clone(),
                region: points.iter().map(|n| (0, *n as isize)).collect(),
                channels: (0..channels)
                    .map(|c| {
                        (
                            c,
                            Kexpr::Load {
                                buffer: source.buffer,
                                channel: c,
                                offset: source.shift.clone(),
                            },
                        )
                    })
                    .collect(),
                readonly_inputs: true,
                row_prologue: Vec::new(),
                row_epilogue: Vec::new(),
            };
            self.push_kernel(spec, Instant::Now);
        }

        for (p, padding) in paddings.iter().enumerate() {
            for (side, rule) in [(Side::Min, &padding.min), (Side::Max, &padding.max)] {
                if let GhostRule::Dirichlet { value, .. } = rule {
                    self.dirichlet_face(
                        &axes,
                        channels,
                        p,
                        side,
                        value,
                        &interior,
                        Instant::Now,
                        "dirichlet",
                    )?;
                }
            }
        }

        for (p, padding) in paddings.iter().enumerate() {
            if padding.halo == 0 {
                continue;
            }
            let h = halo[p] as isize;
            let n = points[p] as isize;
            for (side, rule) in [(Side::Min, &padding.min), (Side::Max, &padding.max)] {
                let node = |k: usize| match side {
                    Side::Min => h + k as isize,
                    Side::Max => h + n - 1 - k as isize,
                };
                let ghost = |j: usize| match side {
                    Side::Min => h - j as isize,
                    Side::Max => h + n - 1 + j as isize,
                };
                // The lane of axis p at padded index `at`: full padded range on earlier axes,
                // the interior on later ones.
                let lane = |at: isize| -> Vec<(isize, isize)> {
                    (0..axes.len())
                        .map(|q| {
                            if q == p {
                                (at, at + 1)
                            } else if q < p {
                                (0, (points[q] + 2 * halo[q]) as isize)
                            } else {
                                (halo[q] as isize, (halo[q] + points[q]) as isize)
                            }
                        })
                        .collect()
                };
                let along = |distance: isize| -> Vec<isize> {
                    (0..axes.len())
                        .map(|q| if q == p { distance } else { 0 })
                        .collect()
                };
                let load = |c: usize, from: isize, to: isize| Kexpr::Load {
                    buffer,
                    channel: c,
                    offset: along(from - to),
                };
                let mut ghosts: Vec<(isize, Vec<Kexpr>)> = Vec::new();
                match rule {
                    GhostRule::Unconstrained => {}
                    GhostRule::Periodic => {
                        for j in 1..=padding.halo {
                            let source = match side {
                                Side::Min => h + n - j as isize,
                                Side::Max => h + j as isize - 1,
                            };
                            let at = ghost(j);
                            ghosts.push((at, (0..channels).map(|c| load(c, source, at)).collect()));
                        }
                    }
                    GhostRule::Dirichlet { weights, .. } => {
                        for (j, row) in weights.iter().enumerate() {
                            let at = ghost(j + 1);
                            let exprs = (0..channels)
                                .map(|c| {
                                    sum(row
                                        .iter()
                                        .enumerate()
                                        .map(|(k, w)| {
                                            Kexpr::binary(
                                                Arithmetic::Mul,
                                                load(c, node(k), at),
                                                Kexpr::Const(*w),
                                            )
                                        })
                                        .collect())
                                })
                                .collect();
                            ghosts.push((at, exprs));
                        }
                    }
                    GhostRule::Robin {
                        alpha,
                        beta,
                        value,
                        weights,
                        slope_weights,
                        spacing,
                        ..
                    } => {
                        for (j, row) in weights.iter().enumerate() {
                            let at = ghost(j + 1);
                            // Coordinates of the boundary node's face: along p the node itself.
                            let coordinates = |axis: AxisId| -> Option<Kexpr> {
                                let q = axes.iter().position(|a| *a == axis)?;
                                let declaration = graph.axis(axis);
                                let shift = if q == p {
                                    node(0) - at - h
                                } else {
                                    -(halo[q] as isize)
                                };
                                Some(Kexpr::Coordinate {
                                    axis: q,
                                    origin: declaration.coordinate(0),
                                    spacing: declaration.spacing(),
                                    shift,
                                })
                            };
                            let lower = |e: &PointwiseExpr| {
                                lower_face_value(e, &coordinates)
                                    .map_err(|reason| unsupported(graph, id, reason))
                            };
                            let (a, b, g) = (lower(alpha)?, lower(beta)?, lower(value)?);
                            let mut exprs = Vec::new();
                            for c in 0..channels {
                                let boundary_node = load(c, node(0), at);
                                // The inward slope per node, s = −h (g − α u₀) / β.
                                let slope = Kexpr::binary(
                                    Arithmetic::Mul,
                                    Kexpr::binary(
                                        Arithmetic::Div,
                                        Kexpr::binary(
                                            Arithmetic::Sub,
                                            g.clone(),
                                            Kexpr::binary(
                                                Arithmetic::Mul,
                                                a.clone(),
                                                boundary_node,
                                            ),
                                        ),
                                        b.clone(),
                                    ),
                                    Kexpr::Const(-*spacing),
                                );
                                let mut terms = vec![Kexpr::binary(
                                    Arithmetic::Mul,
                                    slope,
                                    Kexpr::Const(slope_weights[j]),
                                )];
                                terms.extend(row.iter().enumerate().map(|(k, w)| {
                                    Kexpr::binary(
                                        Arithmetic::Mul,
                                        load(c, node(k), at),
                                        Kexpr::Const(*w),
                                    )
                                }));
                                exprs.push(sum(terms));
                            }
                            ghosts.push((at, exprs));
                        }
                    }
                }
                for (at, exprs) in ghosts {
                    let spec = KernelSpec {
                        name: format!("ghost{}_{}", id.index(), self.plan.kernels.len()),
                        output: buffer,
                        output_shift: vec![0; axes.len()],
                        region: lane(at),
                        channels: exprs.into_iter().enumerate().collect(),
                        readonly_inputs: false,
                        row_prologue: Vec::new(),
                        row_epilogue: Vec::new(),
                    };
                    self.push_kernel(spec, Instant::Now);
                }
            }
        }
        Ok(())
    }

    /// Returns the expression reading `id`'s channel `channel` at the node-frame index
    /// `i + offset`: a load when the node has a buffer, else its definition.
    fn expr_of(&self, id: NodeId, channel: usize, offset: &[isize]) -> Result<Kexpr, Unsupported> {
        let graph = self.graph;
        let node = graph.node(id);
        let channel = if node.value.channels == 1 { 0 } else { channel };
        match self.views.get(&id) {
            Some(view) => match &node.value.grid {
                Grid::Scalar => Ok(Kexpr::Uniform {
                    buffer: view.buffer,
                    index: channel,
                }),
                Grid::Points { .. } => Ok(Kexpr::Load {
                    buffer: view.buffer,
                    channel,
                    offset: add(offset, &view.shift),
                }),
                Grid::Tensor { .. } => {
                    Err(unsupported(graph, id, "a tensor is read as a grid value"))
                }
            },
            None => self.definition(id, channel, offset),
        }
    }

    /// Returns the expression computing `id`'s channel `channel` at the node-frame index
    /// `i + offset` from the node's inputs.
    fn definition(
        &self,
        id: NodeId,
        channel: usize,
        offset: &[isize],
    ) -> Result<Kexpr, Unsupported> {
        let graph = self.graph;
        let node = graph.node(id);
        let channel = if node.value.channels == 1 { 0 } else { channel };
        let inputs = graph.inputs(id);
        let halo: Vec<isize> = halo_of(&node.value).iter().map(|h| *h as isize).collect();
        // The offset of input `k` in its own frame, before any tap.
        let input_offset = |k: usize| -> Vec<isize> {
            let input_halo = halo_of(&graph.node(inputs[k]).value);
            if input_halo.is_empty() {
                return Vec::new();
            }
            offset
                .iter()
                .zip(&input_halo)
                .zip(&halo)
                .map(|((o, hi), h)| o + *hi as isize - h)
                .collect()
        };
        let tap = |base: &[isize], shift: &[isize]| -> Vec<isize> {
            if base.is_empty() {
                Vec::new()
            } else {
                add(base, shift)
            }
        };
        match &node.kind {
            NodeKind::Pointwise(expr) => {
                let Grid::Points { axes, .. } = &node.value.grid else {
                    return Err(unsupported(graph, id, "a fused pointwise node has no grid"));
                };
                let mut input = |index: usize, selected: Option<usize>| {
                    self.expr_of(
                        inputs[index],
                        selected.unwrap_or(channel),
                        &input_offset(index),
                    )
                };
                let coordinates = |axis: AxisId| -> Option<Kexpr> {
                    let p = axes.iter().position(|a| *a == axis)?;
                    let declaration = graph.axis(axis);
                    Some(Kexpr::Coordinate {
                        axis: p,
                        origin: declaration.coordinate(0),
                        spacing: declaration.spacing(),
                        shift: offset[p] - halo[p],
                    })
                };
                lower_pointwise(expr, &coordinates, &mut input).map_err(|e| match e {
                    LowerError::Unsupported(reason) => unsupported(graph, id, reason),
                    LowerError::Input(inner) => inner,
                })
            }
            NodeKind::Stencil(stencil) => {
                // Coefficient factoring: taps of equal weight are summed first and multiplied
                // once, `w·a + w·b → w·(a + b)`, in the order the weights first appear.
                let base = input_offset(0);
                let mut groups: Vec<(f64, Vec<Kexpr>)> = Vec::new();
                for t in &stencil.taps {
                    let shift: Vec<isize> = t.offset.iter().map(|o| *o as isize).collect();
                    let x = self.expr_of(inputs[0], channel, &tap(&base, &shift))?;
                    match groups.iter_mut().find(|(w, _)| *w == t.weight) {
                        Some((_, members)) => members.push(x),
                        None => groups.push((t.weight, vec![x])),
                    }
                }
                let terms = groups
                    .into_iter()
                    .map(|(weight, members)| {
                        Kexpr::binary(Arithmetic::Mul, sum(members), Kexpr::Const(weight))
                    })
                    .collect();
                Ok(sum(terms))
            }
            NodeKind::DivGrad {
                axes: positions,
                spacing,
            } => {
                let (coefficient_base, operand_base) = (input_offset(0), input_offset(1));
                let rank = halo.len();
                let mut terms = Vec::new();
                for (p, h) in positions.iter().zip(spacing) {
                    let along = |d: isize| -> Vec<isize> {
                        (0..rank).map(|q| if q == *p { d } else { 0 }).collect()
                    };
                    let u =
                        |d: isize| self.expr_of(inputs[1], channel, &tap(&operand_base, &along(d)));
                    let c = |d: isize| {
                        self.expr_of(inputs[0], channel, &tap(&coefficient_base, &along(d)))
                    };
                    let half = Kexpr::Const(0.5);
                    let flux_plus = Kexpr::binary(
                        Arithmetic::Mul,
                        Kexpr::binary(
                            Arithmetic::Mul,
                            Kexpr::binary(Arithmetic::Add, c(0)?, c(1)?),
                            half.clone(),
                        ),
                        Kexpr::binary(Arithmetic::Sub, u(1)?, u(0)?),
                    );
                    let flux_minus = Kexpr::binary(
                        Arithmetic::Mul,
                        Kexpr::binary(
                            Arithmetic::Mul,
                            Kexpr::binary(Arithmetic::Add, c(-1)?, c(0)?),
                            half,
                        ),
                        Kexpr::binary(Arithmetic::Sub, u(0)?, u(-1)?),
                    );
                    terms.push(Kexpr::binary(
                        Arithmetic::Mul,
                        Kexpr::binary(Arithmetic::Sub, flux_plus, flux_minus),
                        Kexpr::Const(1.0 / (h * h)),
                    ));
                }
                Ok(sum(terms))
            }
            NodeKind::Upwind {
                position,
                backward,
                forward,
                ..
            } => {
                let rank = halo.len();
                let operand_base = input_offset(1);
                let one_sided = |taps: &[(i32, f64)]| -> Result<Kexpr, Unsupported> {
                    let mut terms = Vec::new();
                    for (o, w) in taps {
                        let along: Vec<isize> = (0..rank)
                            .map(|q| if q == *position { *o as isize } else { 0 })
                            .collect();
                        let x = self.expr_of(inputs[1], channel, &tap(&operand_base, &along))?;
                        terms.push(Kexpr::binary(Arithmetic::Mul, x, Kexpr::Const(*w)));
                    }
                    Ok(sum(terms))
                };
                let velocity = self.expr_of(inputs[0], channel, &input_offset(0))?;
                let chosen = Kexpr::Select {
                    op: CompareOp::GreaterEqual,
                    left: Box::new(velocity.clone()),
                    right: Box::new(Kexpr::Const(0.0)),
                    then: Box::new(one_sided(backward)?),
                    otherwise: Box::new(one_sided(forward)?),
                };
                Ok(Kexpr::binary(Arithmetic::Mul, velocity, chosen))
            }
            NodeKind::Convolution { .. } => {
                let Grid::Tensor { dims } = &graph.node(inputs[0]).value.grid else {
                    return Err(unsupported(graph, id, "the kernel is not a tensor"));
                };
                let kernel = self
                    .views
                    .get(&inputs[0])
                    .ok_or_else(|| unsupported(graph, id, "the kernel has no buffer"))?
                    .buffer;
                let (input_channels, spatial) = (dims[1], &dims[2..]);
                let kernel_points: usize = spatial.iter().product();
                let base = input_offset(1);
                let mut terms = Vec::new();
                for i in 0..input_channels {
                    for flat in 0..kernel_points {
                        let mut rest = flat;
                        let mut shift = vec![0isize; spatial.len()];
                        for (a, k) in spatial.iter().enumerate().rev() {
                            shift[a] = (rest % k) as isize - ((k - 1) / 2) as isize;
                            rest /= k;
                        }
                        let weight = Kexpr::Uniform {
                            buffer: kernel,
                            index: (channel * input_channels + i) * kernel_points + flat,
                        };
                        let x = self.expr_of(inputs[1], i, &tap(&base, &shift))?;
                        terms.push(Kexpr::binary(Arithmetic::Mul, weight, x));
                    }
                }
                Ok(sum(terms))
            }
            NodeKind::State { .. }
            | NodeKind::Param { .. }
            | NodeKind::Boundary { .. }
            | NodeKind::Dense
            | NodeKind::Resample { .. }
            | NodeKind::Reduce(_)
            | NodeKind::Initial { .. }
            | NodeKind::TimeStep(_)
            | NodeKind::Expect { .. } => Err(unsupported(
                graph,
                id,
                "the node has no buffer and cannot be fused",
            )),
        }
    }
}

/// Returns `rate · dt`. When the rate is a sum or difference of products with constants, such as
/// a stencil with factored coefficients, `dt` goes into those constants instead. That saves one
/// multiplication per point, and the result differs from `rate · dt` only by rounding.
fn scale_rate(rate: Kexpr, dt: f64) -> Kexpr {
    fn scalable(e: &Kexpr) -> bool {
        match e {
            Kexpr::Binary(Arithmetic::Add | Arithmetic::Sub, a, b) => scalable(a) && scalable(b),
            Kexpr::Binary(Arithmetic::Mul, _, b) => matches!(**b, Kexpr::Const(_)),
            _ => false,
        }
    }
    fn scale(e: Kexpr, dt: f64) -> Kexpr {
        match e {
            Kexpr::Binary(op @ (Arithmetic::Add | Arithmetic::Sub), a, b) => {
                Kexpr::binary(op, scale(*a, dt), scale(*b, dt))
            }
            Kexpr::Binary(Arithmetic::Mul, a, b) => match *b {
                Kexpr::Const(w) => Kexpr::binary(Arithmetic::Mul, *a, Kexpr::Const(w * dt)),
                other => Kexpr::binary(Arithmetic::Mul, *a, other),
            },
            other => other,
        }
    }
    if scalable(&rate) {
        scale(rate, dt)
    } else {
        Kexpr::binary(Arithmetic::Mul, rate, Kexpr::Const(dt))
    }
}

/// Returns true for a pointwise expression cheap enough to recompute at every stencil tap.
fn cheap_pointwise(expr: &PointwiseExpr) -> bool {
    let mut size = 0;
    let mut calls = false;
    expr.walk(&mut |e| {
        size += 1;
        calls |= matches!(e, PointwiseExpr::Call(..));
    });
    size <= 8 && !calls
}

/// The reason a pointwise expression could not be lowered.
enum LowerError {
    Unsupported(String),
    Input(Unsupported),
}

/// Lowers a face value (a pointwise expression without inputs) at the coordinates given.
fn lower_face_value(
    expr: &PointwiseExpr,
    coordinates: &dyn Fn(AxisId) -> Option<Kexpr>,
) -> Result<Kexpr, String> {
    let mut no_input = |_: usize, _: Option<usize>| -> Result<Kexpr, Unsupported> {
        Err(Unsupported {
            node: NodeId(petgraph::stable_graph::NodeIndex::new(0)),
            kind: "boundary",
            reason: "a face value reads an input".into(),
        })
    };
    lower_pointwise(expr, coordinates, &mut no_input).map_err(|e| match e {
        LowerError::Unsupported(reason) => reason,
        LowerError::Input(inner) => inner.reason,
    })
}

/// Lowers a pointwise expression tree with the interpreter's semantics for real values.
fn lower_pointwise(
    expr: &PointwiseExpr,
    coordinates: &dyn Fn(AxisId) -> Option<Kexpr>,
    input: &mut dyn FnMut(usize, Option<usize>) -> Result<Kexpr, Unsupported>,
) -> Result<Kexpr, LowerError> {
    let mut lower = |e: &PointwiseExpr| lower_pointwise(e, coordinates, input);
    Ok(match expr {
        PointwiseExpr::Input { index, channel } => {
            input(*index, *channel).map_err(LowerError::Input)?
        }
        PointwiseExpr::Real(v) => Kexpr::Const(*v),
        PointwiseExpr::Complex(..) => {
            return Err(LowerError::Unsupported(
                "complex constants are not compiled".into(),
            ))
        }
        // The interpreter evaluates a coordinate outside the node's grid to NaN.
        PointwiseExpr::Coordinate(axis) => coordinates(*axis).unwrap_or(Kexpr::Const(f64::NAN)),
        PointwiseExpr::Time => Kexpr::Time,
        PointwiseExpr::Unary(UnaryOp::Neg, a) => Kexpr::unary(Intrinsic::Neg, lower(a)?),
        PointwiseExpr::Binary(op, a, b) => {
            let left = lower(a)?;
            match op {
                BinaryOp::Add => Kexpr::binary(Arithmetic::Add, left, lower(b)?),
                BinaryOp::Sub => Kexpr::binary(Arithmetic::Sub, left, lower(b)?),
                BinaryOp::Mul => Kexpr::binary(Arithmetic::Mul, left, lower(b)?),
                BinaryOp::Div => Kexpr::binary(Arithmetic::Div, left, lower(b)?),
                BinaryOp::Pow => match **b {
                    PointwiseExpr::Real(p) if p.fract() == 0.0 && p.abs() < 64.0 => {
                        integer_power(left, p as i32)
                    }
                    _ => Kexpr::Call(MathFunction::Pow, vec![left, lower(b)?]),
                },
            }
        }
        PointwiseExpr::Compare(op, a, b) => Kexpr::Select {
            op: *op,
            left: Box::new(lower(a)?),
            right: Box::new(lower(b)?),
            then: Box::new(Kexpr::Const(1.0)),
            otherwise: Box::new(Kexpr::Const(0.0)),
        },
        PointwiseExpr::Call(function, args) => {
            let Some(first) = args.first() else {
                return Ok(Kexpr::Const(f64::NAN));
            };
            let x = lower(first)?;
            let math = |f: MathFunction, x: Kexpr| Kexpr::Call(f, vec![x]);
            match function {
                Function::Tanh => math(MathFunction::Tanh, x),
                Function::Exp => math(MathFunction::Exp, x),
                Function::Log => math(MathFunction::Log, x),
                Function::Sin => math(MathFunction::Sin, x),
                Function::Cos => math(MathFunction::Cos, x),
                Function::Sqrt => Kexpr::unary(Intrinsic::Sqrt, x),
                Function::Abs => Kexpr::unary(Intrinsic::Abs, x),
                Function::Relu => Kexpr::binary(Arithmetic::Max, x, Kexpr::Const(0.0)),
                Function::Sigmoid => Kexpr::binary(
                    Arithmetic::Div,
                    Kexpr::Const(1.0),
                    Kexpr::binary(
                        Arithmetic::Add,
                        Kexpr::Const(1.0),
                        math(MathFunction::Exp, Kexpr::unary(Intrinsic::Neg, x)),
                    ),
                ),
                Function::Conj | Function::Re => x,
                Function::Im => Kexpr::Const(0.0),
                Function::Max | Function::Min => {
                    let y = match args.get(1) {
                        Some(second) => lower(second)?,
                        None => x.clone(),
                    };
                    let op = if *function == Function::Max {
                        Arithmetic::Max
                    } else {
                        Arithmetic::Min
                    };
                    Kexpr::binary(op, x, y)
                }
                Function::Softmax => {
                    return Err(LowerError::Unsupported(
                        "softmax over channels is not compiled".into(),
                    ))
                }
            }
        }
    })
}
