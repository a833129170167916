//! The diffractive stack a trained split-step task describes: one complex transmission mask per
//! step, the propagation distances, the detector rectangles of the class scores, and the test
//! inputs with the digital model's accuracy, for `npdec build --emit diffractive`.
//!
//! Step `n` of split-step Fourier is `L(Δz/2) · exp(Δz·aₙ) · L(Δz/2)`, so the stack is: the input,
//! `Δz/2` of free space, mask 0, `Δz` between consecutive masks, `Δz/2` after the last mask, the
//! detectors. Mask `n` is `exp(Δz·a)` with the rate `a` evaluated as the solver does, at step `n`
//! and time `(n + 1/2)·Δz`.

use crate::train::adjoint::{Chunk, Network};
use crate::train::lower::{grid_values, LoweredTask};
use crate::train::tape::{Env, ParamValues};
use crate::train::training::{
    evaluate_dataset, label_matrix, load_checkpoint_params, prepare, TrainOptions,
};
use ndarray::Array2;
use npdec_learn::data::Targets;
use npdec_symbolic::{BinaryOp, Expr, FieldId, Function, Loss, Model, ReduceOp, TrainTask};
use num_complex::Complex64;
use std::path::Path;

/// A rectangle `[min, max]` along each of the two axes of the field, in model units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AxisRect {
    pub first: (f64, f64),
    pub second: (f64, f64),
}

/// The stack in model units.
#[derive(Clone, Debug)]
pub struct DiffractiveStack {
    /// The wave number `k` from the Laplacian coefficient `∓i/(2k)`.
    pub wave_number: f64,
    /// Grid spacing along the first and second axes.
    pub spacing: (f64, f64),
    /// Coordinates of point `(0, 0)`.
    pub origin: (f64, f64),
    /// Complex transmission per step, `[first axis, second axis]`.
    pub masks: Vec<Array2<Complex64>>,
    /// Distances: `Δz/2`, then `Δz` between masks, then `Δz/2`.
    pub distances: Vec<f64>,
    /// One detector per class.
    pub detectors: Vec<AxisRect>,
    /// The input fields of the test set.
    pub test_inputs: Vec<Array2<Complex64>>,
    pub test_labels: Vec<usize>,
    /// The digital model's test accuracy with the checkpoint's parameters.
    pub digital_accuracy: f64,
}

/// The reason a train task gives no diffractive stack.
#[derive(Clone, Debug, PartialEq)]
pub enum StackError {
    /// The task is not a diffractive network of one complex field, and the message names the
    /// part it lacks.
    Unfit(String),
    /// Its data or checkpoint could not be used, or the digital model is not finite.
    Failed(String),
}

impl From<String> for StackError {
    /// Wraps the message about a shape or readout that a diffractive stack cannot have.
    fn from(message: String) -> Self {
        StackError::Unfit(message)
    }
}

/// Reads the stack of a trained split-step task from the checkpoint file `checkpoint`.
pub fn diffractive_stack(
    model: &Model,
    task: &TrainTask,
    base_dir: &Path,
    checkpoint: &Path,
) -> Result<DiffractiveStack, StackError> {
    let options = TrainOptions::default();
    let mut prepared =
        prepare(model, task, base_dir, &options).map_err(|e| StackError::Failed(e.message))?;
    load_checkpoint_params(model, &mut prepared.params, checkpoint)
        .map_err(|e| StackError::Failed(e.message))?;
    let lowered = &prepared.lowered;
    let params = &prepared.params;
    let [slot] = lowered.states.as_slice() else {
        return Err(StackError::Unfit(format!(
            "a diffractive stack has one complex field advanced by `split_step`; this task has {} fields",
            lowered.states.len()
        )));
    };
    let Some(split) = &slot.split else {
        return Err(StackError::Unfit(
            "a diffractive stack needs a complex field advanced by `split_step`".to_string(),
        ));
    };
    let field = slot.field;
    let axes = &model.field(field).axes;
    if axes.len() != 2 {
        return Err(StackError::Unfit(format!(
            "a diffractive stack needs a field on two transverse axes, and `{}` has {}",
            model.field(field).name,
            axes.len()
        )));
    }
    let (c_re, c_im) = split.laplace;
    if c_re != 0.0 || c_im == 0.0 {
        return Err(StackError::Unfit(format!(
            "free space needs a Laplacian coefficient ∓i/(2k), found {c_re} + {c_im}i"
        )));
    }
    let wave_number = 1.0 / (2.0 * c_im.abs());
    let extents: Vec<usize> = axes.iter().map(|a| model.axis(*a).points).collect();
    let spacing = (model.axis(axes[0]).spacing(), model.axis(axes[1]).spacing());
    let origin = (
        model.axis(axes[0]).coordinate(0),
        model.axis(axes[1]).coordinate(0),
    );
    if (spacing.0 - spacing.1).abs() > 1e-12 * spacing.0.abs() {
        return Err(StackError::Unfit(format!(
            "a diffractive stack needs square pixels, and the spacings are {} and {}",
            spacing.0, spacing.1
        )));
    }
    let masks = masks(lowered, params, extents[0], extents[1], c_im > 0.0);
    let dz = lowered.dt;
    let mut distances = vec![dz / 2.0];
    distances.extend(std::iter::repeat_n(dz, lowered.steps - 1));
    distances.push(dz / 2.0);
    let detectors = detectors(model, task, field, &extents)?;

    let network = Network {
        model,
        task: lowered,
        compiled: None,
    };
    let test = &prepared.test;
    let Targets::Classes { labels, .. } = &test.targets else {
        return Err(StackError::Unfit(
            "a diffractive classifier needs class labels".to_string(),
        ));
    };
    let (_, outputs) = evaluate_dataset(&network, params, test, 64).map_err(|e| {
        StackError::Failed(format!(
            "the digital model is not finite at step {}",
            e.step
        ))
    })?;
    let correct = outputs
        .rows()
        .into_iter()
        .zip(labels)
        .filter(|(row, label)| argmax(row.as_slice().unwrap_or(&[])) == **label)
        .count();
    let digital_accuracy = correct as f64 / labels.len().max(1) as f64;

    let label_rows = label_matrix(&test.targets);
    let chunk = Chunk {
        samples: test.inputs.view(),
        labels: label_rows.view(),
        classes: Some(labels.as_slice()),
        pass: None,
    };
    let (initial, _) = network.initial_states(params, &chunk);
    let points = slot.points;
    let test_inputs = initial[0]
        .rows()
        .into_iter()
        .map(|row| {
            Array2::from_shape_fn((extents[0], extents[1]), |(i, j)| {
                let p = i * extents[1] + j;
                let value = Complex64::new(row[p], row[points + p]);
                if c_im > 0.0 {
                    value.conj()
                } else {
                    value
                }
            })
        })
        .collect();
    Ok(DiffractiveStack {
        wave_number,
        spacing,
        origin,
        masks,
        distances,
        detectors,
        test_inputs,
        test_labels: labels.clone(),
        digital_accuracy,
    })
}

fn argmax(values: &[f64]) -> usize {
    values
        .iter()
        .enumerate()
        .fold(
            (0, f64::MIN),
            |best, (i, v)| if *v > best.1 { (i, *v) } else { best },
        )
        .0
}

/// The transmission `exp(Δz·a)` of every step, conjugated when the model's convention is
/// `exp(i(kz − ωt))`.
fn masks(
    lowered: &LoweredTask,
    params: &ParamValues,
    rows: usize,
    columns: usize,
    conjugate: bool,
) -> Vec<Array2<Complex64>> {
    let split = lowered.states[0]
        .split
        .as_ref()
        .expect("checked by the caller");
    let dz = lowered.dt;
    (0..lowered.steps)
        .map(|step| {
            let env = Env {
                states: &[],
                params,
                samples: None,
                labels: None,
                step,
                time: (step as f64 + 0.5) * dz,
                batch: 1,
            };
            let values = lowered.rhs.forward(&env);
            let (re, im) = (&values[split.rate_re], &values[split.rate_im]);
            Array2::from_shape_fn((rows, columns), |(i, j)| {
                let p = i * columns + j;
                let t = (Complex64::new(re[[0, p]], im[[0, p]]) * dz).exp();
                if conjugate {
                    t.conj()
                } else {
                    t
                }
            })
        })
        .collect()
}

/// The detector rectangles of a readout `… [integral(abs(E)^2 * m₀), …] …`: each `mᵢ`, evaluated
/// on the grid, must be 1 on a filled rectangle of points and 0 elsewhere.
fn detectors(
    model: &Model,
    task: &TrainTask,
    field: FieldId,
    extents: &[usize],
) -> Result<Vec<AxisRect>, String> {
    let scores = match &task.loss {
        Loss::CrossEntropy { scores, .. } => scores,
        Loss::Mse { .. } => {
            return Err("a diffractive classifier needs a `cross_entropy` loss".to_string())
        }
    };
    let mut stack = None;
    scores.walk(&mut |e| {
        if let Expr::Stack(items) = e {
            stack.get_or_insert(items.clone());
        }
    });
    let Some(items) = stack else {
        return Err(
            "the class scores need a vector of detector integrals `[integral(abs(E)^2 * mask), …]`"
                .to_string(),
        );
    };
    let axes = &model.field(field).axes;
    items
        .iter()
        .enumerate()
        .map(|(class, item)| {
            let Expr::Reduce(ReduceOp::Integral, body) = item else {
                return Err(format!(
                    "detector {class}: expected `integral(abs(E)^2 * mask)`, found `{}`",
                    model.display_expr(item)
                ));
            };
            let mut factors = Vec::new();
            collect_factors(body, &mut factors);
            let intensity = factors.iter().position(|f| is_intensity(f, field)).ok_or_else(|| {
                format!(
                    "detector {class}: expected `integral(abs(E)^2 * mask)`, found `{}`",
                    model.display_expr(item)
                )
            })?;
            factors.remove(intensity);
            let mask = factors
                .into_iter()
                .reduce(|a, b| Expr::binary(BinaryOp::Mul, a, b))
                .unwrap_or(Expr::Real(1.0));
            if mask.mentions_field(field) {
                return Err(format!("detector {class}: the mask reads the field"));
            }
            let values = grid_values(model, field, &mask)?;
            rectangle(&values, extents).map_or_else(
                || {
                    Err(format!(
                        "detector {class}: the mask `{}` is not 1 on a rectangle of points and 0 elsewhere",
                        model.display_expr(&mask)
                    ))
                },
                |(first, second)| {
                    let edge = |axis: usize, range: (usize, usize)| {
                        let a = model.axis(axes[axis]);
                        let h = a.spacing();
                        (a.coordinate(range.0) - h / 2.0, a.coordinate(range.1) + h / 2.0)
                    };
                    Ok(AxisRect {
                        first: edge(0, first),
                        second: edge(1, second),
                    })
                },
            )
        })
        .collect()
}

fn collect_factors(expr: &Expr, out: &mut Vec<Expr>) {
    match expr {
        Expr::Binary(BinaryOp::Mul, a, b) => {
            collect_factors(a, out);
            collect_factors(b, out);
        }
        other => out.push(other.clone()),
    }
}

fn is_intensity(expr: &Expr, field: FieldId) -> bool {
    matches!(expr, Expr::Binary(BinaryOp::Pow, base, exponent)
        if **exponent == Expr::Real(2.0)
            && matches!(base.as_ref(), Expr::Call(Function::Abs, args) if args.as_slice() == [Expr::Field(field)]))
}

/// Returns the index ranges `(first, second)` of a filled rectangle where `values` is 1, if the
/// values are 1 exactly there and 0 elsewhere.
fn rectangle(values: &[f64], extents: &[usize]) -> Option<((usize, usize), (usize, usize))> {
    let columns = extents[1];
    let ones: Vec<(usize, usize)> = values
        .iter()
        .enumerate()
        .filter(|(_, v)| **v != 0.0)
        .map(|(p, _)| (p / columns, p % columns))
        .collect();
    let first = (
        ones.iter().map(|o| o.0).min()?,
        ones.iter().map(|o| o.0).max()?,
    );
    let second = (
        ones.iter().map(|o| o.1).min()?,
        ones.iter().map(|o| o.1).max()?,
    );
    let area = (first.1 - first.0 + 1) * (second.1 - second.0 + 1);
    let all_one = ones.iter().all(|(i, j)| values[i * columns + j] == 1.0);
    (area == ones.len() && all_one).then_some((first, second))
}
