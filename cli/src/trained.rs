//! The parameter values that `npdec build` exports: a training checkpoint's, or the model's
//! initial values drawn from a seed.

use npdec_learn::checkpoint::{read_checkpoint, Checkpoint};
use npdec_runtime::train::params::{initialize_params, param_shape};
use npdec_runtime::train::tape::ParamValues;
use npdec_runtime::train::training::CHECKPOINT_FILE;
use npdec_symbolic::{Expr, Model, ParamId, Task, TrainTask};
use std::path::{Path, PathBuf};

/// Where parameter values come from.
pub enum Source {
    /// A checkpoint file, with the epoch it was written after.
    Checkpoint { path: PathBuf, epoch: usize },
    /// The declared initializers with this seed.
    Initial { seed: u64 },
}

impl Source {
    /// Describes the source in one line, for the build's output.
    pub fn describe(&self) -> String {
        match self {
            Source::Checkpoint { path, epoch } => format!(
                "trained parameters from `{}` (after epoch {epoch})",
                path.display()
            ),
            Source::Initial { seed } => format!(
                "initial parameters (seed {seed}), not trained ones: pass `--checkpoint` with a training run's output folder to export trained weights"
            ),
        }
    }
}

/// The values of every parameter of a model.
pub struct Parameters {
    pub values: ParamValues,
    pub source: Source,
}

/// Returns the first train task of a model, which fixes the step count of per-step parameters.
pub fn first_train_task(model: &Model) -> Option<&TrainTask> {
    model.tasks.iter().find_map(|task| match task {
        Task::Train(train) => Some(train),
        Task::Solve(_) => None,
    })
}

/// A `--checkpoint` that cannot be used: what failed, and how to fix it.
#[derive(Debug)]
pub struct CheckpointError {
    pub message: String,
    pub help: String,
}

/// A failure to load the parameters that `npdec build` exports.
#[derive(Debug)]
pub enum LoadError {
    /// The declared initializers failed.
    Initial(String),
    /// The checkpoint is missing, unreadable or of another model.
    Checkpoint(CheckpointError),
}

const CHECKPOINT_HELP: &str =
    "pass the output folder of a training run of this model (`npdec run MODEL --out DIR`) or its checkpoint file";

/// Returns the checkpoint file a `--checkpoint` argument names: the file itself, or
/// `checkpoint.npdc` in a run's output folder.
pub fn checkpoint_file(path: &Path) -> Result<PathBuf, CheckpointError> {
    if path.is_dir() {
        let file = path.join(CHECKPOINT_FILE);
        if !file.is_file() {
            return Err(CheckpointError {
                message: format!("`{}` contains no `{CHECKPOINT_FILE}`", path.display()),
                help: CHECKPOINT_HELP.to_string(),
            });
        }
        Ok(file)
    } else if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        Err(CheckpointError {
            message: format!("checkpoint `{}` does not exist", path.display()),
            help: CHECKPOINT_HELP.to_string(),
        })
    }
}

/// Loads the parameters: from `checkpoint` when given, else the initial values from `seed`.
pub fn load(model: &Model, checkpoint: Option<&Path>, seed: u64) -> Result<Parameters, LoadError> {
    let steps = first_train_task(model).map_or(1, |task| task.discretization.steps);
    let step_sizes: Vec<usize> = model
        .params
        .iter()
        .map(|p| npdec_runtime::train::lower::param_entries(model, p))
        .collect();
    let mut values =
        initialize_params(model, steps, &step_sizes, seed).map_err(LoadError::Initial)?;
    let Some(path) = checkpoint else {
        return Ok(Parameters {
            values,
            source: Source::Initial { seed },
        });
    };
    let file = checkpoint_file(path).map_err(LoadError::Checkpoint)?;
    let saved = read_checkpoint(&file).map_err(|e| {
        LoadError::Checkpoint(CheckpointError {
            message: format!("cannot read checkpoint {e}"),
            help: CHECKPOINT_HELP.to_string(),
        })
    })?;
    restore(model, &mut values, &saved).map_err(|e| {
        LoadError::Checkpoint(CheckpointError {
            message: format!(
                "checkpoint `{}` does not fit model `{}`: {e}",
                file.display(),
                model.name
            ),
            help: format!(
                "pass a checkpoint that a training run of `{}` wrote, or leave out `--checkpoint` to export the initial parameters",
                model.name
            ),
        })
    })?;
    Ok(Parameters {
        values,
        source: Source::Checkpoint {
            path: file,
            epoch: saved.epoch,
        },
    })
}

/// Copies a checkpoint's parameters into `values` after checking names, shapes and the model.
fn restore(model: &Model, values: &mut ParamValues, saved: &Checkpoint) -> Result<(), String> {
    if let Some(name) = saved.metadata.get("model").and_then(|m| m.as_str()) {
        if name != model.name {
            return Err(format!("it was written by a run of model `{name}`"));
        }
    }
    let shapes: Vec<(String, Vec<usize>)> = (0..model.params.len())
        .map(|i| (model.params[i].name.clone(), param_shape(model, i, values)))
        .collect();
    let expected: Vec<(&str, &[usize])> = shapes
        .iter()
        .map(|(name, shape)| (name.as_str(), shape.as_slice()))
        .collect();
    saved.check_parameters(&expected)?;
    for (i, param) in model.params.iter().enumerate() {
        if let Some(array) = saved.parameters.iter().find(|p| p.name == param.name) {
            if array.values.len() != values.values[i].len() {
                return Err(format!(
                    "parameter `{}` has {} values, the model expects {}",
                    param.name,
                    array.values.len(),
                    values.values[i].len()
                ));
            }
            if let Some(bad) = array.values.iter().find(|v| !v.is_finite()) {
                return Err(format!("parameter `{}` holds the value {bad}", param.name));
            }
            values.values[i].clone_from(&array.values);
        }
    }
    Ok(())
}

/// A dense weight matrix `W[rows, columns]` of a layer `W @ u`, for one step when the parameter
/// has a value per step.
pub struct DenseMatrix {
    pub param: ParamId,
    /// The step of a per-step parameter, `None` when all steps share it.
    pub step: Option<usize>,
    /// A file stem: the parameter's name, with `_step<N>` for a per-step parameter.
    pub name: String,
    pub rows: usize,
    pub columns: usize,
    pub values: Vec<f64>,
}

/// Returns the dense weight matrices of the train task's equations and of the readouts, in the
/// order they appear, each once.
pub fn dense_matrices(model: &Model, parameters: &ParamValues) -> Vec<DenseMatrix> {
    let mut ids: Vec<ParamId> = Vec::new();
    let mut visit = |expr: &Expr| {
        expr.walk(&mut |e| {
            if let Expr::MatMul { matrix, .. } = e {
                if let Expr::Param(id) = matrix.as_ref() {
                    if !ids.contains(id)
                        && model.param(*id).dims.len() == 2
                        && model.param(*id).axes.is_empty()
                    {
                        ids.push(*id);
                    }
                }
            }
        });
    };
    if let Some(task) = first_train_task(model) {
        for id in &task.equations {
            visit(&model.equation(*id).rhs());
        }
        for readout in &model.readouts {
            visit(&readout.expr);
        }
    } else {
        for equation in &model.equations {
            visit(&equation.rhs());
        }
    }
    let mut matrices = Vec::new();
    for id in ids {
        let param = model.param(id);
        let (rows, columns) = (param.dims[0], param.dims[1]);
        let all = &parameters.values[id.0];
        let size = rows * columns;
        if param.per_step {
            for (step, chunk) in all.chunks(size).enumerate() {
                matrices.push(DenseMatrix {
                    param: id,
                    step: Some(step),
                    name: format!("{}_step{step}", param.name),
                    rows,
                    columns,
                    values: chunk.to_vec(),
                });
            }
        } else {
            matrices.push(DenseMatrix {
                param: id,
                step: None,
                name: param.name.clone(),
                rows,
                columns,
                values: all[..size].to_vec(),
            });
        }
    }
    matrices
}
