//! Lowering of a train task into [`Tape`]s: the right-hand sides of its equations, the initial
//! values, and the head (readouts and loss) evaluated on the final state.
//!
//! Shapes follow the language's decisions for networks:
//! - `W @ u` flattens `u` in array order (channels first, then axes) into a vector of
//!   `points × channels` entries;
//! - a vector of `m` entries combines with a one-axis field of `m` points;
//! - `initial u = input` copies a sample with the field's point count into every channel;
//! - `sequence` gives row `n` of the sample at step `n`.

use crate::train::linear::{resample_operator, tap_operator, BoundedGrid};
use crate::train::spectral::SpectralStep;
use crate::train::tape::{unary, NodeIndex, Op, Shrink, Tape};
use npdec_ir::fornberg::centered_weights;
use npdec_symbolic::{
    AxisId, AxisKind, BinaryOp, CompareOp, DataId, Expr, FieldId, Function, GradientMethod, Loss,
    Model, ParamId, ReduceOp, Resample, Scheme, TrainTask,
};
use std::collections::HashMap;
use std::sync::Arc;

/// One evolving (or constant) field of the time stepping.
#[derive(Clone, Debug)]
pub struct StateSlot {
    pub field: FieldId,
    pub channels: usize,
    pub points: usize,
    /// The right-hand side per channel (`None` for the whole field), empty for a field without an
    /// equation, which keeps its initial value.
    pub rhs: Vec<(Option<usize>, NodeIndex)>,
    pub initial: NodeIndex,
    /// Flat indices (within one channel) and values of the Dirichlet nodes.
    pub dirichlet: Vec<(usize, f64)>,
    /// For a complex field under split-step Fourier: the rate of its pointwise part and its
    /// Fourier half step. The state then holds the real parts, then the imaginary parts
    /// (`channels` is 2).
    pub split: Option<SplitSlot>,
}

/// A complex field advanced by split-step Fourier: `∂u/∂t = c ∇²u + a·u`, with the rate
/// `a = re + i·im` lowered into the right-hand-side tape as two real nodes.
#[derive(Clone, Debug)]
pub struct SplitSlot {
    /// The coefficient `c = (re, im)` of `c ∇²u`.
    pub laplace: (f64, f64),
    pub rate_re: NodeIndex,
    pub rate_im: NodeIndex,
    /// `exp(Δt/2 · c ∇²)`.
    pub half_step: Arc<SpectralStep>,
}

impl StateSlot {
    pub fn len(&self) -> usize {
        self.channels * self.points
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The schemes training differentiates through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExplicitScheme {
    Euler,
    Rk4,
    /// Strang splitting of complex fields: half a step of `c ∇²u` in Fourier space, the exact
    /// factor `exp(Δt·a)` with `a` at the half step, another half step.
    SplitStep,
}

/// The loss the head computes from the final state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// Softmax cross-entropy of the scores against the class labels.
    CrossEntropy { scores: NodeIndex },
    /// Mean squared error between a prediction and a target.
    Mse {
        prediction: NodeIndex,
        target: NodeIndex,
    },
}

/// A train task lowered to tapes.
#[derive(Clone, Debug)]
pub struct LoweredTask {
    pub states: Vec<StateSlot>,
    pub rhs: Tape,
    pub initial: Tape,
    pub head_tape: Tape,
    pub head: Head,
    pub scheme: ExplicitScheme,
    pub dt: f64,
    pub steps: usize,
    pub data: DataId,
    /// Entries of one step of each parameter (all entries unless per step).
    pub param_step_sizes: Vec<usize>,
    pub gradient: GradientMethod,
}

/// The shape of the samples the tapes read.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleShape {
    pub features: usize,
    /// The shape of one sample, e.g. `[28, 28]`.
    pub dims: Vec<usize>,
    /// Entries of one label row for regression targets (1 for classes).
    pub label_width: usize,
}

/// Lowers a train task; errors name what training does not support.
pub fn lower_train_task(
    model: &Model,
    task: &TrainTask,
    sample: &SampleShape,
) -> Result<LoweredTask, String> {
    let discretization = &task.discretization;
    let scheme = match discretization.scheme {
        Scheme::Euler => ExplicitScheme::Euler,
        Scheme::Rk4 => ExplicitScheme::Rk4,
        Scheme::SplitStep => ExplicitScheme::SplitStep,
        ref other => {
            return Err(format!(
                "training differentiates through `euler`, `rk4` and `split_step` only, found `{}`",
                other.name()
            ))
        }
    };
    if discretization.steps == 0 {
        return Err("a train task needs at least one time step".into());
    }

    // The states: every field with an equation in the task, then every field those read.
    let mut fields: Vec<FieldId> = Vec::new();
    for id in &task.equations {
        let equation = model.equation(*id);
        if equation.time_order != 1 {
            return Err(format!(
                "equation `{}` is of order {} in time: training supports `dt(u) = …` only",
                equation.name, equation.time_order
            ));
        }
        if !fields.contains(&equation.field) {
            fields.push(equation.field);
        }
    }
    for id in &task.equations {
        model.equation(*id).rhs().walk(&mut |e| {
            if let Expr::Field(f) | Expr::Channel(f, _) = e {
                if !fields.contains(f) {
                    fields.push(*f);
                }
            }
        });
    }
    for field in &fields {
        let declaration = model.field(*field);
        if scheme == ExplicitScheme::SplitStep {
            if !declaration.complex || declaration.channels != 1 {
                return Err(format!(
                    "field `{}` is advanced by `split_step`, which trains complex fields of one channel only",
                    declaration.name
                ));
            }
            if let Some(axis) = declaration.axes.iter().find(|a| !model.axis(**a).periodic) {
                return Err(format!(
                    "`split_step` needs periodic axes, and `{}` is not periodic",
                    model.axis(*axis).name
                ));
            }
        } else if declaration.complex {
            return Err(format!(
                "field `{}` is complex: training supports complex fields with `split_step` only",
                declaration.name
            ));
        }
    }

    let mut lowering = Lowering {
        model,
        sample,
        space_order: discretization.space_order as usize,
        fields: fields.clone(),
        tape: Tape::default(),
        state_nodes: HashMap::new(),
        merged: HashMap::new(),
    };

    // Right-hand sides.
    let mut rhs_per_field: Vec<Vec<(Option<usize>, NodeIndex)>> = vec![Vec::new(); fields.len()];
    let mut splits: Vec<Option<SplitSlot>> = vec![None; fields.len()];
    for id in &task.equations {
        if scheme != ExplicitScheme::SplitStep {
            break;
        }
        let equation = model.equation(*id);
        let slot = fields
            .iter()
            .position(|f| *f == equation.field)
            .expect("collected above");
        let (rate, laplace) = npdec_ir::discretize::split_spectral(equation).map_err(|term| {
            format!(
                "equation `{}`: `split_step` needs terms `c * laplace(u)` or `a * u`, found `{}`",
                equation.name,
                model.display_expr(&term)
            )
        })?;
        if rate.any(|e| matches!(e, Expr::Field(_) | Expr::Channel(..))) {
            return Err(format!(
                "equation `{}`: training through `split_step` needs a rate `a` in `a * u` that reads no field",
                equation.name
            ));
        }
        let (re, im) = complex_parts(model, &rate).ok_or_else(|| {
            format!(
                "equation `{}`: the rate `a` in `a * u` must be a sum of complex constants times real expressions",
                equation.name
            )
        })?;
        let target = Target::field(model, equation.field, 1);
        let points = model.field_points(equation.field);
        let rate_re = lowering.lower(&re, &target)?;
        let rate_re = lowering.widen(rate_re, points, &equation.name)?;
        let rate_im = lowering.lower(&im, &target)?;
        let rate_im = lowering.widen(rate_im, points, &equation.name)?;
        let axes = &model.field(equation.field).axes;
        let extents: Vec<usize> = axes.iter().map(|a| model.axis(*a).points).collect();
        let lengths: Vec<f64> = axes
            .iter()
            .map(|a| {
                let axis = model.axis(*a);
                match axis.kind {
                    AxisKind::Interval { min, max } => max - min,
                    AxisKind::Index => axis.points as f64,
                }
            })
            .collect();
        let half_step = SpectralStep::new(&extents, &lengths, laplace, discretization.dt / 2.0);
        splits[slot] = Some(SplitSlot {
            laplace,
            rate_re,
            rate_im,
            half_step: Arc::new(half_step),
        });
    }
    for id in &task.equations {
        if scheme == ExplicitScheme::SplitStep {
            break;
        }
        let equation = model.equation(*id);
        let slot = fields
            .iter()
            .position(|f| *f == equation.field)
            .expect("collected above");
        let field = model.field(equation.field);
        let points = model.field_points(equation.field);
        let (channels, expected) = match equation.channel {
            Some(_) => (1, points),
            None => (field.channels, field.channels * points),
        };
        let target = Target::field(model, equation.field, channels);
        let node = lowering.lower(&equation.rhs(), &target)?;
        let node = lowering.widen(node, expected, &equation.name)?;
        rhs_per_field[slot].push((equation.channel, node));
    }
    let rhs = lowering.take_tape();

    // Initial values, which may read the sample and parameters.
    let mut initial_nodes = Vec::new();
    for field_id in &fields {
        let field = model.field(*field_id);
        let Some(initial) = model.initial(*field_id, 0) else {
            return Err(format!("field `{}` has no initial value", field.name));
        };
        let target = Target::field(model, *field_id, field.channels);
        let points = model.field_points(*field_id);
        let node = if field.complex {
            let (re, im) = complex_parts(model, &initial.value).ok_or_else(|| {
                format!(
                    "the initial value of `{}` must be a sum of complex constants times real expressions",
                    field.name
                )
            })?;
            let re = lowering.lower(&re, &target)?;
            let re = lowering.widen(re, points, &field.name)?;
            let im = lowering.lower(&im, &target)?;
            let im = lowering.widen(im, points, &field.name)?;
            lowering.push(Op::Stack(vec![re, im]), 2 * points)
        } else {
            let node = lowering.lower(&initial.value, &target)?;
            lowering.widen(node, field.channels * points, &field.name)?
        };
        initial_nodes.push(node);
    }
    let initial = lowering.take_tape();

    // The head on the final state.
    let head = match &task.loss {
        Loss::CrossEntropy { scores, .. } => {
            let scores = lowering.lower(scores, &Target::none())?;
            Head::CrossEntropy { scores }
        }
        Loss::Mse { prediction, target } => {
            let prediction = lowering.lower(prediction, &Target::none())?;
            let target = lowering.lower(target, &Target::none())?;
            Head::Mse { prediction, target }
        }
    };
    let head_tape = lowering.take_tape();

    let mut states = Vec::new();
    for (slot, field_id) in fields.iter().enumerate() {
        let field = model.field(*field_id);
        let grid = BoundedGrid::of_field(model, *field_id, &vec![0; field.axes.len()], 2)?;
        states.push(StateSlot {
            field: *field_id,
            channels: if field.complex { 2 } else { field.channels },
            points: model.field_points(*field_id),
            rhs: rhs_per_field[slot].clone(),
            initial: initial_nodes[slot],
            dirichlet: grid.dirichlet_nodes(),
            split: splits[slot].clone(),
        });
    }
    let param_step_sizes = model
        .params
        .iter()
        .map(|p| param_entries(model, p))
        .collect();
    Ok(LoweredTask {
        states,
        rhs,
        initial,
        head_tape,
        head,
        scheme,
        dt: discretization.dt,
        steps: discretization.steps,
        data: task.data,
        param_step_sizes,
        gradient: task.gradient,
    })
}

/// Returns the entries of one step of a parameter: points of its axes times its dimensions.
pub fn param_entries(model: &Model, param: &npdec_symbolic::Param) -> usize {
    let points: usize = param.axes.iter().map(|a| model.axis(*a).points).product();
    points * param.dims.iter().product::<usize>()
}

/// The grid an expression is lowered onto: a field's grid with some channels, or none (vectors
/// and numbers of a readout). As in the IR, the operands of a spatial operator are lowered onto
/// the grid widened by `halo[axis]` ghost layers, so a nonlinear operand is evaluated on the padded
/// fields rather than padded itself.
#[derive(Clone)]
struct Target {
    field: Option<FieldId>,
    channels: usize,
    halo: Vec<usize>,
}

impl Target {
    fn none() -> Target {
        Target {
            field: None,
            channels: 1,
            halo: Vec::new(),
        }
    }

    fn field(model: &Model, field: FieldId, channels: usize) -> Target {
        Target {
            field: Some(field),
            channels,
            halo: vec![0; model.field(field).axes.len()],
        }
    }

    fn padded(&self) -> bool {
        self.halo.iter().any(|h| *h > 0)
    }

    /// The same grid widened by `extra[axis]` more ghost layers.
    fn widened(&self, extra: &[usize]) -> Target {
        Target {
            halo: self.halo.iter().zip(extra).map(|(h, e)| h + e).collect(),
            ..self.clone()
        }
    }

    /// The same grid without ghost layers.
    fn unpadded(&self) -> Target {
        Target {
            halo: vec![0; self.halo.len()],
            ..self.clone()
        }
    }

    /// Points per channel along each axis, ghost layers included.
    fn extents(&self, model: &Model) -> Vec<usize> {
        match self.field {
            Some(field) => model
                .field(field)
                .axes
                .iter()
                .zip(&self.halo)
                .map(|(a, h)| model.axis(*a).points + 2 * h)
                .collect(),
            None => Vec::new(),
        }
    }

    /// Points per channel, ghost layers included (1 without a grid).
    fn points(&self, model: &Model) -> usize {
        self.extents(model).iter().product()
    }
}

struct Lowering<'a> {
    model: &'a Model,
    sample: &'a SampleShape,
    space_order: usize,
    fields: Vec<FieldId>,
    tape: Tape,
    /// State nodes and their padded copies, by state slot and halo.
    state_nodes: HashMap<(usize, Vec<usize>), NodeIndex>,
    /// The nodes by operation and operands, so that an expression written twice (often by
    /// inlining a function such as `swish(x) = x * sigmoid(x)`) is computed once.
    merged: HashMap<(NodeKey, usize), NodeIndex>,
}

/// The identity of a tape node for merging: its operation, settings and operand nodes. Shared
/// operators and tap tables compare by address, numbers by their bits. Leaves are merged too, so
/// that the nodes reading them can be.
#[derive(PartialEq, Eq, Hash)]
enum NodeKey {
    Constant(Vec<u64>),
    Time,
    State(usize),
    Param(ParamId),
    Input(DataId, usize),
    Sequence(DataId, usize),
    Label(DataId),
    Neg(NodeIndex),
    Binary(BinaryOp, NodeIndex, NodeIndex),
    Compare(CompareOp, NodeIndex, NodeIndex),
    Call(Function, Vec<NodeIndex>),
    Channel(NodeIndex, usize, usize),
    Softmax(NodeIndex, usize, usize),
    MatMul(ParamId, usize, usize, NodeIndex),
    Linear(usize, usize, NodeIndex),
    Resample(usize, usize, NodeIndex),
    Convolution(ParamId, usize, usize, usize, NodeIndex),
    Stack(Vec<NodeIndex>),
    Reduce(ReduceOp, usize, NodeIndex),
    DivGrad(NodeIndex, NodeIndex, usize, usize, Vec<(usize, u64)>),
    Upwind(NodeIndex, NodeIndex, usize, usize, Vec<(isize, u64)>),
}

impl NodeKey {
    fn of(op: &Op) -> NodeKey {
        let address = |shared: *const ()| shared as usize;
        match op {
            Op::Neg(a) => NodeKey::Neg(*a),
            Op::Binary(op, a, b) => NodeKey::Binary(*op, *a, *b),
            Op::Compare(op, a, b) => NodeKey::Compare(*op, *a, *b),
            Op::Call(function, args) => NodeKey::Call(*function, args.clone()),
            Op::Channel {
                operand,
                channel,
                points,
            } => NodeKey::Channel(*operand, *channel, *points),
            Op::Softmax {
                operand,
                groups,
                stride,
            } => NodeKey::Softmax(*operand, *groups, *stride),
            Op::MatMul {
                matrix,
                rows,
                columns,
                operand,
            } => NodeKey::MatMul(*matrix, *rows, *columns, *operand),
            Op::Linear {
                operator,
                channels,
                operand,
            } => NodeKey::Linear(address(Arc::as_ptr(operator).cast()), *channels, *operand),
            // The operator determines the pooling, factor and grid.
            Op::Resample {
                operator,
                channels,
                operand,
                ..
            } => NodeKey::Resample(address(Arc::as_ptr(operator).cast()), *channels, *operand),
            // The tap table determines the padded points and the kernel volume.
            Op::Convolution {
                kernel,
                taps,
                in_channels,
                out_channels,
                operand,
                ..
            } => NodeKey::Convolution(
                *kernel,
                address(Arc::as_ptr(taps).cast()),
                *in_channels,
                *out_channels,
                *operand,
            ),
            Op::Stack(operands) => NodeKey::Stack(operands.clone()),
            Op::Reduce {
                op,
                operand,
                weights,
            } => NodeKey::Reduce(*op, address(Arc::as_ptr(weights).cast()), *operand),
            Op::Constant(values) => NodeKey::Constant(values.iter().map(|v| v.to_bits()).collect()),
            Op::Time => NodeKey::Time,
            Op::State(slot) => NodeKey::State(*slot),
            Op::Param(id) => NodeKey::Param(*id),
            Op::Input { data, copies } => NodeKey::Input(*data, *copies),
            Op::Sequence { data, features } => NodeKey::Sequence(*data, *features),
            Op::Label(data) => NodeKey::Label(*data),
            Op::DivGrad {
                coefficient,
                operand,
                channels,
                geometry,
                axes,
            } => NodeKey::DivGrad(
                *coefficient,
                *operand,
                *channels,
                address(Arc::as_ptr(geometry).cast()),
                axes.iter()
                    .map(|(stride, scale)| (*stride, scale.to_bits()))
                    .collect(),
            ),
            Op::Upwind {
                velocity,
                operand,
                channels,
                geometry,
                backward,
                forward,
            } => NodeKey::Upwind(
                *velocity,
                *operand,
                *channels,
                address(Arc::as_ptr(geometry).cast()),
                backward
                    .iter()
                    .chain(forward)
                    .map(|(offset, weight)| (*offset, weight.to_bits()))
                    .collect(),
            ),
        }
    }
}

impl Lowering<'_> {
    /// Appends a node, or returns the existing node of the same operation on the same operands.
    fn push(&mut self, op: Op, len: usize) -> NodeIndex {
        let key = (NodeKey::of(&op), len);
        if let Some(&node) = self.merged.get(&key) {
            return node;
        }
        let node = self.tape.push(op, len);
        self.merged.insert(key, node);
        node
    }

    /// Returns the tape built so far and starts a new one, whose nodes are new.
    fn take_tape(&mut self) -> Tape {
        self.state_nodes.clear();
        self.merged.clear();
        std::mem::take(&mut self.tape)
    }

    fn len(&self, node: NodeIndex) -> usize {
        self.tape.nodes[node].len
    }

    fn constant(&mut self, value: f64) -> NodeIndex {
        self.push(Op::Constant(vec![value]), 1)
    }

    /// Broadcasts a value of fewer entries (a number) to `len` entries.
    fn widen(&mut self, node: NodeIndex, len: usize, what: &str) -> Result<NodeIndex, String> {
        let have = self.len(node);
        if have == len {
            return Ok(node);
        }
        if !len.is_multiple_of(have) {
            return Err(format!(
                "`{what}` has {have} entries per sample where {len} are expected"
            ));
        }
        let zero = self.push(Op::Constant(vec![0.0; len]), len);
        Ok(self.push(Op::Binary(BinaryOp::Add, zero, node), len))
    }

    /// Returns the state of a field, padded by its boundary conditions when the target has ghost
    /// layers.
    fn padded_state(&mut self, field: FieldId, target: &Target) -> Result<NodeIndex, String> {
        let state = self.state(field)?;
        if !target.padded() {
            return Ok(state);
        }
        let model = self.model;
        if target.field.map(|f| &model.field(f).axes) != Some(&model.field(field).axes) {
            return Err(format!(
                "field `{}` is not on the grid of the spatial operator that reads it",
                model.field(field).name
            ));
        }
        let slot = self
            .fields
            .iter()
            .position(|f| *f == field)
            .expect("a state");
        let key = (slot, target.halo.clone());
        if let Some(node) = self.state_nodes.get(&key) {
            return Ok(*node);
        }
        let grid = BoundedGrid::of_field(model, field, &target.halo, self.space_order)?;
        let operator = Arc::new(grid.padding_operator(&target.halo)?);
        let channels = model.field(field).channels;
        let len = channels * operator.rows();
        let node = self.push(
            Op::Linear {
                operator,
                channels,
                operand: state,
            },
            len,
        );
        self.state_nodes.insert(key, node);
        Ok(node)
    }

    fn state(&mut self, field: FieldId) -> Result<NodeIndex, String> {
        let slot = self
            .fields
            .iter()
            .position(|f| *f == field)
            .ok_or_else(|| {
                format!(
                "field `{}` is read but has neither an equation nor an initial value in this task",
                self.model.field(field).name
            )
            })?;
        if let Some(node) = self.state_nodes.get(&(slot, Vec::new())) {
            return Ok(*node);
        }
        let declaration = self.model.field(field);
        let channels = if declaration.complex {
            2
        } else {
            declaration.channels
        };
        let len = channels * self.model.field_points(field);
        let node = self.push(Op::State(slot), len);
        self.state_nodes.insert((slot, Vec::new()), node);
        Ok(node)
    }

    fn combined_len(&self, a: NodeIndex, b: NodeIndex) -> Result<usize, String> {
        let (la, lb) = (self.len(a), self.len(b));
        let (large, small) = (la.max(lb), la.min(lb));
        if large % small != 0 {
            return Err(format!(
                "values of {la} and {lb} entries per sample do not combine"
            ));
        }
        Ok(large)
    }

    fn lower(&mut self, expr: &Expr, target: &Target) -> Result<NodeIndex, String> {
        let model = self.model;
        Ok(match expr {
            Expr::Real(v) => self.constant(*v),
            Expr::Complex(..) => return Err("complex values are not supported in training".into()),
            Expr::Time => self.push(Op::Time, 1),
            Expr::Coordinate(axis) => {
                let Some(field) = target.field else {
                    return Err(format!(
                        "coordinate `{}` is used outside a field's grid",
                        model.axis(*axis).name
                    ));
                };
                let values = coordinate_values(model, field, *axis, &target.halo)?;
                let len = values.len();
                self.push(Op::Constant(values), len)
            }
            Expr::Field(field) if model.field(*field).complex => {
                return Err(format!(
                    "complex field `{}` is read in training only through `abs`, `abs(…)^2`, `re` and `im`",
                    model.field(*field).name
                ))
            }
            Expr::Binary(BinaryOp::Pow, base, exponent)
                if **exponent == Expr::Real(2.0) && self.complex_abs(base).is_some() =>
            {
                let field = self.complex_abs(base).expect("checked by the guard");
                self.intensity(field)?
            }
            Expr::Call(Function::Abs, args) if self.complex_abs_args(args).is_some() => {
                let field = self.complex_abs_args(args).expect("checked by the guard");
                let intensity = self.intensity(field)?;
                let len = self.len(intensity);
                self.push(Op::Call(Function::Sqrt, vec![intensity]), len)
            }
            Expr::Call(function @ (Function::Re | Function::Im), args)
                if self.complex_abs_args(args).is_some() =>
            {
                let field = self.complex_abs_args(args).expect("checked by the guard");
                let state = self.state(field)?;
                let points = model.field_points(field);
                let channel = usize::from(*function == Function::Im);
                self.push(
                    Op::Channel {
                        operand: state,
                        channel,
                        points,
                    },
                    points,
                )
            }
            Expr::Field(field) => self.padded_state(*field, target)?,
            Expr::Channel(field, channel) => {
                let state = self.padded_state(*field, target)?;
                let points = self.len(state) / model.field(*field).channels;
                self.push(
                    Op::Channel {
                        operand: state,
                        channel: *channel,
                        points,
                    },
                    points,
                )
            }
            Expr::Param(id) => {
                let param = model.param(*id);
                if param.complex {
                    return Err(format!(
                        "parameter `{}` is complex: training supports real parameters only",
                        param.name
                    ));
                }
                if !param.axes.is_empty() {
                    let same_grid = target
                        .field
                        .is_some_and(|f| model.field(f).axes == param.axes);
                    if !same_grid {
                        return Err(format!(
                            "parameter `{}` lives on other axes than the field it is used with",
                            param.name
                        ));
                    }
                }
                let node = self.push(Op::Param(*id), param_entries(model, param));
                if param.axes.is_empty() || !target.padded() {
                    node
                } else {
                    // A grid parameter read in ghost layers wraps on periodic axes and takes the
                    // value of the nearest boundary node on the others.
                    let grid = BoundedGrid::of_param_axes(model, &param.axes);
                    let operator = Arc::new(grid.padding_operator(&target.halo)?);
                    let len = operator.rows() * param.dims.iter().product::<usize>();
                    self.push(
                        Op::Linear {
                            operator,
                            channels: 1,
                            operand: node,
                        },
                        len,
                    )
                }
            }
            Expr::Input(_) | Expr::Sequence(_) | Expr::Label(_) if target.padded() => {
                return Err(
                    "data is read inside a spatial operator, which needs its values in ghost layers outside the grid: apply the operator to a field instead".into(),
                )
            }
            Expr::Input(data) => {
                let features = self.sample.features;
                let copies = match target.field {
                    Some(field) if model.field_points(field) == features => target.channels,
                    _ => 1,
                };
                self.push(
                    Op::Input {
                        data: *data,
                        copies,
                    },
                    features * copies,
                )
            }
            Expr::Sequence(data) => {
                let features: usize = match self.sample.dims.as_slice() {
                    [_, rest @ ..] if !rest.is_empty() => rest.iter().product(),
                    _ => {
                        return Err(format!(
                            "`{}.sequence` needs samples with at least two dimensions, found shape {:?}",
                            model.data[data.0].name, self.sample.dims
                        ))
                    }
                };
                self.push(
                    Op::Sequence {
                        data: *data,
                        features,
                    },
                    features,
                )
            }
            Expr::Label(data) => self.push(Op::Label(*data), self.sample.label_width),
            Expr::Unary(op, a) => {
                let a = self.lower(a, target)?;
                let len = self.len(a);
                self.push(unary(*op, a), len)
            }
            Expr::Binary(op, a, b) => {
                let a = self.lower(a, target)?;
                let b = self.lower(b, target)?;
                let len = self.combined_len(a, b)?;
                self.push(Op::Binary(*op, a, b), len)
            }
            Expr::Compare(op, a, b) => {
                let a = self.lower(a, target)?;
                let b = self.lower(b, target)?;
                let len = self.combined_len(a, b)?;
                self.push(Op::Compare(*op, a, b), len)
            }
            Expr::Call(function, args) => {
                let lowered: Vec<NodeIndex> = args
                    .iter()
                    .map(|a| self.lower(a, target))
                    .collect::<Result<_, _>>()?;
                match (function, lowered.as_slice()) {
                    (Function::Softmax, [a]) => {
                        let len = self.len(*a);
                        let (groups, stride) = match target.field {
                            Some(_) if target.channels > 1 => {
                                let points = target.points(model);
                                if len == target.channels * points {
                                    (target.channels, points)
                                } else {
                                    (len, 1)
                                }
                            }
                            _ => (len, 1),
                        };
                        self.push(
                            Op::Softmax {
                                operand: *a,
                                groups,
                                stride,
                            },
                            len,
                        )
                    }
                    (Function::Max | Function::Min, [a, b]) => {
                        let len = self.combined_len(*a, *b)?;
                        self.push(Op::Call(*function, vec![*a, *b]), len)
                    }
                    (_, [a]) => {
                        let len = self.len(*a);
                        self.push(Op::Call(*function, vec![*a]), len)
                    }
                    _ => {
                        return Err(format!(
                            "`{}` with {} arguments is not supported in training",
                            function.name(),
                            lowered.len()
                        ))
                    }
                }
            }
            Expr::Derivative { operand, axes } => {
                let grid = self.operator_target(operand, target)?;
                let field = grid.field.expect("an operator target has a grid");
                let positions = axis_positions(model, field, axes)?;
                let dims = model.field(field).axes.len();
                let mut counts = vec![0usize; dims];
                for p in positions {
                    counts[p] += 1;
                }
                let taps = derivative_taps(model, field, &counts, self.space_order);
                self.lower_linear(operand, &grid, &taps)?
            }
            Expr::Laplace(operand) => {
                let grid = self.operator_target(operand, target)?;
                let field = grid.field.expect("an operator target has a grid");
                let dims = model.field(field).axes.len();
                let mut taps = Vec::new();
                for axis in 0..dims {
                    let mut counts = vec![0usize; dims];
                    counts[axis] = 2;
                    taps.extend(derivative_taps(model, field, &counts, self.space_order));
                }
                self.lower_linear(operand, &grid, &taps)?
            }
            Expr::DivGrad {
                coefficient,
                operand,
            } => self.lower_div_grad(coefficient, operand, target)?,
            Expr::Upwind {
                velocity,
                operand,
                axis,
                order,
            } => self.lower_upwind(velocity, operand, *axis, *order, target)?,
            Expr::Convolution { kernel, operand } => {
                self.lower_convolution(*kernel, operand, target)?
            }
            Expr::MatMul { .. } if target.padded() => {
                return Err(
                    "a matrix product is read inside a spatial operator, which needs its values in ghost layers outside the grid".into(),
                )
            }
            Expr::MatMul { matrix, operand } => {
                let Expr::Param(id) = matrix.as_ref() else {
                    return Err("the matrix of `@` must be a parameter".into());
                };
                let param = model.param(*id);
                let [rows, columns] = param.dims.as_slice() else {
                    return Err(format!(
                        "parameter `{}` used with `@` has dimensions {:?}: expected a matrix [m, n]",
                        param.name, param.dims
                    ));
                };
                let operand = self.lower(operand, target)?;
                if self.len(operand) != *columns {
                    return Err(format!(
                        "`{} @ …` needs an operand of {columns} entries, found {} (points × channels)",
                        param.name,
                        self.len(operand)
                    ));
                }
                self.push(
                    Op::MatMul {
                        matrix: *id,
                        rows: *rows,
                        columns: *columns,
                        operand,
                    },
                    *rows,
                )
            }
            Expr::Stack(items) => {
                let mut parts = Vec::with_capacity(items.len());
                for item in items {
                    let node = self.lower(item, target)?;
                    if self.len(node) != 1 {
                        return Err(format!(
                            "an entry of a vector has {} entries per sample where 1 is expected",
                            self.len(node)
                        ));
                    }
                    parts.push(node);
                }
                let len = parts.len();
                self.push(Op::Stack(parts), len)
            }
            Expr::Resample {
                kind,
                factor,
                operand,
                axes,
            } => self.lower_resample(*kind, *factor, operand, axes, target)?,
            Expr::Reduce(op, operand)
                if matches!(op, ReduceOp::Norm | ReduceOp::Integral)
                    && operand.any(|e| matches!(e, Expr::Resample { .. })) =>
            {
                // NOTE: the cell volumes of a resampled grid are not built here.
                return Err(
                    "`norm` and `integral` of a pooled or upsampled value are not supported in training: use `sum` or `mean`".into(),
                );
            }
            Expr::Reduce(op, operand) => {
                // Outside an equation (a readout), the reduction runs on the grid of the field it
                // reads, so coordinates and cell volumes are those of that grid.
                let mut own = None;
                if target.field.is_none() {
                    operand.walk(&mut |e| {
                        if let Expr::Field(f) | Expr::Channel(f, _) = e {
                            own.get_or_insert(*f);
                        }
                    });
                }
                let own_target = own.map(|f| Target::field(model, f, 1));
                let target = own_target.as_ref().unwrap_or(target);
                let a = self.lower(operand, &target.unpadded())?;
                let len = self.len(a);
                let weights = reduce_weights(model, *op, len, target);
                self.push(
                    Op::Reduce {
                        op: *op,
                        operand: a,
                        weights: Arc::new(weights),
                    },
                    1,
                )
            }
        })
    }

    /// Returns the complex field `u` of `abs(u)`, if `expr` is that.
    fn complex_abs(&self, expr: &Expr) -> Option<FieldId> {
        match expr {
            Expr::Call(Function::Abs, args) => self.complex_abs_args(args),
            _ => None,
        }
    }

    /// Returns the complex field `u` if `args` is `[u]`.
    fn complex_abs_args(&self, args: &[Expr]) -> Option<FieldId> {
        match args {
            [Expr::Field(f)] if self.model.field(*f).complex => Some(*f),
            _ => None,
        }
    }

    /// Lowers `|u|² = re(u)² + im(u)²` of a complex field.
    fn intensity(&mut self, field: FieldId) -> Result<NodeIndex, String> {
        let state = self.state(field)?;
        let points = self.model.field_points(field);
        let parts: Vec<NodeIndex> = (0..2)
            .map(|channel| {
                let part = self.push(
                    Op::Channel {
                        operand: state,
                        channel,
                        points,
                    },
                    points,
                );
                self.push(Op::Binary(BinaryOp::Mul, part, part), points)
            })
            .collect();
        Ok(self.push(Op::Binary(BinaryOp::Add, parts[0], parts[1]), points))
    }

    /// Returns the field whose grid and boundary conditions a spatial operator uses: the operand's
    /// own field, or else the target field.
    fn grid_field(&self, operand: &Expr, target: &Target) -> Result<FieldId, String> {
        match operand {
            Expr::Field(f) | Expr::Channel(f, _) => Ok(*f),
            _ => target.field.ok_or_else(|| {
                "a spatial derivative needs a grid: it is used outside an equation".to_string()
            }),
        }
    }

    /// Returns the grid a spatial operator works on: the target's, or the operand field's when
    /// the target has none (a readout).
    fn operator_target(&self, operand: &Expr, target: &Target) -> Result<Target, String> {
        if target.field.is_some() {
            return Ok(target.clone());
        }
        let field = self.grid_field(operand, target)?;
        Ok(Target::field(
            self.model,
            field,
            self.model.field(field).channels,
        ))
    }

    /// Lowers a linear stencil with `taps` at the points of `target` (ghost layers included). A
    /// field operand is padded and differentiated by one sparse matrix; any other operand is
    /// lowered on the widened grid and the taps applied to it, as the IR does.
    fn lower_linear(
        &mut self,
        operand: &Expr,
        target: &Target,
        taps: &[(Vec<i64>, f64)],
    ) -> Result<NodeIndex, String> {
        let model = self.model;
        let dims = target.halo.len();
        let mut radius = vec![0usize; dims];
        for (offset, _) in taps {
            for (h, o) in radius.iter_mut().zip(offset) {
                *h = (*h).max(o.unsigned_abs() as usize);
            }
        }
        let (operator, node) = match operand {
            Expr::Field(field) | Expr::Channel(field, _)
                if target.field.map(|f| &model.field(f).axes)
                    == Some(&model.field(*field).axes) =>
            {
                let depth: Vec<usize> = target
                    .halo
                    .iter()
                    .zip(&radius)
                    .map(|(h, r)| h + r)
                    .collect();
                let grid = BoundedGrid::of_field(model, *field, &depth, self.space_order)?;
                let operator = grid.stencil_operator_padded(&target.halo, taps)?;
                let plain = Target::field(model, *field, model.field(*field).channels);
                (operator, self.lower(operand, &plain)?)
            }
            _ => {
                let inner = target.widened(&radius);
                let operator = tap_operator(&inner.extents(model), &radius, taps)?;
                (operator, self.lower(operand, &inner)?)
            }
        };
        let points = operator.columns();
        let len = self.len(node);
        if !len.is_multiple_of(points) {
            return Err(format!(
                "a spatial derivative needs a grid function of {points} points, found {len} entries"
            ));
        }
        let channels = len / points;
        let out = channels * operator.rows();
        Ok(self.push(
            Op::Linear {
                operator: Arc::new(operator),
                channels,
                operand: node,
            },
            out,
        ))
    }

    /// Lowers `div(c * grad(u))` over every axis of the grid: the coefficient and the operand on
    /// the grid widened by one ghost layer.
    fn lower_div_grad(
        &mut self,
        coefficient: &Expr,
        operand: &Expr,
        target: &Target,
    ) -> Result<NodeIndex, String> {
        let model = self.model;
        let grid = self.operator_target(operand, target)?;
        let field = grid.field.expect("an operator target has a grid");
        let axes = &model.field(field).axes;
        let inner = grid.widened(&vec![1; axes.len()]);
        let extents = inner.extents(model);
        let c = self.lower(coefficient, &inner)?;
        let u = self.lower(operand, &inner)?;
        let in_points: usize = extents.iter().product();
        let (c_len, u_len) = (self.len(c), self.len(u));
        if !u_len.is_multiple_of(in_points) {
            return Err(format!(
                "`div` needs a grid function of {in_points} points, found {u_len} entries"
            ));
        }
        let channels = u_len / in_points;
        if c_len != 1 && c_len != in_points && c_len != u_len {
            return Err(format!(
                "the coefficient of `div` has {c_len} entries where 1, {in_points} or {u_len} are expected"
            ));
        }
        let geometry = Arc::new(Shrink::new(&extents, &vec![1; axes.len()]));
        let steps = (0..axes.len())
            .map(|p| {
                let h = model.axis(axes[p]).spacing();
                (Shrink::stride(&extents, p), 1.0 / (h * h))
            })
            .collect();
        let len = channels * geometry.out_points();
        Ok(self.push(
            Op::DivGrad {
                coefficient: c,
                operand: u,
                channels,
                geometry,
                axes: steps,
            },
            len,
        ))
    }

    /// Lowers `upwind(v, u, x, order)`: the velocity on the grid, the operand on the grid widened
    /// by `order` ghost layers along `x`, with the IR's one-sided weights.
    fn lower_upwind(
        &mut self,
        velocity: &Expr,
        operand: &Expr,
        axis: AxisId,
        order: u8,
        target: &Target,
    ) -> Result<NodeIndex, String> {
        let model = self.model;
        if !(1..=2).contains(&order) {
            return Err(format!(
                "upwind differences exist for orders 1 and 2, found {order}"
            ));
        }
        let grid = self.operator_target(operand, target)?;
        let field = grid.field.expect("an operator target has a grid");
        let position = axis_positions(model, field, &[axis])?[0];
        let dims = grid.halo.len();
        let mut extra = vec![0; dims];
        extra[position] = order as usize;
        let inner = grid.widened(&extra);
        let extents = inner.extents(model);
        let v = self.lower(velocity, &grid)?;
        let u = self.lower(operand, &inner)?;
        let in_points: usize = extents.iter().product();
        let u_len = self.len(u);
        if !u_len.is_multiple_of(in_points) {
            return Err(format!(
                "`upwind` needs a grid function of {in_points} points, found {u_len} entries"
            ));
        }
        let channels = u_len / in_points;
        let geometry = Arc::new(Shrink::new(&extents, &extra));
        let out = channels * geometry.out_points();
        if !out.is_multiple_of(self.len(v)) {
            return Err(format!(
                "the velocity of `upwind` has {} entries where {out} are expected",
                self.len(v)
            ));
        }
        let stride = Shrink::stride(&extents, position) as isize;
        let spacing = model.axis(axis).spacing();
        let n = order as i32;
        let one_sided = |nodes: Vec<i32>| -> Vec<(isize, f64)> {
            let points: Vec<f64> = nodes.iter().map(|o| f64::from(*o)).collect();
            npdec_ir::fornberg::derivative_weights(0.0, &points, 1)
                .into_iter()
                .zip(nodes)
                .map(|(w, o)| (o as isize * stride, w / spacing))
                .collect()
        };
        let backward = one_sided((-n..=0).collect());
        let forward = one_sided((0..=n).collect());
        Ok(self.push(
            Op::Upwind {
                velocity: v,
                operand: u,
                channels,
                geometry,
                backward,
                forward,
            },
            out,
        ))
    }

    /// Lowers `pool(u, factor)` or `upsample(u, factor)` onto the output `axes`: the operand on
    /// the grid of its own field (or without a grid when it is itself resampled), then the
    /// averaging or copying matrix.
    fn lower_resample(
        &mut self,
        kind: Resample,
        factor: usize,
        operand: &Expr,
        axes: &[AxisId],
        target: &Target,
    ) -> Result<NodeIndex, String> {
        let model = self.model;
        let name = kind.name();
        if target.padded() {
            return Err(format!(
                "`{name}` is read inside a spatial operator, which needs its values in ghost layers outside the grid"
            ));
        }
        let pool = kind == Resample::Pool;
        // The output axes are the coarse ones of `pool` and the fine ones of `upsample`.
        let fine: Vec<usize> = axes
            .iter()
            .map(|a| {
                let points = model.axis(*a).points;
                if pool {
                    points * factor
                } else {
                    points
                }
            })
            .collect();
        let coarse: Vec<usize> = fine.iter().map(|n| n / factor).collect();
        let input_extents = if pool { &fine } else { &coarse };
        // The operand's grid: a field read outside nested resampling whose axes have the
        // operand's resolution.
        let mut own = None;
        operand.walk_pruned(&mut |e| {
            if let Expr::Field(f) | Expr::Channel(f, _) = e {
                let field_axes = &model.field(*f).axes;
                let fits = field_axes.len() == axes.len()
                    && field_axes
                        .iter()
                        .zip(axes)
                        .zip(input_extents)
                        .all(|((f, a), n)| {
                            model.base_axis(*f) == model.base_axis(*a)
                                && model.axis(*f).points == *n
                        });
                if fits {
                    own.get_or_insert(*f);
                }
            }
            !matches!(e, Expr::Resample { .. })
        });
        let operand_target = match own {
            Some(field) => Target::field(model, field, model.field(field).channels),
            None => Target::none(),
        };
        let node = self.lower(operand, &operand_target)?;
        let in_points: usize = input_extents.iter().product();
        let len = self.len(node);
        if !len.is_multiple_of(in_points) {
            return Err(format!(
                "`{name}` needs a grid function of {in_points} points, found {len} entries"
            ));
        }
        let channels = len / in_points;
        let operator = Arc::new(resample_operator(&fine, factor, pool));
        let out = channels * operator.rows();
        Ok(self.push(
            Op::Resample {
                operator,
                pool,
                factor,
                fine,
                channels,
                operand: node,
            },
            out,
        ))
    }

    fn lower_convolution(
        &mut self,
        kernel: ParamId,
        operand: &Expr,
        target: &Target,
    ) -> Result<NodeIndex, String> {
        let model = self.model;
        let field = self.grid_field(operand, target)?;
        let param = model.param(kernel);
        let dims = model.field(field).axes.len();
        if param.dims.len() != dims + 2 {
            return Err(format!(
                "kernel `{}` has dimensions {:?}: expected [out, in] and one size per axis of `{}`",
                param.name,
                param.dims,
                model.field(field).name
            ));
        }
        let (out_channels, in_channels) = (param.dims[0], param.dims[1]);
        let sizes = &param.dims[2..];
        if sizes.iter().any(|k| k % 2 == 0) {
            return Err(format!(
                "kernel `{}` has an even size in {:?}: expected odd sizes",
                param.name, sizes
            ));
        }
        let halo: Vec<usize> = sizes.iter().map(|k| (k - 1) / 2).collect();
        let grid = self.operator_target(operand, target)?;
        let inner = grid.widened(&halo);
        let out_extents = grid.extents(model);
        let padded = inner.extents(model);
        let padded_points: usize = padded.iter().product();
        let node = self.lower(operand, &inner)?;
        let points: usize = out_extents.iter().product();
        if self.len(node) != in_channels * padded_points {
            return Err(format!(
                "kernel `{}` reads {in_channels} channel(s) of {} points, the operand has {} entries",
                param.name,
                grid.unpadded().points(model),
                self.len(node) / padded_points.max(1) * grid.unpadded().points(model)
            ));
        }
        let kernel_volume: usize = sizes.iter().product();
        let mut taps = Vec::with_capacity(points * kernel_volume);
        let mut index = vec![0usize; dims];
        let mut offset = vec![0usize; dims];
        for p in 0..points {
            unflatten(p, &out_extents, &mut index);
            for k in 0..kernel_volume {
                unflatten(k, sizes, &mut offset);
                // Kernel entry `k` sits at `offset − halo` from the point. In padded coordinates
                // the point is at `index + halo`, so the read is at `index + offset`.
                let flat = (0..dims).fold(0, |flat, a| flat * padded[a] + index[a] + offset[a]);
                taps.push(flat);
            }
        }
        Ok(self.push(
            Op::Convolution {
                kernel,
                padded_points,
                taps: Arc::new(taps),
                kernel_volume,
                in_channels,
                out_channels,
                operand: node,
            },
            out_channels * points,
        ))
    }
}

fn unflatten(mut flat: usize, extents: &[usize], index: &mut [usize]) {
    for a in (0..extents.len()).rev() {
        index[a] = flat % extents[a];
        flat /= extents[a];
    }
}

fn axis_positions(model: &Model, field: FieldId, axes: &[AxisId]) -> Result<Vec<usize>, String> {
    let declared = &model.field(field).axes;
    axes.iter()
        .map(|a| {
            declared.iter().position(|d| d == a).ok_or_else(|| {
                format!(
                    "`{}` is not an axis of `{}`",
                    model.axis(*a).name,
                    model.field(field).name
                )
            })
        })
        .collect()
}

/// Returns the taps of the tensor product of centered derivative stencils, `counts[a]` derivatives
/// along axis `a`, with the grid spacing folded into the weights.
fn derivative_taps(
    model: &Model,
    field: FieldId,
    counts: &[usize],
    order: usize,
) -> Vec<(Vec<i64>, f64)> {
    let mut taps: Vec<(Vec<i64>, f64)> = vec![(vec![0; counts.len()], 1.0)];
    for (axis, &count) in counts.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let spacing = model.axis(model.field(field).axes[axis]).spacing();
        let weights = centered_weights(count, order);
        let radius = (weights.len() / 2) as i64;
        let scale = spacing.powi(count as i32);
        let mut next = Vec::new();
        for (offset, weight) in &taps {
            for (k, w) in weights.iter().enumerate() {
                if *w == 0.0 {
                    continue;
                }
                let mut shifted = offset.clone();
                shifted[axis] = k as i64 - radius;
                next.push((shifted, weight * w / scale));
            }
        }
        taps = next;
    }
    taps
}

/// Returns the coordinates along `axis` at every point of a field's grid widened by `halo`,
/// extended linearly into the ghost layers as the interpreter does.
fn coordinate_values(
    model: &Model,
    field: FieldId,
    axis: AxisId,
    halo: &[usize],
) -> Result<Vec<f64>, String> {
    let axes = &model.field(field).axes;
    let position = axes.iter().position(|a| *a == axis).ok_or_else(|| {
        format!(
            "coordinate `{}` is not an axis of `{}`",
            model.axis(axis).name,
            model.field(field).name
        )
    })?;
    let extents: Vec<usize> = axes
        .iter()
        .zip(halo)
        .map(|(a, h)| model.axis(*a).points + 2 * h)
        .collect();
    let points: usize = extents.iter().product();
    let mut index = vec![0usize; extents.len()];
    let declared = model.axis(axis);
    let (origin, spacing) = (declared.coordinate(0), declared.spacing());
    Ok((0..points)
        .map(|p| {
            unflatten(p, &extents, &mut index);
            origin + (index[position] as f64 - halo[position] as f64) * spacing
        })
        .collect())
}

/// Evaluates a real expression of coordinates and numbers on the grid of `field` (one value per
/// point, in array order).
pub fn grid_values(model: &Model, field: FieldId, expr: &Expr) -> Result<Vec<f64>, String> {
    let halo = vec![0; model.field(field).axes.len()];
    padded_grid_values(model, field, expr, &halo)
}

/// Evaluates a real expression of coordinates and numbers on the grid of `field` widened by
/// `halo[axis]` ghost layers on both sides, whose coordinates continue the grid's spacing.
pub fn padded_grid_values(
    model: &Model,
    field: FieldId,
    expr: &Expr,
    halo: &[usize],
) -> Result<Vec<f64>, String> {
    let sample = SampleShape {
        features: 0,
        dims: Vec::new(),
        label_width: 1,
    };
    let mut lowering = Lowering {
        model,
        sample: &sample,
        space_order: 2,
        fields: Vec::new(),
        tape: Tape::default(),
        state_nodes: HashMap::new(),
        merged: HashMap::new(),
    };
    let target = Target {
        halo: halo.to_vec(),
        ..Target::field(model, field, 1)
    };
    let points = target.points(model);
    let node = lowering.lower(expr, &target)?;
    let node = lowering.widen(node, points, "the expression")?;
    let params = crate::train::tape::ParamValues::new(Vec::new(), Vec::new());
    let env = crate::train::tape::Env {
        states: &[],
        params: &params,
        samples: None,
        labels: None,
        step: 0,
        time: 0.0,
        batch: 1,
    };
    let values = lowering.tape.forward(&env);
    Ok(values[node].row(0).to_vec())
}

/// Splits an expression into real and imaginary parts `(re, im)`, both real expressions, when it
/// is built from real expressions and complex constants by `+`, `−`, `*` and division by a real
/// expression; returns `None` otherwise.
pub fn complex_parts(model: &Model, expr: &Expr) -> Option<(Expr, Expr)> {
    let is_real = |e: &Expr| {
        !e.any(|x| match x {
            Expr::Complex(..) => true,
            Expr::Param(p) => model.param(*p).complex,
            Expr::Field(f) | Expr::Channel(f, _) => model.field(*f).complex,
            _ => false,
        })
    };
    let parts = match expr {
        Expr::Complex(re, im) => (Expr::Real(*re), Expr::Real(*im)),
        e if is_real(e) => (e.clone(), Expr::Real(0.0)),
        Expr::Unary(op, a) => {
            let (re, im) = complex_parts(model, a)?;
            (
                Expr::Unary(*op, Box::new(re)),
                Expr::Unary(*op, Box::new(im)),
            )
        }
        Expr::Binary(op @ (BinaryOp::Add | BinaryOp::Sub), a, b) => {
            let (ar, ai) = complex_parts(model, a)?;
            let (br, bi) = complex_parts(model, b)?;
            (Expr::binary(*op, ar, br), Expr::binary(*op, ai, bi))
        }
        Expr::Binary(BinaryOp::Mul, a, b) => {
            let (ar, ai) = complex_parts(model, a)?;
            let (br, bi) = complex_parts(model, b)?;
            (
                Expr::binary(
                    BinaryOp::Sub,
                    Expr::binary(BinaryOp::Mul, ar.clone(), br.clone()),
                    Expr::binary(BinaryOp::Mul, ai.clone(), bi.clone()),
                ),
                Expr::binary(
                    BinaryOp::Add,
                    Expr::binary(BinaryOp::Mul, ar, bi),
                    Expr::binary(BinaryOp::Mul, ai, br),
                ),
            )
        }
        Expr::Binary(BinaryOp::Div, a, b) => {
            let (br, bi) = complex_parts(model, b)?;
            if npdec_ir::simplify(&bi) != Expr::Real(0.0) {
                return None;
            }
            let (ar, ai) = complex_parts(model, a)?;
            (
                Expr::binary(BinaryOp::Div, ar, br.clone()),
                Expr::binary(BinaryOp::Div, ai, br),
            )
        }
        _ => return None,
    };
    Some((npdec_ir::simplify(&parts.0), npdec_ir::simplify(&parts.1)))
}

/// Returns per-entry weights of a reduction: cell volumes for `norm`, trapezoidal weights for
/// `integral` (on a field's grid), ones otherwise.
fn reduce_weights(model: &Model, op: ReduceOp, len: usize, target: &Target) -> Vec<f64> {
    let Some(field) = target.field else {
        return vec![1.0; len];
    };
    if !matches!(op, ReduceOp::Norm | ReduceOp::Integral) {
        return vec![1.0; len];
    }
    let axes = &model.field(field).axes;
    let extents: Vec<usize> = axes.iter().map(|a| model.axis(*a).points).collect();
    let points: usize = extents.iter().product();
    if !len.is_multiple_of(points) {
        return vec![1.0; len];
    }
    let mut index = vec![0usize; extents.len()];
    (0..len)
        .map(|entry| {
            unflatten(entry % points, &extents, &mut index);
            axes.iter()
                .enumerate()
                .map(|(position, a)| {
                    let axis = model.axis(*a);
                    let h = axis.spacing();
                    let end = index[position] == 0 || index[position] + 1 == axis.points;
                    let trapezoid = matches!(op, ReduceOp::Integral)
                        && end
                        && !axis.periodic
                        && matches!(axis.kind, AxisKind::Interval { .. });
                    if trapezoid {
                        h / 2.0
                    } else {
                        h
                    }
                })
                .product()
        })
        .collect()
}

/// Lowers an expression of parameters and numbers (a side of an expectation after training).
pub fn lower_scalar(model: &Model, expr: &Expr) -> Result<(Tape, NodeIndex), String> {
    let sample = SampleShape {
        features: 1,
        dims: vec![1],
        label_width: 1,
    };
    let mut lowering = Lowering {
        model,
        sample: &sample,
        space_order: 2,
        fields: Vec::new(),
        tape: Tape::default(),
        state_nodes: HashMap::new(),
        merged: HashMap::new(),
    };
    let node = lowering.lower(expr, &Target::none())?;
    Ok((lowering.tape, node))
}
