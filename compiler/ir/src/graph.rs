//! The dataflow IR: a directed acyclic graph of array operations on petgraph.
//!
//! # Values
//!
//! Every node computes one array, described by its [`ValueType`]:
//! - a **grid value** lives on a list of axes (the grid of one field) and carries a *halo*, a number
//!   of ghost layers on both sides of each axis. Its array has the shape
//!   `[channels, n₁ + 2·halo₁, …, n_d + 2·halo_d]`, channel first. Halo 0 is the grid itself.
//! - a **scalar** is one number per channel, shape `[channels]`; it broadcasts over any grid.
//! - a **tensor** is a parameter with dimensions but no axes (a weight matrix or a kernel), shape
//!   `dims`.
//!
//! Values are real or complex; [`ValueType::complex`] says which. The IR never stores per-point data:
//! a node's size depends on the stencil it applies, not on the number of grid points.
//!
//! # Node kinds
//!
//! Inputs are the incoming edges, ordered by their [`Operand`] position.
//!
//! - [`NodeKind::State`]: the current value of a field, halo 0, no inputs. Time stepping supplies it.
//! - [`NodeKind::Param`]: a parameter whose values come from a random initializer, no inputs. A
//!   parameter with a value expression is inlined into pointwise nodes instead.
//! - [`NodeKind::Boundary`]: pads its one input (a `State`) with ghost layers by the field's boundary
//!   conditions. It first writes the Dirichlet values into the boundary nodes of the grid, then fills
//!   the ghost layers axis by axis in axis order; each axis fills over the already padded range of the
//!   axes before it, so corner and edge ghosts are the rule of the later axis applied to the ghosts of
//!   the earlier one.
//! - [`NodeKind::Pointwise`]: an expression tree ([`PointwiseExpr`]) over its inputs, coordinates,
//!   time and constants, evaluated independently at every point. All grid inputs share the node's
//!   grid and halo; scalar inputs broadcast.
//! - [`NodeKind::Stencil`]: `Σ weight · input[i + offset]` over fixed taps. The weights include the
//!   grid spacing. The output halo is the input halo minus the stencil radius on each axis.
//! - [`NodeKind::DivGrad`]: the conservative `Σ_a ∂_a(c ∂_a u)` with the coefficient averaged to the
//!   cell faces. Inputs: coefficient, operand, both with the same halo; the output halo is one less on
//!   each listed axis. It is second order whatever the space order of the task.
//! - [`NodeKind::Upwind`]: `v · ∂u/∂x` with the one-sided formula chosen per point by the sign of the
//!   real part of `v`. Inputs: velocity (at the output halo), operand (halo larger by the order).
//! - [`NodeKind::Dense`]: a matrix product. Inputs: a tensor `[m, n]` and a grid value on one axis
//!   with `n` points and halo 0. The output is on the same axis, so `m = n`.
//! - [`NodeKind::Convolution`]: `Σ_in K[out, in, …] ⋆ u[in]`, cross-correlation with a kernel
//!   centered on the point. Inputs: a tensor `[out, in, k₁, …, k_d]` with odd `k`, and a grid value
//!   whose halo is larger by `(k − 1) / 2` than the output's.
//! - [`NodeKind::Resample`]: `pool` (the mean over blocks of `factor` points per axis) or
//!   `upsample` (each coarse value copied to its block of `factor` points per axis). Input and
//!   output have halo 0; the output lives on the coarse or fine axes that the checker derived.
//! - [`NodeKind::Reduce`]: a reduction of a grid value with halo 0 to one number (over points and
//!   channels).
//! - [`NodeKind::Initial`]: a sink holding the initial value of a field (or of its time derivative).
//! - [`NodeKind::TimeStep`]: the sink of a solve. Its inputs are, per [`Update`], the right-hand side
//!   `F` of `∂ᵏu/∂tᵏ = F` (halo 0), the residual of a steady equation, or for split-step Fourier the
//!   rate `a` of the pointwise part `a·u`. It states the scheme, the step and the Dirichlet faces that
//!   time stepping imposes after every stage.
//! - [`NodeKind::Expect`]: a sink comparing two scalars after the solves.

use npdec_symbolic::{
    Axis, AxisId, BinaryOp, CompareOp, Field, FieldId, Function, Param, ParamId, ReduceOp,
    Resample, Scheme, Side, UnaryOp,
};
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, NodeIndexable};
use petgraph::Direction;

/// A node of a [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub NodeIndex<u32>);

impl NodeId {
    pub fn index(self) -> usize {
        self.0.index()
    }
}

/// The position of an input among a node's inputs; the weight of every edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Operand(pub usize);

/// Where a value lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Grid {
    Scalar,
    /// Grid points of the listed axes, widened by `halo[i]` ghost layers on both sides of `axes[i]`.
    Points {
        axes: Vec<AxisId>,
        halo: Vec<usize>,
    },
    /// A parameter tensor without axes.
    Tensor {
        dims: Vec<usize>,
    },
}

/// The type of a node's value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ValueType {
    pub grid: Grid,
    pub channels: usize,
    pub complex: bool,
}

/// A pointwise expression. `Input` leaves refer to the node's inputs by position.
#[derive(Clone, Debug, PartialEq)]
pub enum PointwiseExpr {
    /// Input `index`, or one channel of it.
    Input {
        index: usize,
        channel: Option<usize>,
    },
    Real(f64),
    Complex(f64, f64),
    /// The coordinate along an axis of the node's grid, extended linearly into the halo.
    Coordinate(AxisId),
    Time,
    Unary(UnaryOp, Box<PointwiseExpr>),
    Binary(BinaryOp, Box<PointwiseExpr>, Box<PointwiseExpr>),
    Call(Function, Vec<PointwiseExpr>),
    /// 1 where the comparison of the real parts holds, else 0.
    Compare(CompareOp, Box<PointwiseExpr>, Box<PointwiseExpr>),
}

impl PointwiseExpr {
    /// Calls `visit` on this expression and every subexpression, parents first.
    pub fn walk(&self, visit: &mut impl FnMut(&PointwiseExpr)) {
        visit(self);
        match self {
            PointwiseExpr::Input { .. }
            | PointwiseExpr::Real(_)
            | PointwiseExpr::Complex(..)
            | PointwiseExpr::Coordinate(_)
            | PointwiseExpr::Time => {}
            PointwiseExpr::Unary(_, a) => a.walk(visit),
            PointwiseExpr::Binary(_, a, b) | PointwiseExpr::Compare(_, a, b) => {
                a.walk(visit);
                b.walk(visit);
            }
            PointwiseExpr::Call(_, args) => args.iter().for_each(|a| a.walk(visit)),
        }
    }

    /// Returns the largest input index used plus one (0 when no input is used).
    pub fn input_count(&self) -> usize {
        let mut count = 0;
        self.walk(&mut |e| {
            if let PointwiseExpr::Input { index, .. } = e {
                count = count.max(index + 1);
            }
        });
        count
    }
}

/// One term of a stencil: the weight of the input at `offset` (one entry per grid axis).
#[derive(Clone, Debug, PartialEq)]
pub struct Tap {
    pub offset: Vec<i32>,
    pub weight: f64,
}

/// A linear stencil with constant weights.
#[derive(Clone, Debug, PartialEq)]
pub struct Stencil {
    /// What the stencil approximates, for dumps: `d2/dx2`, `laplace`, `d2/dxdy`.
    pub label: String,
    pub taps: Vec<Tap>,
    /// The largest `|offset|` per grid axis.
    pub radius: Vec<usize>,
}

/// How the ghost layers on one side of one axis are filled.
#[derive(Clone, Debug, PartialEq)]
pub enum GhostRule {
    /// No condition is declared (an index axis read without a halo): there are no ghosts to fill.
    Unconstrained,
    /// Copies from the other end of the axis.
    Periodic,
    /// `u = value`. The boundary node is set to `value`; ghost `j` (1-based, counted outward) is
    /// `Σ_k weights[j−1][k] · node_k`, the polynomial through the boundary node and the next interior
    /// nodes, extrapolated.
    Dirichlet {
        value: PointwiseExpr,
        weights: Vec<Vec<f64>>,
    },
    /// `alpha·u + beta·∂u/∂n = value` (Neumann is `alpha = 0, beta = 1`). Ghost `j` is
    /// `Σ_k weights[j−1][k] · node_k + slope_weights[j−1] · s` with the inward slope per node
    /// `s = −spacing · (value − alpha · node_0) / beta`: the polynomial through the nodes that also has
    /// the prescribed normal derivative at the boundary node.
    Robin {
        alpha: PointwiseExpr,
        beta: PointwiseExpr,
        value: PointwiseExpr,
        weights: Vec<Vec<f64>>,
        slope_weights: Vec<f64>,
        spacing: f64,
        /// True when declared as a Neumann condition, for dumps.
        neumann: bool,
    },
}

/// Ghost-layer rules of one axis of a padded field.
#[derive(Clone, Debug, PartialEq)]
pub struct AxisPadding {
    pub halo: usize,
    pub min: GhostRule,
    pub max: GhostRule,
}

/// A boundary face where time stepping imposes a Dirichlet value.
#[derive(Clone, Debug, PartialEq)]
pub struct DirichletFace {
    /// Position of the axis among the field's axes.
    pub axis: usize,
    pub side: Side,
    pub value: PointwiseExpr,
}

/// The part of an equation that split-step Fourier propagates exactly: `coefficient · ∇²u`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpectralLaplace {
    pub re: f64,
    pub im: f64,
}

/// One equation advanced by a [`TimeStep`].
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    pub field: FieldId,
    pub channel: Option<usize>,
    /// 0 (steady), 1 or 2.
    pub time_order: u8,
    pub dirichlet: Vec<DirichletFace>,
    /// Set for split-step Fourier.
    pub spectral_laplace: Option<SpectralLaplace>,
}

/// The sink of a solve.
#[derive(Clone, Debug, PartialEq)]
pub struct TimeStep {
    pub scheme: Scheme,
    pub dt: f64,
    pub steps: usize,
    pub until: f64,
    pub every: Option<usize>,
    pub updates: Vec<Update>,
}

/// What a node computes.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    State {
        field: FieldId,
    },
    Param {
        param: ParamId,
    },
    Boundary {
        field: FieldId,
        axes: Vec<AxisPadding>,
    },
    Pointwise(PointwiseExpr),
    Stencil(Stencil),
    /// Positions of the grid axes the divergence runs over, and their spacings.
    DivGrad {
        axes: Vec<usize>,
        spacing: Vec<f64>,
    },
    /// `position` is the axis position in the grid; the taps are one-dimensional offsets and weights
    /// for a non-negative (`backward`) and a negative (`forward`) velocity.
    Upwind {
        position: usize,
        order: u8,
        backward: Vec<(i32, f64)>,
        forward: Vec<(i32, f64)>,
    },
    Dense,
    Convolution {
        kernel: ParamId,
    },
    Resample {
        kind: Resample,
        factor: usize,
    },
    Reduce(ReduceOp),
    Initial {
        field: FieldId,
        time_derivative: u8,
    },
    TimeStep(TimeStep),
    Expect {
        index: usize,
        op: CompareOp,
        text: String,
    },
}

impl NodeKind {
    /// Returns the short name used in dumps and verifier messages.
    pub fn name(&self) -> &'static str {
        match self {
            NodeKind::State { .. } => "state",
            NodeKind::Param { .. } => "param",
            NodeKind::Boundary { .. } => "boundary",
            NodeKind::Pointwise(_) => "pointwise",
            NodeKind::Stencil(_) => "stencil",
            NodeKind::DivGrad { .. } => "div_grad",
            NodeKind::Upwind { .. } => "upwind",
            NodeKind::Dense => "dense",
            NodeKind::Convolution { .. } => "convolution",
            NodeKind::Resample {
                kind: Resample::Pool,
                ..
            } => "pool",
            NodeKind::Resample {
                kind: Resample::Upsample,
                ..
            } => "upsample",
            NodeKind::Reduce(_) => "reduce",
            NodeKind::Initial { .. } => "initial",
            NodeKind::TimeStep(_) => "time_step",
            NodeKind::Expect { .. } => "expect",
        }
    }
}

/// A node: what it computes and the type of its value. Sinks have the type of their first input.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub value: ValueType,
}

/// A dataflow graph with copies of the model declarations its nodes refer to.
#[derive(Clone, Debug)]
pub struct Graph {
    pub name: String,
    pub axes: Vec<Axis>,
    pub fields: Vec<Field>,
    pub params: Vec<Param>,
    graph: StableDiGraph<Node, Operand>,
}

impl Graph {
    pub fn new(
        name: impl Into<String>,
        axes: Vec<Axis>,
        fields: Vec<Field>,
        params: Vec<Param>,
    ) -> Self {
        Graph {
            name: name.into(),
            axes,
            fields,
            params,
            graph: StableDiGraph::new(),
        }
    }

    /// Adds a node whose inputs are `inputs`, in operand order.
    pub fn add_node(&mut self, node: Node, inputs: &[NodeId]) -> NodeId {
        let id = NodeId(self.graph.add_node(node));
        for (position, input) in inputs.iter().enumerate() {
            self.graph.add_edge(input.0, id.0, Operand(position));
        }
        id
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.graph[id.0]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.graph[id.0]
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.graph.contains_node(id.0)
    }

    pub fn node_count(&self) -> usize {
        self.graph.node_count()
    }

    /// Returns the node ids in insertion order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.graph.node_indices().map(NodeId).collect()
    }

    /// Returns the inputs of a node in operand order.
    pub fn inputs(&self, id: NodeId) -> Vec<NodeId> {
        let mut edges: Vec<(Operand, NodeId)> = self
            .graph
            .edges_directed(id.0, Direction::Incoming)
            .map(|e| (*e.weight(), NodeId(e.source())))
            .collect();
        edges.sort();
        edges.into_iter().map(|(_, node)| node).collect()
    }

    /// Returns the operand positions of a node's incoming edges, sorted.
    pub fn operand_positions(&self, id: NodeId) -> Vec<usize> {
        let mut positions: Vec<usize> = self
            .graph
            .edges_directed(id.0, Direction::Incoming)
            .map(|e| e.weight().0)
            .collect();
        positions.sort_unstable();
        positions
    }

    /// Returns the nodes that use this node's value.
    pub fn users(&self, id: NodeId) -> Vec<NodeId> {
        self.graph
            .neighbors_directed(id.0, Direction::Outgoing)
            .map(NodeId)
            .collect()
    }

    /// Returns all nodes in a topological order, or the id of a node on a cycle.
    pub fn topological_order(&self) -> Result<Vec<NodeId>, NodeId> {
        petgraph::algo::toposort(&self.graph, None)
            .map(|order| order.into_iter().map(NodeId).collect())
            .map_err(|c| NodeId(c.node_id()))
    }

    /// Returns `roots` and every node they depend on, in a topological order.
    pub fn evaluation_order(&self, roots: &[NodeId]) -> Vec<NodeId> {
        let mut needed = vec![false; self.graph.node_bound()];
        let mut stack: Vec<NodeId> = roots.to_vec();
        while let Some(id) = stack.pop() {
            if !std::mem::replace(&mut needed[id.index()], true) {
                stack.extend(self.inputs(id));
            }
        }
        self.topological_order()
            .unwrap_or_default()
            .into_iter()
            .filter(|id| needed[id.index()])
            .collect()
    }

    /// Returns the nodes whose kind satisfies `predicate`, in insertion order.
    pub fn find(&self, predicate: impl Fn(&NodeKind) -> bool) -> Vec<NodeId> {
        self.node_ids()
            .into_iter()
            .filter(|id| predicate(&self.node(*id).kind))
            .collect()
    }

    /// Returns the time step sink, if the graph has one.
    pub fn time_step(&self) -> Option<(NodeId, &TimeStep)> {
        self.node_ids().into_iter().find_map(|id| {
            if let NodeKind::TimeStep(step) = &self.node(id).kind {
                Some((id, step))
            } else {
                None
            }
        })
    }

    pub fn axis(&self, id: AxisId) -> &Axis {
        &self.axes[id.0]
    }

    pub fn field(&self, id: FieldId) -> &Field {
        &self.fields[id.0]
    }

    pub fn param(&self, id: ParamId) -> &Param {
        &self.params[id.0]
    }

    /// Returns the number of points of a grid value along each of its axes, halo included.
    pub fn padded_extent(&self, axes: &[AxisId], halo: &[usize]) -> Vec<usize> {
        axes.iter()
            .zip(halo)
            .map(|(a, h)| self.axis(*a).points + 2 * h)
            .collect()
    }
}

/// A discretized model: one graph per solve task and one graph for the expectations.
#[derive(Clone, Debug)]
pub struct Program {
    pub model: String,
    pub solves: Vec<Graph>,
    /// The span of each solve task, for diagnostics at run time.
    pub solve_spans: Vec<npdec_diagnostics::Span>,
    pub expects: Graph,
    pub expect_spans: Vec<npdec_diagnostics::Span>,
}
