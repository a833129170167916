//! `npdec build`: ahead-of-time output, one function per `--emit` kind.
//!
//! - `obj`: an object file and a C header with the step function of each solve task (explicit
//!   Euler solves of real fields);
//! - `photonic`: each dense weight matrix as Clements meshes of Mach–Zehnder interferometers, with
//!   `--robustness` the test accuracy under phase noise and quantisation;
//! - `spice`: each dense weight matrix as a resistive crossbar netlist;
//! - `onnx`: the network of the first train task as an ONNX model (`npdec_onnx`);
//! - `diffractive`: the phase masks of a trained split-step task (`build_diffractive`).
//!
//! Exporters of weights use a checkpoint's parameters (`--checkpoint`), or else the model's
//! initial parameters drawn from `--seed`, and say which.

use crate::terminal;
use crate::trained::{self, CheckpointError, DenseMatrix, LoadError, Parameters};
use ndarray::Array2;
use npdec_diagnostics::{render, Code, Diagnostic, RenderOptions, SourceMap};
use npdec_runtime::output::write_atomically;
use npdec_symbolic::Model;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Emit {
    /// An object file and a C header per solve task.
    Obj,
    /// Mach–Zehnder meshes (layout and netlist JSON, GDSII, SVG) per dense weight matrix.
    Photonic,
    /// A resistive crossbar SPICE netlist per dense weight matrix.
    Spice,
    /// The train task's network as an ONNX model of standard operators.
    Onnx,
    /// Phase masks, height maps, a layout JSON and GDSII of a trained diffractive network.
    Diffractive,
}

/// The flags that only some `--emit` kinds read, by clap id, each with those kinds. Passing one
/// with another kind is a usage error, because the build would otherwise ignore it.
const EMIT_SPECIFIC_FLAGS: [(&str, &[Emit]); 11] = [
    ("f32", &[Emit::Obj]),
    (
        "checkpoint",
        &[Emit::Photonic, Emit::Spice, Emit::Onnx, Emit::Diffractive],
    ),
    // `--emit diffractive` requires a checkpoint, so the initial parameters never apply there.
    ("seed", &[Emit::Photonic, Emit::Spice, Emit::Onnx]),
    ("robustness", &[Emit::Photonic]),
    ("trials", &[Emit::Photonic]),
    ("g_min", &[Emit::Spice]),
    ("g_max", &[Emit::Spice]),
    ("volts_per_unit", &[Emit::Spice]),
    ("index", &[Emit::Diffractive]),
    ("unit", &[Emit::Diffractive]),
    ("levels", &[Emit::Diffractive]),
];

impl Emit {
    /// Returns the value of `--emit` that selects this kind.
    fn flag_value(self) -> &'static str {
        match self {
            Emit::Obj => "obj",
            Emit::Photonic => "photonic",
            Emit::Spice => "spice",
            Emit::Onnx => "onnx",
            Emit::Diffractive => "diffractive",
        }
    }
}

/// Checks the flags given on the command line against `--emit`. A flag that the kind does not
/// read, or `--emit diffractive` without `--checkpoint`, is a usage error.
pub fn check_flags(emit: Emit, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
    let on_command_line =
        |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    for (id, kinds) in EMIT_SPECIFIC_FLAGS {
        if !on_command_line(id) || kinds.contains(&emit) {
            continue;
        }
        // Written as "`--emit photonic`, `spice` and `onnx`".
        let names: Vec<String> = kinds
            .iter()
            .enumerate()
            .map(|(position, kind)| match position {
                0 => format!("`--emit {}`", kind.flag_value()),
                _ => format!("`{}`", kind.flag_value()),
            })
            .collect();
        let kinds = match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
        };
        return Err(clap::Error::raw(
            clap::error::ErrorKind::ArgumentConflict,
            format!(
                "`--{}` applies to {kinds}, not to `--emit {}`",
                id.replace('_', "-"),
                emit.flag_value()
            ),
        ));
    }
    if on_command_line("trials") && !on_command_line("robustness") {
        return Err(clap::Error::raw(
            clap::error::ErrorKind::MissingRequiredArgument,
            "`--trials` sets the noisy draws of `--robustness`; add `--robustness`",
        ));
    }
    if emit == Emit::Diffractive && !on_command_line("checkpoint") {
        return Err(clap::Error::raw(
            clap::error::ErrorKind::MissingRequiredArgument,
            "`--emit diffractive` requires `--checkpoint RUN_DIR`, the output folder of `npdec run`",
        ));
    }
    Ok(())
}

/// The options of `--emit diffractive`.
pub struct DiffractiveFlags {
    /// Refractive index of the mask material.
    pub index: f64,
    /// Metres per length unit of the model's coordinates.
    pub unit: f64,
    /// Height levels of the GDSII layers.
    pub levels: usize,
}

/// Options of `npdec build` that the command line sets.
pub struct BuildArgs {
    pub file: PathBuf,
    pub emit: Emit,
    pub out: PathBuf,
    /// Compute in f32 (`--emit obj`).
    pub f32: bool,
    /// A checkpoint file or a training run's output folder.
    pub checkpoint: Option<PathBuf>,
    /// Seed of the initial parameters when there is no checkpoint.
    pub seed: u64,
    /// Measure the test accuracy under phase noise and quantisation (`--emit photonic`).
    pub robustness: bool,
    /// Noisy draws per noise level of `--robustness`.
    pub trials: usize,
    /// Crossbar settings (`--emit spice`).
    pub crossbar: npdec_hardware::CrossbarOptions,
    /// Diffractive settings (`--emit diffractive`).
    pub diffractive: DiffractiveFlags,
    /// Print only errors (`-q`): status lines are left out.
    pub quiet: bool,
}

/// A failed build: a plain error message, or a diagnostic that points into the model.
enum BuildError {
    Message(String),
    Diagnostic(Box<Diagnostic>),
}

impl From<String> for BuildError {
    fn from(message: String) -> Self {
        BuildError::Message(message)
    }
}

impl From<Diagnostic> for BuildError {
    fn from(diagnostic: Diagnostic) -> Self {
        BuildError::Diagnostic(Box::new(diagnostic))
    }
}

/// A checked model with its sources, for rendering diagnostics.
struct Loaded {
    sources: SourceMap,
    model: Model,
    options: RenderOptions,
}

pub fn run(args: &BuildArgs) -> Result<ExitCode, String> {
    if args.out.exists() && !args.out.is_dir() {
        return Err(format!(
            "the output folder `{}` is a file; choose a folder with `-o DIR`",
            args.out.display()
        ));
    }
    crate::interrupt::remove_temporaries_on_interrupt(args.out.clone());
    let (sources, checked) = npdec_sema::check_path(&args.file)
        .map_err(|e| format!("cannot read `{}`: {e}", args.file.display()))?;
    let options = RenderOptions {
        color: terminal::stderr_color(),
    };
    for diagnostic in &checked.diagnostics {
        eprint!("{}", render(diagnostic, &sources, options));
    }
    let Some(model) = checked.model else {
        return Ok(ExitCode::from(1));
    };
    let loaded = Loaded {
        sources,
        model,
        options,
    };
    let built = match args.emit {
        Emit::Obj => emit_obj(&loaded, args),
        Emit::Photonic => emit_photonic(&loaded, args),
        Emit::Spice => emit_spice(&loaded, args),
        Emit::Onnx => emit_onnx(&loaded, args),
        Emit::Diffractive => emit_diffractive(&loaded, args),
    };
    match built {
        Ok(code) => Ok(code),
        Err(BuildError::Message(message)) => Err(message),
        Err(BuildError::Diagnostic(diagnostic)) => {
            eprint!("{}", render(&diagnostic, &loaded.sources, loaded.options));
            Ok(ExitCode::from(1))
        }
    }
}

/// Reports an unusable `--checkpoint` as E0261 on the train task whose parameters it holds, or on
/// the model when it has no train task.
fn checkpoint_diagnostic(model: &Model, error: CheckpointError) -> Diagnostic {
    let (span, label) = match trained::first_train_task(model) {
        Some(task) => (
            task.span,
            "`--checkpoint` loads the parameters of this task",
        ),
        None => (
            model.span,
            "`--checkpoint` loads the parameters of this model",
        ),
    };
    Diagnostic::error(Code::E0261, error.message, span, label).with_help(error.help)
}

fn load_parameters(loaded: &Loaded, args: &BuildArgs) -> Result<Parameters, BuildError> {
    trained::load(&loaded.model, args.checkpoint.as_deref(), args.seed).map_err(|error| match error
    {
        LoadError::Initial(message) => BuildError::Message(message),
        LoadError::Checkpoint(error) => checkpoint_diagnostic(&loaded.model, error).into(),
    })
}

/// `--emit diffractive`: the masks of a trained split-step task and their re-simulation.
fn emit_diffractive(loaded: &Loaded, args: &BuildArgs) -> Result<ExitCode, BuildError> {
    let Some(checkpoint) = &args.checkpoint else {
        return Err(BuildError::Message(
            "`--emit diffractive` needs `--checkpoint RUN_DIR`, the output folder of `npdec run`"
                .to_string(),
        ));
    };
    // A model without exactly one train task has no masks, whatever the checkpoint contains, so it
    // is reported before the checkpoint is read.
    crate::build_diffractive::train_task(&loaded.model).map_err(diffractive_error)?;
    let checkpoint = trained::checkpoint_file(checkpoint)
        .map_err(|error| checkpoint_diagnostic(&loaded.model, error))?;
    // Loading the parameters here rejects a checkpoint of another model, or one whose parameters
    // do not fit, with the same E0261 diagnostic as the other `--emit` kinds. The help differs
    // because `--emit diffractive` cannot do without the checkpoint.
    let model = &loaded.model;
    trained::load(model, Some(&checkpoint), args.seed).map_err(|error| match error {
        LoadError::Initial(message) => BuildError::Message(message),
        LoadError::Checkpoint(mut error) => {
            error.help = format!(
                "pass the output folder of a training run of `{}` (`npdec run {} --out DIR`)",
                model.name,
                args.file.display()
            );
            checkpoint_diagnostic(model, error).into()
        }
    })?;
    let options = crate::build_diffractive::DiffractiveArgs {
        checkpoint: &checkpoint,
        index: args.diffractive.index,
        unit: args.diffractive.unit,
        levels: args.diffractive.levels,
        quiet: args.quiet,
    };
    crate::build_diffractive::emit(&loaded.model, &args.file, &args.out, &options)
        .map_err(diffractive_error)?;
    Ok(ExitCode::SUCCESS)
}

/// Turns an error of the diffractive emitter into E0280 where the model lacks what it needs.
fn diffractive_error(error: crate::build_diffractive::EmitError) -> BuildError {
    match error {
        crate::build_diffractive::EmitError::Unfit { span, message, label } => BuildError::from(
            Diagnostic::error(Code::E0280, message, span, label)
                .with_help("`--emit diffractive` writes the masks of a trained `split_step` task of one complex field on two axes whose class scores are detector integrals; see docs/hardware.md"),
        ),
        crate::build_diffractive::EmitError::Failed(message) => BuildError::Message(message),
    }
}

/// `--emit obj`: an object file and a C header per solve task.
fn emit_obj(loaded: &Loaded, args: &BuildArgs) -> Result<ExitCode, BuildError> {
    let program = match npdec_ir::discretize_model(&loaded.model) {
        Ok(program) => program,
        Err(diagnostics) => {
            for diagnostic in &diagnostics {
                eprint!("{}", render(diagnostic, &loaded.sources, loaded.options));
            }
            return Ok(ExitCode::from(1));
        }
    };
    if program.solves.is_empty() {
        let model = &loaded.model;
        return Err(Diagnostic::error(
            Code::E0280,
            format!(
                "model `{}` has no solve task, so `--emit obj` has no time step to compile",
                model.name
            ),
            model.span,
            "no solve task in this model",
        )
        .with_help("`--emit obj` compiles the explicit Euler steps of `solve` tasks; add one such as `solve EQUATION using euler(dt = 0.001) until 1`, or export a trained network with `--emit onnx`")
        .into());
    }
    // Every task is checked before the first file is written, so a rejected build leaves the
    // outputs of an earlier build as they were.
    for (graph, span) in program.solves.iter().zip(&program.solve_spans) {
        // The object file implements explicit Euler steps only.
        if let Some((_, step)) = graph.time_step() {
            if step.scheme != npdec_symbolic::Scheme::Euler {
                let scheme = step.scheme.name();
                return Err(Diagnostic::error(
                    Code::E0241,
                    format!(
                        "`--emit obj` compiles explicit Euler solves, and `{}` uses `{scheme}`",
                        graph.name
                    ),
                    *span,
                    format!("this task uses `{scheme}`"),
                )
                .with_help("use `euler` for this task, or run it with `npdec run`")
                .into());
            }
        }
    }
    create_folder(&args.out)?;
    let precision = if args.f32 {
        npdec_jit::Precision::F32
    } else {
        npdec_jit::Precision::F64
    };
    // One solve keeps the model's name; several get one object each, numbered like the snapshots
    // of `npdec run`.
    let several = program.solves.len() > 1;
    for (index, (graph, span)) in program.solves.iter().zip(&program.solve_spans).enumerate() {
        let written = if several {
            let prefix = npdec_jit::aot::task_prefix(graph, index);
            npdec_jit::aot::write_step_object_named(graph, precision, &args.out, &prefix)
        } else {
            npdec_jit::aot::write_step_object(graph, precision, &args.out)
        };
        let artifacts = written.map_err(|error| match error {
            npdec_jit::aot::AotError::Unsupported(unsupported) => BuildError::from(
                Diagnostic::error(
                    Code::E0241,
                    format!(
                        "`--emit obj` cannot compile the task `{}`: {}",
                        graph.name, unsupported.reason
                    ),
                    *span,
                    "this task",
                )
                .with_help("run this task with `npdec run`, which compiles what it can and interprets the rest"),
            ),
            other => BuildError::Message(other.to_string()),
        })?;
        crate::terminal::status(
            args.quiet,
            &format!(
                "wrote {} and {} (entry point `{}`)",
                artifacts.object.display(),
                artifacts.header.display(),
                artifacts.run_symbol
            ),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `--emit photonic`: Clements meshes per dense weight matrix, and optionally the robustness.
fn emit_photonic(loaded: &Loaded, args: &BuildArgs) -> Result<ExitCode, BuildError> {
    let (parameters, matrices) = weight_matrices(loaded, args)?;
    let weights = named_arrays(&matrices);
    let report = npdec_hardware::emit_photonic(&weights, &args.out).map_err(|e| e.to_string())?;
    for layer in &report.layers {
        crate::terminal::status(args.quiet, &format!(
            "{}: {}×{} on {} modes, {} MZIs, gain {:.4e}; max-abs error of the rebuilt matrix {:.1e}",
            layer.name,
            layer.shape.0,
            layer.shape.1,
            layer.modes,
            layer.mzis,
            layer.gain,
            layer.rebuild_errors.weights
        ));
    }
    crate::terminal::status(
        args.quiet,
        &format!(
            "wrote {} and photonic.json to {}",
            npdec_arch::count(report.layers.len(), "photonic layer"),
            args.out.display()
        ),
    );
    if args.robustness {
        let report = crate::robustness::measure(&loaded.model, args, &parameters, &matrices)?;
        let path = args.out.join("robustness.json");
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        write_atomically(&path, |temporary| std::fs::write(temporary, text))
            .map_err(|e| format!("cannot write {e}"))?;
        crate::terminal::status(args.quiet, &crate::robustness::describe(&report));
        crate::terminal::status(args.quiet, &format!("wrote {}", path.display()));
    }
    Ok(ExitCode::SUCCESS)
}

/// `--emit spice`: a crossbar netlist per dense weight matrix.
fn emit_spice(loaded: &Loaded, args: &BuildArgs) -> Result<ExitCode, BuildError> {
    let (_, matrices) = weight_matrices(loaded, args)?;
    let weights = named_arrays(&matrices);
    let report = npdec_hardware::emit_spice(&weights, &args.out, &args.crossbar)
        .map_err(|e| e.to_string())?;
    for layer in &report.layers {
        crate::terminal::status(
            args.quiet,
            &format!(
                "{}: {}×{} crossbar, {} resistors, {:.4e} S per unit weight; {}",
                layer.name,
                layer.shape.0,
                layer.shape.1,
                layer.resistors,
                layer.siemens_per_unit_weight,
                layer.netlist.display()
            ),
        );
    }
    crate::terminal::status(
        args.quiet,
        &format!(
            "wrote {} and crossbar.json to {}",
            npdec_arch::count(report.layers.len(), "crossbar"),
            args.out.display()
        ),
    );
    Ok(ExitCode::SUCCESS)
}

/// `--emit onnx`: the network of the first train task as `<model>.onnx`.
fn emit_onnx(loaded: &Loaded, args: &BuildArgs) -> Result<ExitCode, BuildError> {
    let model = &loaded.model;
    let Some(task) = trained::first_train_task(model) else {
        return Err(Diagnostic::error(
            Code::E0261,
            format!("model `{}` has no train task, so `--emit onnx` has no network to export", model.name),
            model.span,
            "no train task in this model",
        )
        .with_help("add a task such as `train EQUATION on DATA using euler(steps = 4) loss mse(FIELD, DATA.label)`, or pick another `--emit` kind")
        .into());
    };
    let parameters = load_parameters(loaded, args)?;
    let base_dir = args.file.parent().unwrap_or(Path::new("."));
    let options = npdec_runtime::train::TrainOptions {
        seed: args.seed,
        ..Default::default()
    };
    let prepared = npdec_runtime::train::training::prepare(model, task, base_dir, &options)
        .map_err(|e| e.message)?;
    let exported = npdec_onnx::export_network(
        model,
        task,
        &prepared.lowered,
        &parameters.values,
        prepared.train.features(),
    )
    .map_err(|e| {
        Diagnostic::error(
            Code::E0280,
            format!("cannot export `{}` to ONNX: {e}", model.name),
            task.span,
            "the network of this task",
        )
        .with_help("docs/architectures.md lists what the ONNX export covers; `npdec run` still trains and evaluates this model")
    })?;
    crate::terminal::status(
        args.quiet,
        &format!("using {}", parameters.source.describe()),
    );
    create_folder(&args.out)?;
    let path = args.out.join(format!("{}.onnx", model.name));
    write_atomically(&path, |temporary| {
        std::fs::write(temporary, &exported.bytes)
    })
    .map_err(|e| format!("cannot write {e}"))?;
    let operators: Vec<String> = exported
        .operators
        .iter()
        .map(|(op, count)| format!("{count} {op}"))
        .collect();
    crate::terminal::status(args.quiet, &format!(
        "wrote {} (opset {}): input `input` [batch, {}] → output `{}` [batch, {}]; {} initializer values; nodes: {}",
        path.display(),
        npdec_onnx::OPSET,
        exported.features,
        exported.output,
        exported.output_width,
        exported.initializer_values,
        operators.join(", ")
    ));
    Ok(ExitCode::SUCCESS)
}

/// Loads the parameters, reports where they come from, and returns the dense weight matrices.
fn weight_matrices(
    loaded: &Loaded,
    args: &BuildArgs,
) -> Result<(Parameters, Vec<DenseMatrix>), BuildError> {
    let parameters = load_parameters(loaded, args)?;
    let matrices = trained::dense_matrices(&loaded.model, &parameters.values);
    if matrices.is_empty() {
        let model = &loaded.model;
        let (span, label, alternative) = match trained::first_train_task(model) {
            Some(task) => (
                task.span,
                "no dense layer in this task",
                ", or export the network with `--emit onnx`",
            ),
            None => (model.span, "no dense layer in this model", ""),
        };
        return Err(Diagnostic::error(
            Code::E0280,
            format!(
                "model `{}` has no dense layer `W @ u` with a matrix parameter `W[rows, columns]`, so `--emit {}` has nothing to map onto hardware",
                model.name,
                args.emit.flag_value()
            ),
            span,
            label,
        )
        .with_help(format!("declare a matrix such as `param W[64, 64] ~ glorot` and use it as `W @ h` in an equation or readout{alternative}"))
        .into());
    }
    crate::terminal::status(
        args.quiet,
        &format!("using {}", parameters.source.describe()),
    );
    Ok((parameters, matrices))
}

fn named_arrays(matrices: &[DenseMatrix]) -> Vec<(String, Array2<f64>)> {
    matrices
        .iter()
        .map(|m| {
            let array = Array2::from_shape_vec((m.rows, m.columns), m.values.clone())
                .expect("a matrix parameter holds rows × columns values");
            (m.name.clone(), array)
        })
        .collect()
}

fn create_folder(path: &Path) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|e| format!("cannot create `{}`: {e}", path.display()))
}
