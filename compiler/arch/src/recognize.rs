//! The recognition pass: from a checked model's tasks to their architectures.

use crate::{Architecture, Depth, Layer, LayerKind, Padding};
use npdec_symbolic::{
    BoundaryKind, Discretization, EquationId, Expr, FieldId, Function, Model, ParamId, Resample,
    Scheme, Task, UnaryOp,
};
use std::collections::BTreeSet;

/// Recognizes the network of every task of a model, in task order.
pub fn recognize(model: &Model) -> Vec<Architecture> {
    model
        .tasks
        .iter()
        .map(|task| match task {
            Task::Solve(solve) => architecture(
                model,
                "solve",
                &solve.equations,
                &solve.discretization,
                false,
            ),
            Task::Train(train) => architecture(
                model,
                "train",
                &train.equations,
                &train.discretization,
                true,
            ),
        })
        .collect()
}

fn architecture(
    model: &Model,
    verb: &str,
    equations: &[EquationId],
    discretization: &Discretization,
    readouts: bool,
) -> Architecture {
    let mut names: Vec<&str> = equations
        .iter()
        .map(|id| model.equation(*id).name.as_str())
        .collect();
    names.dedup();
    let mut layers = Vec::new();
    let mut block_parts = Vec::new();
    let mut used_params = BTreeSet::new();
    let mut sequence = false;

    for id in equations {
        let equation = model.equation(*id);
        let field = equation.field;
        let plain = matches!(discretization.scheme, Scheme::Euler)
            && (discretization.dt - 1.0).abs() < 1e-12
            && equation
                .terms
                .iter()
                .any(|t| is_minus_field(&t.expr, field));
        let block = match &discretization.scheme {
            Scheme::Euler if plain => LayerKind::Plain,
            Scheme::Euler => LayerKind::Residual {
                dt: discretization.dt,
            },
            Scheme::Rk4 => LayerKind::MultiStage { stages: 4 },
            Scheme::Leapfrog => LayerKind::MultiStage { stages: 2 },
            Scheme::CrankNicolson | Scheme::BackwardEuler | Scheme::Steady { .. } => {
                LayerKind::Implicit {
                    scheme: discretization.scheme.name().to_string(),
                }
            }
            Scheme::SplitStep => LayerKind::SpectralPropagation,
        };
        let shape = field_shape(model, field);
        let target = model.field(field).name.clone();
        let mut parts = Vec::new();
        layers.push(Layer {
            index: 0,
            kind: block.clone(),
            input: shape.clone(),
            output: shape.clone(),
            parameters: 0,
            term: format!("dt({target}) = …"),
            equation: equation.name.clone(),
            span: equation.span,
            line: None,
        });
        for term in &equation.terms {
            if plain && is_minus_field(&term.expr, field) {
                continue;
            }
            let mut found = Vec::new();
            collect_layers(model, &term.expr, discretization, &mut found);
            sequence |= term.expr.any(|e| matches!(e, Expr::Sequence(_)));
            let term_params = learnable_params(model, &term.expr);
            used_params.extend(term_params.iter().copied());
            let weighted: usize = found.iter().map(|(_, p)| *p).sum();
            if found.is_empty() {
                found.push((LayerKind::Pointwise, 0));
            }
            // Biases and coefficients belong to the term's first layer that can own weights.
            let total: usize = term_params.iter().map(|p| param_size(model, *p)).sum();
            if total > weighted {
                let owner = owner_of_rest(&found);
                found[owner].1 += total - weighted;
            }
            for (kind, parameters) in found {
                parts.push(kind.short());
                let (input, output) =
                    resample_shapes(&kind).unwrap_or_else(|| (shape.clone(), shape.clone()));
                layers.push(Layer {
                    index: 0,
                    kind,
                    input,
                    output,
                    parameters,
                    term: model.display_expr(&term.expr),
                    equation: equation.name.clone(),
                    span: term.span,
                    line: None,
                });
            }
        }
        block_parts.push(format!("{}({})", block.short(), parts.join(" + ")));
    }

    let mut readout_parts = Vec::new();
    if readouts {
        for readout in &model.readouts {
            let mut found = Vec::new();
            collect_layers(model, &readout.expr, discretization, &mut found);
            let params = learnable_params(model, &readout.expr);
            used_params.extend(params.iter().copied());
            let total: usize = params.iter().map(|p| param_size(model, *p)).sum();
            let weighted: usize = found.iter().map(|(_, p)| *p).sum();
            if found.is_empty() {
                found.push((LayerKind::Pointwise, 0));
            }
            if total > weighted {
                let owner = owner_of_rest(&found);
                found[owner].1 += total - weighted;
            }
            let shorts: Vec<String> = found.iter().map(|(k, _)| k.short()).collect();
            readout_parts.push(format!("readout {}: {}", readout.name, shorts.join(" + ")));
            layers.push(Layer {
                index: 0,
                kind: LayerKind::Readout {
                    name: readout.name.clone(),
                },
                input: String::new(),
                output: String::new(),
                parameters: 0,
                term: model.display_expr(&readout.expr),
                equation: readout.name.clone(),
                span: readout.span,
                line: None,
            });
            for (kind, parameters) in found {
                let (input, output) = resample_shapes(&kind).unwrap_or_default();
                layers.push(Layer {
                    index: 0,
                    kind,
                    input,
                    output,
                    parameters,
                    term: model.display_expr(&readout.expr),
                    equation: readout.name.clone(),
                    span: readout.span,
                    line: None,
                });
            }
        }
    }
    for (index, layer) in layers.iter_mut().enumerate() {
        layer.index = index;
    }

    let steps = discretization.steps.max(1);
    let per_step = used_params.iter().any(|p| model.param(*p).per_step);
    let depth = if used_params.is_empty() {
        Depth::Fixed
    } else if per_step {
        Depth::Untied
    } else if sequence {
        Depth::Recurrent
    } else {
        Depth::Tied
    };
    let parameters: usize = used_params
        .iter()
        .map(|p| param_size(model, *p) * if model.param(*p).per_step { steps } else { 1 })
        .sum();
    let depth_note = match depth {
        Depth::Recurrent => ", recurrent: weights shared by every step",
        Depth::Tied => ", weights shared by every step",
        Depth::Untied => ", one set of weights per step",
        Depth::Fixed => "",
    };
    let mut summary = format!("{steps} × {}{depth_note}", block_parts.join(" ∥ "));
    for part in readout_parts {
        summary.push_str(&format!(" → {part}"));
    }
    Architecture {
        task: format!("{verb} {}", names.join(", ")),
        steps,
        depth,
        layers,
        parameters,
        summary,
    }
}

/// Returns the layer that the biases and coefficients of a term count towards: its first layer
/// other than pooling and upsampling, which have no weights, or else its first layer.
fn owner_of_rest(found: &[(LayerKind, usize)]) -> usize {
    found
        .iter()
        .position(|(kind, _)| !matches!(kind, LayerKind::Pool { .. } | LayerKind::Upsample { .. }))
        .unwrap_or(0)
}

fn is_minus_field(expr: &Expr, field: FieldId) -> bool {
    matches!(expr, Expr::Unary(UnaryOp::Neg, inner) if **inner == Expr::Field(field))
}

/// Collects the layers of one term, innermost first, with the parameters each owns.
fn collect_layers(
    model: &Model,
    expr: &Expr,
    discretization: &Discretization,
    out: &mut Vec<(LayerKind, usize)>,
) {
    let mut seen = Vec::new();
    collect_unique_layers(model, expr, discretization, out, &mut seen);
}

/// Walks a term; `seen` holds the weighted subexpressions already counted, because inlining can
/// repeat one, as `swish(W @ u)` becomes `(W @ u) * sigmoid(W @ u)`, and it is still one layer.
fn collect_unique_layers<'e>(
    model: &Model,
    expr: &'e Expr,
    discretization: &Discretization,
    out: &mut Vec<(LayerKind, usize)>,
    seen: &mut Vec<&'e Expr>,
) {
    if matches!(expr, Expr::MatMul { .. } | Expr::Convolution { .. }) {
        if seen.contains(&expr) {
            return;
        }
        seen.push(expr);
    }
    match expr {
        Expr::Call(
            function @ (Function::Tanh | Function::Relu | Function::Sigmoid | Function::Softmax),
            args,
        ) => {
            for arg in args {
                collect_unique_layers(model, arg, discretization, out, seen);
            }
            out.push((
                LayerKind::Activation {
                    function: function.name().to_string(),
                },
                0,
            ));
        }
        Expr::Convolution { kernel, operand } => {
            collect_unique_layers(model, operand, discretization, out, seen);
            let param = model.param(*kernel);
            let dims = &param.dims;
            let parameters = if param.learnable {
                dims.iter().product()
            } else {
                0
            };
            out.push((
                LayerKind::Convolution {
                    kernel: dims[2..].to_vec(),
                    in_channels: dims[1],
                    out_channels: dims[0],
                    padding: padding_of(model, operand),
                    learnable: param.learnable,
                    operator: "conv".to_string(),
                },
                parameters,
            ));
        }
        Expr::MatMul { matrix, operand } => {
            collect_unique_layers(model, operand, discretization, out, seen);
            if let Expr::Param(id) = matrix.as_ref() {
                let param = model.param(*id);
                let (rows, columns) = (param.dims[0], param.dims.get(1).copied().unwrap_or(1));
                let parameters = if param.learnable { rows * columns } else { 0 };
                out.push((LayerKind::Dense { rows, columns }, parameters));
            }
        }
        Expr::Laplace(operand)
        | Expr::Derivative { operand, .. }
        | Expr::DivGrad { operand, .. }
        | Expr::Upwind { operand, .. } => {
            collect_unique_layers(model, operand, discretization, out, seen);
            let (operator, radius_per_axis) =
                stencil_shape(model, expr, discretization.space_order as usize);
            let channels = operand_channels(model, operand);
            out.push((
                LayerKind::Convolution {
                    kernel: radius_per_axis.iter().map(|r| 2 * r + 1).collect(),
                    in_channels: channels,
                    out_channels: channels,
                    padding: padding_of(model, operand),
                    learnable: false,
                    operator,
                },
                0,
            ));
        }
        Expr::Resample {
            kind,
            factor,
            operand,
            axes,
        } => {
            collect_unique_layers(model, operand, discretization, out, seen);
            let channels = resampled_channels(model, operand);
            let mut output = vec![channels];
            output.extend(axes.iter().map(|a| model.axis(*a).points));
            let mut input = vec![channels];
            input.extend(output[1..].iter().map(|n| match kind {
                Resample::Pool => n * factor,
                Resample::Upsample => n / factor,
            }));
            let factor = *factor;
            out.push((
                match kind {
                    Resample::Pool => LayerKind::Pool {
                        factor,
                        input_shape: input,
                        output_shape: output,
                    },
                    Resample::Upsample => LayerKind::Upsample {
                        factor,
                        input_shape: input,
                        output_shape: output,
                    },
                },
                0,
            ));
        }
        Expr::Sequence(_) => out.push((LayerKind::SequenceInput, 0)),
        Expr::Unary(_, a) | Expr::Reduce(_, a) => {
            collect_unique_layers(model, a, discretization, out, seen)
        }
        Expr::Binary(_, a, b) | Expr::Compare(_, a, b) => {
            collect_unique_layers(model, a, discretization, out, seen);
            collect_unique_layers(model, b, discretization, out, seen);
        }
        Expr::Call(_, args) | Expr::Stack(args) => args
            .iter()
            .for_each(|a| collect_unique_layers(model, a, discretization, out, seen)),
        Expr::Real(_)
        | Expr::Complex(..)
        | Expr::Coordinate(_)
        | Expr::Time
        | Expr::Field(_)
        | Expr::Channel(..)
        | Expr::Param(_)
        | Expr::Input(_)
        | Expr::Label(_) => {}
    }
}

/// Returns the operator name and the stencil radius along each axis of the operand.
fn stencil_shape(model: &Model, expr: &Expr, order: usize) -> (String, Vec<usize>) {
    let centered = order / 2;
    match expr {
        Expr::Laplace(operand) => (
            "laplace".to_string(),
            vec![centered; operand_axes(model, operand).len()],
        ),
        Expr::DivGrad { operand, .. } => (
            "div grad".to_string(),
            vec![1; operand_axes(model, operand).len()],
        ),
        Expr::Upwind {
            operand,
            axis,
            order: upwind_order,
            ..
        } => {
            let axes = operand_axes(model, operand);
            (
                "upwind".to_string(),
                axes.iter()
                    .map(|a| if a == axis { *upwind_order as usize } else { 0 })
                    .collect(),
            )
        }
        Expr::Derivative {
            operand,
            axes: along,
        } => {
            let axes = operand_axes(model, operand);
            let radius = |axis: &npdec_symbolic::AxisId| {
                let count = along.iter().filter(|a| *a == axis).count();
                if count == 0 {
                    0
                } else {
                    (count + order - 1) / 2
                }
            };
            ("diff".to_string(), axes.iter().map(radius).collect())
        }
        _ => (String::new(), Vec::new()),
    }
}

/// Returns the shapes of a pooling or upsampling layer as `channels×points…` text.
fn resample_shapes(kind: &LayerKind) -> Option<(String, String)> {
    let text = |dims: &[usize]| {
        dims.iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("×")
    };
    match kind {
        LayerKind::Pool {
            input_shape,
            output_shape,
            ..
        }
        | LayerKind::Upsample {
            input_shape,
            output_shape,
            ..
        } => Some((text(input_shape), text(output_shape))),
        _ => None,
    }
}

/// Returns the channel count of the operand of `pool` or `upsample`: that of the convolution,
/// channel or field it reads.
fn resampled_channels(model: &Model, operand: &Expr) -> usize {
    match operand {
        Expr::Convolution { kernel, .. } => model.param(*kernel).dims[0],
        Expr::Resample { operand, .. } => resampled_channels(model, operand),
        Expr::Call(_, args) if args.len() == 1 => resampled_channels(model, &args[0]),
        _ => operand_channels(model, operand),
    }
}

fn fields_of(expr: &Expr) -> Vec<FieldId> {
    let mut fields = Vec::new();
    expr.walk(&mut |e| {
        if let Expr::Field(f) | Expr::Channel(f, _) = e {
            if !fields.contains(f) {
                fields.push(*f);
            }
        }
    });
    fields
}

fn operand_axes(model: &Model, operand: &Expr) -> Vec<npdec_symbolic::AxisId> {
    fields_of(operand)
        .first()
        .map(|f| model.field(*f).axes.clone())
        .unwrap_or_default()
}

fn operand_channels(model: &Model, operand: &Expr) -> usize {
    match operand {
        Expr::Channel(..) => 1,
        _ => fields_of(operand)
            .first()
            .map_or(1, |f| model.field(*f).channels),
    }
}

/// Names the padding that the boundary conditions of the operand's fields amount to.
fn padding_of(model: &Model, operand: &Expr) -> Padding {
    let mut kinds = BTreeSet::new();
    for field in fields_of(operand) {
        for condition in model.boundaries.iter().filter(|b| b.field == field) {
            kinds.insert(match condition.kind {
                BoundaryKind::Dirichlet(_) => 0,
                BoundaryKind::Neumann(_) => 1,
                BoundaryKind::Robin { .. } => 2,
                BoundaryKind::Periodic => 3,
            });
        }
    }
    match (kinds.len(), kinds.iter().next()) {
        (0, _) => Padding::None,
        (1, Some(0)) => Padding::Constant,
        (1, Some(1)) => Padding::Reflect,
        (1, Some(3)) => Padding::Circular,
        _ => Padding::Mixed,
    }
}

fn learnable_params(model: &Model, expr: &Expr) -> BTreeSet<ParamId> {
    let mut params = BTreeSet::new();
    expr.walk(&mut |e| {
        let id = match e {
            Expr::Param(id) => Some(*id),
            Expr::Convolution { kernel, .. } => Some(*kernel),
            _ => None,
        };
        if let Some(id) = id {
            if model.param(id).learnable {
                params.insert(id);
            }
        }
    });
    params
}

/// Returns the number of values of one step's copy of a parameter.
fn param_size(model: &Model, id: ParamId) -> usize {
    let param = model.param(id);
    let points: usize = param.axes.iter().map(|a| model.axis(*a).points).product();
    points * param.dims.iter().product::<usize>().max(1)
}

fn field_shape(model: &Model, field: FieldId) -> String {
    let f = model.field(field);
    let mut dims: Vec<String> = Vec::new();
    if f.channels > 1 {
        dims.push(f.channels.to_string());
    }
    dims.extend(f.axes.iter().map(|a| model.axis(*a).points.to_string()));
    format!("{}: {}", f.name, dims.join("×"))
}
