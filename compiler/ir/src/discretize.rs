//! Discretization: lowers a checked model into dataflow graphs.
//!
//! One graph per solve task (its right-hand sides, initial values and time step) and one graph for the
//! expectations. Each expression is lowered for a *target*: the grid of the value it must produce and
//! the halo it must have. Spatial operators widen the halo of their operand by their stencil radius,
//! so the fields they read are padded by [`NodeKind::Boundary`] nodes, and pointwise expressions are
//! evaluated on padded grids. For example, with order 2 on an axis `x`,
//!
//! ```text
//! D * laplace(u^2)     ⇒   %0 = state u             halo 0
//!                          %1 = boundary u (%0)     halo 1
//!                          %2 = pointwise in0 ^ 2   halo 1
//!                          %3 = stencil laplace     halo 0
//!                          %4 = pointwise D * in0   halo 0
//! ```
//!
//! Equal subexpressions at equal targets are lowered once.

use crate::fornberg::{centered_radius, centered_weights, derivative_weights};
use crate::ghost_cells::{dirichlet_weights, extrapolation_degree, robin_degree, robin_weights};
use crate::graph::{
    AxisPadding, DirichletFace, GhostRule, Graph, Grid, Node, NodeId, NodeKind, PointwiseExpr,
    Program, SpectralLaplace, Stencil, Tap, TimeStep, Update, ValueType,
};
use crate::simplify::{constant_value, simplify};
use npdec_diagnostics::{Code, Diagnostic, Span};
use npdec_symbolic::{
    AxisId, BinaryOp, BoundaryKind, Expr, FieldId, Function, Initializer, Model, ReduceOp,
    Resample, Scheme, Side, SolveTask, Task, UnaryOp,
};
use std::collections::HashMap;

/// The centered space orders a solve may ask for.
pub const SPACE_ORDERS: [u8; 4] = [2, 4, 6, 8];

/// Discretizes every solve task and the expectations of a model. Train tasks are left out.
pub fn discretize_model(model: &Model) -> Result<Program, Vec<Diagnostic>> {
    let mut solves = Vec::new();
    let mut solve_spans = Vec::new();
    let mut diagnostics = Vec::new();
    for task in &model.tasks {
        match task {
            Task::Solve(solve) => match discretize_solve(model, solve) {
                Ok(graph) => {
                    solves.push(graph);
                    solve_spans.push(solve.span);
                }
                Err(mut errors) => diagnostics.append(&mut errors),
            },
            Task::Train(_) => {}
        }
    }
    let expects = discretize_expects(model);
    match expects {
        Ok(expects) if diagnostics.is_empty() => Ok(Program {
            model: model.name.clone(),
            solves,
            solve_spans,
            expects,
            expect_spans: model.expects.iter().map(|e| e.span).collect(),
        }),
        Ok(_) => Err(diagnostics),
        Err(mut errors) => {
            diagnostics.append(&mut errors);
            Err(diagnostics)
        }
    }
}

/// Discretizes one solve task into a graph with its initial values and a time step sink. The graph
/// is named `MODEL.solveN`, with N the number of the task among the model's solve tasks from 0, as
/// the snapshot files of a model with several solves are named (`solve1_u_000100.npy`).
pub fn discretize_solve(model: &Model, task: &SolveTask) -> Result<Graph, Vec<Diagnostic>> {
    let discretization = &task.discretization;
    // A caller may pass a modified copy of the model's task, so the task is found by its span.
    let number = model
        .tasks
        .iter()
        .filter_map(|t| match t {
            Task::Solve(solve) => Some(solve.span),
            Task::Train(_) => None,
        })
        .position(|span| span == task.span)
        .unwrap_or(0);
    let name = format!("{}.solve{number}", model.name);
    let mut lowerer = Lowerer::new(model, name, discretization.space_order as usize, task.span);
    if !SPACE_ORDERS.contains(&discretization.space_order) {
        lowerer.error(
            Code::E0230,
            format!("invalid space order {}", discretization.space_order),
            task.span,
            "space order not supported",
            format!(
                "use one of the centered orders {}",
                npdec_diagnostics::one_of(&["2", "4", "6", "8"])
            ),
        );
        return Err(lowerer.diagnostics);
    }
    let steady = matches!(discretization.scheme, Scheme::Steady { .. });
    if !steady
        && (!(discretization.dt.is_finite() && discretization.dt > 0.0)
            || discretization.steps == 0)
    {
        lowerer.error(
            Code::E0242,
            format!(
                "invalid time stepping: dt = {}, steps = {}",
                discretization.dt, discretization.steps
            ),
            task.span,
            "the step must be positive and finite, with at least one step",
            "give `dt` or `steps` so that `until / dt` is a positive number of steps",
        );
        return Err(lowerer.diagnostics);
    }

    let mut updates = Vec::new();
    let mut rhs_nodes = Vec::new();
    for equation_id in &task.equations {
        let equation = model.equation(*equation_id);
        lowerer.span = equation.span;
        let field = model.field(equation.field);
        let target = Target::grid(field.axes.clone());
        if !scheme_fits(
            &mut lowerer,
            &discretization.scheme,
            equation,
            &task.equations,
        ) {
            continue;
        }
        let (rhs, spectral_laplace) = if discretization.scheme == Scheme::SplitStep {
            match split_equation(&mut lowerer, equation) {
                Some(parts) => parts,
                None => continue,
            }
        } else {
            (simplify(&equation.rhs()), None)
        };
        let Some(node) = lowerer.lower(&rhs, &target) else {
            continue;
        };
        let expected_channels = if equation.channel.is_some() {
            1
        } else {
            field.channels
        };
        let channels = lowerer.graph.node(node).value.channels;
        if channels != 1 && channels != expected_channels {
            lowerer.error(
                Code::E0201,
                format!("right-hand side has {channels} channels, the equation needs {expected_channels}"),
                equation.span,
                "channel count mismatch",
                "make both sides have the same number of channels",
            );
            continue;
        }
        updates.push(Update {
            field: equation.field,
            channel: equation.channel,
            time_order: equation.time_order,
            dirichlet: lowerer.dirichlet_faces(equation.field),
            spectral_laplace,
        });
        rhs_nodes.push(node);
    }

    // Every field the right-hand sides read needs a start value, and second-order fields a start rate.
    lowerer.span = task.span;
    let mut fields: Vec<FieldId> = updates.iter().map(|u| u.field).collect();
    for id in lowerer
        .graph
        .find(|kind| matches!(kind, NodeKind::State { .. }))
    {
        if let NodeKind::State { field } = lowerer.graph.node(id).kind {
            fields.push(field);
        }
    }
    fields.sort();
    fields.dedup();
    for field in fields {
        let time_order = updates
            .iter()
            .filter(|u| u.field == field)
            .map(|u| u.time_order)
            .max();
        lowerer.add_initial(field, 0, time_order == Some(0));
        if time_order == Some(2) {
            lowerer.add_initial(field, 1, false);
        }
    }

    if !lowerer.diagnostics.is_empty() {
        return Err(lowerer.diagnostics);
    }
    let value = lowerer.graph.node(rhs_nodes[0]).value.clone();
    let step = TimeStep {
        scheme: discretization.scheme.clone(),
        dt: if steady { 0.0 } else { discretization.dt },
        steps: if steady { 0 } else { discretization.steps },
        until: discretization.until,
        every: task.every,
        updates,
    };
    lowerer.graph.add_node(
        Node {
            kind: NodeKind::TimeStep(step),
            value,
        },
        &rhs_nodes,
    );
    Ok(lowerer.graph)
}

/// Discretizes the expectations into one graph with an `expect` sink each.
pub fn discretize_expects(model: &Model) -> Result<Graph, Vec<Diagnostic>> {
    let mut lowerer = Lowerer::new(model, format!("{}.expects", model.name), 2, Span::default());
    for (index, expect) in model.expects.iter().enumerate() {
        lowerer.span = expect.span;
        let Expr::Compare(op, lhs, rhs) = &expect.expr else {
            lowerer.error(
                Code::E0270,
                "expectation is not a comparison",
                expect.span,
                "expected a comparison such as `a < b`",
                "write the expectation as `expect VALUE < BOUND`",
            );
            continue;
        };
        let scalar = Target::scalar();
        let (Some(left), Some(right)) = (
            lowerer.lower(&simplify(lhs), &scalar),
            lowerer.lower(&simplify(rhs), &scalar),
        ) else {
            continue;
        };
        let value = ValueType {
            grid: Grid::Scalar,
            channels: 1,
            complex: false,
        };
        lowerer.graph.add_node(
            Node {
                kind: NodeKind::Expect {
                    index,
                    op: *op,
                    text: expect.text.clone(),
                },
                value,
            },
            &[left, right],
        );
    }
    if lowerer.diagnostics.is_empty() {
        Ok(lowerer.graph)
    } else {
        Err(lowerer.diagnostics)
    }
}

/// The grid and halo an expression is lowered for. No axes means a scalar.
#[derive(Clone, Debug, PartialEq)]
struct Target {
    axes: Vec<AxisId>,
    halo: Vec<usize>,
}

impl Target {
    fn scalar() -> Self {
        Target {
            axes: Vec::new(),
            halo: Vec::new(),
        }
    }

    fn grid(axes: Vec<AxisId>) -> Self {
        let halo = vec![0; axes.len()];
        Target { axes, halo }
    }

    fn is_scalar(&self) -> bool {
        self.axes.is_empty()
    }

    fn position(&self, axis: AxisId) -> Option<usize> {
        self.axes.iter().position(|a| *a == axis)
    }

    fn widened(&self, extra: &[usize]) -> Target {
        Target {
            axes: self.axes.clone(),
            halo: self.halo.iter().zip(extra).map(|(h, e)| h + e).collect(),
        }
    }

    fn value(&self, channels: usize, complex: bool) -> ValueType {
        let grid = if self.is_scalar() {
            Grid::Scalar
        } else {
            Grid::Points {
                axes: self.axes.clone(),
                halo: self.halo.clone(),
            }
        };
        ValueType {
            grid,
            channels,
            complex,
        }
    }
}

struct Lowerer<'m> {
    model: &'m Model,
    graph: Graph,
    space_order: usize,
    memo: HashMap<String, NodeId>,
    diagnostics: Vec<Diagnostic>,
    /// The span that diagnostics point at: the equation, task or expectation being lowered.
    span: Span,
}

impl<'m> Lowerer<'m> {
    fn new(model: &'m Model, name: String, space_order: usize, span: Span) -> Self {
        let graph = Graph::new(
            name,
            model.axes.clone(),
            model.fields.clone(),
            model.params.clone(),
        );
        Lowerer {
            model,
            graph,
            space_order,
            memo: HashMap::new(),
            diagnostics: Vec::new(),
            span,
        }
    }

    fn error(
        &mut self,
        code: Code,
        message: impl Into<String>,
        span: Span,
        label: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.diagnostics
            .push(Diagnostic::error(code, message, span, label).with_help(help));
    }

    fn add(&mut self, kind: NodeKind, value: ValueType, inputs: &[NodeId]) -> NodeId {
        self.graph.add_node(Node { kind, value }, inputs)
    }

    fn memoized(
        &mut self,
        key: String,
        build: impl FnOnce(&mut Self) -> Option<NodeId>,
    ) -> Option<NodeId> {
        if let Some(id) = self.memo.get(&key) {
            return Some(*id);
        }
        let id = build(self)?;
        self.memo.insert(key, id);
        Some(id)
    }

    /// Lowers an expression for a target and returns the node computing it.
    fn lower(&mut self, expr: &Expr, target: &Target) -> Option<NodeId> {
        let key = format!("{expr:?}@{:?}/{:?}", target.axes, target.halo);
        self.memoized(key, |this| match expr {
            Expr::Derivative { .. }
            | Expr::Laplace(_)
            | Expr::DivGrad { .. }
            | Expr::Upwind { .. }
            | Expr::Convolution { .. }
            | Expr::MatMul { .. }
            | Expr::Resample { .. }
            | Expr::Reduce(..) => this.lower_operator(expr, target),
            Expr::Field(field) => this.lower_field(*field, target),
            Expr::Real(_)
            | Expr::Complex(..)
            | Expr::Coordinate(_)
            | Expr::Time
            | Expr::Channel(..)
            | Expr::Param(_)
            | Expr::Input(_)
            | Expr::Label(_)
            | Expr::Sequence(_)
            | Expr::Unary(..)
            | Expr::Binary(..)
            | Expr::Call(..)
            | Expr::Compare(..)
            | Expr::Stack(_) => {
                let mut inputs = Vec::new();
                let pointwise = this.lower_pointwise(expr, target, &mut inputs)?;
                let types: Vec<ValueType> = inputs
                    .iter()
                    .map(|i| this.graph.node(*i).value.clone())
                    .collect();
                let channels = this.pointwise_channels(&pointwise, &types)?;
                let complex = pointwise_is_complex(&pointwise, &types);
                Some(this.add(
                    NodeKind::Pointwise(pointwise),
                    target.value(channels, complex),
                    &inputs,
                ))
            }
        })
    }

    /// Returns the channel count of a pointwise expression, or reports mismatched channel counts.
    fn pointwise_channels(&mut self, expr: &PointwiseExpr, types: &[ValueType]) -> Option<usize> {
        let mut channels = 1;
        let mut mismatch = None;
        expr.walk(&mut |e| {
            if let PointwiseExpr::Input {
                index,
                channel: None,
            } = e
            {
                let c = types[*index].channels;
                if c != 1 && channels != 1 && c != channels {
                    mismatch = Some((channels, c));
                }
                channels = channels.max(c);
            }
        });
        if let Some((a, b)) = mismatch {
            self.error(
                Code::E0201,
                format!("operands have {a} and {b} channels"),
                self.span,
                "channel count mismatch",
                "combine values with the same number of channels, or select one channel",
            );
            return None;
        }
        Some(channels)
    }

    fn lower_pointwise(
        &mut self,
        expr: &Expr,
        target: &Target,
        inputs: &mut Vec<NodeId>,
    ) -> Option<PointwiseExpr> {
        Some(match expr {
            Expr::Real(v) => PointwiseExpr::Real(*v),
            Expr::Complex(re, im) => PointwiseExpr::Complex(*re, *im),
            Expr::Time => PointwiseExpr::Time,
            Expr::Coordinate(axis) => {
                if target.position(*axis).is_none() {
                    let name = &self.model.axis(*axis).name;
                    self.error(
                        Code::E0202,
                        format!("coordinate `{name}` used where the value has no axis `{name}`"),
                        self.span,
                        "coordinate outside the grid of this value",
                        "use coordinates inside a reduction such as `max(...)`, or only of the field's axes",
                    );
                    return None;
                }
                PointwiseExpr::Coordinate(*axis)
            }
            Expr::Field(field) => {
                let node = self.lower_field(*field, target)?;
                input_leaf(inputs, node, None)
            }
            Expr::Channel(field, channel) => {
                if *channel >= self.model.field(*field).channels {
                    self.error(
                        Code::E0122,
                        format!(
                            "channel {channel} of a field with {} channels",
                            self.model.field(*field).channels
                        ),
                        self.span,
                        "channel out of range",
                        "use a channel index below the channel count",
                    );
                    return None;
                }
                let node = self.lower_field(*field, target)?;
                input_leaf(inputs, node, Some(*channel))
            }
            Expr::Param(param) => return self.lower_param(*param, target, inputs),
            Expr::Input(_) | Expr::Label(_) | Expr::Sequence(_) => {
                self.error(
                    Code::E0207,
                    "data input used in a solve",
                    self.span,
                    "inputs and labels exist only in training",
                    "use the data source in a `train` task",
                );
                return None;
            }
            Expr::Stack(_) => {
                self.error(
                    Code::E0207,
                    "a vector of numbers used in a solve",
                    self.span,
                    "vectors `[a, b, …]` are class scores of a training readout",
                    "use the vector in a `readout` of a `train` task",
                );
                return None;
            }
            Expr::Unary(op, a) => {
                PointwiseExpr::Unary(*op, Box::new(self.lower_pointwise(a, target, inputs)?))
            }
            Expr::Binary(op, a, b) => {
                let a = self.lower_pointwise(a, target, inputs)?;
                let b = self.lower_pointwise(b, target, inputs)?;
                PointwiseExpr::Binary(*op, Box::new(a), Box::new(b))
            }
            Expr::Compare(op, a, b) => {
                let a = self.lower_pointwise(a, target, inputs)?;
                let b = self.lower_pointwise(b, target, inputs)?;
                PointwiseExpr::Compare(*op, Box::new(a), Box::new(b))
            }
            Expr::Call(function, args) => {
                let mut lowered = Vec::with_capacity(args.len());
                for arg in args {
                    lowered.push(self.lower_pointwise(arg, target, inputs)?);
                }
                PointwiseExpr::Call(*function, lowered)
            }
            Expr::Derivative { .. }
            | Expr::Laplace(_)
            | Expr::DivGrad { .. }
            | Expr::Upwind { .. }
            | Expr::Convolution { .. }
            | Expr::MatMul { .. }
            | Expr::Resample { .. }
            | Expr::Reduce(..) => {
                let node = self.lower(expr, target)?;
                input_leaf(inputs, node, None)
            }
        })
    }

    /// Inlines a parameter with a value expression, or reads a parameter node.
    fn lower_param(
        &mut self,
        id: npdec_symbolic::ParamId,
        target: &Target,
        inputs: &mut Vec<NodeId>,
    ) -> Option<PointwiseExpr> {
        let param = self.model.param(id);
        if !param.dims.is_empty() {
            self.error(
                Code::E0207,
                format!(
                    "tensor parameter `{}` used as a pointwise value",
                    param.name
                ),
                self.span,
                "a tensor has no value at a grid point",
                "use the tensor in `conv(...)` or a matrix product",
            );
            return None;
        }
        match &param.init {
            Initializer::Value(value) => self.lower_pointwise(&simplify(value), target, inputs),
            Initializer::Zeros => Some(PointwiseExpr::Real(0.0)),
            Initializer::Ones => Some(PointwiseExpr::Real(1.0)),
            Initializer::Normal { .. }
            | Initializer::Uniform { .. }
            | Initializer::Glorot
            | Initializer::He => {
                if param.axes != target.axes && !param.axes.is_empty() {
                    self.error(
                        Code::E0202,
                        format!(
                            "random parameter `{}` is not on the grid of this equation",
                            param.name
                        ),
                        self.span,
                        "grid mismatch",
                        "declare the parameter on the same axes as the field",
                    );
                    return None;
                }
                let grid = if param.axes.is_empty() {
                    Grid::Scalar
                } else {
                    Grid::Points {
                        axes: param.axes.clone(),
                        halo: target.halo.clone(),
                    }
                };
                let value = ValueType {
                    grid,
                    channels: 1,
                    complex: param.complex,
                };
                let key = format!("param {}@{:?}", id.0, target.halo);
                let node = self.memoized(key, |this| {
                    Some(this.add(NodeKind::Param { param: id }, value, &[]))
                })?;
                Some(input_leaf(inputs, node, None))
            }
        }
    }

    /// Returns the state of a field, padded by its boundary conditions when the target has a halo.
    fn lower_field(&mut self, field: FieldId, target: &Target) -> Option<NodeId> {
        let declaration = self.model.field(field);
        if target.axes != declaration.axes {
            let message = if target.is_scalar() {
                format!(
                    "field `{}` used where a number is expected",
                    declaration.name
                )
            } else {
                format!(
                    "field `{}` is not on the grid of this expression",
                    declaration.name
                )
            };
            let help = if target.is_scalar() {
                "reduce the field to a number with `max`, `min`, `sum`, `mean`, `norm` or `integral`"
            } else {
                "combine only fields on the same axes"
            };
            self.error(Code::E0202, message, self.span, "grid mismatch", help);
            return None;
        }
        let value = ValueType {
            grid: Grid::Points {
                axes: declaration.axes.clone(),
                halo: vec![0; declaration.axes.len()],
            },
            channels: declaration.channels,
            complex: declaration.complex,
        };
        let state = self.memoized(format!("state {}", field.0), |this| {
            Some(this.add(NodeKind::State { field }, value.clone(), &[]))
        })?;
        if target.halo.iter().all(|h| *h == 0) {
            return Some(state);
        }
        let key = format!("boundary {}@{:?}", field.0, target.halo);
        self.memoized(key, |this| {
            let axes = this.paddings(field, &target.halo)?;
            let value = ValueType {
                grid: Grid::Points {
                    axes: target.axes.clone(),
                    halo: target.halo.clone(),
                },
                ..value
            };
            Some(this.add(NodeKind::Boundary { field, axes }, value, &[state]))
        })
    }

    fn paddings(&mut self, field: FieldId, halo: &[usize]) -> Option<Vec<AxisPadding>> {
        let axes = self.model.field(field).axes.clone();
        let mut paddings = Vec::new();
        for (position, axis) in axes.iter().enumerate() {
            let min = self.ghost_rule(field, *axis, Side::Min, halo[position])?;
            let max = self.ghost_rule(field, *axis, Side::Max, halo[position])?;
            paddings.push(AxisPadding {
                halo: halo[position],
                min,
                max,
            });
        }
        Some(paddings)
    }

    fn ghost_rule(
        &mut self,
        field: FieldId,
        axis: AxisId,
        side: Side,
        halo: usize,
    ) -> Option<GhostRule> {
        let declaration = self.model.axis(axis);
        let points = declaration.points;
        if declaration.periodic {
            if halo > points {
                self.error(
                    Code::E0241,
                    format!("the stencil reaches {halo} points across periodic axis `{}` of {points} points", declaration.name),
                    self.span,
                    "grid too small for the stencil",
                    "use more grid points or a lower space order",
                );
                return None;
            }
            return Some(GhostRule::Periodic);
        }
        let degree = extrapolation_degree(self.space_order, points);
        let spacing = declaration.spacing();
        let Some(condition) = self.model.boundary(field, axis, side) else {
            if halo == 0 {
                return Some(GhostRule::Unconstrained);
            }
            let field_name = &self.model.field(field).name;
            self.error(
                Code::E0221,
                format!(
                    "field `{field_name}` has no boundary condition on the {side:?} side of `{}`",
                    declaration.name
                ),
                self.span,
                "a derivative here reads values outside the grid",
                format!("add `boundary {field_name} = ... on {}`", declaration.name),
            );
            return None;
        };
        let span = condition.span;
        let kind = condition.kind.clone();
        let saved = std::mem::replace(&mut self.span, span);
        let rule = match kind {
            BoundaryKind::Dirichlet(value) => Some(GhostRule::Dirichlet {
                value: self.lower_face_value(&value, field)?,
                weights: dirichlet_weights(halo, degree),
            }),
            BoundaryKind::Neumann(value) => {
                let (weights, slope_weights) =
                    robin_weights(halo, robin_degree(self.space_order, points));
                Some(GhostRule::Robin {
                    alpha: PointwiseExpr::Real(0.0),
                    beta: PointwiseExpr::Real(1.0),
                    value: self.lower_face_value(&value, field)?,
                    weights,
                    slope_weights,
                    spacing,
                    neumann: true,
                })
            }
            BoundaryKind::Robin { alpha, beta, value } => {
                let beta = simplify(&beta);
                if beta == Expr::Real(0.0) {
                    // `alpha·u = value` is a Dirichlet condition.
                    let value = Expr::binary(BinaryOp::Div, value, alpha);
                    Some(GhostRule::Dirichlet {
                        value: self.lower_face_value(&simplify(&value), field)?,
                        weights: dirichlet_weights(halo, degree),
                    })
                } else {
                    let (weights, slope_weights) =
                        robin_weights(halo, robin_degree(self.space_order, points));
                    Some(GhostRule::Robin {
                        alpha: self.lower_face_value(&alpha, field)?,
                        beta: self.lower_face_value(&beta, field)?,
                        value: self.lower_face_value(&value, field)?,
                        weights,
                        slope_weights,
                        spacing,
                        neumann: false,
                    })
                }
            }
            BoundaryKind::Periodic => {
                self.error(
                    Code::E0225,
                    format!(
                        "periodic condition on axis `{}`, which is not periodic",
                        declaration.name
                    ),
                    span,
                    "periodic on one side only",
                    "declare the condition periodic on both sides of the axis",
                );
                None
            }
        };
        self.span = saved;
        rule
    }

    /// Lowers a boundary value: an expression of coordinates, time and constants.
    fn lower_face_value(&mut self, expr: &Expr, field: FieldId) -> Option<PointwiseExpr> {
        let target = Target::grid(self.model.field(field).axes.clone());
        let mut inputs = Vec::new();
        let value = self.lower_pointwise(&simplify(expr), &target, &mut inputs)?;
        if !inputs.is_empty() {
            self.error(
                Code::E0207,
                "boundary value depends on a field or a random parameter",
                self.span,
                "boundary values may depend only on coordinates, time and constants",
                "move the dependence on the field into a Robin condition",
            );
            return None;
        }
        Some(value)
    }

    fn dirichlet_faces(&mut self, field: FieldId) -> Vec<DirichletFace> {
        let mut faces = Vec::new();
        let axes = self.model.field(field).axes.clone();
        for (position, axis) in axes.iter().enumerate() {
            for side in [Side::Min, Side::Max] {
                let halo = 0;
                if let Some(GhostRule::Dirichlet { value, .. }) =
                    self.ghost_rule(field, *axis, side, halo)
                {
                    faces.push(DirichletFace {
                        axis: position,
                        side,
                        value,
                    });
                }
            }
        }
        faces
    }

    fn add_initial(&mut self, field: FieldId, time_derivative: u8, optional: bool) {
        let declaration = self.model.field(field);
        let target = Target::grid(declaration.axes.clone());
        let value = match self.model.initial(field, time_derivative) {
            Some(initial) => {
                self.span = initial.span;
                simplify(&initial.value)
            }
            None if optional => Expr::Real(0.0),
            None => {
                let what = if time_derivative == 0 { "u" } else { "dt(u)" };
                let name = declaration.name.clone();
                self.error(
                    Code::E0220,
                    format!("field `{name}` has no initial condition for {what}"),
                    self.span,
                    "the solve needs a start value",
                    format!(
                        "add `initial {} = ...`",
                        if time_derivative == 0 {
                            name
                        } else {
                            format!("dt({name})")
                        }
                    ),
                );
                return;
            }
        };
        if let Some(node) = self.lower(&value, &target) {
            let value = self.graph.node(node).value.clone();
            self.add(
                NodeKind::Initial {
                    field,
                    time_derivative,
                },
                value,
                &[node],
            );
        }
    }

    fn lower_operator(&mut self, expr: &Expr, target: &Target) -> Option<NodeId> {
        match expr {
            Expr::Derivative { operand, axes } => self.lower_derivative(operand, axes, target),
            Expr::Laplace(operand) => {
                let positions = self.operator_axes(operand, target)?;
                let mut counts = vec![0; target.axes.len()];
                let mut taps: Vec<Tap> = Vec::new();
                let mut radius = vec![0; target.axes.len()];
                for position in positions {
                    counts[position] = 2;
                    let stencil = self.axis_stencil(target.axes[position], 2);
                    radius[position] = stencil.len() / 2;
                    for (i, weight) in stencil.iter().enumerate() {
                        let mut offset = vec![0; target.axes.len()];
                        offset[position] = i as i32 - (stencil.len() / 2) as i32;
                        add_tap(&mut taps, offset, *weight);
                    }
                }
                taps.retain(|t| t.weight != 0.0);
                let inner = self.lower(operand, &target.widened(&radius))?;
                Some(self.add_stencil("laplace".to_string(), taps, radius, inner))
            }
            Expr::DivGrad {
                coefficient,
                operand,
            } => {
                let positions = self.operator_axes(operand, target)?;
                let mut extra = vec![0; target.axes.len()];
                positions.iter().for_each(|p| extra[*p] = 1);
                let widened = target.widened(&extra);
                let coefficient = self.lower(coefficient, &widened)?;
                let operand = self.lower(operand, &widened)?;
                let spacing = positions
                    .iter()
                    .map(|p| self.model.axis(target.axes[*p]).spacing())
                    .collect();
                let value = self.graph.node(operand).value.clone();
                let complex = value.complex || self.graph.node(coefficient).value.complex;
                let channels = value.channels;
                Some(self.add(
                    NodeKind::DivGrad {
                        axes: positions,
                        spacing,
                    },
                    target.value(channels, complex),
                    &[coefficient, operand],
                ))
            }
            Expr::Upwind {
                velocity,
                operand,
                axis,
                order,
            } => {
                let position = self.require_axis(*axis, target)?;
                if !(1..=2).contains(order) {
                    self.error(
                        Code::E0230,
                        format!("invalid upwind order {order}"),
                        self.span,
                        "upwind differences exist here for orders 1 and 2",
                        "use `upwind(v, u, x, 1)` or `upwind(v, u, x, 2)`",
                    );
                    return None;
                }
                let spacing = self.model.axis(*axis).spacing();
                let n = *order as i32;
                let backward_nodes: Vec<f64> = (-n..=0).map(f64::from).collect();
                let forward_nodes: Vec<f64> = (0..=n).map(f64::from).collect();
                let backward = derivative_weights(0.0, &backward_nodes, 1)
                    .into_iter()
                    .zip(-n..=0)
                    .map(|(w, o)| (o, w / spacing))
                    .collect();
                let forward = derivative_weights(0.0, &forward_nodes, 1)
                    .into_iter()
                    .zip(0..=n)
                    .map(|(w, o)| (o, w / spacing))
                    .collect();
                let velocity = self.lower(velocity, target)?;
                let mut extra = vec![0; target.axes.len()];
                extra[position] = *order as usize;
                let operand = self.lower(operand, &target.widened(&extra))?;
                let value = self.graph.node(operand).value.clone();
                let complex = value.complex || self.graph.node(velocity).value.complex;
                Some(self.add(
                    NodeKind::Upwind {
                        position,
                        order: *order,
                        backward,
                        forward,
                    },
                    target.value(value.channels, complex),
                    &[velocity, operand],
                ))
            }
            Expr::Convolution { kernel, operand } => {
                self.lower_convolution(*kernel, operand, target)
            }
            Expr::MatMul { matrix, operand } => self.lower_matmul(matrix, operand, target),
            Expr::Resample {
                kind,
                factor,
                operand,
                axes,
            } => self.lower_resample(*kind, *factor, operand, axes, target),
            Expr::Reduce(op, operand) => {
                let axes = self.expression_axes(operand)?;
                if axes.is_empty() {
                    self.error(
                        Code::E0206,
                        format!("`{op:?}` reduction of a constant"),
                        self.span,
                        "reductions need a field or a coordinate",
                        "reduce an expression of a field",
                    );
                    return None;
                }
                let operand = self.lower(operand, &Target::grid(axes))?;
                let complex = self.graph.node(operand).value.complex
                    && matches!(op, ReduceOp::Sum | ReduceOp::Mean | ReduceOp::Integral);
                let value = ValueType {
                    grid: Grid::Scalar,
                    channels: 1,
                    complex,
                };
                let node = self.add(NodeKind::Reduce(*op), value, &[operand]);
                if target.is_scalar() {
                    Some(node)
                } else {
                    // A reduction inside a grid expression broadcasts; the pointwise node does that.
                    let value = target.value(1, complex);
                    Some(self.add(
                        NodeKind::Pointwise(PointwiseExpr::Input {
                            index: 0,
                            channel: None,
                        }),
                        value,
                        &[node],
                    ))
                }
            }
            _ => unreachable!("lower_operator is only called on spatial operators and reductions"),
        }
    }

    fn lower_derivative(
        &mut self,
        operand: &Expr,
        axes: &[AxisId],
        target: &Target,
    ) -> Option<NodeId> {
        let mut counts = vec![0usize; target.axes.len()];
        for axis in axes {
            let position = self.require_axis(*axis, target)?;
            counts[position] += 1;
        }
        // The tensor product of one-dimensional centered formulas, one per differentiated axis.
        let mut taps = vec![Tap {
            offset: vec![0; target.axes.len()],
            weight: 1.0,
        }];
        let mut radius = vec![0; target.axes.len()];
        let mut label = String::from("d");
        for (position, count) in counts.iter().enumerate() {
            if *count == 0 {
                continue;
            }
            let axis = target.axes[position];
            let name = &self.model.axis(axis).name;
            label.push_str(&if *count == 1 {
                format!("/d{name}")
            } else {
                format!("/d{name}{count}")
            });
            let stencil = self.axis_stencil(axis, *count);
            let r = stencil.len() / 2;
            radius[position] = r;
            let mut product = Vec::new();
            for tap in &taps {
                for (i, weight) in stencil.iter().enumerate() {
                    if *weight == 0.0 {
                        continue;
                    }
                    let mut offset = tap.offset.clone();
                    offset[position] = i as i32 - r as i32;
                    product.push(Tap {
                        offset,
                        weight: tap.weight * weight,
                    });
                }
            }
            taps = product;
        }
        let inner = self.lower(operand, &target.widened(&radius))?;
        Some(self.add_stencil(label, taps, radius, inner))
    }

    /// Returns the one-dimensional centered weights of a derivative along an axis, spacing included.
    fn axis_stencil(&self, axis: AxisId, derivative: usize) -> Vec<f64> {
        let spacing = self.model.axis(axis).spacing();
        let scale = spacing.powi(derivative as i32);
        debug_assert_eq!(
            centered_weights(derivative, self.space_order).len(),
            2 * centered_radius(derivative, self.space_order) + 1
        );
        centered_weights(derivative, self.space_order)
            .into_iter()
            .map(|w| w / scale)
            .collect()
    }

    fn add_stencil(
        &mut self,
        label: String,
        taps: Vec<Tap>,
        radius: Vec<usize>,
        input: NodeId,
    ) -> NodeId {
        let input_value = self.graph.node(input).value.clone();
        let Grid::Points { axes, halo } = &input_value.grid else {
            unreachable!("stencil operands are lowered for a grid target")
        };
        let halo = halo.iter().zip(&radius).map(|(h, r)| h - r).collect();
        let value = ValueType {
            grid: Grid::Points {
                axes: axes.clone(),
                halo,
            },
            ..input_value
        };
        self.add(
            NodeKind::Stencil(Stencil {
                label,
                taps,
                radius,
            }),
            value,
            &[input],
        )
    }

    fn require_axis(&mut self, axis: AxisId, target: &Target) -> Option<usize> {
        let position = target.position(axis);
        if position.is_none() {
            let name = &self.model.axis(axis).name;
            self.error(
                Code::E0205,
                format!("derivative along `{name}`, which the operand does not have"),
                self.span,
                "axis not in the grid of this value",
                "differentiate only along the axes of the field",
            );
        }
        position
    }

    /// Returns the positions (in the target) of the axes a Laplacian or divergence runs over.
    fn operator_axes(&mut self, operand: &Expr, target: &Target) -> Option<Vec<usize>> {
        if target.is_scalar() {
            self.error(
                Code::E0206,
                "spatial operator applied to a number",
                self.span,
                "operator needs a field",
                "apply the operator to a field",
            );
            return None;
        }
        let axes = self.expression_axes(operand)?;
        let axes = if axes.is_empty() {
            target.axes.clone()
        } else {
            axes
        };
        axes.iter().map(|a| self.require_axis(*a, target)).collect()
    }

    /// Returns the axes of the fields, grid parameters and coordinates in an expression.
    fn expression_axes(&mut self, expr: &Expr) -> Option<Vec<AxisId>> {
        let mut field_axes: Option<Vec<AxisId>> = None;
        let mut coordinates = Vec::new();
        let mut mismatch = false;
        // A resampled value lives on its own axes, whatever grid its operand is on.
        expr.walk_pruned(&mut |e| {
            let axes = match e {
                Expr::Resample { axes, .. } => Some(axes.clone()),
                Expr::Field(f) | Expr::Channel(f, _) => Some(self.model.field(*f).axes.clone()),
                Expr::Param(p) if !self.model.param(*p).axes.is_empty() => {
                    Some(self.model.param(*p).axes.clone())
                }
                Expr::Coordinate(a) => {
                    coordinates.push(*a);
                    None
                }
                _ => None,
            };
            if let Some(axes) = axes {
                match &field_axes {
                    Some(existing)
                        if *existing != axes && !axes.iter().all(|a| existing.contains(a)) =>
                    {
                        mismatch = true
                    }
                    Some(_) => {}
                    None => field_axes = Some(axes),
                }
            }
            !matches!(e, Expr::Resample { .. })
        });
        if mismatch {
            self.error(
                Code::E0202,
                "values on different grids combined",
                self.span,
                "grid mismatch",
                "combine only fields on the same axes",
            );
            return None;
        }
        Some(field_axes.unwrap_or_else(|| {
            coordinates.sort();
            coordinates.dedup();
            coordinates
        }))
    }

    fn lower_convolution(
        &mut self,
        kernel: npdec_symbolic::ParamId,
        operand: &Expr,
        target: &Target,
    ) -> Option<NodeId> {
        let param = self.model.param(kernel);
        let dims = param.dims.clone();
        let rank = target.axes.len();
        if dims.len() != rank + 2 || dims[2..].iter().any(|k| k % 2 == 0) {
            self.error(
                Code::E0204,
                format!("kernel `{}` has shape {:?}", param.name, dims),
                self.span,
                "convolution kernel shape mismatch",
                format!(
                    "declare the kernel as [out, in{}] with odd sizes",
                    ", k".repeat(rank)
                ),
            );
            return None;
        }
        let extra: Vec<usize> = dims[2..].iter().map(|k| (k - 1) / 2).collect();
        let operand = self.lower(operand, &target.widened(&extra))?;
        let operand_value = self.graph.node(operand).value.clone();
        if operand_value.channels != dims[1] {
            self.error(
                Code::E0204,
                format!(
                    "kernel expects {} input channels, the operand has {}",
                    dims[1], operand_value.channels
                ),
                self.span,
                "convolution kernel shape mismatch",
                "make the kernel's second dimension the operand's channel count",
            );
            return None;
        }
        let kernel_value = ValueType {
            grid: Grid::Tensor { dims: dims.clone() },
            channels: 1,
            complex: param.complex,
        };
        let kernel_node = self.memoized(format!("param {}", kernel.0), |this| {
            Some(this.add(NodeKind::Param { param: kernel }, kernel_value, &[]))
        })?;
        let complex = operand_value.complex || param.complex;
        Some(self.add(
            NodeKind::Convolution { kernel },
            target.value(dims[0], complex),
            &[kernel_node, operand],
        ))
    }

    /// Lowers `pool` or `upsample`: the operand on the grid of its own axes, without ghost layers,
    /// then one resampling node onto `axes`.
    fn lower_resample(
        &mut self,
        kind: Resample,
        factor: usize,
        operand: &Expr,
        axes: &[AxisId],
        target: &Target,
    ) -> Option<NodeId> {
        if target.axes != axes || target.halo.iter().any(|h| *h > 0) {
            let names: Vec<&str> = axes
                .iter()
                .map(|a| self.model.axis(*a).name.as_str())
                .collect();
            self.error(
                Code::E0208,
                format!(
                    "`{}` on ({}) used on another grid",
                    kind.name(),
                    names.join(", ")
                ),
                self.span,
                "grid mismatch",
                "use a resampled value only on its own grid and outside spatial operators",
            );
            return None;
        }
        let fine = self.expression_axes(operand)?;
        if fine.len() != axes.len() {
            self.error(
                Code::E0208,
                format!("`{}` of a value without a grid", kind.name()),
                self.span,
                "operand has no axes",
                "resample a field",
            );
            return None;
        }
        let operand = self.lower(operand, &Target::grid(fine))?;
        let value = self.graph.node(operand).value.clone();
        Some(self.add(
            NodeKind::Resample { kind, factor },
            target.value(value.channels, value.complex),
            &[operand],
        ))
    }

    fn lower_matmul(&mut self, matrix: &Expr, operand: &Expr, target: &Target) -> Option<NodeId> {
        let Expr::Param(id) = matrix else {
            self.error(
                Code::E0203,
                "matrix product with a matrix that is not a parameter",
                self.span,
                "expected a matrix parameter",
                "declare the matrix as `param W[m, n]`",
            );
            return None;
        };
        let param = self.model.param(*id);
        let points = target.axes.first().map(|a| self.model.axis(*a).points);
        let square = param.dims.len() == 2 && param.dims[0] == param.dims[1];
        if target.axes.len() != 1 || !square || Some(param.dims[1]) != points || target.halo[0] != 0
        {
            self.error(
                Code::E0203,
                format!("matrix `{}` of shape {:?} does not fit the operand", param.name, param.dims),
                self.span,
                "matrix shape mismatch",
                "use a square matrix whose size is the number of points of the operand's one axis, outside derivatives",
            );
            return None;
        }
        let dims = param.dims.clone();
        let complex_matrix = param.complex;
        let operand = self.lower(operand, target)?;
        let matrix_value = ValueType {
            grid: Grid::Tensor { dims },
            channels: 1,
            complex: complex_matrix,
        };
        let id = *id;
        let matrix_node = self.memoized(format!("param {}", id.0), |this| {
            Some(this.add(NodeKind::Param { param: id }, matrix_value, &[]))
        })?;
        let value = self.graph.node(operand).value.clone();
        let complex = value.complex || complex_matrix;
        Some(self.add(
            NodeKind::Dense,
            target.value(value.channels, complex),
            &[matrix_node, operand],
        ))
    }
}

/// Returns the leaf that reads `node`, adding it to the inputs unless it is there already.
fn input_leaf(inputs: &mut Vec<NodeId>, node: NodeId, channel: Option<usize>) -> PointwiseExpr {
    let index = inputs.iter().position(|i| *i == node).unwrap_or_else(|| {
        inputs.push(node);
        inputs.len() - 1
    });
    PointwiseExpr::Input { index, channel }
}

fn add_tap(taps: &mut Vec<Tap>, offset: Vec<i32>, weight: f64) {
    match taps.iter_mut().find(|t| t.offset == offset) {
        Some(tap) => tap.weight += weight,
        None => taps.push(Tap { offset, weight }),
    }
}

/// Returns true if a pointwise expression has a complex value.
pub fn pointwise_is_complex(expr: &PointwiseExpr, inputs: &[ValueType]) -> bool {
    match expr {
        PointwiseExpr::Input { index, .. } => inputs[*index].complex,
        PointwiseExpr::Real(_)
        | PointwiseExpr::Coordinate(_)
        | PointwiseExpr::Time
        | PointwiseExpr::Compare(..) => false,
        PointwiseExpr::Complex(..) => true,
        PointwiseExpr::Unary(_, a) => pointwise_is_complex(a, inputs),
        PointwiseExpr::Binary(_, a, b) => {
            pointwise_is_complex(a, inputs) || pointwise_is_complex(b, inputs)
        }
        PointwiseExpr::Call(function, args) => match function {
            Function::Abs
            | Function::Re
            | Function::Im
            | Function::Relu
            | Function::Max
            | Function::Min => false,
            Function::Tanh
            | Function::Sigmoid
            | Function::Exp
            | Function::Log
            | Function::Sin
            | Function::Cos
            | Function::Sqrt
            | Function::Conj
            | Function::Softmax => args.iter().any(|a| pointwise_is_complex(a, inputs)),
        },
    }
}

/// Checks that the scheme fits the equation and reports E0241 where it does not.
fn scheme_fits(
    lowerer: &mut Lowerer,
    scheme: &Scheme,
    equation: &npdec_symbolic::Equation,
    task_equations: &[npdec_symbolic::EquationId],
) -> bool {
    let order = equation.time_order;
    let allowed: &[u8] = match scheme {
        Scheme::Euler | Scheme::Rk4 | Scheme::Leapfrog => &[1, 2],
        Scheme::CrankNicolson | Scheme::BackwardEuler | Scheme::SplitStep => &[1],
        Scheme::Steady { .. } => &[0],
    };
    if !allowed.contains(&order) {
        let what = match order {
            0 => "a steady equation".to_string(),
            k => format!("an equation of order {k} in time"),
        };
        let help = match order {
            0 => "solve steady equations with `scheme steady`".to_string(),
            1 => format!(
                "use {}",
                npdec_diagnostics::one_of(&[
                    "euler",
                    "rk4",
                    "leapfrog",
                    "crank_nicolson",
                    "backward_euler",
                    "split_step"
                ])
            ),
            _ => format!(
                "use {}",
                npdec_diagnostics::one_of(&["leapfrog", "rk4", "euler"])
            ),
        };
        lowerer.error(
            Code::E0241,
            format!("scheme `{}` does not fit {what}", scheme.name()),
            equation.span,
            "scheme does not fit",
            help,
        );
        return false;
    }
    if matches!(
        scheme,
        Scheme::CrankNicolson | Scheme::BackwardEuler | Scheme::Steady { .. }
    ) {
        let fields: Vec<FieldId> = task_equations
            .iter()
            .map(|e| lowerer.model.equation(*e).field)
            .collect();
        if field_degree(&equation.rhs(), &fields).is_none_or(|d| d > 1) {
            lowerer.error(
                Code::E0241,
                format!(
                    "scheme `{}` needs an equation that is linear in its fields",
                    scheme.name()
                ),
                equation.span,
                "this right-hand side is nonlinear in the unknown",
                "use an explicit scheme such as `rk4` for nonlinear equations",
            );
            return false;
        }
    }
    true
}

/// Returns the polynomial degree of an expression in the given fields, or `None` when it is not a
/// polynomial in them (or not complex-linear, as with `conj(u)`).
pub fn field_degree(expr: &Expr, fields: &[FieldId]) -> Option<u32> {
    let degree = |e: &Expr| field_degree(e, fields);
    match expr {
        Expr::Field(f) | Expr::Channel(f, _) => Some(u32::from(fields.contains(f))),
        Expr::Real(_)
        | Expr::Complex(..)
        | Expr::Coordinate(_)
        | Expr::Time
        | Expr::Param(_)
        | Expr::Input(_)
        | Expr::Label(_)
        | Expr::Sequence(_) => Some(0),
        Expr::Unary(UnaryOp::Neg, a) => degree(a),
        Expr::Binary(op, a, b) => {
            let (da, db) = (degree(a)?, degree(b)?);
            match op {
                BinaryOp::Add | BinaryOp::Sub => Some(da.max(db)),
                BinaryOp::Mul => Some(da + db),
                BinaryOp::Div if db == 0 => Some(da),
                BinaryOp::Pow if db == 0 => match constant_value(&simplify(b)) {
                    Some((n, 0.0)) if n >= 0.0 && n.fract() == 0.0 => Some(da * n as u32),
                    _ if da == 0 => Some(0),
                    _ => None,
                },
                BinaryOp::Div | BinaryOp::Pow => None,
            }
        }
        Expr::Call(..) | Expr::Compare(..) | Expr::Stack(_) => {
            let reads_unknown = expr
                .any(|e| matches!(e, Expr::Field(f) | Expr::Channel(f, _) if fields.contains(f)));
            if reads_unknown {
                None
            } else {
                Some(0)
            }
        }
        Expr::Derivative { operand, .. }
        | Expr::Laplace(operand)
        | Expr::Convolution { operand, .. }
        | Expr::Resample { operand, .. } => degree(operand),
        Expr::DivGrad {
            coefficient,
            operand,
        } => Some(degree(coefficient)? + degree(operand)?),
        Expr::Upwind {
            velocity, operand, ..
        } => match degree(velocity)? {
            0 => degree(operand),
            _ => None,
        },
        Expr::MatMul { matrix, operand } => Some(degree(matrix)? + degree(operand)?),
        Expr::Reduce(op, a) => match (op, degree(a)?) {
            (_, 0) => Some(0),
            (ReduceOp::Sum | ReduceOp::Mean | ReduceOp::Integral, d) => Some(d),
            (ReduceOp::Max | ReduceOp::Min | ReduceOp::Norm, _) => None,
        },
    }
}

/// Splits an equation for split-step Fourier into the rate `a` of its pointwise part `a·u` and the
/// constant coefficient of its Laplacian.
fn split_equation(
    lowerer: &mut Lowerer,
    equation: &npdec_symbolic::Equation,
) -> Option<(Expr, Option<SpectralLaplace>)> {
    let field = equation.field;
    let declaration = lowerer.model.field(field);
    if let Some(axis) = declaration
        .axes
        .iter()
        .find(|a| !lowerer.model.axis(**a).periodic)
    {
        let name = lowerer.model.axis(*axis).name.clone();
        lowerer.error(
            Code::E0241,
            format!("scheme `split_step` needs periodic axes, and `{name}` is not periodic"),
            equation.span,
            "split-step Fourier propagates in Fourier space",
            format!("make `{name}` periodic, or use `crank_nicolson`"),
        );
        return None;
    }
    let (rate, laplace) = match split_spectral(equation) {
        Ok(split) => split,
        Err(term) => {
            lowerer.error(
                Code::E0241,
                "scheme `split_step` needs terms of the form `c * laplace(u)` or `a * u`",
                term_span(equation, &term),
                "this term is neither a constant times the Laplacian nor a multiple of the field",
                "write the equation as `dt(u) = c * laplace(u) + a(x, t, |u|) * u`, or use `rk4`",
            );
            return None;
        }
    };
    let spectral = SpectralLaplace {
        re: laplace.0,
        im: laplace.1,
    };
    Some((rate, Some(spectral)))
}

/// Splits the right-hand side of an equation for split-step Fourier into the rate `a` of its
/// pointwise part `a·u` and the constant coefficient `(re, im)` of its Laplacian `c·∇²u`. Returns the
/// first term of neither form as the error.
pub fn split_spectral(equation: &npdec_symbolic::Equation) -> Result<(Expr, (f64, f64)), Expr> {
    let field = equation.field;
    let mut laplace = (0.0, 0.0);
    let mut rate: Option<Expr> = None;
    // A library function such as `1i * (0.5 * laplace(u) - V * u)` is one term of the equation;
    // distributing products over sums exposes its Laplacian and pointwise parts.
    let expanded: Vec<Expr> = equation
        .terms
        .iter()
        .flat_map(|t| expand_products(&simplify(&t.expr)))
        .collect();
    for term in expanded {
        let term = simplify(&term);
        if let Some((re, im)) = laplace_coefficient(&term, field) {
            laplace = (laplace.0 + re, laplace.1 + im);
            continue;
        }
        match factor_out_field(&term, field) {
            Some(a)
                if !a.any(|e| {
                    matches!(
                        e,
                        Expr::Derivative { .. }
                            | Expr::Laplace(_)
                            | Expr::DivGrad { .. }
                            | Expr::Upwind { .. }
                            | Expr::Convolution { .. }
                            | Expr::MatMul { .. }
                            | Expr::Resample { .. }
                    )
                }) =>
            {
                rate = Some(match rate {
                    Some(sum) => Expr::binary(BinaryOp::Add, sum, a),
                    None => a,
                });
            }
            _ => return Err(term),
        }
    }
    Ok((simplify(&rate.unwrap_or(Expr::Real(0.0))), laplace))
}

/// Rewrites an expression as a list of summands by distributing products and quotients over sums:
/// `c * (a - b)` becomes `[c * a, -(c * b)]`. Only `+`, `-`, `*` and `/` by a non-sum are expanded.
fn expand_products(expr: &Expr) -> Vec<Expr> {
    let negate = |terms: Vec<Expr>| {
        terms
            .into_iter()
            .map(|t| Expr::Unary(UnaryOp::Neg, Box::new(t)))
            .collect::<Vec<_>>()
    };
    match expr {
        Expr::Binary(BinaryOp::Add, a, b) => {
            let mut terms = expand_products(a);
            terms.extend(expand_products(b));
            terms
        }
        Expr::Binary(BinaryOp::Sub, a, b) => {
            let mut terms = expand_products(a);
            terms.extend(negate(expand_products(b)));
            terms
        }
        Expr::Unary(UnaryOp::Neg, a) => negate(expand_products(a)),
        Expr::Binary(BinaryOp::Mul, a, b) => {
            let (left, right) = (expand_products(a), expand_products(b));
            let mut terms = Vec::with_capacity(left.len() * right.len());
            for x in &left {
                for y in &right {
                    terms.push(Expr::binary(BinaryOp::Mul, x.clone(), y.clone()));
                }
            }
            terms
        }
        Expr::Binary(BinaryOp::Div, a, b) => expand_products(a)
            .into_iter()
            .map(|x| Expr::binary(BinaryOp::Div, x, (**b).clone()))
            .collect(),
        other => vec![other.clone()],
    }
}

fn term_span(equation: &npdec_symbolic::Equation, term: &Expr) -> Span {
    equation
        .terms
        .iter()
        .find(|t| simplify(&t.expr) == *term)
        .map_or(equation.span, |t| t.span)
}

/// Matches `c * laplace(u)`, `laplace(u) * c`, `laplace(u) / c`, `-(…)` and `laplace(u)` with a constant `c`.
fn laplace_coefficient(term: &Expr, field: FieldId) -> Option<(f64, f64)> {
    match term {
        Expr::Laplace(operand) if **operand == Expr::Field(field) => Some((1.0, 0.0)),
        Expr::Unary(UnaryOp::Neg, a) => laplace_coefficient(a, field).map(|(re, im)| (-re, -im)),
        Expr::Binary(BinaryOp::Mul, a, b) => {
            let (constant, rest) = match (constant_value(a), constant_value(b)) {
                (Some(c), None) => (c, b),
                (None, Some(c)) => (c, a),
                _ => return None,
            };
            let (re, im) = laplace_coefficient(rest, field)?;
            Some((
                constant.0 * re - constant.1 * im,
                constant.0 * im + constant.1 * re,
            ))
        }
        Expr::Binary(BinaryOp::Div, a, b) => {
            let (cr, ci) = constant_value(b)?;
            let (re, im) = laplace_coefficient(a, field)?;
            let norm = cr * cr + ci * ci;
            (norm != 0.0).then(|| ((re * cr + im * ci) / norm, (im * cr - re * ci) / norm))
        }
        _ => None,
    }
}

/// Returns `a` such that `term = a · u`, found by removing one factor `u` from a product.
fn factor_out_field(term: &Expr, field: FieldId) -> Option<Expr> {
    match term {
        Expr::Field(f) if *f == field => Some(Expr::Real(1.0)),
        Expr::Unary(UnaryOp::Neg, a) => Some(Expr::Unary(
            UnaryOp::Neg,
            Box::new(factor_out_field(a, field)?),
        )),
        Expr::Binary(BinaryOp::Mul, a, b) => match factor_out_field(b, field) {
            Some(rest) => Some(simplify(&Expr::binary(BinaryOp::Mul, (**a).clone(), rest))),
            None => Some(simplify(&Expr::binary(
                BinaryOp::Mul,
                factor_out_field(a, field)?,
                (**b).clone(),
            ))),
        },
        Expr::Binary(BinaryOp::Div, a, b) => Some(simplify(&Expr::binary(
            BinaryOp::Div,
            factor_out_field(a, field)?,
            (**b).clone(),
        ))),
        _ => None,
    }
}
