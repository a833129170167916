//! The training loop of a `train` task: data, mini-batches split across threads, the adjoint
//! gradient, the optimizer, per-epoch test metrics, checkpoints, and the report files.

use crate::engine::Compiler;
use crate::output::write_atomically;
use crate::train::adjoint::{Chunk, ChunkResult, HeadSeed, Network, NonFinite};
use crate::train::compiled::CompiledRates;
use crate::train::gemm::ProductPrecision;
use crate::train::lower::{lower_train_task, Head, LoweredTask, SampleShape};
use crate::train::params::{
    flatten_learnable, flatten_learnable_into, initialize_params, learnable, param_shape,
    unflatten_learnable,
};
use crate::train::tape::{Op, ParamValues};
use ndarray::{s, Array2, ArrayView2, Axis};
use npdec_learn::checkpoint::{read_checkpoint, write_checkpoint, Checkpoint, NamedArray};
use npdec_learn::data::{
    load_data_source, shift_images, Dataset, MiniBatches, ShuffleRng, Targets,
};
use npdec_learn::loss::{add_l2_gradient, l2_penalty, ConfusionMatrix};
use npdec_learn::optim::{
    fit_linear_readout, minimize, LbfgsOptions, OptimizerState, StepOptimizer,
};
use npdec_learn::report::{
    plot_confusion_matrix, plot_training_curves, EpochProgress, EpochRecord,
};
use npdec_learn::revolve::default_snapshots;
use npdec_symbolic::{Expr, Loss, Metric, Model, Optimizer, Schedule, TrainTask};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Settings of a training run that the command line chooses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainOptions {
    /// Seeds parameter initialization and shuffling.
    pub seed: u64,
    /// Worker threads for the samples of a batch; `None` uses every available core.
    pub threads: Option<usize>,
    /// Continue from the checkpoint in the output directory.
    pub resume: bool,
    /// States kept by the checkpointed reverse sweep; `None` uses `default_snapshots(steps)`.
    pub snapshots: Option<usize>,
    /// Shows a progress bar per epoch on the terminal.
    pub progress: bool,
    /// Overrides the task's epoch count (for shortened runs).
    pub max_epochs: Option<usize>,
    /// Uses at most this many training samples (for shortened runs).
    pub max_train_samples: Option<usize>,
    /// The precision of the dense products of training (`W @ u` and its adjoints on the tape),
    /// in the mini-batch gradients and the test-set scores of each epoch. The parameters, the
    /// optimizer and every other operation stay in `f64`.
    pub products: ProductPrecision,
}

/// The outcome of a train task.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainReport {
    pub optimizer: String,
    pub epochs: usize,
    pub train_samples: usize,
    pub test_samples: usize,
    /// The figures of the last epoch, as in its [`EpochRecord`]. Those that the task's `metrics`
    /// do not list, or that the data cannot give (a test figure without a test set), are `None`.
    pub test_accuracy: Option<f64>,
    pub test_loss: Option<f64>,
    pub test_mse: Option<f64>,
    pub train_accuracy: Option<f64>,
    /// The mean training loss of the last epoch.
    pub train_loss: f64,
    pub train_mse: Option<f64>,
    /// Epochs restored from the checkpoint by `--resume` (0 for a fresh run); training continued
    /// with the epoch after them.
    #[serde(skip)]
    pub resumed_epochs: usize,
    /// The number of epochs this run requests: the task's `epochs`, or `--epochs`. A resumed
    /// checkpoint that already contains as many or more is not trained further.
    #[serde(skip)]
    pub requested_epochs: usize,
    /// Wall time of each epoch in seconds.
    pub epoch_seconds: Vec<f64>,
    /// True when [`TrainOptions::max_epochs`] or [`TrainOptions::max_train_samples`] cut the
    /// run short of the task as written.
    pub shortened: bool,
    pub history: Vec<EpochRecord>,
    /// The engine of the rates and their adjoint inside the time steps: `JIT` or `tape`.
    pub adjoint_engine: String,
    /// The reason the compiler given to [`train_task`] could not compile the rates, if any.
    #[serde(skip)]
    pub adjoint_fallback: Option<String>,
    /// The trained parameters by name, flattened, for expectations and tests.
    #[serde(skip)]
    pub parameters: Vec<(String, Vec<f64>)>,
    #[serde(skip)]
    pub confusion: Option<ConfusionMatrix>,
    /// Files written.
    pub outputs: Vec<PathBuf>,
}

/// The part of a train task that a [`TrainError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrainErrorSubject {
    /// The task as a whole, such as training that diverged or a checkpoint that does not match.
    Task,
    /// The data source the task trains on: a file that cannot be loaded, a sample or a label
    /// that training cannot use.
    Data,
}

/// The error that stopped training, with notes on where it arose.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainError {
    pub message: String,
    pub notes: Vec<String>,
    /// A suggested fix, when one is known.
    pub help: Option<String>,
    pub subject: TrainErrorSubject,
}

impl TrainError {
    fn new(message: impl Into<String>) -> TrainError {
        TrainError {
            message: message.into(),
            notes: Vec::new(),
            help: None,
            subject: TrainErrorSubject::Task,
        }
    }

    /// Creates an error about the task's data source.
    fn in_data(message: impl Into<String>) -> TrainError {
        TrainError {
            subject: TrainErrorSubject::Data,
            ..TrainError::new(message)
        }
    }

    fn with_help(mut self, help: impl Into<String>) -> TrainError {
        self.help = Some(help.into());
        self
    }
}

/// The name of the checkpoint file in the output directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.npdc";

/// Everything prepared for a train task: the lowered tapes, the data and the parameters.
pub struct Prepared {
    pub lowered: LoweredTask,
    /// True when `max_train_samples` left out part of the training set.
    pub fewer_samples: bool,
    pub train: Dataset,
    pub test: Dataset,
    pub params: ParamValues,
}

/// Loads the data of a task, lowers it and initializes its parameters.
pub fn prepare(
    model: &Model,
    task: &TrainTask,
    base_dir: &Path,
    options: &TrainOptions,
) -> Result<Prepared, TrainError> {
    let source = &model.data[task.data.0];
    let field_shape = initialized_field_shape(model, task);
    let data = load_data_source(source, base_dir, field_shape.as_deref()).map_err(|e| {
        TrainError::in_data(format!("cannot load data `{}`: {e}", source.name)).with_help(format!(
            "correct the data file, or the format and options of `data {}`",
            source.name
        ))
    })?;
    let mut train = data.train;
    let mut fewer_samples = false;
    if let Some(limit) = options.max_train_samples {
        if limit < train.len() {
            train = train.select(&(0..limit).collect::<Vec<_>>());
            fewer_samples = true;
        }
    }
    let label_width = match &train.targets {
        Targets::Classes { .. } => 1,
        Targets::Values(values) => values.ncols(),
    };
    let sample = SampleShape {
        features: train.features(),
        dims: train.sample_shape.clone(),
        label_width,
    };
    check_initialized_field_size(model, task, sample.features)?;
    let lowered = lower_train_task(model, task, &sample).map_err(TrainError::new)?;
    let split = train.len();
    for (set, first) in [(&train, 0), (&data.test, split)] {
        check_samples(set, first, &source.name)?;
        if let Head::CrossEntropy { scores } = lowered.head {
            let classes = lowered.head_tape.nodes[scores].len;
            check_class_labels(&set.targets, classes, first, &source.name)?;
        }
    }
    if matches!(lowered.head, Head::CrossEntropy { .. })
        && matches!(train.targets, Targets::Values(_))
    {
        return Err(TrainError::in_data(format!(
            "data `{}` has real-valued labels where `cross_entropy` needs classes",
            source.name
        ))
        .with_help("give one class label per sample, a whole number from 0"));
    }
    let params = initialize_params(
        model,
        lowered.steps,
        &lowered.param_step_sizes,
        options.seed,
    )
    .map_err(TrainError::new)?;
    Ok(Prepared {
        lowered,
        fewer_samples,
        train,
        test: data.test,
        params,
    })
}

/// Rejects samples whose size does not fit the field that `initial FIELD = DATA.input` fills.
/// A sample with one value per grid point fills every channel. Any other sample is broadcast over
/// the field's entries, so their number must be a whole multiple of the sample's size.
fn check_initialized_field_size(
    model: &Model,
    task: &TrainTask,
    features: usize,
) -> Result<(), TrainError> {
    let data = &model.data[task.data.0];
    for initial in &model.initials {
        if initial.value != Expr::Input(task.data) {
            continue;
        }
        let field = model.field(initial.field);
        let points = model.field_points(initial.field);
        let entries = points * field.channels;
        if features == 0 || features == points || entries.is_multiple_of(features) {
            continue;
        }
        return Err(TrainError::in_data(format!(
            "the samples of data `{}` have {features} {} each, but `initial {} = {}.input` needs {points}, one per grid point of `{}`",
            data.name,
            if features == 1 { "value" } else { "values" },
            field.name,
            data.name,
            field.name
        ))
        .with_help(format!(
            "declare `{}` on a grid of {features} points, or check the data file",
            field.name
        )));
    }
    Ok(())
}

/// Rejects a sample with a NaN or infinite feature, which training would otherwise report as
/// the network diverging. `first` is the index of the set's first sample in the data source.
fn check_samples(set: &Dataset, first: usize, data: &str) -> Result<(), TrainError> {
    let Some((index, feature)) = set
        .inputs
        .indexed_iter()
        .find(|(_, v)| !v.is_finite())
        .map(|(at, _)| at)
    else {
        return Ok(());
    };
    Err(TrainError::in_data(format!(
        "sample {} (counting from 0) of data `{data}` has a non-finite value in feature {feature}",
        first + index
    ))
    .with_help("remove the sample or replace the value in the data file"))
}

/// Rejects labels that a cross-entropy loss over `classes` scores cannot use: real values and
/// classes at or above the number of scores.
fn check_class_labels(
    targets: &Targets,
    classes: usize,
    first: usize,
    data: &str,
) -> Result<(), TrainError> {
    let (index, label) = match targets {
        Targets::Classes { labels, .. } => {
            match labels.iter().enumerate().find(|(_, l)| **l >= classes) {
                Some((index, label)) => (index, label.to_string()),
                None => return Ok(()),
            }
        }
        Targets::Values(values) if values.nrows() == 0 => return Ok(()),
        Targets::Values(values) if values.ncols() != 1 => {
            return Err(TrainError::in_data(format!(
                "data `{data}` has {} label values per sample where `cross_entropy` needs one class",
                values.ncols()
            ))
            .with_help("give one class label per sample, a whole number from 0"));
        }
        Targets::Values(values) => {
            // Real-valued labels of one set may come from a value that is not a class in the
            // other set, which its own check reports.
            match values.iter().position(|v| !(*v >= 0.0 && v.fract() == 0.0)) {
                Some(index) => (index, values[[index, 0]].to_string()),
                None => return Ok(()),
            }
        }
    };
    Err(TrainError::in_data(format!(
        "label {label} of sample {} (counting from 0) of data `{data}` is not a class of the {classes} scores",
        first + index
    ))
    .with_help(format!(
        "`cross_entropy` needs class labels 0 to {}, one per score",
        classes.saturating_sub(1)
    )))
}

/// Returns the labels of a data set as a real matrix `[samples, width]`.
pub fn label_matrix(targets: &Targets) -> Array2<f64> {
    match targets {
        Targets::Classes { labels, .. } => {
            Array2::from_shape_fn((labels.len(), 1), |(i, _)| labels[i] as f64)
        }
        Targets::Values(values) => values.clone(),
    }
}

fn class_labels(targets: &Targets) -> Option<&[usize]> {
    match targets {
        Targets::Classes { labels, .. } => Some(labels),
        Targets::Values(_) => None,
    }
}

/// The loss and gradient of a batch, split into chunks that run on the thread pool.
pub struct BatchGradient {
    pub loss_sum: f64,
    pub outputs: Array2<f64>,
    pub gradient: ParamValues,
}

/// Computes the mean loss's gradient over `inputs` in chunks on the thread pool: one per
/// thread, or as many as the compiled rates ask for (see [`CompiledRates::chunks`]).
pub fn batch_gradient(
    network: &Network,
    params: &ParamValues,
    inputs: &Array2<f64>,
    targets: &Targets,
    snapshots: usize,
    threads: usize,
) -> Result<BatchGradient, NonFinite> {
    let mut workspace = GradientWorkspace::default();
    let (loss_sum, outputs) = batch_gradient_into(
        network,
        params,
        inputs,
        targets,
        snapshots,
        threads,
        &mut workspace,
    )?;
    let gradient = workspace.chunks.swap_remove(0);
    Ok(BatchGradient {
        loss_sum,
        outputs,
        gradient,
    })
}

/// The gradient storage of [`batch_gradient_into`], one buffer per chunk, kept from batch to
/// batch so that a batch zeroes memory instead of allocating and faulting it in.
#[derive(Clone, Debug, Default)]
pub struct GradientWorkspace {
    chunks: Vec<ParamValues>,
}

impl GradientWorkspace {
    /// Returns the gradient of the last batch.
    pub fn gradient(&self) -> &ParamValues {
        &self.chunks[0]
    }
}

/// Computes what [`batch_gradient`] computes, returning the loss summed over the samples and
/// the outputs, and leaving the gradient in `workspace` ([`GradientWorkspace::gradient`]).
pub fn batch_gradient_into(
    network: &Network,
    params: &ParamValues,
    inputs: &Array2<f64>,
    targets: &Targets,
    snapshots: usize,
    threads: usize,
    workspace: &mut GradientWorkspace,
) -> Result<(f64, Array2<f64>), NonFinite> {
    let samples = inputs.nrows();
    let labels = label_matrix(targets);
    let classes = class_labels(targets);
    let threads = threads.max(1);
    let parts = network
        .compiled
        .map_or(threads, |compiled| compiled.chunks(samples, threads))
        .clamp(1, threads);
    let chunk_size = samples.div_ceil(parts).max(1);
    let ranges: Vec<(usize, usize)> = (0..samples)
        .step_by(chunk_size)
        .map(|start| (start, (start + chunk_size).min(samples)))
        .collect();
    let buffers = ranges.len().max(1);
    workspace.chunks.truncate(buffers);
    while workspace.chunks.len() < buffers {
        workspace.chunks.push(params.zeros_like());
    }
    use rayon::prelude::*;
    let results: Vec<Result<ChunkResult, NonFinite>> = ranges
        .par_iter()
        .zip(workspace.chunks.par_iter_mut())
        .map(|(&(start, end), gradient)| {
            let chunk = Chunk {
                samples: inputs.slice(s![start..end, ..]),
                labels: labels.slice(s![start..end, ..]),
                classes: classes.map(|c| &c[start..end]),
                pass: None,
            };
            // A batch that runs as one chunk leaves the other threads free to help.
            for values in &mut gradient.values {
                values
                    .par_chunks_mut(SUM_CHUNK)
                    .for_each(|block| block.fill(0.0));
            }
            network.gradient(
                params,
                &chunk,
                &HeadSeed::Loss {
                    normalizer: samples as f64,
                },
                snapshots,
                gradient,
            )
        })
        .collect();
    if ranges.is_empty() {
        for values in &mut workspace.chunks[0].values {
            values.fill(0.0);
        }
    }
    let mut loss_sum = 0.0;
    let mut outputs: Vec<Array2<f64>> = Vec::new();
    for result in results {
        let chunk_result = result?;
        loss_sum += chunk_result.loss_sum;
        outputs.push(chunk_result.outputs);
    }
    // The chunks' gradients are added in chunk order, entry by entry, so splitting the entries
    // across threads gives the same sums as one sequential pass.
    let (total, rest) = workspace.chunks.split_at_mut(1);
    for part in rest.iter() {
        for (a, b) in total[0].values.iter_mut().zip(&part.values) {
            a.par_chunks_mut(SUM_CHUNK)
                .zip(b.par_chunks(SUM_CHUNK))
                .for_each(|(a, b)| {
                    for (x, y) in a.iter_mut().zip(b) {
                        *x += y;
                    }
                });
        }
    }
    let views: Vec<_> = outputs.iter().map(|o| o.view()).collect();
    let outputs = ndarray::concatenate(Axis(0), &views).unwrap_or_else(|_| Array2::zeros((0, 0)));
    Ok((loss_sum, outputs))
}

/// Adds the L2 term to `gradient`, takes one optimizer step on the learnable parameters, and
/// returns the index of the first parameter that is not finite afterwards. Adam updates the
/// parameters, their `f32` copies and the finiteness check in one pass. SGD works on flat copies
/// in `flat` and `flat_gradient`, whose storage is reused from call to call.
#[allow(clippy::too_many_arguments)]
fn update_params(
    optimizer: &mut StepOptimizer,
    params: &mut ParamValues,
    gradient: &ParamValues,
    learnable: &[usize],
    l2: f64,
    flat: &mut Vec<f64>,
    flat_gradient: &mut Vec<f64>,
) -> Result<Option<usize>, TrainError> {
    match optimizer {
        StepOptimizer::Adam(adam) => {
            let gradients: Vec<&[f64]> = learnable
                .iter()
                .map(|&i| gradient.values[i].as_slice())
                .collect();
            // The `f32` copies are written in the same pass when every learnable one exists.
            let copies = params.products == ProductPrecision::F32
                && learnable
                    .iter()
                    .all(|&i| params.single.get(i).map(Vec::len) == Some(params.values[i].len()));
            // `learnable` lists indices in increasing order, the order of the flat vector.
            let mut targets: Vec<&mut [f64]> = Vec::with_capacity(learnable.len());
            let mut rounded: Vec<&mut [f32]> = Vec::new();
            for (i, (values, single)) in params
                .values
                .iter_mut()
                .zip(
                    params
                        .single
                        .iter_mut()
                        .map(Some)
                        .chain(std::iter::repeat_with(|| None)),
                )
                .enumerate()
            {
                if !learnable.contains(&i) {
                    continue;
                }
                targets.push(values.as_mut_slice());
                if let (true, Some(single)) = (copies, single) {
                    rounded.push(single.as_mut_slice());
                }
            }
            let finite = adam
                .step_segments_rounded(&mut targets, &gradients, &mut rounded, l2)
                .map_err(|e| TrainError::new(e.to_string()))?;
            if !copies {
                params.refresh_single();
            }
            // Parameters outside `learnable` keep their values, but are checked as before.
            let first =
                (0..params.values.len()).find(|&i| match learnable.iter().position(|&l| l == i) {
                    Some(segment) => !finite[segment],
                    None => !all_finite(&params.values[i]),
                });
            Ok(first)
        }
        StepOptimizer::Sgd(_) => {
            flatten_learnable_into(gradient, learnable, flat_gradient);
            flatten_learnable_into(params, learnable, flat);
            add_l2_gradient(l2, flat, flat_gradient).map_err(|e| TrainError::new(e.to_string()))?;
            optimizer
                .step(flat, flat_gradient)
                .map_err(|e| TrainError::new(e.to_string()))?;
            unflatten_learnable(flat, params, learnable);
            Ok((0..params.values.len()).find(|&i| !all_finite(&params.values[i])))
        }
    }
}

/// Entries per task when the chunks' gradients are summed across the thread pool.
const SUM_CHUNK: usize = 1 << 14;

/// Evaluates a data set in batches across threads: summed loss and outputs.
pub fn evaluate_dataset(
    network: &Network,
    params: &ParamValues,
    data: &Dataset,
    batch: usize,
) -> Result<(f64, Array2<f64>), NonFinite> {
    use rayon::prelude::*;
    let labels = label_matrix(&data.targets);
    let classes = class_labels(&data.targets);
    let batch = batch.max(1);
    let starts: Vec<usize> = (0..data.len()).step_by(batch).collect();
    let results: Vec<Result<ChunkResult, NonFinite>> = starts
        .par_iter()
        .map(|&start| {
            let end = (start + batch).min(data.len());
            let chunk = Chunk {
                samples: data.inputs.slice(s![start..end, ..]),
                labels: labels.slice(s![start..end, ..]),
                classes: classes.map(|c| &c[start..end]),
                pass: None,
            };
            network.evaluate(params, &chunk)
        })
        .collect();
    let mut loss_sum = 0.0;
    let mut outputs = Vec::new();
    for result in results {
        let result = result?;
        loss_sum += result.loss_sum;
        outputs.push(result.outputs);
    }
    let views: Vec<_> = outputs.iter().map(|o| o.view()).collect();
    let outputs = ndarray::concatenate(Axis(0), &views).unwrap_or_else(|_| Array2::zeros((0, 0)));
    Ok((loss_sum, outputs))
}

/// Compiles the rates of a lowered task with `compiler` in `precision`: the compiled rates, or
/// `None` with the reason the compiler gave.
pub fn compile_rates(
    compiler: Option<&dyn Compiler>,
    lowered: &LoweredTask,
    precision: ProductPrecision,
) -> (Option<Box<dyn CompiledRates>>, Option<String>) {
    let Some(compiler) = compiler else {
        return (None, None);
    };
    match compiler.compile_rates(lowered, precision) {
        Ok(compiled) => (Some(compiled), None),
        Err(reason) => (None, Some(reason)),
    }
}

/// Trains one task and writes its checkpoint, curves, confusion matrix into `out_dir`. With a
/// `compiler`, the rates and their adjoint run as compiled code where it can compile them, and on
/// the tape otherwise, with the reason in [`TrainReport::adjoint_fallback`].
pub fn train_task(
    model: &Model,
    task: &TrainTask,
    base_dir: &Path,
    out_dir: Option<&Path>,
    options: &TrainOptions,
    compiler: Option<&dyn Compiler>,
) -> Result<TrainReport, TrainError> {
    let Prepared {
        lowered,
        fewer_samples,
        train,
        test,
        mut params,
    } = prepare(model, task, base_dir, options)?;
    let (compiled, adjoint_fallback) = compile_rates(compiler, &lowered, options.products);
    let network = Network {
        model,
        task: &lowered,
        compiled: compiled.as_deref(),
    };
    let threads = options
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| TrainError::new(format!("cannot start {threads} worker threads: {e}")))?;
    let snapshots = options
        .snapshots
        .unwrap_or_else(|| default_snapshots(lowered.steps))
        .max(1);
    let mut report = pool.install(|| {
        run_training(
            model,
            task,
            &network,
            &train,
            &test,
            &mut params,
            out_dir,
            options,
            threads,
            snapshots,
        )
    })?;
    let fewer_epochs = options.max_epochs.is_some_and(|e| e < task.epochs);
    report.shortened = fewer_samples || fewer_epochs;
    report.adjoint_engine = match &compiled {
        Some(_) => compiler.map_or("tape", |c| c.name()).to_string(),
        None => "tape".to_string(),
    };
    report.adjoint_fallback = adjoint_fallback;
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn run_training(
    model: &Model,
    task: &TrainTask,
    network: &Network,
    train: &Dataset,
    test: &Dataset,
    params: &mut ParamValues,
    out_dir: Option<&Path>,
    options: &TrainOptions,
    threads: usize,
    snapshots: usize,
) -> Result<TrainReport, TrainError> {
    let learnable = learnable(model);
    let epochs = options.max_epochs.unwrap_or(task.epochs).max(1);
    let mut history: Vec<EpochRecord> = Vec::new();
    let mut rng = ShuffleRng::from_seed(options.seed);
    let mut first_epoch = 0;
    let checkpoint_path = out_dir.map(|d| d.join(CHECKPOINT_FILE));
    let mut optimizer_state = OptimizerState::None;
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| TrainError::new(format!("cannot create `{}`: {e}", dir.display())))?;
    }

    if options.resume {
        let path = checkpoint_path
            .as_ref()
            .ok_or_else(|| TrainError::new("`--resume` needs an output directory"))?;
        let checkpoint = read_checkpoint(path).map_err(|e| {
            TrainError::new(e.to_string()).with_help(
                "pass the `--out` folder of the run that wrote the checkpoint, or start again without `--resume`",
            )
        })?;
        check_resumable(model, path, &checkpoint, options, train.len())?;
        restore(model, params, &checkpoint)
            .map_err(|e| TrainError::new(format!("cannot resume: {e}")))?;
        if let Some(state) = &checkpoint.rng {
            rng = ShuffleRng::from_state(state);
        }
        first_epoch = checkpoint.epoch;
        optimizer_state = checkpoint.optimizer.clone();
        if let Some(saved) = checkpoint.metadata.get("history") {
            history = serde_json::from_value(saved.clone()).unwrap_or_default();
        }
    }

    let mut epoch_seconds: Vec<f64> = history.iter().map(|r| r.seconds).collect();
    let mut outputs = Vec::new();
    let optimizer_name = optimizer_name(&task.optimizer);
    params.set_product_precision(options.products);

    match &task.optimizer {
        Optimizer::Sgd { .. } | Optimizer::Adam { .. } => {
            let mut optimizer = match optimizer_state {
                OptimizerState::Sgd(sgd) => StepOptimizer::Sgd(sgd),
                OptimizerState::Adam(adam) => StepOptimizer::Adam(adam),
                _ => StepOptimizer::from_model(&task.optimizer)
                    .map_err(|e| TrainError::new(e.to_string()))?,
            };
            // The schedule scales the rate the task names, also after `--resume`, where the
            // restored optimizer holds the rate of the last epoch.
            let base_rate = match &task.optimizer {
                Optimizer::Sgd { lr, .. } | Optimizer::Adam { lr, .. } => *lr,
                _ => optimizer.learning_rate(),
            };
            let shift = model.data[task.data.0].shift;
            let image = if shift > 0 {
                Some(image_shape(model, task, train)?)
            } else {
                None
            };
            // Buffers reused by every batch: the chunks' gradients and the flat parameter and
            // gradient vectors the optimizer updates.
            let mut workspace = GradientWorkspace::default();
            let mut gradient: Vec<f64> = Vec::new();
            let mut flat: Vec<f64> = Vec::new();
            for epoch in first_epoch..epochs {
                let started = Instant::now();
                // The schedule spans the task's epochs, so a shortened run and a resumed one
                // use the rates of the full run.
                optimizer.set_learning_rate(scheduled_rate(
                    task.schedule,
                    base_rate,
                    epoch,
                    epochs.max(task.epochs),
                ));
                let batches = MiniBatches::shuffled(train, task.batch, &mut rng)
                    .map_err(|e| TrainError::new(e.to_string()))?;
                // The running mean squared error of the epoch, when the task's metrics list it.
                let (mut mse_sum, mut mse_samples) = (0.0, 0);
                let mut progress = if options.progress {
                    EpochProgress::new(epoch + 1, epochs, batches.batch_count() as u64)
                } else {
                    EpochProgress::hidden(epoch + 1, epochs, batches.batch_count() as u64)
                };
                for (step, mut batch) in batches.enumerate() {
                    if let Some((rows, cols)) = image {
                        shift_images(&mut batch.inputs, rows, cols, shift, &mut rng)
                            .map_err(|e| TrainError::new(e.to_string()))?;
                    }
                    let (loss_sum, outputs) = batch_gradient_into(
                        network,
                        params,
                        &batch.inputs,
                        &batch.targets,
                        snapshots,
                        threads,
                        &mut workspace,
                    )
                    .map_err(|e| non_finite_error(model, params, epoch, step, &e))?;
                    let not_finite = update_params(
                        &mut optimizer,
                        params,
                        workspace.gradient(),
                        &learnable,
                        task.l2,
                        &mut flat,
                        &mut gradient,
                    )?;
                    if let Some(bad) = not_finite.map(|i| &model.params[i].name) {
                        let error = NonFinite {
                            step: 0,
                            field: None,
                        };
                        let mut e = non_finite_error(model, params, epoch, step, &error);
                        e.notes
                            .push(format!("parameter `{bad}` is not finite after the update"));
                        return Err(e);
                    }
                    let samples = batch.indices.len();
                    let scores = requested_scores(outputs.view(), &batch.targets, task);
                    if let Some(mse) = scores.mse {
                        mse_sum += mse * samples as f64;
                        mse_samples += samples;
                    }
                    progress.record_batch(samples, loss_sum / samples as f64, scores.accuracy);
                }
                let train_loss = progress.mean_loss();
                let train_scores = Scores {
                    accuracy: progress.accuracy(),
                    mse: (mse_samples > 0).then(|| mse_sum / mse_samples as f64),
                };
                progress.finish();
                let seconds = started.elapsed().as_secs_f64();
                let record = test_record(
                    network,
                    params,
                    test,
                    task,
                    epoch + 1,
                    train_loss,
                    train_scores,
                    seconds,
                )
                .map_err(|e| non_finite_error(model, params, epoch, 0, &e))?;
                history.push(record);
                epoch_seconds.push(seconds);
                if let Some(path) = &checkpoint_path {
                    let checkpoint = make_checkpoint(
                        model,
                        options,
                        train.len(),
                        params,
                        epoch + 1,
                        Some(&rng),
                        OptimizerState::from(optimizer.clone()),
                        &history,
                    );
                    write_checkpoint(path, &checkpoint)
                        .map_err(|e| TrainError::new(e.to_string()))?;
                }
            }
        }
        Optimizer::Lbfgs { .. } => {
            let started = Instant::now();
            let lbfgs = LbfgsOptions::from_model(&task.optimizer)
                .map_err(|e| TrainError::new(e.to_string()))?;
            let x0 = flatten_learnable(params, &learnable);
            let mut failure: Option<NonFinite> = None;
            let l2 = task.l2;
            let objective = |x: &[f64], g: &mut [f64]| -> f64 {
                let mut trial = params.clone();
                unflatten_learnable(x, &mut trial, &learnable);
                match batch_gradient(
                    network,
                    &trial,
                    &train.inputs,
                    &train.targets,
                    snapshots,
                    threads,
                ) {
                    Ok(result) => {
                        let gradient = flatten_learnable(&result.gradient, &learnable);
                        g.copy_from_slice(&gradient);
                        let _ = add_l2_gradient(l2, x, g);
                        result.loss_sum / train.len() as f64 + l2_penalty(l2, x)
                    }
                    Err(e) => {
                        failure.get_or_insert(e);
                        g.iter_mut().for_each(|v| *v = 0.0);
                        f64::INFINITY
                    }
                }
            };
            let result =
                minimize(objective, x0, &lbfgs).map_err(|e| TrainError::new(e.to_string()))?;
            if let (Some(e), false) = (&failure, result.value.is_finite()) {
                return Err(non_finite_error(model, params, 0, 0, e));
            }
            unflatten_learnable(&result.x, params, &learnable);
            let seconds = started.elapsed().as_secs_f64();
            let train_scores = if task.metrics.iter().any(|m| *m != Metric::Loss) {
                let (_, outputs) = evaluate_dataset(network, params, train, task.batch.max(64))
                    .map_err(|e| non_finite_error(model, params, 0, 0, &e))?;
                requested_scores(outputs.view(), &train.targets, task)
            } else {
                Scores::default()
            };
            let record = test_record(
                network,
                params,
                test,
                task,
                1,
                result.value,
                train_scores,
                seconds,
            )
            .map_err(|e| non_finite_error(model, params, 0, 0, &e))?;
            history.push(record);
            epoch_seconds.push(seconds);
            optimizer_state = OptimizerState::None;
            if let Some(path) = &checkpoint_path {
                let checkpoint = make_checkpoint(
                    model,
                    options,
                    train.len(),
                    params,
                    1,
                    None,
                    optimizer_state.clone(),
                    &history,
                );
                write_checkpoint(path, &checkpoint).map_err(|e| TrainError::new(e.to_string()))?;
            }
        }
        Optimizer::Pseudoinverse { ridge } => {
            let started = Instant::now();
            fit_readout(network, params, train, task.batch.max(64), *ridge)?;
            params.refresh_single();
            let seconds = started.elapsed().as_secs_f64();
            let (loss_sum, outputs) = evaluate_dataset(network, params, train, task.batch.max(64))
                .map_err(|e| non_finite_error(model, params, 0, 0, &e))?;
            let train_scores = requested_scores(outputs.view(), &train.targets, task);
            let record = test_record(
                network,
                params,
                test,
                task,
                1,
                loss_sum / train.len() as f64,
                train_scores,
                seconds,
            )
            .map_err(|e| non_finite_error(model, params, 0, 0, &e))?;
            history.push(record);
            epoch_seconds.push(seconds);
            if let Some(path) = &checkpoint_path {
                let checkpoint = make_checkpoint(
                    model,
                    options,
                    train.len(),
                    params,
                    1,
                    None,
                    OptimizerState::None,
                    &history,
                );
                write_checkpoint(path, &checkpoint).map_err(|e| TrainError::new(e.to_string()))?;
            }
        }
    }

    // The confusion matrix of the final parameters on the test set.
    let mut confusion = None;
    if let Targets::Classes { labels, classes } = &test.targets {
        let (_, scores) = evaluate_dataset(network, params, test, task.batch.max(64))
            .map_err(|e| non_finite_error(model, params, epochs, 0, &e))?;
        let mut matrix = ConfusionMatrix::new(*classes);
        if matrix.add_scores(scores.view(), labels).is_ok() {
            confusion = Some(matrix);
        }
    }
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| TrainError::new(format!("cannot create `{}`: {e}", dir.display())))?;
        let curves = dir.join("training_curves.png");
        write_atomically(&curves, |temporary| {
            plot_training_curves(temporary, &history)
        })
        .map_err(TrainError::new)?;
        outputs.push(curves);
        if let Some(matrix) = &confusion {
            let path = dir.join("confusion_matrix.png");
            write_atomically(&path, |temporary| plot_confusion_matrix(temporary, matrix))
                .map_err(TrainError::new)?;
            outputs.push(path);
        }
        if let Some(path) = checkpoint_path {
            if path.exists() {
                outputs.push(path);
            }
        }
    }
    let last = history.last();
    Ok(TrainReport {
        optimizer: optimizer_name.to_string(),
        epochs: history.len(),
        train_samples: train.len(),
        test_samples: test.len(),
        test_accuracy: last.and_then(|r| r.test_accuracy),
        test_loss: last.and_then(|r| r.test_loss),
        test_mse: last.and_then(|r| r.test_mse),
        train_accuracy: last.and_then(|r| r.train_accuracy),
        train_loss: last.map_or(f64::NAN, |r| r.train_loss),
        train_mse: last.and_then(|r| r.train_mse),
        resumed_epochs: first_epoch,
        requested_epochs: epochs,
        epoch_seconds,
        shortened: false,
        adjoint_engine: "tape".to_string(),
        adjoint_fallback: None,
        parameters: model
            .params
            .iter()
            .zip(&params.values)
            .map(|(p, v)| (p.name.clone(), v.clone()))
            .collect(),
        confusion,
        history,
        outputs,
    })
}

/// The figures besides the loss that a task's `metrics` request, of one pass over a data set.
/// A figure is `None` when the task does not request it or the data cannot give it.
#[derive(Clone, Copy, Debug, Default)]
struct Scores {
    accuracy: Option<f64>,
    mse: Option<f64>,
}

/// Computes the figures that `task` requests of `outputs`, the readout values of the samples of
/// `targets`. For a `cross_entropy` loss, the mean squared error compares the softmax of the
/// scores with the one-hot labels, as a classifier's probabilities are compared with its labels.
/// For an `mse` loss it is the loss's own error, between the prediction and the targets.
fn requested_scores(outputs: ArrayView2<f64>, targets: &Targets, task: &TrainTask) -> Scores {
    let accuracy = task
        .metrics
        .contains(&Metric::Accuracy)
        .then(|| class_labels(targets))
        .flatten()
        .and_then(|labels| npdec_learn::loss::accuracy(outputs, labels).ok());
    let mse = task
        .metrics
        .contains(&Metric::Mse)
        .then(|| match (&task.loss, targets) {
            (Loss::CrossEntropy { .. }, Targets::Classes { labels, .. }) => {
                let probabilities = npdec_learn::loss::softmax(outputs);
                let one_hot = npdec_learn::loss::one_hot(labels, outputs.ncols()).ok()?;
                npdec_learn::loss::mse(probabilities.view(), one_hot.view()).ok()
            }
            (Loss::CrossEntropy { .. }, Targets::Values(_)) => None,
            (Loss::Mse { .. }, _) => {
                npdec_learn::loss::mse(outputs, label_matrix(targets).view()).ok()
            }
        })
        .flatten()
        .map(|result| result.loss);
    Scores { accuracy, mse }
}

#[allow(clippy::too_many_arguments)]
fn test_record(
    network: &Network,
    params: &ParamValues,
    test: &Dataset,
    task: &TrainTask,
    epoch: usize,
    train_loss: f64,
    train_scores: Scores,
    seconds: f64,
) -> Result<EpochRecord, NonFinite> {
    let (test_loss, test_scores) = if test.is_empty() {
        (None, Scores::default())
    } else {
        let (loss_sum, outputs) = evaluate_dataset(network, params, test, task.batch.max(64))?;
        let scores = requested_scores(outputs.view(), &test.targets, task);
        (Some(loss_sum / test.len() as f64), scores)
    };
    Ok(EpochRecord {
        epoch,
        train_loss,
        train_accuracy: train_scores.accuracy,
        train_mse: train_scores.mse,
        test_loss,
        test_accuracy: test_scores.accuracy,
        test_mse: test_scores.mse,
        seconds,
    })
}

/// Fits the readout `scores = W @ h + b` in closed form from the final hidden states.
fn fit_readout(
    network: &Network,
    params: &mut ParamValues,
    train: &Dataset,
    batch: usize,
    ridge: f64,
) -> Result<(), TrainError> {
    let task = network.task;
    let (Head::CrossEntropy { scores }
    | Head::Mse {
        prediction: scores, ..
    }) = task.head;
    let tape = &task.head_tape;
    // Find `W @ h` and an optional `+ b` at the head's output.
    let (matmul, bias) = match &tape.nodes[scores].op {
        Op::MatMul { .. } => (scores, None),
        Op::Binary(npdec_symbolic::BinaryOp::Add, a, b) => {
            match (&tape.nodes[*a].op, &tape.nodes[*b].op) {
                (Op::MatMul { .. }, Op::Param(p)) => (*a, Some(*p)),
                (Op::Param(p), Op::MatMul { .. }) => (*b, Some(*p)),
                _ => return Err(readout_shape_error()),
            }
        }
        _ => return Err(readout_shape_error()),
    };
    let Op::MatMul {
        matrix,
        rows,
        columns,
        operand,
    } = tape.nodes[matmul].op.clone()
    else {
        return Err(readout_shape_error());
    };
    let labels = label_matrix(&train.targets);
    let mut hidden = Array2::zeros((train.len(), columns));
    for start in (0..train.len()).step_by(batch) {
        let end = (start + batch).min(train.len());
        let chunk = Chunk {
            samples: train.inputs.slice(s![start..end, ..]),
            labels: labels.slice(s![start..end, ..]),
            classes: None,
            pass: None,
        };
        let states = network.final_states(params, &chunk);
        let env = crate::train::tape::Env {
            states: &states,
            params,
            samples: Some(chunk.samples),
            labels: Some(chunk.labels),
            step: task.steps,
            time: task.steps as f64 * task.dt,
            batch: end - start,
        };
        let values = tape.forward(&env);
        let h = &values[operand];
        for r in 0..end - start {
            hidden
                .row_mut(start + r)
                .assign(&h.row(r.min(h.nrows() - 1)));
        }
    }
    let targets = match &train.targets {
        Targets::Classes { labels, classes } => npdec_learn::loss::one_hot(labels, *classes)
            .map_err(|e| TrainError::new(e.to_string()))?,
        Targets::Values(values) => values.clone(),
    };
    if targets.ncols() != rows {
        return Err(TrainError::new(format!(
            "the readout has {rows} outputs but the targets have {}",
            targets.ncols()
        )));
    }
    let features = columns + usize::from(bias.is_some());
    let mut design = Array2::ones((features, train.len()));
    design.slice_mut(s![..columns, ..]).assign(&hidden.t());
    let fitted = fit_linear_readout(design.view(), targets.t(), ridge)
        .map_err(|e| TrainError::new(e.to_string()))?;
    let weights = &mut params.values[matrix.0];
    for i in 0..rows {
        for j in 0..columns {
            weights[i * columns + j] = fitted[[i, j]];
        }
    }
    if let Some(bias) = bias {
        let values = &mut params.values[bias.0];
        for (i, v) in values.iter_mut().enumerate().take(rows) {
            *v = fitted[[i, columns]];
        }
    }
    Ok(())
}

fn readout_shape_error() -> TrainError {
    TrainError::new(
        "`pseudoinverse` fits a linear readout: the loss must score `W @ h` or `W @ h + b` with parameters `W` and `b`",
    )
}

/// The learning rate of epoch `epoch` (from 0) of `epochs` under a schedule.
pub fn scheduled_rate(schedule: Schedule, base: f64, epoch: usize, epochs: usize) -> f64 {
    match schedule {
        Schedule::Constant => base,
        Schedule::Cosine => {
            let progress = epoch as f64 / epochs.max(1) as f64;
            base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    }
}

/// The grid shape of the field that the task's data samples initialize (`initial u = d.input`).
fn initialized_field_shape(model: &Model, task: &TrainTask) -> Option<Vec<usize>> {
    model
        .initials
        .iter()
        .find_map(|initial| match &initial.value {
            Expr::Input(d) if *d == task.data => Some(
                model
                    .field(initial.field)
                    .axes
                    .iter()
                    .map(|axis| model.axis(*axis).points)
                    .collect(),
            ),
            _ => None,
        })
}

/// The `rows × cols` pixels of the images that `shift` translates: the last two dimensions of a
/// sample with two or more, or else the last two axes of the field the sample initializes.
fn image_shape(
    model: &Model,
    task: &TrainTask,
    train: &Dataset,
) -> Result<(usize, usize), TrainError> {
    let features = train.features();
    let from_data = match train.sample_shape.as_slice() {
        [.., rows, cols] => Some((*rows, *cols)),
        _ => None,
    };
    let from_field = model.initials.iter().find_map(|initial| {
        if !matches!(&initial.value, Expr::Input(d) if *d == task.data) {
            return None;
        }
        match model.field(initial.field).axes.as_slice() {
            [.., rows, cols] => Some((model.axis(*rows).points, model.axis(*cols).points)),
            _ => None,
        }
    });
    match from_data.or(from_field) {
        Some((rows, cols)) if rows * cols > 0 && features.is_multiple_of(rows * cols) => {
            Ok((rows, cols))
        }
        _ => Err(TrainError::in_data(format!(
            "`shift` translates images, but the samples of `{}` ({features} values each) are not images of a two-dimensional grid",
            model.data[task.data.0].name
        ))),
    }
}

fn optimizer_name(optimizer: &Optimizer) -> &'static str {
    match optimizer {
        Optimizer::Sgd { .. } => "sgd",
        Optimizer::Adam { .. } => "adam",
        Optimizer::Lbfgs { .. } => "lbfgs",
        Optimizer::Pseudoinverse { .. } => "pseudoinverse",
    }
}

fn first_non_finite_param(model: &Model, params: &ParamValues) -> Option<String> {
    model
        .params
        .iter()
        .zip(&params.values)
        .find(|(_, v)| !all_finite(v))
        .map(|(p, _)| p.name.clone())
}

/// Returns whether every entry is finite, scanning blocks across the pool without a branch per
/// entry.
fn all_finite(values: &[f64]) -> bool {
    use rayon::prelude::*;
    !values
        .par_chunks(SUM_CHUNK)
        .any(|block| block.iter().fold(false, |bad, x| bad | !x.is_finite()))
}

fn non_finite_error(
    model: &Model,
    params: &ParamValues,
    epoch: usize,
    step: usize,
    error: &NonFinite,
) -> TrainError {
    let place = match &error.field {
        Some(field) => format!("field `{field}` after time step {}", error.step),
        None => "the loss".to_string(),
    };
    let mut notes = vec![format!("the value became NaN or infinite in {place}")];
    let largest = model
        .params
        .iter()
        .zip(&params.values)
        .filter(|(p, _)| p.learnable)
        .map(|(p, v)| (p.name.clone(), v.iter().fold(0.0f64, |m, x| m.max(x.abs()))))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    if let Some(name) = first_non_finite_param(model, params) {
        notes.push(format!("parameter `{name}` is not finite"));
    } else if let Some((name, size)) = largest {
        notes.push(format!(
            "parameter `{name}` is the largest in magnitude ({size:.3e}); every parameter is finite"
        ));
    }
    notes.push("the last checkpoint written is the last good state".to_string());
    TrainError {
        message: format!(
            "training diverged in epoch {}, batch {}: {place} is not finite",
            epoch + 1,
            step + 1
        ),
        notes,
        help: None,
        subject: TrainErrorSubject::Task,
    }
}

/// Builds the checkpoint after `epoch` epochs. Its metadata records the model's name, the
/// history, and the training samples, seed and precision that `--resume` checks.
#[allow(clippy::too_many_arguments)]
fn make_checkpoint(
    model: &Model,
    options: &TrainOptions,
    train_samples: usize,
    params: &ParamValues,
    epoch: usize,
    rng: Option<&ShuffleRng>,
    optimizer: OptimizerState,
    history: &[EpochRecord],
) -> Checkpoint {
    Checkpoint {
        epoch,
        rng: rng.map(ShuffleRng::state),
        parameters: model
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                NamedArray::new(
                    p.name.clone(),
                    param_shape(model, i, params),
                    params.values[i].clone(),
                )
            })
            .collect(),
        optimizer,
        metadata: serde_json::json!({
            "model": model.name,
            "history": history,
            "train_samples": train_samples,
            "seed": options.seed,
            "precision": precision_name(options.products),
        }),
    }
}

/// The `--precision` value that selects `products`.
fn precision_name(products: ProductPrecision) -> &'static str {
    match products {
        ProductPrecision::F64 => "f64",
        ProductPrecision::F32 => "f32",
    }
}

/// Rejects a checkpoint that `--resume` cannot continue exactly: one written by a run of another
/// model, or with other training samples, seed or precision than this run. Checkpoints written
/// before the seed and the precision were recorded are checked for the rest only.
fn check_resumable(
    model: &Model,
    path: &Path,
    checkpoint: &Checkpoint,
    options: &TrainOptions,
    train_samples: usize,
) -> Result<(), TrainError> {
    let metadata = &checkpoint.metadata;
    let start_again = "or leave out `--resume` to start a new run, which replaces this checkpoint";
    if let Some(name) = metadata.get("model").and_then(serde_json::Value::as_str) {
        if name != model.name {
            return Err(TrainError::new(format!(
                "cannot resume from `{}`: it was written by a run of model `{name}`, not `{}`",
                path.display(),
                model.name
            ))
            .with_help(format!(
                "pass `--out` with the output folder of a run of `{}`, {start_again}",
                model.name
            )));
        }
    }
    // The shuffled order and the bit-identical continuation hold only for the same samples, the
    // same shuffling seed and the same precision.
    if let Some(saved) = metadata
        .get("train_samples")
        .and_then(serde_json::Value::as_u64)
    {
        if saved != train_samples as u64 {
            return Err(TrainError::new(format!(
                "cannot resume: the checkpoint was trained on {saved} training samples, this run uses {train_samples}"
            ))
            .with_help(format!(
                "resume with the `--train-samples` of the first run, {start_again}"
            )));
        }
    }
    if let Some(saved) = metadata.get("seed").and_then(serde_json::Value::as_u64) {
        if saved != options.seed {
            return Err(TrainError::new(format!(
                "cannot resume: the checkpoint was written by a run with `--seed {saved}`, this run uses `--seed {}`",
                options.seed
            ))
            .with_help(format!("resume with `--seed {saved}`, {start_again}")));
        }
    }
    if let Some(saved) = metadata
        .get("precision")
        .and_then(serde_json::Value::as_str)
    {
        let current = precision_name(options.products);
        if saved != current {
            return Err(TrainError::new(format!(
                "cannot resume: the checkpoint was written by a run with `--precision {saved}`, this run uses `--precision {current}`"
            ))
            .with_help(format!(
                "resume with `--precision {saved}`, {start_again}"
            )));
        }
    }
    Ok(())
}

/// Replaces `params` by the parameters saved in the checkpoint file at `path`.
pub fn load_checkpoint_params(
    model: &Model,
    params: &mut ParamValues,
    path: &Path,
) -> Result<(), TrainError> {
    let checkpoint = read_checkpoint(path).map_err(|e| TrainError::new(e.to_string()))?;
    restore(model, params, &checkpoint).map_err(|e| {
        TrainError::new(format!(
            "checkpoint `{}` does not fit model `{}`: {e}",
            path.display(),
            model.name
        ))
    })
}

/// Copies the checkpoint's parameters into `params` after checking their names and shapes.
fn restore(model: &Model, params: &mut ParamValues, checkpoint: &Checkpoint) -> Result<(), String> {
    let shapes: Vec<(String, Vec<usize>)> = (0..model.params.len())
        .map(|i| (model.params[i].name.clone(), param_shape(model, i, params)))
        .collect();
    let expected: Vec<(&str, &[usize])> = shapes
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_slice()))
        .collect();
    checkpoint.check_parameters(&expected)?;
    for (i, param) in model.params.iter().enumerate() {
        let saved = checkpoint
            .parameters
            .iter()
            .find(|p| p.name == param.name)
            .expect("checked above");
        params.values[i].clone_from(&saved.values);
    }
    Ok(())
}
