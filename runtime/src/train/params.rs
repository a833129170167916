//! Parameter storage for training: initial values from the declared initializers, and the
//! flat vector of learnable entries that optimizers work on.

use crate::train::tape::ParamValues;
use npdec_learn::data::ShuffleRng;
use npdec_symbolic::{BinaryOp, Expr, Function, Initializer, Model, UnaryOp};

/// Draws every parameter's initial values. Random initializers use a ChaCha stream seeded by
/// `seed` and the parameter's index, so each parameter's values do not depend on the others.
pub fn initialize_params(
    model: &Model,
    steps: usize,
    step_sizes: &[usize],
    seed: u64,
) -> Result<ParamValues, String> {
    let mut values = Vec::with_capacity(model.params.len());
    for (index, param) in model.params.iter().enumerate() {
        let size = step_sizes[index];
        let count = if param.per_step {
            size * steps.max(1)
        } else {
            size
        };
        let (fan_in, fan_out) = match param.dims.as_slice() {
            [out, inp, rest @ ..] => (
                inp * rest.iter().product::<usize>(),
                out * rest.iter().product::<usize>(),
            ),
            [n] => (*n, *n),
            [] => (1, 1),
        };
        let mut rng =
            ShuffleRng::from_seed(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ index as u64);
        let mut normal = || {
            let u = 1.0 - rng.uniform();
            let v = rng.uniform();
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        };
        let entries: Vec<f64> = match &param.init {
            Initializer::Zeros => vec![0.0; count],
            Initializer::Ones => vec![1.0; count],
            Initializer::Value(expr) => {
                let points: usize = param.axes.iter().map(|a| model.axis(*a).points).product();
                let dims: usize = param.dims.iter().product();
                let extents: Vec<usize> =
                    param.axes.iter().map(|a| model.axis(*a).points).collect();
                let mut one_step = Vec::with_capacity(size);
                for p in 0..points {
                    let mut rest = p;
                    let mut coordinates = vec![0.0; extents.len()];
                    for a in (0..extents.len()).rev() {
                        coordinates[a] = model.axis(param.axes[a]).coordinate(rest % extents[a]);
                        rest /= extents[a];
                    }
                    let value = evaluate_constant(expr, &param.axes, &coordinates)
                        .ok_or_else(|| {
                            format!(
                                "the value of parameter `{}` must be an expression of numbers and its own coordinates",
                                param.name
                            )
                        })?;
                    one_step.extend(std::iter::repeat_n(value, dims));
                }
                one_step.iter().copied().cycle().take(count).collect()
            }
            Initializer::Normal { mean, std } => {
                (0..count).map(|_| mean + std * normal()).collect()
            }
            Initializer::Uniform { min, max } => {
                let mut rng = ShuffleRng::from_seed(
                    seed ^ (index as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9),
                );
                (0..count)
                    .map(|_| min + (max - min) * rng.uniform())
                    .collect()
            }
            Initializer::Glorot => {
                let a = (6.0 / (fan_in + fan_out) as f64).sqrt();
                let mut rng = ShuffleRng::from_seed(
                    seed ^ (index as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9),
                );
                (0..count).map(|_| -a + 2.0 * a * rng.uniform()).collect()
            }
            Initializer::He => {
                let std = (2.0 / fan_in as f64).sqrt();
                (0..count).map(|_| std * normal()).collect()
            }
        };
        values.push(entries);
    }
    Ok(ParamValues::new(values, step_sizes.to_vec()))
}

fn evaluate_constant(
    expr: &Expr,
    axes: &[npdec_symbolic::AxisId],
    coordinates: &[f64],
) -> Option<f64> {
    let eval = |e: &Expr| evaluate_constant(e, axes, coordinates);
    Some(match expr {
        Expr::Real(v) => *v,
        Expr::Coordinate(axis) => coordinates[axes.iter().position(|a| a == axis)?],
        Expr::Unary(UnaryOp::Neg, a) => -eval(a)?,
        Expr::Binary(op, a, b) => {
            let (x, y) = (eval(a)?, eval(b)?);
            match op {
                BinaryOp::Add => x + y,
                BinaryOp::Sub => x - y,
                BinaryOp::Mul => x * y,
                BinaryOp::Div => x / y,
                BinaryOp::Pow => x.powf(y),
            }
        }
        Expr::Call(Function::Max, args) if args.len() == 2 => eval(&args[0])?.max(eval(&args[1])?),
        Expr::Call(Function::Min, args) if args.len() == 2 => eval(&args[0])?.min(eval(&args[1])?),
        Expr::Call(function, args) if args.len() == 1 && *function != Function::Softmax => {
            crate::train::tape::call(*function, eval(&args[0])?)
        }
        _ => return None,
    })
}

/// Returns the indices of the learnable parameters.
pub fn learnable(model: &Model) -> Vec<usize> {
    (0..model.params.len())
        .filter(|i| model.params[*i].learnable)
        .collect()
}

/// Concatenates the learnable parameters into one vector.
pub fn flatten_learnable(values: &ParamValues, learnable: &[usize]) -> Vec<f64> {
    learnable
        .iter()
        .flat_map(|i| values.values[*i].iter().copied())
        .collect()
}

/// Concatenates the learnable parameters into `flat`, reusing its storage.
pub fn flatten_learnable_into(values: &ParamValues, learnable: &[usize], flat: &mut Vec<f64>) {
    flat.clear();
    for i in learnable {
        flat.extend_from_slice(&values.values[*i]);
    }
}

/// Writes a flat vector back into the learnable parameters (and their `f32` copy when products
/// run in `f32`).
pub fn unflatten_learnable(flat: &[f64], values: &mut ParamValues, learnable: &[usize]) {
    let mut position = 0;
    for i in learnable {
        let target = &mut values.values[*i];
        let len = target.len();
        target.copy_from_slice(&flat[position..position + len]);
        position += len;
    }
    values.refresh_single();
}

/// Returns the checkpoint shape of a parameter: `[steps]` first when per step, then axes and dims.
pub fn param_shape(model: &Model, index: usize, values: &ParamValues) -> Vec<usize> {
    let param = &model.params[index];
    let mut shape = Vec::new();
    if param.per_step {
        shape.push(values.values[index].len() / values.step_sizes[index].max(1));
    }
    shape.extend(param.axes.iter().map(|a| model.axis(*a).points));
    shape.extend(param.dims.iter().copied());
    shape
}
