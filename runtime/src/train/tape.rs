//! The training tape: a checked model's expressions lowered to batched array operations with
//! hand-written vector–Jacobian products (reverse-mode automatic differentiation, Griewank &
//! Walther, "Evaluating Derivatives", 2nd ed., SIAM 2008, chapter 3).
//!
//! Every value is an `Array2<f64>` of shape `[rows, len]`: `rows` is the batch size for values that
//! depend on the sample or the state and 1 for constants and parameters, which broadcast over the
//! batch. `len` is the flattened value of one sample in the IR's array order, channels first, then
//! the grid axes: a field `u(x, y)[c]` has `len = c · nx · ny`. A value of smaller `len` broadcasts
//! by index `i mod len`, so a scalar (`len = 1`) broadcasts everywhere and a one-channel grid
//! function broadcasts over the channels of a wider one.
//!
//! Spatial operators (derivatives, Laplacians, the padding of convolutions) are
//! [`SparseOperator`]s built from the same stencil and ghost-cell weights as the IR, so their
//! adjoint is the transposed matrix. Dense layers are GEMMs over the batch (see [`gemm`]), in
//! `f64` or, when the parameter values ask for it, in `f32`. Convolutions are sums of contiguous
//! slices of the padded input (see `ConvolutionPlan`).

use crate::train::gemm::{self, ProductPrecision, SingleOperand};
use crate::train::linear::SparseOperator;
use ndarray::{s, Array2, ArrayView2, ArrayViewMut2, Axis};
use npdec_symbolic::{BinaryOp, CompareOp, DataId, Function, ParamId, ReduceOp, UnaryOp};
use std::sync::Arc;

/// The id of a node of a [`Tape`].
pub type NodeIndex = usize;

/// One operation of a [`Tape`]. Operands are indices of earlier nodes.
#[derive(Clone, Debug)]
pub enum Op {
    /// A constant per entry (coordinates and numbers), one row.
    Constant(Vec<f64>),
    /// The current time, one entry.
    Time,
    /// State `index` of the time stepping (a field, all channels).
    State(usize),
    /// The values of a parameter at the current step, one row.
    Param(ParamId),
    /// The current samples of a data source, each copied `copies` times (lifting to channels).
    Input {
        data: DataId,
        copies: usize,
    },
    /// Row `step` of each sample viewed as `[rows, features]`.
    Sequence {
        data: DataId,
        features: usize,
    },
    /// The current labels as real values (class index or regression targets).
    Label(DataId),
    Neg(NodeIndex),
    Binary(BinaryOp, NodeIndex, NodeIndex),
    Compare(CompareOp, NodeIndex, NodeIndex),
    Call(Function, Vec<NodeIndex>),
    /// Entries `channel · points .. (channel + 1) · points` of the operand.
    Channel {
        operand: NodeIndex,
        channel: usize,
        points: usize,
    },
    /// The softmax over `groups` entries that are `stride` apart (channels of a point, or all
    /// entries of a vector with `stride = 1`).
    Softmax {
        operand: NodeIndex,
        groups: usize,
        stride: usize,
    },
    /// `W @ u` with `W` a `[m, n]` parameter and `u` of `n` entries.
    MatMul {
        matrix: ParamId,
        rows: usize,
        columns: usize,
        operand: NodeIndex,
    },
    /// A sparse linear operator applied to each of `channels` channels, plus its constant part.
    Linear {
        operator: Arc<SparseOperator>,
        channels: usize,
        operand: NodeIndex,
    },
    /// `pool` or `upsample` of each of `channels` channels of a grid value of `fine` points per
    /// axis by `factor` along every axis: the sparse averaging or copying matrix `operator`, kept
    /// apart from [`Op::Linear`] so that exporters see the layer.
    Resample {
        operator: Arc<SparseOperator>,
        pool: bool,
        factor: usize,
        fine: Vec<usize>,
        channels: usize,
        operand: NodeIndex,
    },
    /// `Σ_in K[out, in, …] ⋆ u[in]`: cross-correlation of an operand already padded by
    /// `(k − 1) / 2` ghost layers, `padded_points` entries per channel.
    Convolution {
        kernel: ParamId,
        padded_points: usize,
        /// `taps[p · kernel_volume + k]`: the padded point that kernel entry `k` reads for output
        /// point `p`.
        taps: Arc<Vec<usize>>,
        kernel_volume: usize,
        in_channels: usize,
        out_channels: usize,
        operand: NodeIndex,
    },
    /// The conservative `Σ_a ∂_a(c ∂_a u)` with the coefficient averaged to the cell faces, on
    /// a coefficient and an operand padded by one ghost layer on each listed axis (the IR's
    /// `DivGrad` node). `axes` holds each listed axis's stride in the padded operand and `1/h²`.
    DivGrad {
        coefficient: NodeIndex,
        operand: NodeIndex,
        channels: usize,
        geometry: Arc<Shrink>,
        axes: Vec<(usize, f64)>,
    },
    /// `v · ∂u/∂x` with the one-sided formula chosen per point by the sign of `v` (the IR's
    /// `Upwind` node), on an operand padded by `order` ghost layers along the axis. The taps are
    /// (offset in the padded operand, weight) for `v ≥ 0` (`backward`) and `v < 0` (`forward`).
    Upwind {
        velocity: NodeIndex,
        operand: NodeIndex,
        channels: usize,
        geometry: Arc<Shrink>,
        backward: Vec<(isize, f64)>,
        forward: Vec<(isize, f64)>,
    },
    /// The operands one after the other (a vector of numbers, or the real and imaginary blocks
    /// of a complex state); operands with one row broadcast over the batch.
    Stack(Vec<NodeIndex>),
    /// A reduction over all entries of a sample, with per-entry weights for `norm` and
    /// `integral` (the cell volumes).
    Reduce {
        op: ReduceOp,
        operand: NodeIndex,
        weights: Arc<Vec<f64>>,
    },
}

impl Op {
    /// Returns the nodes this operation reads.
    pub fn operands(&self) -> Vec<NodeIndex> {
        match self {
            Op::Constant(_)
            | Op::Time
            | Op::State(_)
            | Op::Param(_)
            | Op::Input { .. }
            | Op::Sequence { .. }
            | Op::Label(_) => Vec::new(),
            Op::Neg(a)
            | Op::Channel { operand: a, .. }
            | Op::Softmax { operand: a, .. }
            | Op::MatMul { operand: a, .. }
            | Op::Linear { operand: a, .. }
            | Op::Resample { operand: a, .. }
            | Op::Convolution { operand: a, .. }
            | Op::Reduce { operand: a, .. } => vec![*a],
            Op::Binary(_, a, b) | Op::Compare(_, a, b) => vec![*a, *b],
            Op::DivGrad {
                coefficient: a,
                operand: b,
                ..
            }
            | Op::Upwind {
                velocity: a,
                operand: b,
                ..
            } => vec![*a, *b],
            Op::Call(_, args) => args.clone(),
            Op::Stack(parts) => parts.clone(),
        }
    }
}

/// Where the output points of an operator on a padded operand sit inside that operand.
#[derive(Clone, Debug, PartialEq)]
pub struct Shrink {
    /// Entries of one channel of the padded operand.
    pub in_points: usize,
    /// `inner[o]`: the flat index in the padded operand of output point `o`.
    pub inner: Vec<usize>,
}

impl Shrink {
    /// The output grid of `in_extents − 2 · shrink` points inside an operand of `in_extents`.
    pub fn new(in_extents: &[usize], shrink: &[usize]) -> Shrink {
        let out: Vec<usize> = in_extents
            .iter()
            .zip(shrink)
            .map(|(n, s)| n - 2 * s)
            .collect();
        let points: usize = out.iter().product();
        let mut inner = Vec::with_capacity(points);
        for mut flat in 0..points {
            let mut index = vec![0usize; out.len()];
            for a in (0..out.len()).rev() {
                index[a] = flat % out[a] + shrink[a];
                flat /= out[a];
            }
            inner.push(
                index
                    .iter()
                    .zip(in_extents)
                    .fold(0, |acc, (i, n)| acc * n + i),
            );
        }
        Shrink {
            in_points: in_extents.iter().product(),
            inner,
        }
    }

    /// The stride of `axis` in the flat index of an operand of `in_extents`.
    pub fn stride(in_extents: &[usize], axis: usize) -> usize {
        in_extents[axis + 1..].iter().product()
    }

    pub fn out_points(&self) -> usize {
        self.inner.len()
    }
}

/// A node: its operation and the number of entries per sample.
#[derive(Clone, Debug)]
pub struct TapeNode {
    pub op: Op,
    pub len: usize,
}

/// A list of operations in evaluation order.
#[derive(Clone, Debug, Default)]
pub struct Tape {
    pub nodes: Vec<TapeNode>,
}

/// The parameter values, one flat vector per model parameter (all steps of a per-step
/// parameter one after the other), and how many entries one step uses.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamValues {
    pub values: Vec<Vec<f64>>,
    /// Entries per step; equal to `values[p].len()` unless the parameter is per step.
    pub step_sizes: Vec<usize>,
    /// The precision of the dense products (`W @ u` and its adjoints) that read these values.
    pub products: ProductPrecision,
    /// `values` rounded to `f32` for single-precision products; empty with `f64` products.
    /// [`ParamValues::refresh_single`] recomputes it after the values change.
    pub single: Vec<Vec<f32>>,
}

impl ParamValues {
    /// Returns parameter values whose products run in `f64`.
    pub fn new(values: Vec<Vec<f64>>, step_sizes: Vec<usize>) -> ParamValues {
        ParamValues {
            values,
            step_sizes,
            products: ProductPrecision::F64,
            single: Vec::new(),
        }
    }

    /// Sets the precision of the dense products that read these values, and keeps the `f32`
    /// copy they need.
    pub fn set_product_precision(&mut self, products: ProductPrecision) {
        self.products = products;
        self.refresh_single();
    }

    /// Recomputes the `f32` copy of the values after they changed (nothing with `f64`
    /// products).
    pub fn refresh_single(&mut self) {
        match self.products {
            ProductPrecision::F64 => self.single.clear(),
            ProductPrecision::F32 => {
                use rayon::prelude::*;
                self.single.resize(self.values.len(), Vec::new());
                for (single, values) in self.single.iter_mut().zip(&self.values) {
                    single.resize(values.len(), 0.0);
                    single
                        .par_chunks_mut(1 << 14)
                        .zip(values.par_chunks(1 << 14))
                        .for_each(|(single, values)| {
                            for (s, v) in single.iter_mut().zip(values) {
                                *s = *v as f32;
                            }
                        });
                }
            }
        }
    }

    /// Returns the `f32` copy of the values parameter `id` takes at time step `step` when
    /// products run in `f32`.
    pub fn single_at_step(&self, id: ParamId, step: usize) -> Option<&[f32]> {
        if self.products != ProductPrecision::F32 {
            return None;
        }
        let single = self.single.get(id.0)?;
        debug_assert_eq!(single.len(), self.values[id.0].len());
        Some(&single[self.step_range(id, step)])
    }

    /// Returns the values parameter `id` takes at time step `step`.
    pub fn at_step(&self, id: ParamId, step: usize) -> &[f64] {
        let size = self.step_sizes[id.0];
        let values = &self.values[id.0];
        if values.len() == size {
            values
        } else {
            let step = step.min(values.len() / size - 1);
            &values[step * size..(step + 1) * size]
        }
    }

    /// Returns zeroed storage of the same layout, for gradients.
    pub fn zeros_like(&self) -> ParamValues {
        ParamValues::new(
            self.values.iter().map(|v| vec![0.0; v.len()]).collect(),
            self.step_sizes.clone(),
        )
    }

    /// Returns the entries of parameter `id` that time step `step` uses.
    pub fn step_range(&self, id: ParamId, step: usize) -> std::ops::Range<usize> {
        let size = self.step_sizes[id.0];
        let total = self.values[id.0].len();
        if total == size {
            0..size
        } else {
            let step = step.min(total / size - 1);
            step * size..(step + 1) * size
        }
    }

    /// Adds `other` scaled by `factor`, entry by entry.
    pub fn add_scaled(&mut self, other: &ParamValues, factor: f64) {
        for (a, b) in self.values.iter_mut().zip(&other.values) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += factor * y;
            }
        }
        self.refresh_single();
    }
}

/// The data a tape reads besides states and parameters.
#[derive(Clone, Copy, Debug)]
pub struct Env<'a> {
    pub states: &'a [Array2<f64>],
    pub params: &'a ParamValues,
    /// The samples of the batch, `[batch, features]`, of the one data source.
    pub samples: Option<ArrayView2<'a, f64>>,
    /// The labels of the batch as real values, `[batch, outputs]`.
    pub labels: Option<ArrayView2<'a, f64>>,
    pub step: usize,
    pub time: f64,
    pub batch: usize,
}

impl Tape {
    /// Appends a node and returns its index.
    pub fn push(&mut self, op: Op, len: usize) -> NodeIndex {
        self.nodes.push(TapeNode { op, len });
        self.nodes.len() - 1
    }

    /// Evaluates every node; entry `i` of the result is node `i`'s value.
    pub fn forward(&self, env: &Env) -> Vec<Array2<f64>> {
        let mut values: Vec<Array2<f64>> = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let value = self.forward_node(node, &values, env);
            debug_assert_eq!(value.ncols(), node.len);
            values.push(value);
        }
        values
    }

    fn forward_node(&self, node: &TapeNode, values: &[Array2<f64>], env: &Env) -> Array2<f64> {
        match &node.op {
            Op::Constant(entries) => Array2::from_shape_vec((1, entries.len()), entries.clone())
                .expect("one row of constants"),
            Op::Time => Array2::from_elem((1, 1), env.time),
            Op::State(index) => env.states[*index].clone(),
            Op::Param(id) => {
                let entries = env.params.at_step(*id, env.step);
                Array2::from_shape_vec((1, entries.len()), entries.to_vec())
                    .expect("one row of parameter values")
            }
            Op::Input { copies, .. } => {
                let samples = env.samples.expect("a tape reading samples gets samples");
                let features = samples.ncols();
                let mut out = Array2::zeros((samples.nrows(), features * copies));
                for copy in 0..*copies {
                    out.slice_mut(s![.., copy * features..(copy + 1) * features])
                        .assign(&samples);
                }
                out
            }
            Op::Sequence { features, .. } => {
                let samples = env.samples.expect("a tape reading samples gets samples");
                let rows = samples.ncols() / features;
                let row = env.step.min(rows.saturating_sub(1));
                samples
                    .slice(s![.., row * features..(row + 1) * features])
                    .to_owned()
            }
            Op::Label(_) => env
                .labels
                .expect("a tape reading labels gets labels")
                .to_owned(),
            Op::Neg(a) => values[*a].mapv(|x| -x),
            Op::Binary(op, a, b) => {
                broadcast_binary(&values[*a], &values[*b], node.len, |x, y| binary(*op, x, y))
            }
            Op::Compare(op, a, b) => {
                broadcast_binary(&values[*a], &values[*b], node.len, |x, y| {
                    if npdec_ir::pointwise::compare(*op, x, y) {
                        1.0
                    } else {
                        0.0
                    }
                })
            }
            Op::Call(function, args) => match args.as_slice() {
                [a] => values[*a].mapv(|x| call(*function, x)),
                [a, b] => broadcast_binary(&values[*a], &values[*b], node.len, |x, y| {
                    if matches!(function, Function::Max) {
                        x.max(y)
                    } else {
                        x.min(y)
                    }
                }),
                _ => unreachable!("the lowering only builds calls of one or two arguments"),
            },
            Op::Channel {
                operand,
                channel,
                points,
            } => values[*operand]
                .slice(s![.., channel * points..(channel + 1) * points])
                .to_owned(),
            Op::Softmax {
                operand,
                groups,
                stride,
            } => softmax_forward(&values[*operand], *groups, *stride),
            Op::MatMul {
                matrix,
                rows,
                columns,
                operand,
            } => {
                let u = &values[*operand];
                let mut out = Array2::zeros((u.nrows(), *rows));
                match env.params.single_at_step(*matrix, env.step) {
                    Some(single) => {
                        let weights = ArrayView2::from_shape((*rows, *columns), single)
                            .expect("matrix parameter of the declared shape");
                        gemm::matmul_into_single(
                            1.0,
                            SingleOperand::Double(u.view()),
                            SingleOperand::Single(weights.t()),
                            0.0,
                            out.view_mut(),
                        );
                    }
                    None => {
                        let weights = ArrayView2::from_shape(
                            (*rows, *columns),
                            env.params.at_step(*matrix, env.step),
                        )
                        .expect("matrix parameter of the declared shape");
                        gemm::matmul_into(1.0, u.view(), weights.t(), 0.0, out.view_mut());
                    }
                }
                out
            }
            Op::Linear {
                operator,
                channels,
                operand,
            }
            | Op::Resample {
                operator,
                channels,
                operand,
                ..
            } => operator.apply(&values[*operand], *channels),
            Op::Convolution {
                kernel,
                padded_points,
                taps,
                kernel_volume,
                in_channels,
                out_channels,
                operand,
            } => {
                let plan = ConvolutionPlan::new(taps, *kernel_volume, *padded_points);
                plan.forward(
                    &values[*operand],
                    env.params.at_step(*kernel, env.step),
                    *in_channels,
                    *out_channels,
                )
            }
            Op::DivGrad {
                coefficient,
                operand,
                channels,
                geometry,
                axes,
            } => div_grad_forward(
                &values[*coefficient],
                &values[*operand],
                *channels,
                geometry,
                axes,
            ),
            Op::Upwind {
                velocity,
                operand,
                channels,
                geometry,
                backward,
                forward,
            } => upwind_forward(
                &values[*velocity],
                &values[*velocity],
                &values[*operand],
                *channels,
                geometry,
                backward,
                forward,
            ),
            Op::Stack(parts) => {
                let rows = parts.iter().map(|p| values[*p].nrows()).max().unwrap_or(1);
                let mut out = Array2::zeros((rows, node.len));
                let mut offset = 0;
                for part in parts {
                    let value = &values[*part];
                    let width = value.ncols();
                    for r in 0..rows {
                        out.slice_mut(s![r, offset..offset + width])
                            .assign(&value.row(r.min(value.nrows() - 1)));
                    }
                    offset += width;
                }
                out
            }
            Op::Reduce {
                op,
                operand,
                weights,
            } => {
                let a = &values[*operand];
                let mut out = Array2::zeros((a.nrows(), 1));
                for (row, target) in a.rows().into_iter().zip(out.iter_mut()) {
                    *target = reduce(*op, row.as_slice().expect("rows are contiguous"), weights);
                }
                out
            }
        }
    }

    /// Propagates the adjoints `seeds` of some nodes back through the tape. State adjoints are
    /// added to `state_adjoints` and parameter gradients to `gradients` at `env.step`.
    pub fn backward(
        &self,
        env: &Env,
        values: &[Array2<f64>],
        seeds: Vec<(NodeIndex, Array2<f64>)>,
        state_adjoints: &mut [Array2<f64>],
        gradients: &mut ParamValues,
    ) {
        self.backward_selected(env, values, seeds, Some(state_adjoints), gradients);
    }

    /// Propagates the adjoints `seeds` back to the parameter gradients only, skipping every
    /// product whose result would only reach a state adjoint (for a last reverse step whose
    /// state adjoint nobody reads). The gradients equal those of [`Tape::backward`].
    pub fn backward_to_params(
        &self,
        env: &Env,
        values: &[Array2<f64>],
        seeds: Vec<(NodeIndex, Array2<f64>)>,
        gradients: &mut ParamValues,
    ) {
        self.backward_selected(env, values, seeds, None, gradients);
    }

    fn backward_selected(
        &self,
        env: &Env,
        values: &[Array2<f64>],
        seeds: Vec<(NodeIndex, Array2<f64>)>,
        mut state_adjoints: Option<&mut [Array2<f64>]>,
        gradients: &mut ParamValues,
    ) {
        let needed = self.adjoint_needed(state_adjoints.is_some());
        let mut adjoints: Vec<Option<Array2<f64>>> = vec![None; self.nodes.len()];
        for (node, seed) in seeds {
            if needed[node] {
                accumulate(&mut adjoints[node], seed);
            }
        }
        let mut no_states: [Array2<f64>; 0] = [];
        for index in (0..self.nodes.len()).rev() {
            let Some(adjoint) = adjoints[index].take() else {
                continue;
            };
            let mut pending = Pending {
                adjoints: &mut adjoints,
                needed: &needed,
            };
            self.backward_node(
                index,
                adjoint,
                values,
                env,
                &mut pending,
                state_adjoints.as_deref_mut().unwrap_or(&mut no_states),
                gradients,
            );
        }
    }

    /// Marks the nodes whose adjoint reaches a parameter gradient, or a state adjoint when
    /// `states` is true: the nodes that depend on a parameter or on such a state.
    pub fn adjoint_needed(&self, states: bool) -> Vec<bool> {
        let mut needed: Vec<bool> = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let own = match &node.op {
                Op::Param(_) | Op::MatMul { .. } | Op::Convolution { .. } => true,
                Op::State(_) => states,
                _ => false,
            };
            let from_operands = node.op.operands().iter().any(|a| needed[*a]);
            needed.push(own || from_operands);
        }
        needed
    }

    #[allow(clippy::too_many_arguments)]
    fn backward_node(
        &self,
        index: NodeIndex,
        adjoint: Array2<f64>,
        values: &[Array2<f64>],
        env: &Env,
        adjoints: &mut Pending,
        state_adjoints: &mut [Array2<f64>],
        gradients: &mut ParamValues,
    ) {
        let node = &self.nodes[index];
        match &node.op {
            Op::Constant(_)
            | Op::Time
            | Op::Input { .. }
            | Op::Sequence { .. }
            | Op::Label(_)
            | Op::Compare(..) => {}
            Op::State(state) => {
                let target = &mut state_adjoints[*state];
                add_broadcast(target, &adjoint);
            }
            Op::Param(id) => {
                let range = gradients.step_range(*id, env.step);
                let summed = adjoint.sum_axis(Axis(0));
                for (g, a) in gradients.values[id.0][range].iter_mut().zip(summed.iter()) {
                    *g += a;
                }
            }
            Op::Neg(a) => {
                let len = self.nodes[*a].len;
                adjoints.push(*a, || {
                    reduce_owned(adjoint.mapv(|x| -x), values[*a].nrows(), len)
                });
            }
            Op::Binary(op, a, b) => {
                let (x, y) = (&values[*a], &values[*b]);
                let out = &values[index];
                let rows = adjoint.nrows();
                let len = node.len;
                let mut da = Array2::zeros((rows, len));
                let mut db = Array2::zeros((rows, len));
                let views = (
                    broadcast_view(x, rows, len),
                    broadcast_view(y, rows, len),
                    broadcast_view(out, rows, len),
                );
                if let (Some(xb), Some(yb), Some(ob)) = views {
                    ndarray::Zip::from(&mut da)
                        .and(&mut db)
                        .and(&adjoint)
                        .and(&xb)
                        .and(&yb)
                        .and(&ob)
                        .for_each(|da, db, &g, &xv, &yv, &value| {
                            (*da, *db) = binary_vjp(*op, g, xv, yv, value);
                        });
                } else {
                    for r in 0..rows {
                        for i in 0..len {
                            let xv = x[[r.min(x.nrows() - 1), i % x.ncols()]];
                            let yv = y[[r.min(y.nrows() - 1), i % y.ncols()]];
                            let value = out[[r.min(out.nrows() - 1), i]];
                            (da[[r, i]], db[[r, i]]) =
                                binary_vjp(*op, adjoint[[r, i]], xv, yv, value);
                        }
                    }
                }
                adjoints.push(*a, || reduce_owned(da, x.nrows(), x.ncols()));
                adjoints.push(*b, || reduce_owned(db, y.nrows(), y.ncols()));
            }
            Op::Call(function, args) => match args.as_slice() {
                [a] => {
                    let x = &values[*a];
                    let out = &values[index];
                    let mut da = adjoint;
                    ndarray::Zip::from(&mut da)
                        .and(x)
                        .and(out)
                        .for_each(|g, &x, &y| *g *= call_derivative(*function, x, y));
                    adjoints.push(*a, || da);
                }
                [a, b] => {
                    let (x, y) = (&values[*a], &values[*b]);
                    let rows = adjoint.nrows();
                    let mut da = Array2::zeros((rows, node.len));
                    let mut db = Array2::zeros((rows, node.len));
                    for r in 0..rows {
                        for i in 0..node.len {
                            let xv = x[[r.min(x.nrows() - 1), i % x.ncols()]];
                            let yv = y[[r.min(y.nrows() - 1), i % y.ncols()]];
                            let pick_x = if matches!(function, Function::Max) {
                                xv >= yv
                            } else {
                                xv <= yv
                            };
                            if pick_x {
                                da[[r, i]] = adjoint[[r, i]];
                            } else {
                                db[[r, i]] = adjoint[[r, i]];
                            }
                        }
                    }
                    adjoints.push(*a, || reduce_owned(da, x.nrows(), x.ncols()));
                    adjoints.push(*b, || reduce_owned(db, y.nrows(), y.ncols()));
                }
                _ => unreachable!("the lowering only builds calls of one or two arguments"),
            },
            Op::Channel {
                operand,
                channel,
                points,
            } => {
                let source = &values[*operand];
                let mut da = Array2::zeros(source.raw_dim());
                da.slice_mut(s![.., channel * points..(channel + 1) * points])
                    .assign(&adjoint);
                adjoints.push(*operand, || da);
            }
            Op::Softmax {
                operand,
                groups,
                stride,
            } => {
                let y = &values[index];
                let da = softmax_backward(y, &adjoint, *groups, *stride);
                adjoints.push(*operand, || da);
            }
            Op::MatMul {
                matrix,
                rows,
                columns,
                operand,
            } => {
                let weights = ArrayView2::from_shape(
                    (*rows, *columns),
                    env.params.at_step(*matrix, env.step),
                )
                .expect("matrix parameter of the declared shape");
                let single = env.params.single_at_step(*matrix, env.step).map(|single| {
                    ArrayView2::from_shape((*rows, *columns), single)
                        .expect("matrix parameter of the declared shape")
                });
                let u = &values[*operand];
                // A parameter-only operand (one row) broadcasts over the batch, so its weight
                // gradient sums the adjoint's rows first.
                let summed;
                let adjoint_rows = if u.nrows() == adjoint.nrows() {
                    adjoint.view()
                } else {
                    summed = adjoint.sum_axis(Axis(0)).insert_axis(Axis(0));
                    summed.view()
                };
                let range = gradients.step_range(*matrix, env.step);
                let target = ArrayViewMut2::from_shape(
                    (*rows, *columns),
                    &mut gradients.values[matrix.0][range],
                )
                .expect("gradient of the matrix's shape");
                // ∇W += adjointᵀ u, accumulated by the product itself.
                match single {
                    Some(_) => gemm::matmul_into_single(
                        1.0,
                        SingleOperand::Double(adjoint_rows.t()),
                        SingleOperand::Double(u.view()),
                        1.0,
                        target,
                    ),
                    None => gemm::matmul_into(1.0, adjoint_rows.t(), u.view(), 1.0, target),
                }
                adjoints.push(*operand, || {
                    let mut du = Array2::zeros((adjoint.nrows(), *columns));
                    match single {
                        Some(single) => gemm::matmul_into_single(
                            1.0,
                            SingleOperand::Double(adjoint.view()),
                            SingleOperand::Single(single),
                            0.0,
                            du.view_mut(),
                        ),
                        None => gemm::matmul_into(1.0, adjoint.view(), weights, 0.0, du.view_mut()),
                    }
                    reduce_owned(du, u.nrows(), u.ncols())
                });
            }
            Op::Linear {
                operator,
                channels,
                operand,
            }
            | Op::Resample {
                operator,
                channels,
                operand,
                ..
            } => {
                let u = &values[*operand];
                adjoints.push(*operand, || {
                    let da = operator.apply_transpose(&adjoint, *channels);
                    reduce_owned(da, u.nrows(), u.ncols())
                });
            }
            Op::Convolution {
                kernel,
                padded_points,
                taps,
                kernel_volume,
                in_channels,
                out_channels,
                operand,
            } => {
                let u = &values[*operand];
                let plan = ConvolutionPlan::new(taps, *kernel_volume, *padded_points);
                let range = gradients.step_range(*kernel, env.step);
                let du = plan.backward(
                    u,
                    &adjoint,
                    env.params.at_step(*kernel, env.step),
                    &mut gradients.values[kernel.0][range],
                    *in_channels,
                    *out_channels,
                );
                adjoints.push(*operand, || reduce_owned(du, u.nrows(), u.ncols()));
            }
            Op::DivGrad {
                coefficient,
                operand,
                channels,
                geometry,
                axes,
            } => {
                let (c, u) = (&values[*coefficient], &values[*operand]);
                let (dc, du) = div_grad_backward(c, u, &adjoint, *channels, geometry, axes);
                adjoints.push(*coefficient, || reduce_owned(dc, c.nrows(), c.ncols()));
                adjoints.push(*operand, || reduce_owned(du, u.nrows(), u.ncols()));
            }
            Op::Upwind {
                velocity,
                operand,
                channels,
                geometry,
                backward,
                forward,
            } => {
                let (v, u) = (&values[*velocity], &values[*operand]);
                let (dv, du) =
                    upwind_backward(v, u, &adjoint, *channels, geometry, backward, forward);
                adjoints.push(*velocity, || reduce_owned(dv, v.nrows(), v.ncols()));
                adjoints.push(*operand, || reduce_owned(du, u.nrows(), u.ncols()));
            }
            Op::Stack(parts) => {
                let mut offset = 0;
                for part in parts {
                    let value = &values[*part];
                    let width = value.ncols();
                    let slice = adjoint.slice(s![.., offset..offset + width]).to_owned();
                    adjoints.push(*part, || reduce_owned(slice, value.nrows(), width));
                    offset += width;
                }
            }
            Op::Reduce {
                op,
                operand,
                weights,
            } => {
                let a = &values[*operand];
                let out = &values[index];
                let mut da = Array2::zeros(a.raw_dim());
                for r in 0..a.nrows() {
                    let g = adjoint[[r.min(adjoint.nrows() - 1), 0]];
                    let value = out[[r, 0]];
                    let row = a.row(r);
                    let count = row.len() as f64;
                    match op {
                        ReduceOp::Sum => da.row_mut(r).fill(g),
                        ReduceOp::Mean => da.row_mut(r).fill(g / count),
                        ReduceOp::Integral => {
                            for (d, w) in da.row_mut(r).iter_mut().zip(weights.iter()) {
                                *d = g * w;
                            }
                        }
                        ReduceOp::Norm => {
                            if value > 0.0 {
                                for ((d, w), x) in
                                    da.row_mut(r).iter_mut().zip(weights.iter()).zip(row.iter())
                                {
                                    *d = g * w * x / value;
                                }
                            }
                        }
                        ReduceOp::Max | ReduceOp::Min => {
                            // The gradient goes to the first entry that attains the extremum.
                            if let Some(position) = row.iter().position(|x| *x == value) {
                                da[[r, position]] = g;
                            }
                        }
                    }
                }
                adjoints.push(*operand, || da);
            }
        }
    }
}

/// Returns entry `i` of row `r` of a value that broadcasts over rows and wraps over entries.
fn entry(m: &Array2<f64>, r: usize, i: usize) -> f64 {
    m[[r.min(m.nrows() - 1), i % m.ncols()]]
}

/// `Σ_a s_a · (c̄_{i+½} (u_{i+1} − u_i) − c̄_{i−½} (u_i − u_{i−1}))` with `c̄` the mean of the two
/// nodes of a face, in the order of the interpreter's `div_grad`.
fn div_grad_forward(
    c: &Array2<f64>,
    u: &Array2<f64>,
    channels: usize,
    geometry: &Shrink,
    axes: &[(usize, f64)],
) -> Array2<f64> {
    let rows = c.nrows().max(u.nrows());
    let (in_points, out_points) = (geometry.in_points, geometry.out_points());
    let mut out = Array2::zeros((rows, channels * out_points));
    for r in 0..rows {
        let (cr, ur) = (c.row(r.min(c.nrows() - 1)), u.row(r.min(u.nrows() - 1)));
        let (cl, ul) = (cr.len(), ur.len());
        let mut o_row = out.row_mut(r);
        for ch in 0..channels {
            let base = ch * in_points;
            for (o, &i) in geometry.inner.iter().enumerate() {
                let mut total = 0.0;
                for &(stride, scale) in axes {
                    let at_u = |k: usize| ur[(base + k) % ul];
                    let at_c = |k: usize| cr[(base + k) % cl];
                    let (um, u0, up) = (at_u(i - stride), at_u(i), at_u(i + stride));
                    let (cm, c0, cp) = (at_c(i - stride), at_c(i), at_c(i + stride));
                    let flux_plus = (c0 + cp) * 0.5 * (up - u0);
                    let flux_minus = (cm + c0) * 0.5 * (u0 - um);
                    total += (flux_plus - flux_minus) * scale;
                }
                o_row[ch * out_points + o] = total;
            }
        }
    }
    out
}

/// The vector–Jacobian product of [`div_grad_forward`]: the adjoints of the coefficient and the
/// operand, both of `rows × channels · in_points` entries before undoing broadcasting.
fn div_grad_backward(
    c: &Array2<f64>,
    u: &Array2<f64>,
    g: &Array2<f64>,
    channels: usize,
    geometry: &Shrink,
    axes: &[(usize, f64)],
) -> (Array2<f64>, Array2<f64>) {
    let rows = g.nrows();
    let (in_points, out_points) = (geometry.in_points, geometry.out_points());
    let mut dc = Array2::zeros((rows, channels * in_points));
    let mut du = Array2::zeros((rows, channels * in_points));
    for r in 0..rows {
        for ch in 0..channels {
            let base = ch * in_points;
            for (o, &i) in geometry.inner.iter().enumerate() {
                let go = g[[r, ch * out_points + o]];
                if go == 0.0 {
                    continue;
                }
                for &(stride, scale) in axes {
                    let at_u = |k: usize| entry(u, r, base + k);
                    let at_c = |k: usize| entry(c, r, base + k);
                    let (um, u0, up) = (at_u(i - stride), at_u(i), at_u(i + stride));
                    let (cm, c0, cp) = (at_c(i - stride), at_c(i), at_c(i + stride));
                    let gs = go * scale;
                    let face_plus = (c0 + cp) * 0.5 * gs;
                    let face_minus = (cm + c0) * 0.5 * gs;
                    du[[r, base + i + stride]] += face_plus;
                    du[[r, base + i]] -= face_plus + face_minus;
                    du[[r, base + i - stride]] += face_minus;
                    let slope_plus = 0.5 * gs * (up - u0);
                    let slope_minus = 0.5 * gs * (u0 - um);
                    dc[[r, base + i]] += slope_plus - slope_minus;
                    dc[[r, base + i + stride]] += slope_plus;
                    dc[[r, base + i - stride]] -= slope_minus;
                }
            }
        }
    }
    (dc, du)
}

/// `v · D u` with `D` the backward taps where `sign ≥ 0` and the forward taps elsewhere. The
/// tangent passes a direction as `v` and the velocity itself as `sign`.
fn upwind_forward(
    v: &Array2<f64>,
    sign: &Array2<f64>,
    u: &Array2<f64>,
    channels: usize,
    geometry: &Shrink,
    backward: &[(isize, f64)],
    forward: &[(isize, f64)],
) -> Array2<f64> {
    let rows = v.nrows().max(u.nrows()).max(sign.nrows());
    let (in_points, out_points) = (geometry.in_points, geometry.out_points());
    let mut out = Array2::zeros((rows, channels * out_points));
    for r in 0..rows {
        for ch in 0..channels {
            let base = ch * in_points;
            for (o, &i) in geometry.inner.iter().enumerate() {
                let k = ch * out_points + o;
                let taps = if entry(sign, r, k) >= 0.0 {
                    backward
                } else {
                    forward
                };
                let mut derivative = 0.0;
                for &(offset, weight) in taps {
                    derivative += entry(u, r, base + (i as isize + offset) as usize) * weight;
                }
                out[[r, k]] = entry(v, r, k) * derivative;
            }
        }
    }
    out
}

/// The vector–Jacobian product of [`upwind_forward`] at a fixed sign of the velocity.
fn upwind_backward(
    v: &Array2<f64>,
    u: &Array2<f64>,
    g: &Array2<f64>,
    channels: usize,
    geometry: &Shrink,
    backward: &[(isize, f64)],
    forward: &[(isize, f64)],
) -> (Array2<f64>, Array2<f64>) {
    let rows = g.nrows();
    let (in_points, out_points) = (geometry.in_points, geometry.out_points());
    let mut dv = Array2::zeros((rows, channels * out_points));
    let mut du = Array2::zeros((rows, channels * in_points));
    for r in 0..rows {
        for ch in 0..channels {
            let base = ch * in_points;
            for (o, &i) in geometry.inner.iter().enumerate() {
                let k = ch * out_points + o;
                let velocity = entry(v, r, k);
                let taps = if velocity >= 0.0 { backward } else { forward };
                let go = g[[r, k]];
                let mut derivative = 0.0;
                for &(offset, weight) in taps {
                    let at = base + (i as isize + offset) as usize;
                    derivative += entry(u, r, at) * weight;
                    du[[r, at]] += go * velocity * weight;
                }
                dv[[r, k]] = go * derivative;
            }
        }
    }
    (dv, du)
}

fn accumulate(slot: &mut Option<Array2<f64>>, value: Array2<f64>) {
    match slot {
        Some(existing) => add_broadcast(existing, &value),
        None => *slot = Some(value),
    }
}

/// The adjoints of a reverse sweep still to propagate, and which nodes need one at all.
struct Pending<'a> {
    adjoints: &'a mut [Option<Array2<f64>>],
    needed: &'a [bool],
}

impl Pending<'_> {
    /// Adds the adjoint that `value` computes to `node`, calling `value` only when the node
    /// needs an adjoint.
    fn push(&mut self, node: NodeIndex, value: impl FnOnce() -> Array2<f64>) {
        if self.needed[node] {
            accumulate(&mut self.adjoints[node], value());
        }
    }
}

/// Adds `value` into `target`, summing rows and wrapped entries when `target` is smaller and
/// broadcasting `value` when it is smaller.
fn add_broadcast(target: &mut Array2<f64>, value: &Array2<f64>) {
    if target.dim() == value.dim() {
        *target += value;
        return;
    }
    if target.nrows() < value.nrows() || target.ncols() < value.ncols() {
        let reduced = reduce_to(value, target.nrows(), target.ncols());
        if reduced.dim() == target.dim() {
            *target += &reduced;
            return;
        }
    }
    let (rows, len) = target.dim();
    let widened = Array2::from_shape_fn(
        (rows.max(value.nrows()), len.max(value.ncols())),
        |(r, i)| {
            target[[r.min(rows - 1), i % len]]
                + value[[r.min(value.nrows() - 1), i % value.ncols()]]
        },
    );
    *target = widened;
}

/// Sums an adjoint of shape `[rows', len']` down to `[rows, len]` like [`reduce_to`], without
/// a copy when the shapes already agree.
fn reduce_owned(value: Array2<f64>, rows: usize, len: usize) -> Array2<f64> {
    if value.dim() == (rows, len) {
        value
    } else {
        reduce_to(&value, rows, len)
    }
}

/// Returns `m` as a `[rows, len]` view when ndarray's broadcasting covers its shape: one row or
/// `rows` rows, and one entry or `len` entries per row. Other shapes wrap entries (`i mod len`),
/// which the callers handle entry by entry.
fn broadcast_view(m: &Array2<f64>, rows: usize, len: usize) -> Option<ArrayView2<'_, f64>> {
    let rows_fit = m.nrows() == rows || m.nrows() == 1;
    let entries_fit = m.ncols() == len || m.ncols() == 1;
    if rows_fit && entries_fit {
        m.broadcast((rows, len))
    } else {
        None
    }
}

/// Sums an adjoint of shape `[rows', len']` down to `[rows, len]`, undoing broadcasting.
fn reduce_to(value: &Array2<f64>, rows: usize, len: usize) -> Array2<f64> {
    let mut summed = if value.nrows() != rows && rows == 1 {
        value.sum_axis(Axis(0)).insert_axis(Axis(0))
    } else {
        value.clone()
    };
    if summed.ncols() != len {
        let mut narrow = Array2::zeros((summed.nrows(), len));
        for (i, column) in summed.columns().into_iter().enumerate() {
            let mut target = narrow.column_mut(i % len);
            target += &column;
        }
        summed = narrow;
    }
    summed
}

fn broadcast_binary(
    a: &Array2<f64>,
    b: &Array2<f64>,
    len: usize,
    f: impl Fn(f64, f64) -> f64,
) -> Array2<f64> {
    let rows = a.nrows().max(b.nrows());
    if a.dim() == b.dim() {
        let mut out = a.clone();
        ndarray::Zip::from(&mut out)
            .and(b)
            .for_each(|x, &y| *x = f(*x, y));
        return out;
    }
    if let (Some(a), Some(b)) = (broadcast_view(a, rows, len), broadcast_view(b, rows, len)) {
        return ndarray::Zip::from(&a).and(&b).map_collect(|&x, &y| f(x, y));
    }
    Array2::from_shape_fn((rows, len), |(r, i)| {
        f(
            a[[r.min(a.nrows() - 1), i % a.ncols()]],
            b[[r.min(b.nrows() - 1), i % b.ncols()]],
        )
    })
}

/// Returns the adjoints of both operands of `x op y` given the output adjoint `g` and the
/// output `value`.
fn binary_vjp(op: BinaryOp, g: f64, xv: f64, yv: f64, value: f64) -> (f64, f64) {
    match op {
        BinaryOp::Add => (g, g),
        BinaryOp::Sub => (g, -g),
        BinaryOp::Mul => (g * yv, g * xv),
        BinaryOp::Div => (g / yv, -g * xv / (yv * yv)),
        BinaryOp::Pow => {
            let da = if yv == 0.0 {
                0.0
            } else {
                yv * xv.powf(yv - 1.0)
            };
            let db = if xv > 0.0 { value * xv.ln() } else { 0.0 };
            (g * da, g * db)
        }
    }
}

fn binary(op: BinaryOp, x: f64, y: f64) -> f64 {
    match op {
        BinaryOp::Add => x + y,
        BinaryOp::Sub => x - y,
        BinaryOp::Mul => x * y,
        BinaryOp::Div => x / y,
        BinaryOp::Pow => {
            if y == 2.0 {
                x * x
            } else {
                x.powf(y)
            }
        }
    }
}

/// Applies a pointwise function of one real argument.
pub fn call(function: Function, x: f64) -> f64 {
    match function {
        Function::Tanh => x.tanh(),
        Function::Relu => x.max(0.0),
        Function::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Function::Exp => x.exp(),
        Function::Log => x.ln(),
        Function::Sin => x.sin(),
        Function::Cos => x.cos(),
        Function::Abs => x.abs(),
        Function::Sqrt => x.sqrt(),
        Function::Conj | Function::Re => x,
        Function::Im => 0.0,
        Function::Max | Function::Min | Function::Softmax => {
            unreachable!("two-argument and softmax calls have their own operations")
        }
    }
}

/// Returns `f′(x)` given `x` and `y = f(x)`.
fn call_derivative(function: Function, x: f64, y: f64) -> f64 {
    match function {
        Function::Tanh => 1.0 - y * y,
        Function::Relu => {
            if x > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Function::Sigmoid => y * (1.0 - y),
        Function::Exp => y,
        Function::Log => 1.0 / x,
        Function::Sin => x.cos(),
        Function::Cos => -x.sin(),
        Function::Abs => x.signum(),
        Function::Sqrt => 0.5 / y,
        Function::Conj | Function::Re => 1.0,
        Function::Im => 0.0,
        Function::Max | Function::Min | Function::Softmax => {
            unreachable!("two-argument and softmax calls have their own operations")
        }
    }
}

fn softmax_forward(a: &Array2<f64>, groups: usize, stride: usize) -> Array2<f64> {
    let mut out = a.clone();
    let len = a.ncols();
    let sets = len / groups;
    for mut row in out.rows_mut() {
        for set in 0..sets {
            let index = |g: usize| if stride == 1 { g } else { g * stride + set };
            let largest = (0..groups)
                .map(|g| row[index(g)])
                .fold(f64::NEG_INFINITY, f64::max);
            let mut total = 0.0;
            for g in 0..groups {
                let e = (row[index(g)] - largest).exp();
                row[index(g)] = e;
                total += e;
            }
            for g in 0..groups {
                row[index(g)] /= total;
            }
        }
    }
    out
}

fn softmax_backward(
    y: &Array2<f64>,
    dy: &Array2<f64>,
    groups: usize,
    stride: usize,
) -> Array2<f64> {
    let mut dx = Array2::zeros(y.raw_dim());
    let sets = y.ncols() / groups;
    for r in 0..y.nrows() {
        for set in 0..sets {
            let index = |g: usize| if stride == 1 { g } else { g * stride + set };
            let dot: f64 = (0..groups)
                .map(|g| y[[r, index(g)]] * dy[[r, index(g)]])
                .sum();
            for g in 0..groups {
                let i = index(g);
                dx[[r, i]] = y[[r, i]] * (dy[[r, i]] - dot);
            }
        }
    }
    dx
}

fn reduce(op: ReduceOp, row: &[f64], weights: &[f64]) -> f64 {
    match op {
        ReduceOp::Sum => row.iter().sum(),
        ReduceOp::Mean => row.iter().sum::<f64>() / row.len() as f64,
        ReduceOp::Max => row.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        ReduceOp::Min => row.iter().copied().fold(f64::INFINITY, f64::min),
        ReduceOp::Integral => row.iter().zip(weights).map(|(x, w)| x * w).sum(),
        ReduceOp::Norm => row
            .iter()
            .zip(weights)
            .map(|(x, w)| x * x * w)
            .sum::<f64>()
            .sqrt(),
    }
}

/// A convolution as runs of contiguous points. The tap of kernel entry `k` for output point `p`
/// is `taps[p · kernel_volume + k] = base(p) + offset(k)` (the lowering adds a kernel offset to a
/// point's padded position), and consecutive points along the last axis have consecutive bases, so
/// each output row reads a contiguous slice of the padded input for each kernel entry. The
/// convolution is then a sum of scaled slices (`axpy`), which the compiler vectorizes, with no
/// gathered copy of the windows (im2col) and no transposition.
struct ConvolutionPlan {
    /// `(first output point, first padded point of kernel entry 0, length)` of each run.
    runs: Vec<(usize, usize, usize)>,
    /// `offset(k)`, relative to kernel entry 0.
    offsets: Vec<usize>,
    points: usize,
    padded_points: usize,
}

impl ConvolutionPlan {
    fn new(taps: &[usize], kernel_volume: usize, padded_points: usize) -> ConvolutionPlan {
        let points = taps.len() / kernel_volume;
        let offsets: Vec<usize> = (0..kernel_volume).map(|k| taps[k] - taps[0]).collect();
        let mut runs: Vec<(usize, usize, usize)> = Vec::new();
        for p in 0..points {
            let base = taps[p * kernel_volume];
            debug_assert!(
                (0..kernel_volume).all(|k| taps[p * kernel_volume + k] == base + offsets[k])
            );
            match runs.last_mut() {
                Some((start, first, length))
                    if *first + *length == base && *start + *length == p =>
                {
                    *length += 1;
                }
                _ => runs.push((p, base, 1)),
            }
        }
        ConvolutionPlan {
            runs,
            offsets,
            points,
            padded_points,
        }
    }

    /// `out[b, o, p] = Σ_{c,k} kernel[o, c, k] · padded[b, c, base(p) + offset(k)]`.
    fn forward(
        &self,
        padded: &Array2<f64>,
        kernel: &[f64],
        in_channels: usize,
        out_channels: usize,
    ) -> Array2<f64> {
        let kernel_volume = self.offsets.len();
        let padded = padded.as_standard_layout();
        let mut out = Array2::zeros((padded.nrows(), out_channels * self.points));
        for (source, mut target) in padded.rows().into_iter().zip(out.rows_mut()) {
            let source = source.to_slice().expect("standard layout");
            let target = target.as_slice_mut().expect("standard layout");
            for (o, target) in target.chunks_exact_mut(self.points).enumerate() {
                for (c, source) in source.chunks_exact(self.padded_points).enumerate() {
                    let weights = &kernel[(o * in_channels + c) * kernel_volume..][..kernel_volume];
                    for (&w, &offset) in weights.iter().zip(&self.offsets) {
                        for &(start, first, length) in &self.runs {
                            let from = &source[first + offset..][..length];
                            for (t, s) in target[start..start + length].iter_mut().zip(from) {
                                *t += w * s;
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// Adds the kernel gradient `Σ_{b,p} adjoint[b, o, p] · padded[b, c, base(p) + offset(k)]`
    /// to `d_kernel` and returns the adjoint of the padded input.
    fn backward(
        &self,
        padded: &Array2<f64>,
        adjoint: &Array2<f64>,
        kernel: &[f64],
        d_kernel: &mut [f64],
        in_channels: usize,
        out_channels: usize,
    ) -> Array2<f64> {
        let kernel_volume = self.offsets.len();
        let padded = padded.as_standard_layout();
        let adjoint = adjoint.as_standard_layout();
        debug_assert_eq!(padded.nrows(), adjoint.nrows());
        let mut d_padded = Array2::zeros(padded.raw_dim());
        for ((source, gradient), mut d_source) in padded
            .rows()
            .into_iter()
            .zip(adjoint.rows())
            .zip(d_padded.rows_mut())
        {
            let source = source.to_slice().expect("standard layout");
            let gradient = gradient.to_slice().expect("standard layout");
            let d_source = d_source.as_slice_mut().expect("standard layout");
            for (o, gradient) in gradient
                .chunks_exact(self.points)
                .take(out_channels)
                .enumerate()
            {
                for (c, (source, d_source)) in source
                    .chunks_exact(self.padded_points)
                    .zip(d_source.chunks_exact_mut(self.padded_points))
                    .take(in_channels)
                    .enumerate()
                {
                    let index = (o * in_channels + c) * kernel_volume;
                    for (k, &offset) in self.offsets.iter().enumerate() {
                        let w = kernel[index + k];
                        let mut sum = 0.0;
                        for &(start, first, length) in &self.runs {
                            let g = &gradient[start..start + length];
                            let from = &source[first + offset..][..length];
                            sum += g.iter().zip(from).map(|(a, b)| a * b).sum::<f64>();
                            let into = &mut d_source[first + offset..][..length];
                            for (d, a) in into.iter_mut().zip(g) {
                                *d += w * a;
                            }
                        }
                        d_kernel[index + k] += sum;
                    }
                }
            }
        }
        d_padded
    }
}

/// Returns the unary operator of the symbolic model as a tape operation.
pub fn unary(op: UnaryOp, operand: NodeIndex) -> Op {
    match op {
        UnaryOp::Neg => Op::Neg(operand),
    }
}

impl Tape {
    /// Propagates directions forward (tangent-linear mode): given the forward `values`, the state
    /// directions and a parameter direction, returns each node's directional derivative (`None`
    /// where it is zero). The dot test compares this with [`Tape::backward`].
    pub fn tangent(
        &self,
        env: &Env,
        values: &[Array2<f64>],
        state_tangents: &[Array2<f64>],
        param_tangent: &ParamValues,
    ) -> Vec<Option<Array2<f64>>> {
        let mut tangents: Vec<Option<Array2<f64>>> = Vec::with_capacity(self.nodes.len());
        for (index, node) in self.nodes.iter().enumerate() {
            let t = self.tangent_node(
                index,
                node,
                env,
                values,
                &tangents,
                state_tangents,
                param_tangent,
            );
            tangents.push(t);
        }
        tangents
    }

    #[allow(clippy::too_many_arguments)]
    fn tangent_node(
        &self,
        index: NodeIndex,
        node: &TapeNode,
        env: &Env,
        values: &[Array2<f64>],
        tangents: &[Option<Array2<f64>>],
        state_tangents: &[Array2<f64>],
        param_tangent: &ParamValues,
    ) -> Option<Array2<f64>> {
        let zero_like = |a: NodeIndex| Array2::<f64>::zeros(values[a].raw_dim());
        let get = |a: NodeIndex| tangents[a].clone().unwrap_or_else(|| zero_like(a));
        match &node.op {
            Op::Constant(_)
            | Op::Time
            | Op::Input { .. }
            | Op::Sequence { .. }
            | Op::Label(_)
            | Op::Compare(..) => None,
            Op::State(state) => Some(state_tangents[*state].clone()),
            Op::Param(id) => {
                let entries = param_tangent.at_step(*id, env.step);
                Some(Array2::from_shape_vec((1, entries.len()), entries.to_vec()).expect("one row"))
            }
            Op::Neg(a) => tangents[*a].as_ref().map(|t| t.mapv(|x| -x)),
            Op::Binary(op, a, b) => {
                if tangents[*a].is_none() && tangents[*b].is_none() {
                    return None;
                }
                let (x, y, out) = (&values[*a], &values[*b], &values[index]);
                let (tx, ty) = (get(*a), get(*b));
                let rows = x.nrows().max(y.nrows()).max(tx.nrows()).max(ty.nrows());
                let at =
                    |m: &Array2<f64>, r: usize, i: usize| m[[r.min(m.nrows() - 1), i % m.ncols()]];
                Some(Array2::from_shape_fn((rows, node.len), |(r, i)| {
                    let (xv, yv, dx, dy) = (at(x, r, i), at(y, r, i), at(&tx, r, i), at(&ty, r, i));
                    match op {
                        BinaryOp::Add => dx + dy,
                        BinaryOp::Sub => dx - dy,
                        BinaryOp::Mul => dx * yv + xv * dy,
                        BinaryOp::Div => dx / yv - xv * dy / (yv * yv),
                        BinaryOp::Pow => {
                            let value = at(out, r, i);
                            let da = if yv == 0.0 {
                                0.0
                            } else {
                                yv * xv.powf(yv - 1.0)
                            };
                            let db = if xv > 0.0 { value * xv.ln() } else { 0.0 };
                            da * dx + db * dy
                        }
                    }
                }))
            }
            Op::Call(function, args) => match args.as_slice() {
                [a] => {
                    let t = tangents[*a].as_ref()?;
                    let (x, y) = (&values[*a], &values[index]);
                    let rows = t.nrows().max(x.nrows());
                    Some(Array2::from_shape_fn((rows, node.len), |(r, i)| {
                        let xv = x[[r.min(x.nrows() - 1), i]];
                        let yv = y[[r.min(y.nrows() - 1), i]];
                        call_derivative(*function, xv, yv) * t[[r.min(t.nrows() - 1), i]]
                    }))
                }
                [a, b] => {
                    if tangents[*a].is_none() && tangents[*b].is_none() {
                        return None;
                    }
                    let (x, y) = (&values[*a], &values[*b]);
                    let (tx, ty) = (get(*a), get(*b));
                    let rows = x.nrows().max(y.nrows()).max(tx.nrows()).max(ty.nrows());
                    let at = |m: &Array2<f64>, r: usize, i: usize| {
                        m[[r.min(m.nrows() - 1), i % m.ncols()]]
                    };
                    Some(Array2::from_shape_fn((rows, node.len), |(r, i)| {
                        let (xv, yv) = (at(x, r, i), at(y, r, i));
                        let pick_x = if matches!(function, Function::Max) {
                            xv >= yv
                        } else {
                            xv <= yv
                        };
                        if pick_x {
                            at(&tx, r, i)
                        } else {
                            at(&ty, r, i)
                        }
                    }))
                }
                _ => unreachable!("the lowering only builds calls of one or two arguments"),
            },
            Op::Channel {
                operand,
                channel,
                points,
            } => tangents[*operand].as_ref().map(|t| {
                t.slice(s![.., channel * points..(channel + 1) * points])
                    .to_owned()
            }),
            Op::Softmax {
                operand,
                groups,
                stride,
            } => {
                let t = tangents[*operand].as_ref()?;
                let y = &values[index];
                let t = if t.nrows() == y.nrows() {
                    t.clone()
                } else {
                    Array2::from_shape_fn(y.raw_dim(), |(_, i)| t[[0, i]])
                };
                // The Jacobian of softmax is symmetric, so its product with a direction is the
                // same formula as the vector–Jacobian product.
                Some(softmax_backward(y, &t, *groups, *stride))
            }
            Op::MatMul {
                matrix,
                rows,
                columns,
                operand,
            } => {
                let weights = ArrayView2::from_shape(
                    (*rows, *columns),
                    env.params.at_step(*matrix, env.step),
                )
                .expect("matrix parameter of the declared shape");
                let d_weights = ArrayView2::from_shape(
                    (*rows, *columns),
                    param_tangent.at_step(*matrix, env.step),
                )
                .expect("matrix direction of the declared shape");
                let mut out = gemm::matmul(values[*operand].view(), d_weights.t());
                if let Some(t) = &tangents[*operand] {
                    let extra = gemm::matmul(t.view(), weights.t());
                    add_broadcast(&mut out, &extra);
                }
                Some(out)
            }
            Op::Linear {
                operator,
                channels,
                operand,
            }
            | Op::Resample {
                operator,
                channels,
                operand,
                ..
            } => tangents[*operand]
                .as_ref()
                .map(|t| operator.apply_linear(t, *channels)),
            Op::Convolution {
                kernel,
                padded_points,
                taps,
                kernel_volume,
                in_channels,
                out_channels,
                operand,
            } => {
                let plan = ConvolutionPlan::new(taps, *kernel_volume, *padded_points);
                let convolve = |padded: &Array2<f64>, weights: &[f64]| -> Array2<f64> {
                    plan.forward(padded, weights, *in_channels, *out_channels)
                };
                let mut out = convolve(&values[*operand], param_tangent.at_step(*kernel, env.step));
                if let Some(t) = &tangents[*operand] {
                    let extra = convolve(t, env.params.at_step(*kernel, env.step));
                    add_broadcast(&mut out, &extra);
                }
                Some(out)
            }
            Op::DivGrad {
                coefficient,
                operand,
                channels,
                geometry,
                axes,
            } => {
                // The operator is bilinear in the coefficient and the operand.
                let (c, u) = (&values[*coefficient], &values[*operand]);
                let mut out: Option<Array2<f64>> = None;
                if let Some(tc) = &tangents[*coefficient] {
                    out = Some(div_grad_forward(tc, u, *channels, geometry, axes));
                }
                if let Some(tu) = &tangents[*operand] {
                    let extra = div_grad_forward(c, tu, *channels, geometry, axes);
                    accumulate(&mut out, extra);
                }
                out
            }
            Op::Upwind {
                velocity,
                operand,
                channels,
                geometry,
                backward,
                forward,
            } => {
                // Linear in the velocity and the operand once the sign of the velocity is fixed.
                let (v, u) = (&values[*velocity], &values[*operand]);
                let mut out: Option<Array2<f64>> = None;
                if let Some(tv) = &tangents[*velocity] {
                    out = Some(upwind_forward(
                        tv, v, u, *channels, geometry, backward, forward,
                    ));
                }
                if let Some(tu) = &tangents[*operand] {
                    let extra = upwind_forward(v, v, tu, *channels, geometry, backward, forward);
                    accumulate(&mut out, extra);
                }
                out
            }
            Op::Stack(parts) => {
                if parts.iter().all(|p| tangents[*p].is_none()) {
                    return None;
                }
                let rows = parts
                    .iter()
                    .filter_map(|p| tangents[*p].as_ref().map(|t| t.nrows()))
                    .max()
                    .unwrap_or(1);
                let mut out = Array2::zeros((rows, node.len));
                let mut offset = 0;
                for part in parts {
                    let width = values[*part].ncols();
                    if let Some(t) = &tangents[*part] {
                        for r in 0..rows {
                            out.slice_mut(s![r, offset..offset + width])
                                .assign(&t.row(r.min(t.nrows() - 1)));
                        }
                    }
                    offset += width;
                }
                Some(out)
            }
            Op::Reduce {
                op,
                operand,
                weights,
            } => {
                let t = tangents[*operand].as_ref()?;
                let a = &values[*operand];
                let out = &values[index];
                let rows = a.nrows().max(t.nrows());
                Some(Array2::from_shape_fn((rows, 1), |(r, _)| {
                    let row = a.row(r.min(a.nrows() - 1));
                    let trow = t.row(r.min(t.nrows() - 1));
                    let value = out[[r.min(out.nrows() - 1), 0]];
                    match op {
                        ReduceOp::Sum => trow.sum(),
                        ReduceOp::Mean => trow.sum() / trow.len() as f64,
                        ReduceOp::Integral => {
                            trow.iter().zip(weights.iter()).map(|(d, w)| d * w).sum()
                        }
                        ReduceOp::Norm => {
                            if value > 0.0 {
                                trow.iter()
                                    .zip(weights.iter())
                                    .zip(row.iter())
                                    .map(|((d, w), x)| d * w * x)
                                    .sum::<f64>()
                                    / value
                            } else {
                                0.0
                            }
                        }
                        ReduceOp::Max | ReduceOp::Min => row
                            .iter()
                            .position(|x| *x == value)
                            .map_or(0.0, |p| trow[p]),
                    }
                }))
            }
        }
    }
}
