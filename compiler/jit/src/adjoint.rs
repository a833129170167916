//! The rates of a lowered train task and their vector–Jacobian products as JIT-compiled kernels:
//! the discrete adjoint of the right-hand sides inside training's Euler and RK4 steps.
//!
//! Every value of the task's `rhs` tape gets a buffer holding its entries for each sample of the
//! chunk, except constants, parameters and their adjoints, which get one buffer for the chunk. The
//! forward sweep runs one kernel per pointwise or sparse tape operation, one sample (batch row) at
//! a time.
//! Dense products, convolutions and resampling run over the whole chunk (see [`BatchedOp`]). The
//! reverse sweep runs the transposed operations in the opposite order and accumulates into one
//! adjoint buffer per value that depends on a state or a parameter:
//! - a pointwise operation adds the adjoint times its partial derivatives, which it evaluates from
//!   the stored forward values;
//! - a sparse operator (a stencil composed with the ghost-cell rules of the boundary conditions,
//!   see `npdec_runtime::train::linear`) runs as one box kernel per block of rows that share
//!   their offsets and weights, with the channels as the kernel's outermost loop. Its adjoint
//!   runs the same way on the transposed matrix, with mirrored offsets in the interior and
//!   transposed ghost rules near the boundaries;
//! - a value read by a longer one (a scalar parameter, a one-channel field read by every
//!   channel) sums the adjoint over its copies, by unrolled loads or by a final sum.
//!
//! Parameter gradients are the adjoints of the parameter values, summed over the batch. The time
//! stepping itself (the Euler and RK4 updates, Dirichlet nodes, checkpointing) stays in
//! `npdec_runtime::train::adjoint`, which calls [`CompiledTape`] through its `CompiledRates` hook.

use crate::codegen::{define_kernel, math_functions, BufferLayout, CodegenOptions, KernelSpec};
use crate::kexpr::{sum, Arithmetic, Intrinsic, Kexpr, MathFunction};
use crate::program::{jit_builder, registered_math, JitFloat, JitOptions, KernelFn};
use cranelift_frontend::FunctionBuilderContext;
use cranelift_jit::JITModule;
use cranelift_module::Module;
use ndarray::{Array2, ArrayView2};
use npdec_runtime::train::compiled::{CompiledRates, Pass};
use npdec_runtime::train::gemm::ProductPrecision;
use npdec_runtime::train::linear::SparseOperator;
use npdec_runtime::train::lower::{ExplicitScheme, LoweredTask, StateSlot};
use npdec_runtime::train::tape::{NodeIndex, Op, ParamValues, Shrink, Tape};
use npdec_symbolic::{BinaryOp, CompareOp, Function, ParamId, ReduceOp};
use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The maximum number of copies whose adjoints a broadcast value sums with unrolled loads. A scalar
/// sums any number of copies with a final sum instead.
const MAX_UNROLLED_COPIES: usize = 64;

/// The maximum number of constant-coefficient blocks a sparse operator may split into. A stencil
/// with ghost rules has a handful per boundary face, but an operator without stencil structure has
/// about one per row, and box kernels would then be slower than the tape's sparse product.
const MAX_STENCIL_BLOCKS: usize = 512;

/// A tape operation the JIT cannot compile.
#[derive(Clone, Debug, PartialEq)]
pub struct UnsupportedOp {
    /// The index of the operation in the `rhs` tape.
    pub node: NodeIndex,
    /// The operation's name, as in the tape's `Op`.
    pub op: &'static str,
    pub reason: String,
}

impl std::fmt::Display for UnsupportedOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the JIT cannot compile operation #{} ({}) of the right-hand-side tape: {}",
            self.node, self.op, self.reason
        )
    }
}

impl std::error::Error for UnsupportedOp {}

/// Returns the name of a tape operation's kind.
fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Constant(_) => "Constant",
        Op::Time => "Time",
        Op::State(_) => "State",
        Op::Param(_) => "Param",
        Op::Input { .. } => "Input",
        Op::Sequence { .. } => "Sequence",
        Op::Label(_) => "Label",
        Op::Neg(_) => "Neg",
        Op::Binary(..) => "Binary",
        Op::Compare(..) => "Compare",
        Op::Call(..) => "Call",
        Op::Channel { .. } => "Channel",
        Op::Softmax { .. } => "Softmax",
        Op::MatMul { .. } => "MatMul",
        Op::Linear { .. } => "Linear",
        Op::Resample { .. } => "Resample",
        Op::Convolution { .. } => "Convolution",
        Op::DivGrad { .. } => "DivGrad",
        Op::Upwind { .. } => "Upwind",
        Op::Stack(_) => "Stack",
        Op::Reduce { .. } => "Reduce",
    }
}

/// One step of a sweep. Kernels and sums run one sample at a time, and a run of them between
/// two batched operations runs sample by sample, so each sample's values stay in cache.
#[derive(Clone, Copy, Debug)]
enum Step {
    Kernel(usize),
    /// `memory[target][0] += Σ memory[source]`: the adjoint of a scalar read by a longer value.
    SumInto {
        source: usize,
        target: usize,
    },
    /// The batched operation of this index, which runs over all samples at once.
    Batched(usize),
}

/// The memories of the reverse sweep of a binary spatial operation (`div_grad`, `upwind`): the
/// operation's adjoint and the adjoints its two operands accumulate, if they have them.
#[derive(Clone, Copy, Debug)]
struct SpatialAdjoint {
    adjoint: usize,
    first: Option<usize>,
    second: Option<usize>,
}

/// The geometry of a convolution: output point `p` reads padded point
/// `taps[p · kernel_volume + k]` of every input channel with kernel entry `k`.
#[derive(Clone, Debug)]
struct ConvolutionShape {
    taps: Arc<Vec<usize>>,
    kernel_volume: usize,
    in_channels: usize,
    out_channels: usize,
    padded_points: usize,
    points: usize,
}

impl ConvolutionShape {
    /// Returns the columns of the unrolled input matrix: one per input channel and kernel entry.
    fn columns(&self) -> usize {
        self.in_channels * self.kernel_volume
    }

    /// Fills `columns[p, c · kernel_volume + k]` with the padded input `input[c, taps[p, k]]`
    /// (im2col), so that the convolution is the product `kernel · columnsᵀ`.
    fn gather<T: JitFloat>(&self, input: &[T], columns: &mut [T]) {
        let width = self.columns();
        for p in 0..self.points {
            let taps = &self.taps[p * self.kernel_volume..(p + 1) * self.kernel_volume];
            let row = &mut columns[p * width..(p + 1) * width];
            for c in 0..self.in_channels {
                let channel = &input[c * self.padded_points..(c + 1) * self.padded_points];
                for (target, tap) in row[c * self.kernel_volume..].iter_mut().zip(taps) {
                    *target = channel[*tap];
                }
            }
        }
    }

    /// Adds the unrolled adjoint `columns` to the padded input's adjoint `target` (col2im).
    fn scatter<T: JitFloat>(&self, columns: &[T], target: &mut [T]) {
        let width = self.columns();
        for p in 0..self.points {
            let taps = &self.taps[p * self.kernel_volume..(p + 1) * self.kernel_volume];
            let row = &columns[p * width..(p + 1) * width];
            for c in 0..self.in_channels {
                let channel = &mut target[c * self.padded_points..(c + 1) * self.padded_points];
                for (value, tap) in row[c * self.kernel_volume..].iter().zip(taps) {
                    channel[*tap] += *value;
                }
            }
        }
    }
}

/// An operation that runs over all samples of a batch at once: dense products as one GEMM over
/// the batch, convolutions as one GEMM per sample on the unrolled input, and sparse operators
/// without stencil structure row by row. Memories named `*_adjoint` accumulate.
#[derive(Clone, Debug)]
enum BatchedOp {
    /// `output[b] = weights · input[b]` with `weights` a `[rows, columns]` matrix.
    Dense {
        weights: usize,
        rows: usize,
        columns: usize,
        input: usize,
        output: usize,
    },
    /// The adjoint of [`BatchedOp::Dense`]: `weights_adjoint += Σ_b adjoint[b] ⊗ input[b]` and
    /// `input_adjoint[b] += weightsᵀ · adjoint[b]`. `input_reaches_params` is false when the input
    /// depends on no parameter, so that its adjoint only feeds state adjoints and a sweep for the
    /// parameter gradients alone skips that product.
    DenseAdjoint {
        weights: usize,
        weights_adjoint: usize,
        rows: usize,
        columns: usize,
        input: usize,
        adjoint: usize,
        input_adjoint: Option<usize>,
        input_reaches_params: bool,
    },
    /// `output[b] = kernel · im2col(input[b])ᵀ`, with `columns` as scratch.
    Convolution {
        shape: ConvolutionShape,
        kernel: usize,
        input: usize,
        output: usize,
        columns: usize,
    },
    /// The adjoint of [`BatchedOp::Convolution`]: `kernel_adjoint += adjoint[b] · im2col(input[b])`
    /// and `input_adjoint[b] += col2im(adjoint[b]ᵀ · kernel)`.
    ConvolutionAdjoint {
        shape: ConvolutionShape,
        kernel: usize,
        kernel_adjoint: usize,
        input: usize,
        adjoint: usize,
        input_adjoint: Option<usize>,
        columns: usize,
    },
    /// `output[b][output_start..][..len] = input[b][input_start..][..len]`, or `+=` with
    /// `accumulate`: the parts of a stacked vector and their adjoints.
    Copy {
        input: usize,
        input_start: usize,
        output: usize,
        output_start: usize,
        len: usize,
        accumulate: bool,
    },
    /// The softmax over `groups` entries `stride` apart, as in the tape's `Op::Softmax`.
    Softmax {
        input: usize,
        output: usize,
        groups: usize,
        stride: usize,
    },
    /// `input_adjoint[b] += y ⊙ (ȳ − ⟨y, ȳ⟩)` per softmax group, with `y` the softmax `value`.
    SoftmaxAdjoint {
        value: usize,
        adjoint: usize,
        input_adjoint: usize,
        groups: usize,
        stride: usize,
    },
    /// One number per sample: a sum, mean, extremum, weighted integral or norm of `input[b]`.
    Reduce {
        op: ReduceOp,
        weights: Arc<Vec<f64>>,
        input: usize,
        output: usize,
    },
    /// The adjoint of [`BatchedOp::Reduce`] from its `value` and `adjoint`, added to
    /// `input_adjoint`.
    ReduceAdjoint {
        op: ReduceOp,
        weights: Arc<Vec<f64>>,
        input: usize,
        value: usize,
        adjoint: usize,
        input_adjoint: usize,
    },
    /// The conservative `Σ_a ∂_a(c ∂_a u)` of the tape's `Op::DivGrad`, and with `adjoint` set its
    /// vector–Jacobian product, added to the coefficient's and the operand's adjoints.
    DivGrad {
        coefficient: usize,
        operand: usize,
        channels: usize,
        geometry: Arc<Shrink>,
        axes: Vec<(usize, f64)>,
        output: usize,
        adjoint: Option<SpatialAdjoint>,
    },
    /// `v · ∂u/∂x` with the one-sided taps of the tape's `Op::Upwind`, and with `adjoint` set its
    /// vector–Jacobian product at the fixed sign of the velocity.
    Upwind {
        velocity: usize,
        operand: usize,
        channels: usize,
        geometry: Arc<Shrink>,
        backward: Vec<(isize, f64)>,
        forward: Vec<(isize, f64)>,
        output: usize,
        adjoint: Option<SpatialAdjoint>,
    },
    /// `output[b] = operator · input[b] + constants`, channel by channel; with `accumulate`,
    /// `output[b] += operator · input[b]` (the transposed operator of an adjoint, which has no
    /// constant part).
    Sparse {
        operator: Arc<SparseOperator>,
        channels: usize,
        input: usize,
        output: usize,
        accumulate: bool,
    },
}

/// A block of rows of a sparse operator that share the offsets and weights of their entries.
#[derive(Clone, Debug, PartialEq)]
pub struct StencilBlock {
    /// Per axis of the row grid, the half-open range of the block.
    pub region: Vec<(isize, isize)>,
    /// `(column index − row index, weight)` of every entry, in column order.
    pub taps: Vec<(Vec<isize>, f64)>,
    pub constant: f64,
}

fn unflatten(mut flat: usize, extents: &[usize]) -> Vec<isize> {
    let mut index = vec![0isize; extents.len()];
    for a in (0..extents.len()).rev() {
        index[a] = (flat % extents[a]) as isize;
        flat /= extents[a];
    }
    index
}

fn flatten(index: &[isize], extents: &[usize]) -> usize {
    index
        .iter()
        .zip(extents)
        .fold(0, |flat, (i, n)| flat * n + *i as usize)
}

/// Splits the rows of a sparse operator into boxes whose rows share their taps (offsets from the
/// row's grid index to the column's grid index, and weights) and constant, so each box runs as a
/// stencil kernel. Boxes grow greedily: along the last axis first, then along earlier axes while a
/// whole slab matches.
pub fn stencil_blocks(operator: &SparseOperator) -> Result<Vec<StencilBlock>, String> {
    let (row_extents, column_extents) = (operator.row_extents(), operator.column_extents());
    let rank = row_extents.len();
    if rank == 0 || column_extents.len() != rank {
        return Err(format!(
            "the operator maps a grid of {} axes to one of {rank}, and kernels need one rank",
            column_extents.len()
        ));
    }
    type Pattern = (Vec<(Vec<isize>, u64)>, u64);
    let mut ids: HashMap<Pattern, usize> = HashMap::new();
    let mut patterns: Vec<Pattern> = Vec::new();
    let mut row_pattern = Vec::with_capacity(operator.rows());
    for row in 0..operator.rows() {
        let index = unflatten(row, row_extents);
        let taps: Vec<(Vec<isize>, u64)> = operator
            .row_entries(row)
            .map(|(column, weight)| {
                let at = unflatten(column, column_extents);
                let offset = at.iter().zip(&index).map(|(c, r)| c - r).collect();
                (offset, weight.to_bits())
            })
            .collect();
        let key = (taps, operator.constants()[row].to_bits());
        let id = match ids.get(&key) {
            Some(id) => *id,
            None => {
                ids.insert(key.clone(), patterns.len());
                patterns.push(key);
                patterns.len() - 1
            }
        };
        row_pattern.push(id);
    }

    let mut covered = vec![false; operator.rows()];
    let mut blocks = Vec::new();
    for row in 0..operator.rows() {
        if covered[row] {
            continue;
        }
        let id = row_pattern[row];
        let low = unflatten(row, row_extents);
        let mut high: Vec<isize> = low.iter().map(|i| i + 1).collect();
        // Every point of the box [low, high) with axis `axis` fixed at `at` matches the pattern.
        let slab_matches = |high: &[isize], axis: usize, at: isize| -> bool {
            let mut region: Vec<(isize, isize)> =
                low.iter().zip(high).map(|(l, h)| (*l, *h)).collect();
            region[axis] = (at, at + 1);
            let mut index: Vec<isize> = region.iter().map(|(l, _)| *l).collect();
            loop {
                let flat = flatten(&index, row_extents);
                if covered[flat] || row_pattern[flat] != id {
                    return false;
                }
                let mut a = rank;
                loop {
                    if a == 0 {
                        return true;
                    }
                    a -= 1;
                    index[a] += 1;
                    if index[a] < region[a].1 {
                        break;
                    }
                    index[a] = region[a].0;
                }
            }
        };
        for axis in (0..rank).rev() {
            while (high[axis] as usize) < row_extents[axis] && slab_matches(&high, axis, high[axis])
            {
                high[axis] += 1;
            }
        }
        let region: Vec<(isize, isize)> = low.iter().zip(&high).map(|(l, h)| (*l, *h)).collect();
        let mut index = low.clone();
        loop {
            covered[flatten(&index, row_extents)] = true;
            let mut a = rank;
            let mut done = true;
            while a > 0 {
                a -= 1;
                index[a] += 1;
                if index[a] < region[a].1 {
                    done = false;
                    break;
                }
                index[a] = region[a].0;
            }
            if done {
                break;
            }
        }
        let (taps, constant) = &patterns[id];
        blocks.push(StencilBlock {
            region,
            taps: taps
                .iter()
                .map(|(o, w)| (o.clone(), f64::from_bits(*w)))
                .collect(),
            constant: f64::from_bits(*constant),
        });
        if blocks.len() > MAX_STENCIL_BLOCKS {
            return Err(format!(
                "the operator of {} rows splits into more than {MAX_STENCIL_BLOCKS} blocks of constant coefficients, so it is not a stencil",
                operator.rows()
            ));
        }
    }
    Ok(blocks)
}

/// The placement of a pointwise kernel: kernel-frame index `i` is entry `i + shift` of the
/// operation's value, which lies in the block of `block` entries that starts at `base`. Operands of
/// one entry broadcast, and operands of `block` entries repeat per block.
#[derive(Clone, Copy, Debug)]
struct Frame {
    full: usize,
    block: usize,
    shift: isize,
    base: isize,
}

/// Returns the block length of a pointwise operation of `full` entries: the length of its operands
/// that are neither scalars nor `full` long, which must all be equal and divide `full`.
fn block_length(full: usize, operands: &[usize]) -> Result<usize, String> {
    let mut block = full;
    for len in operands {
        if *len == 1 || *len == full {
            continue;
        }
        if !full.is_multiple_of(*len) || (block != full && block != *len) {
            return Err(format!(
                "operands of {operands:?} entries do not broadcast to {full} entries by whole blocks"
            ));
        }
        block = *len;
    }
    Ok(block)
}

struct Builder<'t> {
    tape: &'t Tape,
    memory_lens: Vec<usize>,
    /// Per memory: true for one copy that every sample reads (constants, parameters, time and
    /// parameter adjoints, which accumulate over the batch), false for one copy per sample.
    shared: Vec<bool>,
    batched: Vec<BatchedOp>,
    /// The memories of parameters that dense products and convolutions read, with their adjoints.
    matrices: Vec<(ParamId, usize, usize)>,
    /// Each buffer slot the kernels see: a memory and the layout it is read with.
    slots: Vec<(usize, BufferLayout)>,
    slot_of: HashMap<(usize, usize, Vec<usize>), usize>,
    value: Vec<Option<usize>>,
    adjoint: Vec<Option<usize>>,
    /// Whether each tape node depends on a parameter, so that its adjoint reaches a gradient.
    depends_on_params: Vec<bool>,
    /// Memories besides the adjoints of nodes that the reverse sweep accumulates into, and that
    /// are zeroed before it like them.
    scratch: Vec<usize>,
    specs: Vec<KernelSpec>,
    forward: Vec<Step>,
    reverse: Vec<Step>,
}

impl<'t> Builder<'t> {
    fn len(&self, node: NodeIndex) -> usize {
        self.tape.nodes[node].len
    }

    fn memory(&mut self, len: usize) -> usize {
        self.memory_lens.push(len);
        self.shared.push(false);
        self.memory_lens.len() - 1
    }

    /// Returns a memory with one copy for the whole batch.
    fn shared_memory(&mut self, len: usize) -> usize {
        let memory = self.memory(len);
        self.shared[memory] = true;
        memory
    }

    /// Returns the memories of the values and the adjoint of parameter `id` as a dense product or
    /// a convolution reads it.
    fn matrix(&mut self, id: ParamId, len: usize) -> (usize, usize) {
        if let Some((_, value, adjoint)) = self.matrices.iter().find(|(p, _, _)| *p == id) {
            return (*value, *adjoint);
        }
        let (value, adjoint) = (self.shared_memory(len), self.shared_memory(len));
        self.matrices.push((id, value, adjoint));
        (value, adjoint)
    }

    fn push_batched(&mut self, op: BatchedOp, forward: bool) {
        self.batched.push(op);
        let step = Step::Batched(self.batched.len() - 1);
        if forward {
            self.forward.push(step);
        } else {
            self.reverse.push(step);
        }
    }

    /// Returns the slot reading `memory` as `channels` planes of a grid of `extents`.
    fn slot(&mut self, memory: usize, channels: usize, extents: Vec<usize>) -> usize {
        let key = (memory, channels, extents.clone());
        if let Some(slot) = self.slot_of.get(&key) {
            return *slot;
        }
        self.slots
            .push((memory, BufferLayout { channels, extents }));
        let slot = self.slots.len() - 1;
        self.slot_of.insert(key, slot);
        slot
    }

    fn flat(&mut self, memory: usize) -> usize {
        let len = self.memory_lens[memory];
        self.slot(memory, 1, vec![len])
    }

    fn value_memory(&self, node: NodeIndex) -> usize {
        self.value[node].expect("operands are computed before their users")
    }

    /// Returns the entry of `memory` that a frame's kernel-frame index `i` reads.
    fn read(&mut self, memory: usize, frame: Frame) -> Kexpr {
        let len = self.memory_lens[memory];
        let slot = self.flat(memory);
        if len == 1 {
            Kexpr::Uniform {
                buffer: slot,
                index: 0,
            }
        } else if len == frame.full {
            Kexpr::Load {
                buffer: slot,
                channel: 0,
                offset: vec![frame.shift],
            }
        } else {
            debug_assert_eq!(len, frame.block);
            Kexpr::Load {
                buffer: slot,
                channel: 0,
                offset: vec![frame.shift - frame.base],
            }
        }
    }

    fn push(&mut self, spec: KernelSpec, forward: bool) {
        self.specs.push(spec);
        let step = Step::Kernel(self.specs.len() - 1);
        if forward {
            self.forward.push(step);
        } else {
            self.reverse.push(step);
        }
    }

    /// Emits the kernels writing `expr(frame)` into `memory`, one per block of the value.
    fn pointwise_kernels(
        &mut self,
        memory: usize,
        full: usize,
        block: usize,
        expr: &mut dyn FnMut(&mut Self, Frame) -> Kexpr,
        forward: bool,
    ) {
        let output = self.flat(memory);
        for m in 0..full / block {
            let base = (m * block) as isize;
            let frame = Frame {
                full,
                block,
                shift: 0,
                base,
            };
            let value = expr(self, frame);
            let spec = KernelSpec {
                name: format!("k{}", self.specs.len()),
                output,
                output_shift: vec![0],
                region: vec![(base, base + block as isize)],
                channels: vec![(0, value)],
                readonly_inputs: forward,
                row_prologue: Vec::new(),
                row_epilogue: Vec::new(),
            };
            self.push(spec, forward);
        }
    }

    /// Emits the kernel of one block of a sparse operator applied to every channel of `input`,
    /// whose channels are planes of a grid of `extents.0`, writing `output` on a grid of
    /// `extents.1`. Several channels run as the outermost axis of the kernel frame, so one loop
    /// nest serves them all instead of one unrolled nest per channel. The forward sweep stores
    /// the block's constant plus its taps, and the reverse sweep adds the taps to `output`.
    fn stencil_kernel(
        &mut self,
        input: usize,
        output: usize,
        channels: usize,
        extents: (&[usize], &[usize]),
        block: StencilBlock,
        forward: bool,
    ) {
        let channel_axis: &[usize] = if channels > 1 { &[channels] } else { &[] };
        let input = self.slot(input, 1, [channel_axis, extents.0].concat());
        let output = self.slot(output, 1, [channel_axis, extents.1].concat());
        let channel_offset = vec![0; channel_axis.len()];
        let rank = channel_axis.len() + block.region.len();
        let first = if forward {
            Kexpr::Const(block.constant)
        } else {
            Kexpr::Load {
                buffer: output,
                channel: 0,
                offset: vec![0; rank],
            }
        };
        let mut terms = vec![first];
        for (offset, weight) in &block.taps {
            terms.push(Kexpr::binary(
                Arithmetic::Mul,
                Kexpr::Const(*weight),
                Kexpr::Load {
                    buffer: input,
                    channel: 0,
                    offset: [channel_offset.as_slice(), offset].concat(),
                },
            ));
        }
        let region = channel_axis
            .iter()
            .map(|c| (0, *c as isize))
            .chain(block.region)
            .collect();
        let spec = KernelSpec {
            name: format!("k{}", self.specs.len()),
            output,
            output_shift: vec![0; rank],
            region,
            channels: vec![(0, sum(terms))],
            readonly_inputs: forward,
            row_prologue: Vec::new(),
            row_epilogue: Vec::new(),
        };
        self.push(spec, forward);
    }

    /// Returns the adjoints that the reverse sweep of a binary spatial operation (`div_grad`,
    /// `upwind`) with adjoint `adjoint` adds to, or `None` when neither operand has one. When both
    /// operands are one value, the operation adds the second operand's share to a new memory,
    /// returned as `(memory, operand adjoint)` for [`Self::add_adjoint`] to add after it. The
    /// operation takes each memory it writes out of the workspace while it runs, so it cannot
    /// write one memory twice.
    fn spatial_targets(
        &mut self,
        adjoint: usize,
        first: NodeIndex,
        second: NodeIndex,
    ) -> Option<(SpatialAdjoint, Option<(usize, usize)>)> {
        let mut targets = SpatialAdjoint {
            adjoint,
            first: self.adjoint[first],
            second: self.adjoint[second],
        };
        match (targets.first, targets.second) {
            (None, None) => None,
            (Some(a), Some(b)) if a == b => {
                let share = self.memory(self.memory_lens[b]);
                self.scratch.push(share);
                targets.second = Some(share);
                Some((targets, Some((share, b))))
            }
            _ => Some((targets, None)),
        }
    }

    /// Emits the reverse-sweep kernels adding memory `source` to the adjoint memory `target` of
    /// the same length, sample by sample, so that a shared `target` sums over the batch.
    fn add_adjoint(&mut self, source: usize, target: usize) {
        let len = self.memory_lens[target];
        self.pointwise_kernels(
            target,
            len,
            len,
            &mut |b: &mut Self, f: Frame| {
                let own = b.read(target, f);
                let share = b.read(source, f);
                Kexpr::binary(Arithmetic::Add, own, share)
            },
            false,
        );
    }

    /// Emits the forward kernels of operation `node`, after those of its operands.
    fn forward_op(&mut self, node: NodeIndex) -> Result<(), String> {
        let tape = self.tape;
        let full = self.len(node);
        let memory = match tape.nodes[node].op {
            Op::Constant(_) | Op::Time | Op::Param(_) => self.shared_memory(full),
            _ => self.memory(full),
        };
        self.value[node] = Some(memory);
        if let Some((kind, operands)) = Pointwise::of(&tape.nodes[node].op) {
            let memories: Vec<usize> = operands.iter().map(|o| self.value_memory(*o)).collect();
            let lens: Vec<usize> = operands.iter().map(|o| self.len(*o)).collect();
            let block = block_length(full, &lens)?;
            let mut failure = None;
            self.pointwise_kernels(
                memory,
                full,
                block,
                &mut |b: &mut Self, f: Frame| {
                    let x: Vec<Kexpr> = memories.iter().map(|m| b.read(*m, f)).collect();
                    kind.value(&x).unwrap_or_else(|reason| {
                        failure = Some(reason);
                        Kexpr::Const(f64::NAN)
                    })
                },
                true,
            );
            return failure.map_or(Ok(()), Err);
        }
        match &tape.nodes[node].op {
            Op::Constant(_) | Op::Time | Op::State(_) | Op::Param(_) => Ok(()),
            Op::Channel {
                operand,
                channel,
                points,
            } => {
                let source = self.value_memory(*operand);
                let (input, output) = (self.flat(source), self.flat(memory));
                let spec = KernelSpec {
                    name: format!("k{}", self.specs.len()),
                    output,
                    output_shift: vec![0],
                    region: vec![(0, *points as isize)],
                    channels: vec![(
                        0,
                        Kexpr::Load {
                            buffer: input,
                            channel: 0,
                            offset: vec![(channel * points) as isize],
                        },
                    )],
                    readonly_inputs: true,
                    row_prologue: Vec::new(),
                    row_epilogue: Vec::new(),
                };
                self.push(spec, true);
                Ok(())
            }
            Op::Linear {
                operator,
                channels,
                operand,
            } => {
                if full != channels * operator.rows()
                    || self.len(*operand) != channels * operator.columns()
                {
                    return Err(format!(
                        "the operator of {} rows and {} columns does not match values of {} and {} entries",
                        operator.rows(),
                        operator.columns(),
                        self.len(*operand),
                        full
                    ));
                }
                let blocks = stencil_blocks(operator)?;
                let source = self.value_memory(*operand);
                let extents = (operator.column_extents(), operator.row_extents());
                for block in blocks {
                    self.stencil_kernel(source, memory, *channels, extents, block, true);
                }
                Ok(())
            }
            Op::Input { .. } | Op::Sequence { .. } | Op::Label(_) => Ok(()),
            Op::MatMul {
                matrix,
                rows,
                columns,
                operand,
            } => {
                if full != *rows || self.len(*operand) != *columns {
                    return Err(format!(
                        "a [{rows}, {columns}] matrix does not map {} entries to {full}",
                        self.len(*operand)
                    ));
                }
                let (weights, _) = self.matrix(*matrix, rows * columns);
                let input = self.value_memory(*operand);
                self.push_batched(
                    BatchedOp::Dense {
                        weights,
                        rows: *rows,
                        columns: *columns,
                        input,
                        output: memory,
                    },
                    true,
                );
                Ok(())
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
                let shape = convolution_shape(
                    taps,
                    *kernel_volume,
                    *in_channels,
                    *out_channels,
                    *padded_points,
                )?;
                if self.len(*operand) != in_channels * padded_points
                    || full != out_channels * shape.points
                {
                    return Err(format!(
                        "a convolution of {in_channels} to {out_channels} channels on {padded_points} padded points does not map {} entries to {full}",
                        self.len(*operand)
                    ));
                }
                let (weights, _) = self.matrix(*kernel, out_channels * in_channels * kernel_volume);
                let input = self.value_memory(*operand);
                let columns = self.shared_memory(shape.points * shape.columns());
                self.push_batched(
                    BatchedOp::Convolution {
                        shape,
                        kernel: weights,
                        input,
                        output: memory,
                        columns,
                    },
                    true,
                );
                Ok(())
            }
            Op::Resample {
                operator,
                channels,
                operand,
                ..
            } => {
                if full != channels * operator.rows()
                    || self.len(*operand) != channels * operator.columns()
                {
                    return Err(format!(
                        "the operator of {} rows and {} columns does not match values of {} and {} entries",
                        operator.rows(),
                        operator.columns(),
                        self.len(*operand),
                        full
                    ));
                }
                let input = self.value_memory(*operand);
                self.push_batched(
                    BatchedOp::Sparse {
                        operator: operator.clone(),
                        channels: *channels,
                        input,
                        output: memory,
                        accumulate: false,
                    },
                    true,
                );
                Ok(())
            }
            Op::Softmax {
                operand,
                groups,
                stride,
            } => {
                if self.len(*operand) != full || *groups == 0 || !full.is_multiple_of(*groups) {
                    return Err(format!(
                        "a softmax over groups of {groups} does not divide {full} entries"
                    ));
                }
                let input = self.value_memory(*operand);
                self.push_batched(
                    BatchedOp::Softmax {
                        input,
                        output: memory,
                        groups: *groups,
                        stride: *stride,
                    },
                    true,
                );
                Ok(())
            }
            Op::Stack(parts) => {
                let mut start = 0;
                for part in parts {
                    let (input, len) = (self.value_memory(*part), self.len(*part));
                    self.push_batched(
                        BatchedOp::Copy {
                            input,
                            input_start: 0,
                            output: memory,
                            output_start: start,
                            len,
                            accumulate: false,
                        },
                        true,
                    );
                    start += len;
                }
                if start != full {
                    return Err(format!(
                        "parts of {start} entries do not fill a vector of {full}"
                    ));
                }
                Ok(())
            }
            Op::Reduce {
                op,
                operand,
                weights,
            } => {
                let needs_weights = matches!(op, ReduceOp::Integral | ReduceOp::Norm);
                if needs_weights && weights.len() != self.len(*operand) {
                    return Err(format!(
                        "{} weights do not match an operand of {} entries",
                        weights.len(),
                        self.len(*operand)
                    ));
                }
                let input = self.value_memory(*operand);
                self.push_batched(
                    BatchedOp::Reduce {
                        op: *op,
                        weights: weights.clone(),
                        input,
                        output: memory,
                    },
                    true,
                );
                Ok(())
            }
            Op::DivGrad {
                coefficient,
                operand,
                channels,
                geometry,
                axes,
            } => {
                if full != channels * geometry.out_points() {
                    return Err(format!(
                        "{channels} channels of {} points do not make {full} entries",
                        geometry.out_points()
                    ));
                }
                let (coefficient, operand) =
                    (self.value_memory(*coefficient), self.value_memory(*operand));
                self.push_batched(
                    BatchedOp::DivGrad {
                        coefficient,
                        operand,
                        channels: *channels,
                        geometry: geometry.clone(),
                        axes: axes.clone(),
                        output: memory,
                        adjoint: None,
                    },
                    true,
                );
                Ok(())
            }
            Op::Upwind {
                velocity,
                operand,
                channels,
                geometry,
                backward,
                forward,
            } => {
                if full != channels * geometry.out_points() {
                    return Err(format!(
                        "{channels} channels of {} points do not make {full} entries",
                        geometry.out_points()
                    ));
                }
                let (velocity, operand) =
                    (self.value_memory(*velocity), self.value_memory(*operand));
                self.push_batched(
                    BatchedOp::Upwind {
                        velocity,
                        operand,
                        channels: *channels,
                        geometry: geometry.clone(),
                        backward: backward.clone(),
                        forward: forward.clone(),
                        output: memory,
                        adjoint: None,
                    },
                    true,
                );
                Ok(())
            }
            Op::Neg(_) | Op::Binary(..) | Op::Compare(..) | Op::Call(..) => {
                unreachable!("pointwise operations are compiled above")
            }
        }
    }

    /// Emits the kernels adding operation `node`'s contributions to the adjoints of its operands.
    fn reverse_op(&mut self, node: NodeIndex) -> Result<(), String> {
        let tape = self.tape;
        let full = self.len(node);
        let Some(adjoint) = self.adjoint[node] else {
            return Ok(());
        };
        let value = self.value_memory(node);
        if let Some((kind, operands)) = Pointwise::of(&tape.nodes[node].op) {
            let memories: Vec<usize> = operands.iter().map(|o| self.value_memory(*o)).collect();
            let lens: Vec<usize> = operands.iter().map(|o| self.len(*o)).collect();
            let block = block_length(full, &lens)?;
            for (k, operand) in operands.iter().enumerate() {
                let Some(target) = self.adjoint[*operand] else {
                    continue;
                };
                if !kind.differentiable() {
                    continue;
                }
                let mut contribution = |b: &mut Self, f: Frame| -> Kexpr {
                    let x: Vec<Kexpr> = memories.iter().map(|m| b.read(*m, f)).collect();
                    let out = b.read(value, f);
                    let g = b.read(adjoint, f);
                    kind.adjoint(k, &x, out, g)
                };
                let target_len = self.memory_lens[target];
                if target_len == full {
                    self.pointwise_kernels(
                        target,
                        full,
                        block,
                        &mut |b: &mut Self, f: Frame| {
                            let own = b.read(target, f);
                            let c = contribution(b, f);
                            Kexpr::binary(Arithmetic::Add, own, c)
                        },
                        false,
                    );
                } else if target_len == 1 {
                    let scratch = self.memory(full);
                    self.pointwise_kernels(scratch, full, block, &mut contribution, false);
                    self.reverse.push(Step::SumInto {
                        source: scratch,
                        target,
                    });
                } else {
                    let copies = full / block;
                    if copies > MAX_UNROLLED_COPIES {
                        return Err(format!(
                            "a value of {block} entries is read {copies} times, more than the {MAX_UNROLLED_COPIES} copies whose adjoints are summed"
                        ));
                    }
                    let output = self.flat(target);
                    let mut terms = vec![Kexpr::Load {
                        buffer: output,
                        channel: 0,
                        offset: vec![0],
                    }];
                    for m in 0..copies {
                        let at = (m * block) as isize;
                        terms.push(contribution(
                            self,
                            Frame {
                                full,
                                block,
                                shift: at,
                                base: at,
                            },
                        ));
                    }
                    let spec = KernelSpec {
                        name: format!("k{}", self.specs.len()),
                        output,
                        output_shift: vec![0],
                        region: vec![(0, block as isize)],
                        channels: vec![(0, sum(terms))],
                        readonly_inputs: false,
                        row_prologue: Vec::new(),
                        row_epilogue: Vec::new(),
                    };
                    self.push(spec, false);
                }
            }
            return Ok(());
        }
        match &tape.nodes[node].op {
            Op::Constant(_) | Op::Time | Op::State(_) | Op::Param(_) => Ok(()),
            Op::Channel {
                operand,
                channel,
                points,
            } => {
                let Some(target) = self.adjoint[*operand] else {
                    return Ok(());
                };
                let (output, input) = (self.flat(target), self.flat(adjoint));
                let start = (channel * points) as isize;
                let spec = KernelSpec {
                    name: format!("k{}", self.specs.len()),
                    output,
                    output_shift: vec![0],
                    region: vec![(start, start + *points as isize)],
                    channels: vec![(
                        0,
                        Kexpr::binary(
                            Arithmetic::Add,
                            Kexpr::Load {
                                buffer: output,
                                channel: 0,
                                offset: vec![0],
                            },
                            Kexpr::Load {
                                buffer: input,
                                channel: 0,
                                offset: vec![-start],
                            },
                        ),
                    )],
                    readonly_inputs: false,
                    row_prologue: Vec::new(),
                    row_epilogue: Vec::new(),
                };
                self.push(spec, false);
                Ok(())
            }
            Op::Linear {
                operator,
                channels,
                operand,
            } => {
                let Some(target) = self.adjoint[*operand] else {
                    return Ok(());
                };
                let transposed = operator.transpose();
                let blocks = stencil_blocks(&transposed)?;
                let extents = (operator.row_extents(), operator.column_extents());
                for block in blocks {
                    if !block.taps.is_empty() {
                        self.stencil_kernel(adjoint, target, *channels, extents, block, false);
                    }
                }
                Ok(())
            }
            Op::MatMul {
                matrix,
                rows,
                columns,
                operand,
            } => {
                let (weights, weights_adjoint) = self.matrix(*matrix, rows * columns);
                let input = self.value_memory(*operand);
                let input_adjoint = self.adjoint[*operand];
                let input_reaches_params = self.depends_on_params[*operand];
                self.push_batched(
                    BatchedOp::DenseAdjoint {
                        weights,
                        weights_adjoint,
                        rows: *rows,
                        columns: *columns,
                        input,
                        adjoint,
                        input_adjoint,
                        input_reaches_params,
                    },
                    false,
                );
                Ok(())
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
                let shape = convolution_shape(
                    taps,
                    *kernel_volume,
                    *in_channels,
                    *out_channels,
                    *padded_points,
                )?;
                let (weights, kernel_adjoint) =
                    self.matrix(*kernel, out_channels * in_channels * kernel_volume);
                let input = self.value_memory(*operand);
                let input_adjoint = self.adjoint[*operand];
                let columns = self.shared_memory(shape.points * shape.columns());
                self.push_batched(
                    BatchedOp::ConvolutionAdjoint {
                        shape,
                        kernel: weights,
                        kernel_adjoint,
                        input,
                        adjoint,
                        input_adjoint,
                        columns,
                    },
                    false,
                );
                Ok(())
            }
            Op::Resample {
                operator,
                channels,
                operand,
                ..
            } => {
                let Some(target) = self.adjoint[*operand] else {
                    return Ok(());
                };
                self.push_batched(
                    BatchedOp::Sparse {
                        operator: Arc::new(operator.transpose()),
                        channels: *channels,
                        input: adjoint,
                        output: target,
                        accumulate: true,
                    },
                    false,
                );
                Ok(())
            }
            Op::Softmax {
                operand,
                groups,
                stride,
            } => {
                let Some(input_adjoint) = self.adjoint[*operand] else {
                    return Ok(());
                };
                self.push_batched(
                    BatchedOp::SoftmaxAdjoint {
                        value,
                        adjoint,
                        input_adjoint,
                        groups: *groups,
                        stride: *stride,
                    },
                    false,
                );
                Ok(())
            }
            Op::Stack(parts) => {
                let mut start = 0;
                for part in parts {
                    let len = self.len(*part);
                    if let Some(output) = self.adjoint[*part] {
                        self.push_batched(
                            BatchedOp::Copy {
                                input: adjoint,
                                input_start: start,
                                output,
                                output_start: 0,
                                len,
                                accumulate: true,
                            },
                            false,
                        );
                    }
                    start += len;
                }
                Ok(())
            }
            Op::Reduce {
                op,
                operand,
                weights,
            } => {
                let Some(input_adjoint) = self.adjoint[*operand] else {
                    return Ok(());
                };
                let input = self.value_memory(*operand);
                self.push_batched(
                    BatchedOp::ReduceAdjoint {
                        op: *op,
                        weights: weights.clone(),
                        input,
                        value,
                        adjoint,
                        input_adjoint,
                    },
                    false,
                );
                Ok(())
            }
            Op::DivGrad {
                coefficient,
                operand,
                channels,
                geometry,
                axes,
            } => {
                let Some((targets, pending)) =
                    self.spatial_targets(adjoint, *coefficient, *operand)
                else {
                    return Ok(());
                };
                let (coefficient, operand) =
                    (self.value_memory(*coefficient), self.value_memory(*operand));
                self.push_batched(
                    BatchedOp::DivGrad {
                        coefficient,
                        operand,
                        channels: *channels,
                        geometry: geometry.clone(),
                        axes: axes.clone(),
                        output: value,
                        adjoint: Some(targets),
                    },
                    false,
                );
                if let Some((source, target)) = pending {
                    self.add_adjoint(source, target);
                }
                Ok(())
            }
            Op::Upwind {
                velocity,
                operand,
                channels,
                geometry,
                backward,
                forward,
            } => {
                let Some((targets, pending)) = self.spatial_targets(adjoint, *velocity, *operand)
                else {
                    return Ok(());
                };
                let (velocity, operand) =
                    (self.value_memory(*velocity), self.value_memory(*operand));
                self.push_batched(
                    BatchedOp::Upwind {
                        velocity,
                        operand,
                        channels: *channels,
                        geometry: geometry.clone(),
                        backward: backward.clone(),
                        forward: forward.clone(),
                        output: value,
                        adjoint: Some(targets),
                    },
                    false,
                );
                if let Some((source, target)) = pending {
                    self.add_adjoint(source, target);
                }
                Ok(())
            }
            other => Err(format!(
                "the {} operation has no compiled adjoint",
                op_name(other)
            )),
        }
    }
}

/// The pointwise operations of a tape, with their operands.
#[derive(Clone, Copy, Debug)]
enum Pointwise {
    Neg,
    Binary(BinaryOp),
    Compare(CompareOp),
    Call(Function),
}

impl Pointwise {
    fn of(op: &Op) -> Option<(Pointwise, Vec<NodeIndex>)> {
        match op {
            Op::Neg(a) => Some((Pointwise::Neg, vec![*a])),
            Op::Binary(op, a, b) => Some((Pointwise::Binary(*op), vec![*a, *b])),
            Op::Compare(op, a, b) => Some((Pointwise::Compare(*op), vec![*a, *b])),
            Op::Call(function, args) => Some((Pointwise::Call(*function), args.clone())),
            _ => None,
        }
    }

    /// Returns the value at one entry from the operands' values, with the tape's arithmetic.
    fn value(self, x: &[Kexpr]) -> Result<Kexpr, String> {
        let select =
            |op, left: &Kexpr, right: Kexpr, then: Kexpr, otherwise: Kexpr| Kexpr::Select {
                op,
                left: Box::new(left.clone()),
                right: Box::new(right),
                then: Box::new(then),
                otherwise: Box::new(otherwise),
            };
        Ok(match (self, x) {
            (Pointwise::Neg, [a]) => Kexpr::unary(Intrinsic::Neg, a.clone()),
            (Pointwise::Binary(op), [a, b]) => {
                let (a, b) = (a.clone(), b.clone());
                match op {
                    BinaryOp::Add => Kexpr::binary(Arithmetic::Add, a, b),
                    BinaryOp::Sub => Kexpr::binary(Arithmetic::Sub, a, b),
                    BinaryOp::Mul => Kexpr::binary(Arithmetic::Mul, a, b),
                    BinaryOp::Div => Kexpr::binary(Arithmetic::Div, a, b),
                    // The tape squares by one multiplication and calls `powf` otherwise.
                    BinaryOp::Pow => select(
                        CompareOp::Equal,
                        &b,
                        Kexpr::Const(2.0),
                        Kexpr::binary(Arithmetic::Mul, a.clone(), a.clone()),
                        Kexpr::Call(MathFunction::Pow, vec![a, b.clone()]),
                    ),
                }
            }
            (Pointwise::Compare(op), [a, b]) => {
                select(op, a, b.clone(), Kexpr::Const(1.0), Kexpr::Const(0.0))
            }
            (Pointwise::Call(function), [a]) => {
                let a = a.clone();
                let math = |f: MathFunction, x: Kexpr| Kexpr::Call(f, vec![x]);
                match function {
                    Function::Tanh => math(MathFunction::Tanh, a),
                    Function::Exp => math(MathFunction::Exp, a),
                    Function::Log => math(MathFunction::Log, a),
                    Function::Sin => math(MathFunction::Sin, a),
                    Function::Cos => math(MathFunction::Cos, a),
                    Function::Sqrt => Kexpr::unary(Intrinsic::Sqrt, a),
                    Function::Abs => Kexpr::unary(Intrinsic::Abs, a),
                    Function::Relu => Kexpr::binary(Arithmetic::Max, a, Kexpr::Const(0.0)),
                    Function::Sigmoid => Kexpr::binary(
                        Arithmetic::Div,
                        Kexpr::Const(1.0),
                        Kexpr::binary(
                            Arithmetic::Add,
                            Kexpr::Const(1.0),
                            math(MathFunction::Exp, Kexpr::unary(Intrinsic::Neg, a)),
                        ),
                    ),
                    Function::Conj | Function::Re => a,
                    Function::Im => Kexpr::Const(0.0),
                    Function::Max | Function::Min | Function::Softmax => {
                        return Err(format!("`{function:?}` of one argument is not compiled"))
                    }
                }
            }
            (Pointwise::Call(function @ (Function::Max | Function::Min)), [a, b]) => {
                let op = if function == Function::Max {
                    Arithmetic::Max
                } else {
                    Arithmetic::Min
                };
                Kexpr::binary(op, a.clone(), b.clone())
            }
            (kind, operands) => {
                return Err(format!(
                    "{kind:?} of {} operands is not compiled",
                    operands.len()
                ))
            }
        })
    }

    /// Returns false for an operation whose value has zero derivatives (comparisons and `im`).
    fn differentiable(self) -> bool {
        !matches!(self, Pointwise::Compare(_) | Pointwise::Call(Function::Im))
    }

    /// Returns `g · ∂value/∂x[operand]` from the operands `x`, the value `out` and its adjoint `g`,
    /// with the tape's formulas (see `Tape::backward`).
    fn adjoint(self, operand: usize, x: &[Kexpr], out: Kexpr, g: Kexpr) -> Kexpr {
        let mul = |a: Kexpr, b: Kexpr| Kexpr::binary(Arithmetic::Mul, a, b);
        let div = |a: Kexpr, b: Kexpr| Kexpr::binary(Arithmetic::Div, a, b);
        let select = |op, left: Kexpr, right: Kexpr, then: Kexpr, otherwise: Kexpr| Kexpr::Select {
            op,
            left: Box::new(left),
            right: Box::new(right),
            then: Box::new(then),
            otherwise: Box::new(otherwise),
        };
        let neg = |a: Kexpr| Kexpr::unary(Intrinsic::Neg, a);
        match self {
            Pointwise::Neg => neg(g),
            Pointwise::Binary(op) => {
                let (a, b) = (x[0].clone(), x[1].clone());
                match (op, operand) {
                    (BinaryOp::Add, _) | (BinaryOp::Sub, 0) => g,
                    (BinaryOp::Sub, _) => neg(g),
                    (BinaryOp::Mul, 0) => mul(g, b),
                    (BinaryOp::Mul, _) => mul(g, a),
                    (BinaryOp::Div, 0) => div(g, b),
                    (BinaryOp::Div, _) => div(mul(neg(g), a), mul(b.clone(), b)),
                    // d/dx x^y = y · x^(y−1), zero for y = 0.
                    (BinaryOp::Pow, 0) => mul(
                        g,
                        select(
                            CompareOp::Equal,
                            b.clone(),
                            Kexpr::Const(0.0),
                            Kexpr::Const(0.0),
                            mul(
                                b.clone(),
                                Kexpr::Call(
                                    MathFunction::Pow,
                                    vec![a, Kexpr::binary(Arithmetic::Sub, b, Kexpr::Const(1.0))],
                                ),
                            ),
                        ),
                    ),
                    // d/dy x^y = x^y · ln x, taken as zero for x ≤ 0.
                    (BinaryOp::Pow, _) => mul(
                        g,
                        select(
                            CompareOp::Greater,
                            a.clone(),
                            Kexpr::Const(0.0),
                            mul(out, Kexpr::Call(MathFunction::Log, vec![a])),
                            Kexpr::Const(0.0),
                        ),
                    ),
                }
            }
            Pointwise::Compare(_) => Kexpr::Const(0.0),
            Pointwise::Call(function @ (Function::Max | Function::Min)) if x.len() == 2 => {
                let (a, b) = (x[0].clone(), x[1].clone());
                let op = if function == Function::Max {
                    CompareOp::GreaterEqual
                } else {
                    CompareOp::LessEqual
                };
                let zero = Kexpr::Const(0.0);
                if operand == 0 {
                    select(op, a, b, g, zero)
                } else {
                    select(op, a, b, zero, g)
                }
            }
            Pointwise::Call(function) => {
                let a = x[0].clone();
                let one = Kexpr::Const(1.0);
                let derivative = match function {
                    Function::Tanh => Kexpr::binary(Arithmetic::Sub, one, mul(out.clone(), out)),
                    Function::Relu => select(
                        CompareOp::Greater,
                        a,
                        Kexpr::Const(0.0),
                        one,
                        Kexpr::Const(0.0),
                    ),
                    Function::Sigmoid => mul(out.clone(), Kexpr::binary(Arithmetic::Sub, one, out)),
                    Function::Exp => out,
                    Function::Log => div(one, a),
                    Function::Sin => Kexpr::Call(MathFunction::Cos, vec![a]),
                    Function::Cos => neg(Kexpr::Call(MathFunction::Sin, vec![a])),
                    // The tape's `signum`: NaN for NaN, else ±1 by the sign bit, which
                    // `1 / x < 0` reads at x = −0 and `x < 0` at x = −∞.
                    Function::Abs => {
                        let negative = |left: Kexpr, otherwise: Kexpr| {
                            select(
                                CompareOp::Less,
                                left,
                                Kexpr::Const(0.0),
                                Kexpr::Const(-1.0),
                                otherwise,
                            )
                        };
                        let sign = negative(a.clone(), negative(div(one.clone(), a.clone()), one));
                        select(CompareOp::NotEqual, a.clone(), a.clone(), a, sign)
                    }
                    Function::Sqrt => div(Kexpr::Const(0.5), out),
                    Function::Conj | Function::Re => one,
                    Function::Im | Function::Max | Function::Min | Function::Softmax => {
                        Kexpr::Const(0.0)
                    }
                };
                mul(g, derivative)
            }
        }
    }
}

/// Replaces `values` by their softmax over `groups` entries `stride` apart, with the tape's
/// arithmetic.
fn softmax<T: JitFloat>(values: &mut [T], groups: usize, stride: usize) {
    let sets = values.len() / groups;
    for set in 0..sets {
        let index = |g: usize| if stride == 1 { g } else { g * stride + set };
        let largest = (0..groups)
            .map(|g| values[index(g)])
            .fold(T::neg_infinity(), T::max);
        let mut total = T::zero();
        for g in 0..groups {
            let e = (values[index(g)] - largest).exp();
            values[index(g)] = e;
            total += e;
        }
        for g in 0..groups {
            values[index(g)] /= total;
        }
    }
}

/// Adds the vector–Jacobian product of [`softmax`] at its value `y` and adjoint `dy` to `target`.
fn softmax_adjoint<T: JitFloat>(y: &[T], dy: &[T], target: &mut [T], groups: usize, stride: usize) {
    let sets = y.len() / groups;
    for set in 0..sets {
        let index = |g: usize| if stride == 1 { g } else { g * stride + set };
        let dot = (0..groups).fold(T::zero(), |a, g| a + y[index(g)] * dy[index(g)]);
        for g in 0..groups {
            let i = index(g);
            target[i] += y[i] * (dy[i] - dot);
        }
    }
}

/// Returns the reduction of one sample, with the tape's arithmetic.
fn reduce<T: JitFloat>(op: ReduceOp, row: &[T], weights: &[f64]) -> T {
    let weighted = |square: bool| {
        row.iter().zip(weights).fold(T::zero(), |a, (x, w)| {
            let x = if square { *x * *x } else { *x };
            a + x * T::of(*w)
        })
    };
    match op {
        ReduceOp::Sum => row.iter().fold(T::zero(), |a, x| a + *x),
        ReduceOp::Mean => row.iter().fold(T::zero(), |a, x| a + *x) / T::of(row.len() as f64),
        ReduceOp::Max => row.iter().copied().fold(T::neg_infinity(), T::max),
        ReduceOp::Min => row.iter().copied().fold(T::infinity(), T::min),
        ReduceOp::Integral => weighted(false),
        ReduceOp::Norm => weighted(true).sqrt(),
    }
}

/// Adds the adjoint `g` of a reduction of `row`, whose value is `value`, to `target`. An extremum
/// passes it to the first entry that attains it, and a zero norm passes nothing, as on the tape.
fn reduce_adjoint<T: JitFloat>(
    op: ReduceOp,
    weights: &[f64],
    row: &[T],
    value: T,
    g: T,
    target: &mut [T],
) {
    match op {
        ReduceOp::Sum => target.iter_mut().for_each(|t| *t += g),
        ReduceOp::Mean => {
            let share = g / T::of(row.len() as f64);
            target.iter_mut().for_each(|t| *t += share);
        }
        ReduceOp::Integral => {
            for (t, w) in target.iter_mut().zip(weights) {
                *t += g * T::of(*w);
            }
        }
        ReduceOp::Norm => {
            if value > T::zero() {
                for ((t, w), x) in target.iter_mut().zip(weights).zip(row) {
                    *t += g * T::of(*w) * *x / value;
                }
            }
        }
        ReduceOp::Max | ReduceOp::Min => {
            if let Some(position) = row.iter().position(|x| *x == value) {
                target[position] += g;
            }
        }
    }
}

/// `Σ_a s_a · (c̄_{i+½} (u_{i+1} − u_i) − c̄_{i−½} (u_i − u_{i−1}))` into `out`, as the tape's
/// `div_grad_forward` computes it for one sample. A coefficient or operand shorter than the
/// padded channels wraps (a one-channel value read by every channel).
fn div_grad<T: JitFloat>(
    c: &[T],
    u: &[T],
    channels: usize,
    geometry: &Shrink,
    axes: &[(usize, f64)],
    out: &mut [T],
) {
    let (in_points, out_points) = (geometry.in_points, geometry.out_points());
    let half = T::of(0.5);
    for ch in 0..channels {
        let base = ch * in_points;
        for (o, &i) in geometry.inner.iter().enumerate() {
            let mut total = T::zero();
            for &(stride, scale) in axes {
                let at_u = |k: usize| u[(base + k) % u.len()];
                let at_c = |k: usize| c[(base + k) % c.len()];
                let (um, u0, up) = (at_u(i - stride), at_u(i), at_u(i + stride));
                let (cm, c0, cp) = (at_c(i - stride), at_c(i), at_c(i + stride));
                let flux_plus = (c0 + cp) * half * (up - u0);
                let flux_minus = (cm + c0) * half * (u0 - um);
                total += (flux_plus - flux_minus) * T::of(scale);
            }
            out[ch * out_points + o] = total;
        }
    }
}

/// Adds the vector–Jacobian product of [`div_grad`] with the adjoint `g` to the adjoints of the
/// coefficient `dc` and of the operand `du` that are present.
#[allow(clippy::too_many_arguments)]
fn div_grad_adjoint<T: JitFloat>(
    c: &[T],
    u: &[T],
    g: &[T],
    channels: usize,
    geometry: &Shrink,
    axes: &[(usize, f64)],
    mut dc: Option<&mut [T]>,
    mut du: Option<&mut [T]>,
) {
    let (in_points, out_points) = (geometry.in_points, geometry.out_points());
    let half = T::of(0.5);
    for ch in 0..channels {
        let base = ch * in_points;
        for (o, &i) in geometry.inner.iter().enumerate() {
            let go = g[ch * out_points + o];
            if go == T::zero() {
                continue;
            }
            for &(stride, scale) in axes {
                let at_u = |k: usize| u[(base + k) % u.len()];
                let at_c = |k: usize| c[(base + k) % c.len()];
                let (um, u0, up) = (at_u(i - stride), at_u(i), at_u(i + stride));
                let (cm, c0, cp) = (at_c(i - stride), at_c(i), at_c(i + stride));
                let gs = go * T::of(scale);
                if let Some(du) = du.as_deref_mut() {
                    let len = du.len();
                    let face_plus = (c0 + cp) * half * gs;
                    let face_minus = (cm + c0) * half * gs;
                    du[(base + i + stride) % len] += face_plus;
                    du[(base + i) % len] -= face_plus + face_minus;
                    du[(base + i - stride) % len] += face_minus;
                }
                if let Some(dc) = dc.as_deref_mut() {
                    let len = dc.len();
                    let slope_plus = half * gs * (up - u0);
                    let slope_minus = half * gs * (u0 - um);
                    dc[(base + i) % len] += slope_plus - slope_minus;
                    dc[(base + i + stride) % len] += slope_plus;
                    dc[(base + i - stride) % len] -= slope_minus;
                }
            }
        }
    }
}

/// The `(offset, weight)` taps of an upwind derivative for `v ≥ 0` and for `v < 0`.
type UpwindTaps<'a> = (&'a [(isize, f64)], &'a [(isize, f64)]);

/// `v · D u` into `out` for one sample, with `D` the backward taps (first of `taps`) where
/// `v ≥ 0` and the forward taps elsewhere, as the tape's `upwind_forward` computes it.
fn upwind<T: JitFloat>(
    v: &[T],
    u: &[T],
    channels: usize,
    geometry: &Shrink,
    taps: UpwindTaps,
    out: &mut [T],
) {
    let (in_points, out_points) = (geometry.in_points, geometry.out_points());
    for ch in 0..channels {
        let base = ch * in_points;
        for (o, &i) in geometry.inner.iter().enumerate() {
            let k = ch * out_points + o;
            let velocity = v[k % v.len()];
            let chosen = if velocity >= T::zero() {
                taps.0
            } else {
                taps.1
            };
            let mut derivative = T::zero();
            for &(offset, weight) in chosen {
                let at = base + (i as isize + offset) as usize;
                derivative += u[at % u.len()] * T::of(weight);
            }
            out[k] = velocity * derivative;
        }
    }
}

/// Adds the vector–Jacobian product of [`upwind`] at the fixed sign of the velocity to the
/// adjoints of the velocity `dv` and of the operand `du` that are present.
#[allow(clippy::too_many_arguments)]
fn upwind_adjoint<T: JitFloat>(
    v: &[T],
    u: &[T],
    g: &[T],
    channels: usize,
    geometry: &Shrink,
    taps: UpwindTaps,
    mut dv: Option<&mut [T]>,
    mut du: Option<&mut [T]>,
) {
    let (in_points, out_points) = (geometry.in_points, geometry.out_points());
    for ch in 0..channels {
        let base = ch * in_points;
        for (o, &i) in geometry.inner.iter().enumerate() {
            let k = ch * out_points + o;
            let velocity = v[k % v.len()];
            let chosen = if velocity >= T::zero() {
                taps.0
            } else {
                taps.1
            };
            let go = g[k];
            let mut derivative = T::zero();
            for &(offset, weight) in chosen {
                let at = base + (i as isize + offset) as usize;
                derivative += u[at % u.len()] * T::of(weight);
                if let Some(du) = du.as_deref_mut() {
                    let len = du.len();
                    du[at % len] += go * velocity * T::of(weight);
                }
            }
            if let Some(dv) = dv.as_deref_mut() {
                let len = dv.len();
                dv[k % len] += go * derivative;
            }
        }
    }
}

/// Checks a convolution's taps against its sizes and returns its shape.
fn convolution_shape(
    taps: &Arc<Vec<usize>>,
    kernel_volume: usize,
    in_channels: usize,
    out_channels: usize,
    padded_points: usize,
) -> Result<ConvolutionShape, String> {
    if kernel_volume == 0 || !taps.len().is_multiple_of(kernel_volume) {
        return Err(format!(
            "{} taps are not whole kernels of {kernel_volume} entries",
            taps.len()
        ));
    }
    if let Some(tap) = taps.iter().find(|t| **t >= padded_points) {
        return Err(format!(
            "tap {tap} lies outside the {padded_points} padded points"
        ));
    }
    Ok(ConvolutionShape {
        taps: taps.clone(),
        kernel_volume,
        in_channels,
        out_channels,
        padded_points,
        points: taps.len() / kernel_volume,
    })
}

/// Returns the state slots of a split-step task with the rate `a = re + i·im` of each split slot
/// as its right-hand side: `re` as channel 0 and `im` as channel 1 of the slot's two channels.
fn split_rate_slots(states: &[StateSlot]) -> Vec<StateSlot> {
    states
        .iter()
        .map(|slot| {
            let mut slot = slot.clone();
            slot.rhs = match &slot.split {
                Some(split) => vec![(Some(0), split.rate_re), (Some(1), split.rate_im)],
                None => Vec::new(),
            };
            slot
        })
        .collect()
}

/// Returns, per tape node, whether the values of `roots` depend on it.
fn ancestors(tape: &Tape, roots: &[NodeIndex]) -> Vec<bool> {
    let mut needed = vec![false; tape.nodes.len()];
    for root in roots {
        needed[*root] = true;
    }
    for node in (0..tape.nodes.len()).rev() {
        if needed[node] {
            for operand in operands(&tape.nodes[node].op) {
                needed[operand] = true;
            }
        }
    }
    needed
}

/// Returns the operands of a tape operation.
fn operands(op: &Op) -> Vec<NodeIndex> {
    match op {
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
            coefficient,
            operand,
            ..
        } => vec![*coefficient, *operand],
        Op::Upwind {
            velocity, operand, ..
        } => vec![*velocity, *operand],
        Op::Call(_, args) | Op::Stack(args) => args.clone(),
    }
}

/// The part of the chunk's samples or labels that a value of the right-hand sides reads (the
/// tape's `Input`, `Sequence` and `Label` operations).
#[derive(Clone, Copy, Debug)]
enum DataRead {
    /// The sample, `copies` times one after the other.
    Input { copies: usize },
    /// Row `step` of the sample viewed as `[rows, features]`, the last row after the last step.
    Sequence { features: usize },
    /// The sample's labels as real values.
    Label,
}

/// Whether `targets` hold `values` converted to `T`, compared in blocks so that the loop over a
/// block needs no branch.
fn equal_entries<T: JitFloat>(targets: &mut [T], values: &[f64]) -> bool {
    const BLOCK: usize = 64;
    let equal_block = |(block, values): (&[T], &[f64])| {
        block
            .iter()
            .zip(values)
            .fold(true, |equal, (t, v)| equal & (*t == T::of(*v)))
    };
    if targets.len() < PARALLEL_ENTRIES {
        return targets
            .chunks(BLOCK)
            .zip(values.chunks(BLOCK))
            .all(equal_block);
    }
    use rayon::prelude::*;
    targets
        .par_chunks(BLOCK)
        .zip(values.par_chunks(BLOCK))
        .all(equal_block)
}

/// Entries from which a pass over a value runs as tasks on the thread pool: a parameter matrix,
/// whose passes would otherwise leave the other threads idle while a batch runs as one chunk.
const PARALLEL_ENTRIES: usize = 1 << 16;

/// Writes `values` converted to `T` into `targets`, across the pool for long runs.
fn convert_entries<T: JitFloat>(targets: &mut [T], values: &[f64]) {
    let convert = |(targets, values): (&mut [T], &[f64])| {
        T::convert_from_f64(targets, &values[..targets.len()]);
    };
    if targets.len() < PARALLEL_ENTRIES {
        convert((targets, values));
        return;
    }
    use rayon::prelude::*;
    targets
        .par_chunks_mut(PARALLEL_ENTRIES / 4)
        .zip(values.par_chunks(PARALLEL_ENTRIES / 4))
        .for_each(convert);
}

/// Sets `targets` to zero, across the pool for long runs.
fn clear_entries<T: JitFloat>(targets: &mut [T]) {
    if targets.len() < PARALLEL_ENTRIES {
        targets.fill(T::zero());
        return;
    }
    use rayon::prelude::*;
    targets
        .par_chunks_mut(PARALLEL_ENTRIES / 4)
        .for_each(|block| block.fill(T::zero()));
}

/// Adds `values` widened to `f64` to `targets`, across the pool for long runs.
fn add_entries<T: JitFloat>(targets: &mut [f64], values: &[T]) {
    let add = |(targets, values): (&mut [f64], &[T])| {
        for (t, v) in targets.iter_mut().zip(values) {
            *t += v.to_f64_lossy();
        }
    };
    if targets.len() < PARALLEL_ENTRIES {
        add((targets, values));
        return;
    }
    use rayon::prelude::*;
    targets
        .par_chunks_mut(PARALLEL_ENTRIES / 4)
        .zip(values.par_chunks(PARALLEL_ENTRIES / 4))
        .for_each(add);
}

/// Owns the code of the kernels.
struct Code(#[allow(dead_code)] JITModule);

// SAFETY: the module is finalized before `Code` is built and never touched again until it drops;
// the kernels only execute its code, which nothing writes.
unsafe impl Send for Code {}
unsafe impl Sync for Code {}

/// One right-hand side of a state slot: entries `start..start + entries` of the rate (one channel
/// or all), the memory of its value and that of its adjoint, if it has one.
struct RatePart {
    start: usize,
    entries: usize,
    value: usize,
    adjoint: Option<usize>,
}

/// The buffers of one evaluation. Concurrent callers (chunks of a batch on several threads) each
/// take their own.
struct Workspace<T> {
    /// Per memory: one copy, or `samples` copies one after the other.
    memories: Vec<Vec<T>>,
    /// The number of samples the memories have room for.
    samples: usize,
    /// `(step, time bits, batch)` of the last forward sweep, whose values the memories still
    /// hold with the inputs it loaded; `None` before the first sweep.
    forward_of: Option<(usize, u64, usize)>,
    /// The pass of the inputs that sweep loaded, when its caller gave one.
    pass: Option<Pass>,
    /// Per memory: true while it holds stale entries that stand for zeros, so that the next
    /// product writing it overwrites them instead of adding to them.
    unwritten: Vec<bool>,
}

/// The kinds of forward-sweep inputs that [`CompiledTape::visit_inputs`] visits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InputKinds {
    /// States, samples, labels, time and parameters.
    All,
    /// The states only.
    States,
}

/// The inputs of one evaluation of the rates.
struct Inputs<'a> {
    states: &'a [Array2<f64>],
    samples: ArrayView2<'a, f64>,
    labels: ArrayView2<'a, f64>,
    pass: Option<Pass>,
    params: &'a ParamValues,
    step: usize,
    time: f64,
}

/// The rates of a lowered task's `rhs` tape and their adjoint as JIT-compiled kernels, for one
/// sample at a time (see the module documentation).
pub struct CompiledTape<T: JitFloat> {
    _code: Code,
    kernels: Vec<(KernelFn, i64, i64)>,
    forward: Vec<Step>,
    reverse: Vec<Step>,
    batched: Vec<BatchedOp>,
    /// The memory behind each buffer slot the kernels index.
    slot_memory: Vec<usize>,
    memory_lens: Vec<usize>,
    /// Per memory: one copy for the batch (true) or one per sample.
    shared: Vec<bool>,
    /// Memories filled once: constants.
    constants: Vec<(usize, Vec<f64>)>,
    states: Vec<(usize, usize, Option<usize>)>,
    params: Vec<(ParamId, usize, Option<usize>)>,
    times: Vec<usize>,
    /// The memories of the samples and labels the right-hand sides read, and how they read them.
    data: Vec<(usize, DataRead)>,
    /// Per state slot: its entries and its right-hand sides.
    rates: Vec<(usize, Vec<RatePart>)>,
    adjoints: Vec<usize>,
    /// Multiply-adds per sample of the forward sweep's dense products, and entries per sample
    /// that its kernels and other operations write: which work dominates a batch.
    dense_work: usize,
    other_work: usize,
    /// Whether the sweep has convolutions, whose products run one sample at a time.
    convolutions: bool,
    /// Whether every forward kernel writes memories with a copy per sample, so that the samples
    /// of a chunk can run on several threads.
    samples_independent: bool,
    /// Adjoint memories of matrices that only batched products write: the sweep leaves them
    /// uncleared and their first product overwrites them.
    product_adjoints: Vec<usize>,
    workspaces: Mutex<Vec<Workspace<T>>>,
    compile_time: Duration,
    kernel_count: usize,
}

impl<T: JitFloat> CompiledTape<T> {
    /// Compiles the rates of a lowered task's Euler, RK4 or split steps. Under split-step
    /// Fourier the rate of a split slot is the rate `a` of its pointwise part, with the real parts
    /// as channel 0 and the imaginary parts as channel 1 (see `CompiledRates`).
    pub fn new(task: &LoweredTask, options: &JitOptions) -> Result<Self, UnsupportedOp> {
        let tape = &task.rhs;
        let slots: Cow<[StateSlot]> = match task.scheme {
            ExplicitScheme::SplitStep => Cow::Owned(split_rate_slots(&task.states)),
            ExplicitScheme::Euler | ExplicitScheme::Rk4 => Cow::Borrowed(&task.states),
        };
        let roots: Vec<NodeIndex> = slots
            .iter()
            .flat_map(|slot| slot.rhs.iter().map(|(_, node)| *node))
            .collect();
        Self::compile(tape, &slots, &roots, options)
    }

    /// Compiles the tape's values of `roots` and their adjoint; `slots` give the states' layouts.
    pub fn compile(
        tape: &Tape,
        slots: &[StateSlot],
        roots: &[NodeIndex],
        options: &JitOptions,
    ) -> Result<Self, UnsupportedOp> {
        let started = Instant::now();
        let needed = ancestors(tape, roots);
        let mut active = vec![false; tape.nodes.len()];
        for (node, entry) in tape.nodes.iter().enumerate() {
            active[node] = match entry.op {
                Op::State(_) | Op::Param(_) | Op::MatMul { .. } | Op::Convolution { .. } => true,
                _ => operands(&entry.op).iter().any(|o| active[*o]),
            };
        }
        let mut depends_on_params = vec![false; tape.nodes.len()];
        for (node, entry) in tape.nodes.iter().enumerate() {
            depends_on_params[node] = match entry.op {
                Op::Param(_) | Op::MatMul { .. } | Op::Convolution { .. } => true,
                _ => operands(&entry.op).iter().any(|o| depends_on_params[*o]),
            };
        }
        let mut builder = Builder {
            tape,
            memory_lens: Vec::new(),
            shared: Vec::new(),
            batched: Vec::new(),
            matrices: Vec::new(),
            slots: Vec::new(),
            slot_of: HashMap::new(),
            value: vec![None; tape.nodes.len()],
            adjoint: vec![None; tape.nodes.len()],
            depends_on_params,
            scratch: Vec::new(),
            specs: Vec::new(),
            forward: Vec::new(),
            reverse: Vec::new(),
        };
        let failure = |node: NodeIndex, reason: String| UnsupportedOp {
            node,
            op: op_name(&tape.nodes[node].op),
            reason,
        };
        let computed: Vec<NodeIndex> = (0..tape.nodes.len()).filter(|n| needed[*n]).collect();
        let differentiated: Vec<NodeIndex> =
            computed.iter().copied().filter(|n| active[*n]).collect();
        for &node in &computed {
            builder
                .forward_op(node)
                .map_err(|reason| failure(node, reason))?;
        }
        for &node in &differentiated {
            let len = builder.len(node);
            builder.adjoint[node] = Some(match tape.nodes[node].op {
                Op::Param(_) => builder.shared_memory(len),
                _ => builder.memory(len),
            });
        }
        for &node in differentiated.iter().rev() {
            builder
                .reverse_op(node)
                .map_err(|reason| failure(node, reason))?;
        }

        let mut constants = Vec::new();
        let mut states = Vec::new();
        let mut params = Vec::new();
        let mut times = Vec::new();
        let mut data = Vec::new();
        for (node, entry) in tape.nodes.iter().enumerate() {
            let Some(memory) = builder.value[node] else {
                continue;
            };
            match &entry.op {
                Op::Constant(values) => constants.push((memory, values.clone())),
                Op::State(index) => {
                    let slot = slots
                        .get(*index)
                        .ok_or_else(|| failure(node, format!("state {index} has no slot")))?;
                    if slot.len() != entry.len {
                        return Err(failure(
                            node,
                            format!(
                                "the state has {} entries where its slot has {}",
                                entry.len,
                                slot.len()
                            ),
                        ));
                    }
                    states.push((*index, memory, builder.adjoint[node]));
                }
                Op::Param(id) => params.push((*id, memory, builder.adjoint[node])),
                Op::Time => times.push(memory),
                Op::Input { copies, .. } => {
                    data.push((memory, DataRead::Input { copies: *copies }))
                }
                Op::Sequence { features, .. } => data.push((
                    memory,
                    DataRead::Sequence {
                        features: *features,
                    },
                )),
                Op::Label(_) => data.push((memory, DataRead::Label)),
                _ => {}
            }
        }
        for (id, memory, adjoint) in &builder.matrices {
            params.push((*id, *memory, Some(*adjoint)));
        }
        let rates = slots
            .iter()
            .map(|slot| {
                let parts = slot
                    .rhs
                    .iter()
                    .map(|(channel, node)| {
                        let (start, entries) = match channel {
                            Some(c) => (c * slot.points, slot.points),
                            None => (0, slot.len()),
                        };
                        RatePart {
                            start,
                            entries,
                            value: builder.value_memory(*node),
                            adjoint: builder.adjoint[*node],
                        }
                    })
                    .collect();
                (slot.len(), parts)
            })
            .collect();
        let adjoints = builder
            .adjoint
            .iter()
            .flatten()
            .copied()
            .chain(builder.matrices.iter().map(|(_, _, adjoint)| *adjoint))
            .chain(builder.scratch.iter().copied())
            .collect();

        let code_failure = |reason: String| UnsupportedOp {
            node: roots.first().copied().unwrap_or(0),
            op: "kernel",
            reason,
        };
        let precision = T::PRECISION;
        let mut jit = jit_builder(options.opt_level).map_err(code_failure)?;
        for function in math_functions(builder.specs.iter().flat_map(|k| k.exprs())) {
            let address = registered_math(function, precision).ok_or_else(|| {
                code_failure(format!("no implementation of {function:?} is registered"))
            })?;
            jit.symbol(function.symbol(precision == crate::Precision::F32), address);
        }
        let mut module = JITModule::new(jit);
        let mut context = module.make_context();
        let mut builder_context = FunctionBuilderContext::new();
        let codegen = CodegenOptions {
            simd: options.simd,
            // Training kernels compute one row per iteration, the layout their speed was measured with.
            row_block: 1,
            export: true,
        };
        let layouts: Vec<BufferLayout> = builder.slots.iter().map(|(_, l)| l.clone()).collect();
        let mut ids = Vec::with_capacity(builder.specs.len());
        for spec in &builder.specs {
            ids.push(
                define_kernel(
                    &mut module,
                    &mut context,
                    &mut builder_context,
                    spec,
                    &layouts,
                    precision,
                    codegen,
                )
                .map_err(code_failure)?,
            );
        }
        module
            .finalize_definitions()
            .map_err(|e| code_failure(e.to_string()))?;
        let kernels = ids
            .into_iter()
            .zip(&builder.specs)
            .map(|(id, spec)| {
                let code = module.get_finalized_function(id);
                // SAFETY: every kernel was defined with the signature of `KernelFn`.
                let function = unsafe { std::mem::transmute::<*const u8, KernelFn>(code) };
                let (start, end) = spec.region[0];
                (function, start as i64, end as i64)
            })
            .collect();
        let kernel_count = builder.specs.len();
        let slot_memory: Vec<usize> = builder.slots.iter().map(|(m, _)| *m).collect();
        let summed: Vec<usize> = builder
            .reverse
            .iter()
            .filter_map(|step| match step {
                Step::SumInto { target, .. } => Some(*target),
                _ => None,
            })
            .collect();
        let product_adjoints = builder
            .matrices
            .iter()
            .map(|(_, _, adjoint)| *adjoint)
            .filter(|m| !slot_memory.contains(m) && !summed.contains(m))
            .collect();
        let samples_independent = builder.forward.iter().all(|step| match step {
            Step::Kernel(index) => !builder.shared[slot_memory[builder.specs[*index].output]],
            Step::SumInto { .. } => false,
            Step::Batched(_) => true,
        });
        let (mut dense_work, mut other_work, mut convolutions) = (0, 0, false);
        for step in &builder.forward {
            match step {
                Step::Kernel(index) => {
                    let spec = &builder.specs[*index];
                    other_work += spec.work();
                }
                Step::SumInto { source, .. } => other_work += builder.memory_lens[*source],
                Step::Batched(index) => match &builder.batched[*index] {
                    BatchedOp::Dense { rows, columns, .. } => dense_work += rows * columns,
                    BatchedOp::Convolution { .. } => convolutions = true,
                    BatchedOp::Sparse {
                        operator, channels, ..
                    } => other_work += operator.rows() * channels,
                    _ => {}
                },
            }
        }
        Ok(CompiledTape {
            _code: Code(module),
            kernels,
            forward: builder.forward,
            reverse: builder.reverse,
            batched: builder.batched,
            slot_memory,
            memory_lens: builder.memory_lens,
            shared: builder.shared,
            constants,
            states,
            params,
            times,
            data,
            rates,
            adjoints,
            dense_work,
            other_work,
            convolutions,
            samples_independent,
            product_adjoints,
            workspaces: Mutex::new(Vec::new()),
            compile_time: started.elapsed(),
            kernel_count,
        })
    }

    /// Returns the time spent building and compiling the kernels.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// Returns the number of kernels of the forward and reverse sweeps together.
    pub fn kernel_count(&self) -> usize {
        self.kernel_count
    }

    /// Returns the entries of `memory` that sample `sample` uses.
    fn sample_range(&self, memory: usize, sample: usize) -> Range<usize> {
        let len = self.memory_lens[memory];
        let start = if self.shared[memory] { 0 } else { sample * len };
        start..start + len
    }

    /// Takes a workspace with room for `samples` samples.
    fn take_workspace(&self, samples: usize) -> Workspace<T> {
        let reused = self
            .workspaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        if let Some(workspace) = reused.filter(|w| w.samples >= samples) {
            return workspace;
        }
        let mut memories: Vec<Vec<T>> = self
            .memory_lens
            .iter()
            .zip(&self.shared)
            .map(|(len, shared)| {
                let copies = if *shared { 1 } else { samples };
                vec![T::zero(); len * copies]
            })
            .collect();
        for (memory, values) in &self.constants {
            for (target, v) in memories[*memory].iter_mut().zip(values) {
                *target = T::of(*v);
            }
        }
        Workspace {
            unwritten: vec![false; memories.len()],
            memories,
            samples,
            forward_of: None,
            pass: None,
        }
    }

    fn return_workspace(&self, workspace: Workspace<T>) {
        self.workspaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(workspace);
    }

    /// Calls `visit(entries, sources)` for every run of entries of the memories that hold the
    /// inputs of the forward sweep (states, samples and labels, time and parameters, in this
    /// order; only the states with [`InputKinds::States`]) with the equally long run of values
    /// they are loaded from, and stops early when `visit` returns false. Returns whether every
    /// call returned true.
    fn visit_inputs<F>(
        &self,
        memories: &mut [Vec<T>],
        inputs: &Inputs,
        batch: usize,
        kinds: InputKinds,
        visit: &mut F,
    ) -> bool
    where
        F: FnMut(&mut [T], &[f64]) -> bool,
    {
        for (index, memory, _) in &self.states {
            let state = &inputs.states[*index];
            for sample in 0..batch {
                let source = state.row(sample.min(state.nrows() - 1));
                let source: Cow<[f64]> = match source.as_slice() {
                    Some(slice) => Cow::Borrowed(slice),
                    None => Cow::Owned(source.to_vec()),
                };
                let range = self.sample_range(*memory, sample);
                let target = &mut memories[*memory][range];
                let len = target.len().min(source.len());
                if !visit(&mut target[..len], &source[..len]) {
                    return false;
                }
            }
        }
        if kinds == InputKinds::States {
            return true;
        }
        for (memory, read) in &self.data {
            let samples = match read {
                DataRead::Label => inputs.labels,
                DataRead::Input { .. } | DataRead::Sequence { .. } => inputs.samples,
            };
            if samples.nrows() > 0 {
                for sample in 0..batch {
                    let source = samples.row(sample.min(samples.nrows() - 1));
                    let source: Cow<[f64]> = match source.as_slice() {
                        Some(slice) => Cow::Borrowed(slice),
                        None => Cow::Owned(source.to_vec()),
                    };
                    let (features, copies, first) = match *read {
                        DataRead::Input { copies } => (source.len(), copies, 0),
                        DataRead::Sequence { features } => {
                            let rows = source.len() / features.max(1);
                            let row = inputs.step.min(rows.saturating_sub(1));
                            (features, 1, row * features)
                        }
                        DataRead::Label => (source.len(), 1, 0),
                    };
                    let range = self.sample_range(*memory, sample);
                    let target = &mut memories[*memory][range];
                    assert_eq!(
                        target.len(),
                        features * copies,
                        "samples of {} features do not fill a value of {} entries",
                        source.len(),
                        target.len()
                    );
                    let values = &source[first..first + features];
                    for copy in target.chunks_mut(features.max(1)) {
                        if !visit(copy, values) {
                            return false;
                        }
                    }
                }
            }
        }
        for memory in &self.times {
            if !visit(&mut memories[*memory][..1], &[inputs.time]) {
                return false;
            }
        }
        for (id, memory, _) in &self.params {
            let values = inputs.params.at_step(*id, inputs.step);
            let target = &mut memories[*memory];
            let len = target.len().min(values.len());
            if !visit(&mut target[..len], &values[..len]) {
                return false;
            }
        }
        true
    }

    /// Returns a workspace holding the forward sweep at `inputs`: a pooled one whose last forward
    /// sweep ran on equal inputs (the rates the step just computed at this state), or a new sweep.
    fn forward_workspace(&self, inputs: &Inputs) -> Workspace<T> {
        let batch = Self::batch(inputs.states);
        let tag = (inputs.step, inputs.time.to_bits(), batch);
        let reused = {
            let mut pool = self.workspaces.lock().unwrap_or_else(|e| e.into_inner());
            // The states come first, so a workspace of another batch or step is told apart at
            // its first entries. Equal states compare every parameter entry and sample too,
            // unless the workspace's sweep belongs to the caller's pass, which loaded the same.
            let position = pool.iter_mut().position(|workspace| {
                let same_pass = inputs.pass.is_some() && workspace.pass == inputs.pass;
                let kinds = if same_pass {
                    InputKinds::States
                } else {
                    InputKinds::All
                };
                workspace.forward_of == Some(tag)
                    && self.visit_inputs(
                        &mut workspace.memories,
                        inputs,
                        batch,
                        kinds,
                        &mut equal_entries,
                    )
            });
            position.map(|p| pool.swap_remove(p))
        };
        if let Some(workspace) = reused {
            return workspace;
        }
        let mut workspace = self.take_workspace(batch);
        self.visit_inputs(
            &mut workspace.memories,
            inputs,
            batch,
            InputKinds::All,
            &mut |targets: &mut [T], values: &[f64]| {
                convert_entries(targets, values);
                true
            },
        );
        self.run(
            &mut workspace,
            &self.forward,
            batch,
            inputs.params.products,
            false,
        );
        workspace.forward_of = Some(tag);
        workspace.pass = inputs.pass;
        workspace
    }

    /// Returns the number of tasks a batch of `batch` samples splits its work into: the threads
    /// of the pool when the batch runs as one chunk, 1 otherwise.
    fn parts(&self, batch: usize) -> usize {
        let threads = rayon::current_num_threads();
        if threads > 1 && self.chunks(batch, threads) == 1 {
            threads
        } else {
            1
        }
    }

    /// Runs `steps` on the first `batch` samples: each run of kernels and sums sample by sample,
    /// each batched operation once. The kernels of the forward sweep run as tasks on the pool when
    /// the batch runs as one chunk.
    fn run(
        &self,
        workspace: &mut Workspace<T>,
        steps: &[Step],
        batch: usize,
        products: ProductPrecision,
        params_only: bool,
    ) {
        let mut start = 0;
        let mut pointers: Vec<*mut u8> = vec![std::ptr::null_mut(); self.slot_memory.len()];
        while start < steps.len() {
            if let Step::Batched(index) = steps[start] {
                self.run_batched(
                    &mut workspace.memories,
                    &mut workspace.unwritten,
                    &self.batched[index],
                    batch,
                    products,
                    params_only,
                );
                start += 1;
                continue;
            }
            let end = steps[start..]
                .iter()
                .position(|s| matches!(s, Step::Batched(_)))
                .map_or(steps.len(), |p| start + p);
            let forward = std::ptr::eq(steps, self.forward.as_slice());
            if forward && self.samples_independent && self.parts(batch) > 1 {
                self.run_samples_in_parallel(workspace, &steps[start..end], batch);
                start = end;
                continue;
            }
            for sample in 0..batch {
                for (pointer, memory) in pointers.iter_mut().zip(&self.slot_memory) {
                    let at = self.sample_range(*memory, sample).start;
                    *pointer = workspace.memories[*memory][at..].as_mut_ptr().cast::<u8>();
                }
                for step in &steps[start..end] {
                    match *step {
                        Step::Kernel(index) => {
                            let (function, first, last) = self.kernels[index];
                            // SAFETY: the pointers cover every buffer slot of the kernels at
                            // this sample's entries, each memory has the length its slots'
                            // layouts need per sample, and the regions stay inside them.
                            unsafe { function(pointers.as_ptr(), 0.0, first, last) };
                        }
                        Step::SumInto { source, target } => {
                            let range = self.sample_range(source, sample);
                            let total = workspace.memories[source][range]
                                .iter()
                                .fold(T::zero(), |a, b| a + *b);
                            let at = self.sample_range(target, sample).start;
                            workspace.memories[target][at] += total;
                        }
                        Step::Batched(_) => unreachable!("runs end before a batched operation"),
                    }
                }
            }
            start = end;
        }
    }

    /// Runs a run of forward kernels on the first `batch` samples as tasks on the pool, one
    /// sample per task.
    fn run_samples_in_parallel(&self, workspace: &mut Workspace<T>, steps: &[Step], batch: usize) {
        use rayon::prelude::*;
        // Addresses, not pointers, cross into the tasks; each task derives its sample's pointers.
        let bases: Vec<usize> = workspace
            .memories
            .iter_mut()
            .map(|memory| memory.as_mut_ptr() as usize)
            .collect();
        (0..batch).into_par_iter().for_each_init(
            || vec![std::ptr::null_mut::<u8>(); self.slot_memory.len()],
            |pointers, sample| {
                for (pointer, memory) in pointers.iter_mut().zip(&self.slot_memory) {
                    let at = self.sample_range(*memory, sample).start;
                    *pointer = (bases[*memory] as *mut T).wrapping_add(at).cast::<u8>();
                }
                for step in steps {
                    if let Step::Kernel(index) = *step {
                        let (function, first, last) = self.kernels[index];
                        // SAFETY: as in `run`; in addition every forward kernel writes only this
                        // sample's entries of memories with a copy per sample
                        // (`samples_independent`), and the shared memories it reads are not
                        // written during the sweep, so the tasks touch disjoint entries.
                        unsafe { function(pointers.as_ptr(), 0.0, first, last) };
                    }
                }
            },
        );
    }

    /// Runs a batched operation on the first `batch` samples, with dense products in the
    /// precision `products`. A weight gradient marked in `unwritten` is overwritten, not added to.
    #[allow(clippy::too_many_arguments)]
    fn run_batched(
        &self,
        memories: &mut [Vec<T>],
        unwritten: &mut [bool],
        op: &BatchedOp,
        batch: usize,
        products: ProductPrecision,
        params_only: bool,
    ) {
        let (zero, one) = (T::zero(), T::of(1.0));
        let parts = self.parts(batch);
        match op {
            BatchedOp::Dense {
                weights,
                rows,
                columns,
                input,
                output,
            } => {
                let (rows, columns) = (*rows, *columns);
                let mut out = std::mem::take(&mut memories[*output]);
                let input_stride = self.row_stride(*input);
                // out[b, r] = Σ_c input[b, c] · weights[r, c]
                T::product(
                    products,
                    parts,
                    batch,
                    columns,
                    rows,
                    &memories[*input],
                    (input_stride, 1),
                    &memories[*weights],
                    (1, columns as isize),
                    zero,
                    &mut out,
                    (self.row_stride(*output), 1),
                );
                memories[*output] = out;
            }
            BatchedOp::DenseAdjoint {
                weights,
                weights_adjoint,
                rows,
                columns,
                input,
                adjoint,
                input_adjoint,
                input_reaches_params,
            } => {
                let (rows, columns) = (*rows, *columns);
                let adjoint_stride = self.row_stride(*adjoint);
                let mut gradient = std::mem::take(&mut memories[*weights_adjoint]);
                let beta = if std::mem::take(&mut unwritten[*weights_adjoint]) {
                    zero
                } else {
                    one
                };
                // gradient[r, c] = Σ_b adjoint[b, r] · input[b, c] + beta · gradient[r, c]
                T::product(
                    products,
                    parts,
                    rows,
                    batch,
                    columns,
                    &memories[*adjoint],
                    (1, adjoint_stride),
                    &memories[*input],
                    (self.row_stride(*input), 1),
                    beta,
                    &mut gradient,
                    (columns as isize, 1),
                );
                memories[*weights_adjoint] = gradient;
                let input_adjoint = input_adjoint
                    .as_ref()
                    .filter(|_| !params_only || *input_reaches_params);
                if let Some(target) = input_adjoint {
                    let mut out = std::mem::take(&mut memories[*target]);
                    // out[b, c] += Σ_r adjoint[b, r] · weights[r, c]; a shared target sums
                    // over the samples one GEMM at a time, because GEMM outputs cannot alias.
                    let calls = if self.shared[*target] {
                        (0..batch).map(|b| (b, 1)).collect()
                    } else {
                        vec![(0, batch)]
                    };
                    for (first, count) in calls {
                        let at = self.sample_range(*adjoint, first).start;
                        T::product(
                            products,
                            parts,
                            count,
                            rows,
                            columns,
                            &memories[*adjoint][at..],
                            (adjoint_stride, 1),
                            &memories[*weights],
                            (columns as isize, 1),
                            one,
                            &mut out,
                            (self.row_stride(*target), 1),
                        );
                    }
                    memories[*target] = out;
                }
            }
            BatchedOp::Convolution {
                shape,
                kernel,
                input,
                output,
                columns,
            } => {
                let (width, points) = (shape.columns(), shape.points);
                let mut out = std::mem::take(&mut memories[*output]);
                let mut unrolled = std::mem::take(&mut memories[*columns]);
                for sample in 0..batch {
                    shape.gather(
                        &memories[*input][self.sample_range(*input, sample)],
                        &mut unrolled,
                    );
                    // out[o, p] = Σ_j kernel[o, j] · unrolled[p, j]
                    T::gemm(
                        shape.out_channels,
                        width,
                        points,
                        &memories[*kernel],
                        (width as isize, 1),
                        &unrolled,
                        (1, width as isize),
                        zero,
                        &mut out[self.sample_range(*output, sample)],
                        (points as isize, 1),
                    );
                }
                memories[*output] = out;
                memories[*columns] = unrolled;
            }
            BatchedOp::ConvolutionAdjoint {
                shape,
                kernel,
                kernel_adjoint,
                input,
                adjoint,
                input_adjoint,
                columns,
            } => {
                let (width, points) = (shape.columns(), shape.points);
                let mut gradient = std::mem::take(&mut memories[*kernel_adjoint]);
                let mut unrolled = std::mem::take(&mut memories[*columns]);
                let mut target = input_adjoint.map(|t| (t, std::mem::take(&mut memories[t])));
                for sample in 0..batch {
                    shape.gather(
                        &memories[*input][self.sample_range(*input, sample)],
                        &mut unrolled,
                    );
                    let g = &memories[*adjoint][self.sample_range(*adjoint, sample)];
                    let beta = if std::mem::take(&mut unwritten[*kernel_adjoint]) {
                        zero
                    } else {
                        one
                    };
                    // gradient[o, j] = Σ_p g[o, p] · unrolled[p, j] + beta · gradient[o, j]
                    T::gemm(
                        shape.out_channels,
                        points,
                        width,
                        g,
                        (points as isize, 1),
                        &unrolled,
                        (width as isize, 1),
                        beta,
                        &mut gradient,
                        (width as isize, 1),
                    );
                    if let Some((memory, values)) = target.as_mut() {
                        // The adjoint of the unrolled input, unrolled[p, j] = Σ_o g[o, p] ·
                        // kernel[o, j], overwrites the gathered input it no longer needs.
                        T::gemm(
                            points,
                            shape.out_channels,
                            width,
                            g,
                            (1, points as isize),
                            &memories[*kernel],
                            (width as isize, 1),
                            zero,
                            &mut unrolled,
                            (width as isize, 1),
                        );
                        shape.scatter(&unrolled, &mut values[self.sample_range(*memory, sample)]);
                    }
                }
                memories[*kernel_adjoint] = gradient;
                memories[*columns] = unrolled;
                if let Some((memory, values)) = target {
                    memories[memory] = values;
                }
            }
            BatchedOp::Copy { .. }
            | BatchedOp::Softmax { .. }
            | BatchedOp::SoftmaxAdjoint { .. }
            | BatchedOp::Reduce { .. }
            | BatchedOp::ReduceAdjoint { .. }
            | BatchedOp::DivGrad { .. }
            | BatchedOp::Upwind { .. } => self.run_per_sample(memories, op, batch),
            BatchedOp::Sparse {
                operator,
                channels,
                input,
                output,
                accumulate,
            } => {
                let (rows, columns) = (operator.rows(), operator.columns());
                let constants = operator.constants();
                let mut out = std::mem::take(&mut memories[*output]);
                for sample in 0..batch {
                    let source = &memories[*input][self.sample_range(*input, sample)];
                    let target = &mut out[self.sample_range(*output, sample)];
                    for c in 0..*channels {
                        let source = &source[c * columns..(c + 1) * columns];
                        let target = &mut target[c * rows..(c + 1) * rows];
                        for (r, t) in target.iter_mut().enumerate() {
                            let mut total = if *accumulate { *t } else { T::of(constants[r]) };
                            for (column, weight) in operator.row_entries(r) {
                                total += T::of(weight) * source[column];
                            }
                            *t = total;
                        }
                    }
                }
                memories[*output] = out;
            }
        }
    }

    /// Runs the batched operations of one sample at a time that are not GEMMs: the parts of
    /// stacked vectors, softmax, reductions, `div_grad` and `upwind`, with their adjoints.
    fn run_per_sample(&self, memories: &mut [Vec<T>], op: &BatchedOp, batch: usize) {
        // The memories an operation writes, taken out of `memories` while it reads the others.
        let written: Vec<usize> = match op {
            BatchedOp::Copy { output, .. }
            | BatchedOp::Softmax { output, .. }
            | BatchedOp::Reduce { output, .. } => vec![*output],
            BatchedOp::SoftmaxAdjoint { input_adjoint, .. }
            | BatchedOp::ReduceAdjoint { input_adjoint, .. } => vec![*input_adjoint],
            BatchedOp::DivGrad {
                output, adjoint, ..
            }
            | BatchedOp::Upwind {
                output, adjoint, ..
            } => match adjoint {
                None => vec![*output],
                Some(targets) => targets.first.into_iter().chain(targets.second).collect(),
            },
            _ => unreachable!("GEMMs and sparse products run in `run_batched`"),
        };
        let mut written_values: Vec<Vec<T>> = written
            .iter()
            .map(|m| std::mem::take(&mut memories[*m]))
            .collect();
        for sample in 0..batch {
            let read = |memory: usize| &memories[memory][self.sample_range(memory, sample)];
            let mut outputs: Vec<&mut [T]> = written_values
                .iter_mut()
                .zip(&written)
                .map(|(values, memory)| &mut values[self.sample_range(*memory, sample)])
                .collect();
            match op {
                BatchedOp::Copy {
                    input,
                    input_start,
                    output_start,
                    len,
                    accumulate,
                    ..
                } => {
                    let source = &read(*input)[*input_start..*input_start + len];
                    let target = &mut outputs[0][*output_start..*output_start + len];
                    if *accumulate {
                        for (t, v) in target.iter_mut().zip(source) {
                            *t += *v;
                        }
                    } else {
                        target.copy_from_slice(source);
                    }
                }
                BatchedOp::Softmax {
                    input,
                    groups,
                    stride,
                    ..
                } => {
                    outputs[0].copy_from_slice(read(*input));
                    softmax(outputs[0], *groups, *stride);
                }
                BatchedOp::SoftmaxAdjoint {
                    value,
                    adjoint,
                    groups,
                    stride,
                    ..
                } => softmax_adjoint(read(*value), read(*adjoint), outputs[0], *groups, *stride),
                BatchedOp::Reduce {
                    op, weights, input, ..
                } => outputs[0][0] = reduce(*op, read(*input), weights),
                BatchedOp::ReduceAdjoint {
                    op,
                    weights,
                    input,
                    value,
                    adjoint,
                    ..
                } => reduce_adjoint(
                    *op,
                    weights,
                    read(*input),
                    read(*value)[0],
                    read(*adjoint)[0],
                    outputs[0],
                ),
                BatchedOp::DivGrad {
                    coefficient,
                    operand,
                    channels,
                    geometry,
                    axes,
                    adjoint,
                    ..
                } => {
                    let (c, u) = (read(*coefficient), read(*operand));
                    match adjoint {
                        None => div_grad(c, u, *channels, geometry, axes, outputs[0]),
                        Some(targets) => {
                            let mut outputs = outputs.into_iter();
                            let dc = targets.first.and_then(|_| outputs.next());
                            let du = targets.second.and_then(|_| outputs.next());
                            let g = read(targets.adjoint);
                            div_grad_adjoint(c, u, g, *channels, geometry, axes, dc, du);
                        }
                    }
                }
                BatchedOp::Upwind {
                    velocity,
                    operand,
                    channels,
                    geometry,
                    backward,
                    forward,
                    adjoint,
                    ..
                } => {
                    let (v, u) = (read(*velocity), read(*operand));
                    let taps = (backward.as_slice(), forward.as_slice());
                    match adjoint {
                        None => upwind(v, u, *channels, geometry, taps, outputs[0]),
                        Some(targets) => {
                            let mut outputs = outputs.into_iter();
                            let dv = targets.first.and_then(|_| outputs.next());
                            let du = targets.second.and_then(|_| outputs.next());
                            let g = read(targets.adjoint);
                            upwind_adjoint(v, u, g, *channels, geometry, taps, dv, du);
                        }
                    }
                }
                _ => unreachable!("GEMMs and sparse products run in `run_batched`"),
            }
        }
        for (memory, values) in written.into_iter().zip(written_values) {
            memories[memory] = values;
        }
    }

    /// Returns the distance between the entries of two samples in `memory`: zero for a shared one.
    fn row_stride(&self, memory: usize) -> isize {
        if self.shared[memory] {
            0
        } else {
            self.memory_lens[memory] as isize
        }
    }

    fn batch(states: &[Array2<f64>]) -> usize {
        states.iter().map(|s| s.nrows()).max().unwrap_or(1)
    }
}

impl<T: JitFloat> CompiledRates for CompiledTape<T> {
    fn rates(
        &self,
        states: &[Array2<f64>],
        samples: ArrayView2<f64>,
        labels: ArrayView2<f64>,
        pass: Option<Pass>,
        params: &ParamValues,
        step: usize,
        time: f64,
    ) -> Vec<Array2<f64>> {
        let batch = Self::batch(states);
        let inputs = Inputs {
            states,
            samples,
            labels,
            pass,
            params,
            step,
            time,
        };
        let workspace = self.forward_workspace(&inputs);
        let mut rates: Vec<Array2<f64>> = self
            .rates
            .iter()
            .map(|(len, _)| Array2::zeros((batch, *len)))
            .collect();
        for (rate, (len, parts)) in rates.iter_mut().zip(&self.rates) {
            let rows = rate
                .as_slice_mut()
                .expect("a new array is contiguous")
                .chunks_mut((*len).max(1));
            for (row, target) in rows.enumerate() {
                for part in parts {
                    let value = &workspace.memories[part.value][self.sample_range(part.value, row)];
                    let target = &mut target[part.start..part.start + part.entries];
                    if value.len() == target.len() {
                        for (t, v) in target.iter_mut().zip(value) {
                            *t += v.to_f64_lossy();
                        }
                    } else {
                        for (i, t) in target.iter_mut().enumerate() {
                            *t += value[i % value.len()].to_f64_lossy();
                        }
                    }
                }
            }
        }
        self.return_workspace(workspace);
        rates
    }

    /// One chunk for a batch whose work is almost all dense products large enough to split
    /// across the threads (blocks of each product then run as parallel tasks, and each thread's
    /// weight gradient and copy of the weights are not needed); `threads` chunks otherwise.
    fn chunks(&self, samples: usize, threads: usize) -> usize {
        let dominant = !self.convolutions && self.dense_work >= 16 * self.other_work.max(1);
        let large = self.dense_work.saturating_mul(samples) >= threads.saturating_mul(1 << 22);
        if threads > 1 && dominant && large {
            1
        } else {
            threads
        }
    }

    fn rates_backward(
        &self,
        states: &[Array2<f64>],
        samples: ArrayView2<f64>,
        labels: ArrayView2<f64>,
        pass: Option<Pass>,
        params: &ParamValues,
        step: usize,
        time: f64,
        d_rates: &[Array2<f64>],
        mut state_adjoints: Option<&mut [Array2<f64>]>,
        gradients: &mut ParamValues,
    ) {
        let batch = Self::batch(states);
        let inputs = Inputs {
            states,
            samples,
            labels,
            pass,
            params,
            step,
            time,
        };
        let mut workspace = self.forward_workspace(&inputs);
        // The adjoints of `f64` parameters whose gradient covers all their entries accumulate
        // straight into `gradients`: one adjoint memory per parameter (the last listed, which is
        // a dense product's or convolution's when there is one) is exchanged with the gradient
        // buffer for the sweep, which saves clearing and adding it; adjoint memories only
        // accumulate.
        let mut exchanged: Vec<(ParamId, usize)> = Vec::new();
        for (id, _, adjoint) in self.params.iter().rev() {
            let Some(adjoint) = *adjoint else { continue };
            if exchanged.iter().any(|(done, _)| done == id) {
                continue;
            }
            let gradient = &mut gradients.values[id.0];
            let memory = &mut workspace.memories[adjoint];
            if gradients.step_sizes[id.0] == gradient.len() && memory.len() == gradient.len() {
                if let Some(memory) = T::as_f64_vec(memory) {
                    std::mem::swap(memory, gradient);
                    exchanged.push((*id, adjoint));
                }
            }
        }
        for memory in &self.adjoints {
            if exchanged.iter().any(|(_, done)| done == memory) {
                continue;
            }
            if self.product_adjoints.contains(memory) {
                workspace.unwritten[*memory] = true;
            } else {
                clear_entries(&mut workspace.memories[*memory]);
            }
        }
        for (d_rate, (_, parts)) in d_rates.iter().zip(&self.rates) {
            for row in 0..batch {
                let seed = d_rate.row(row.min(d_rate.nrows() - 1));
                let seed: Cow<[f64]> = match seed.as_slice() {
                    Some(slice) => Cow::Borrowed(slice),
                    None => Cow::Owned(seed.to_vec()),
                };
                for part in parts {
                    let Some(adjoint) = part.adjoint else {
                        continue;
                    };
                    let range = self.sample_range(adjoint, row);
                    let target = &mut workspace.memories[adjoint][range];
                    let seed = &seed[part.start..part.start + part.entries];
                    if target.len() == seed.len() {
                        for (t, s) in target.iter_mut().zip(seed) {
                            *t += T::of(*s);
                        }
                    } else {
                        let len = target.len();
                        for (i, s) in seed.iter().enumerate() {
                            target[i % len] += T::of(*s);
                        }
                    }
                }
            }
        }
        self.run(
            &mut workspace,
            &self.reverse,
            batch,
            params.products,
            state_adjoints.is_none(),
        );
        for (index, _, adjoint) in &self.states {
            let (Some(adjoint), Some(state_adjoints)) = (adjoint, state_adjoints.as_deref_mut())
            else {
                continue;
            };
            let target = &mut state_adjoints[*index];
            let rows = target.nrows();
            for row in 0..batch {
                let source = &workspace.memories[*adjoint][self.sample_range(*adjoint, row)];
                let mut target = target.row_mut(row.min(rows - 1));
                for (t, a) in target.iter_mut().zip(source) {
                    *t += a.to_f64_lossy();
                }
            }
        }
        for (id, adjoint) in &exchanged {
            if let Some(memory) = T::as_f64_vec(&mut workspace.memories[*adjoint]) {
                std::mem::swap(memory, &mut gradients.values[id.0]);
            }
        }
        for (id, _, adjoint) in &self.params {
            let Some(adjoint) = adjoint else { continue };
            if exchanged.iter().any(|(_, done)| done == adjoint)
                || std::mem::take(&mut workspace.unwritten[*adjoint])
            {
                continue;
            }
            let range = gradients.step_range(*id, step);
            add_entries(
                &mut gradients.values[id.0][range],
                &workspace.memories[*adjoint],
            );
        }
        self.return_workspace(workspace);
    }
}
