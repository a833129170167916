//! The `npdec` command.
//!
//! Exit codes are an interface: 0 success, 1 a user error (a diagnostic, an unreadable file, a failed
//! `expect`), 2 a usage error (clap's own exit code for bad flags).

mod bench;
mod build;
mod build_diffractive;
mod check;
mod engine;
mod explain;
mod interrupt;
mod repl;
mod robustness;
mod run;
mod terminal;
mod trained;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "npdec", version, about = "A compiler for neural PDEs", long_about = None)]
struct Cli {
    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Print more about what happens (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and check models, printing their diagnostics.
    #[command(
        after_help = "Examples:\n  npdec check examples/heat1d.npde\n  npdec check --format json examples/*.npde"
    )]
    Check {
        /// Model files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output format of the diagnostics.
        #[arg(long, value_enum, default_value_t = check::Format::Human)]
        format: check::Format,
        /// Also check the adjoint gradients of train tasks (Taylor and dot tests); a model without
        /// a train task has none to check and passes.
        #[arg(long)]
        gradients: bool,
        /// The engine of the adjoint of the rates for --gradients: JIT kernels, or the tape.
        #[arg(long, value_enum, default_value_t = EngineArg::Jit)]
        engine: EngineArg,
    },
    /// Run a model's tasks, evaluate its expectations and write the results.
    #[command(
        after_help = "Examples:\n  npdec run examples/heat1d.npde\n  npdec run examples/wave2d.npde --out results/wave --vtk\n  npdec run examples/mnist_mlp.npde --epochs 1 --train-samples 2000"
    )]
    Run {
        /// The model file.
        file: PathBuf,
        /// Output folder [default: out/<model name>].
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// Also write every snapshot as VTK image data (<field>_<step>.vti) and a ParaView collection
        /// with the times (<field>.pvd) beside the .npy files; fields on more than 3 axes are skipped.
        #[arg(long)]
        vtk: bool,
        /// Refuse a time step above the stability limit of an explicit scheme instead of warning.
        #[arg(long)]
        strict: bool,
        /// Floating-point precision of the computation. Solves run entirely in it; train tasks
        /// compute their network in it (with the JIT the right-hand sides and their adjoints, on
        /// the tape the dense products `W @ u` and their adjoints) and keep the parameters, the
        /// optimizer, the readout and the loss in f64.
        #[arg(long, value_enum, default_value_t = PrecisionArg::F64)]
        precision: PrecisionArg,
        /// Continue training from the checkpoint in the output folder.
        #[arg(long)]
        resume: bool,
        /// Seed of parameter initialization and shuffling.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Who computes solves: the Cranelift JIT, or the reference interpreter.
        #[arg(long, value_enum, default_value_t = EngineArg::Jit)]
        engine: EngineArg,
        /// Worker threads for training [default: all cores].
        #[arg(long, value_parser = parse_threads)]
        threads: Option<u64>,
        /// States kept by the checkpointed adjoint sweep, at least 1 [default: ⌈log₂ steps⌉ + 1].
        #[arg(long, value_parser = parse_positive)]
        snapshots: Option<u64>,
        /// Train for this many epochs instead of the `epochs` clause of each train task.
        #[arg(long, value_parser = parse_positive)]
        epochs: Option<u64>,
        /// Train on the first N samples of the training set only (the test set is unchanged).
        #[arg(long, value_name = "N", value_parser = parse_positive)]
        train_samples: Option<u64>,
    },
    /// Benchmark the JIT's stencil sweeps beside the memory bandwidth measured in the same run.
    #[command(
        after_help = "Examples:\n  npdec bench\n  npdec bench --json --steps 20\n  npdec bench --no-blocking\n  npdec bench --case diffusion3d_o8 --threads 1"
    )]
    Bench {
        /// Print one JSON object per case and thread count (case, threads, gpts_per_s,
        /// roofline_fraction, compile_ms, steps_per_pass, bandwidth_gb_s).
        #[arg(long)]
        json: bool,
        /// Run only this case (repeat for more).
        #[arg(long = "case", value_name = "CASE", value_parser = clap::builder::PossibleValuesParser::new(npdec_jit::bench::CASES))]
        cases: Vec<String>,
        /// Run with this many threads (repeat for more) [default: 1 and 2].
        #[arg(long = "threads", value_name = "N", value_parser = parse_threads)]
        threads: Vec<u64>,
        /// Time steps per case [default: 100].
        #[arg(long, value_parser = parse_positive)]
        steps: Option<u64>,
        /// Run one sweep per step, without temporal blocking.
        #[arg(long)]
        no_blocking: bool,
        /// Steps per blocked pass [default: the most whose band of rows fits the cache].
        #[arg(long, value_parser = parse_positive, conflicts_with = "no_blocking")]
        block_steps: Option<u64>,
    },
    /// Compile a model ahead of time, or export its network: hardware layouts, ONNX.
    #[command(
        after_help = "Examples:\n  npdec build examples/heat1d.npde --emit obj -o build/heat1d\n  npdec run examples/mnist_mlp.npde --out runs/mlp\n  npdec build examples/mnist_mlp.npde --emit photonic --checkpoint runs/mlp -o build/photonic --robustness\n  npdec build examples/mnist_mlp.npde --emit spice --checkpoint runs/mlp -o build/spice --g-max 5e-5\n  npdec build examples/mnist_cnn.npde --emit onnx -o build/onnx\n\nA flag whose help names emit kinds applies to those kinds only, and with another `--emit` it\nis a usage error (exit code 2)."
    )]
    Build {
        /// The model file.
        file: PathBuf,
        /// What to write.
        #[arg(long, value_enum)]
        emit: build::Emit,
        /// Output folder.
        #[arg(short, long)]
        out: PathBuf,
        /// Compute in f32 instead of f64 (`--emit obj`).
        #[arg(long)]
        f32: bool,
        /// Trained parameters for photonic, spice, onnx and diffractive: a checkpoint file, or the
        /// output folder of a training run [default: the initial parameters from --seed; required
        /// by diffractive].
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Seed of the initial parameters when there is no checkpoint, and of the noise of
        /// `--robustness` (`--emit photonic`, `spice` and `onnx`).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Also report the test accuracy under phase noise (σ = 0.01 and 0.05 rad) and 8-bit
        /// phases (`--emit photonic`).
        #[arg(long)]
        robustness: bool,
        /// Noisy draws per noise level of `--robustness` (`--emit photonic`).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
        trials: u64,
        /// Smallest conductance of a crossbar cell, in siemens (`--emit spice`).
        #[arg(long, default_value_t = 1e-6)]
        g_min: f64,
        /// Largest conductance of a crossbar cell, in siemens (`--emit spice`).
        #[arg(long, default_value_t = 1e-4)]
        g_max: f64,
        /// Input voltage for an input value of 1, in volts (`--emit spice`).
        #[arg(long, default_value_t = 0.1)]
        volts_per_unit: f64,
        /// Refractive index of the mask material (`--emit diffractive`).
        #[arg(long, default_value_t = 1.5)]
        index: f64,
        /// Metres per length unit of the model's coordinates (`--emit diffractive`).
        #[arg(long, default_value_t = 1e-6)]
        unit: f64,
        /// Height levels of the GDSII mask layers (`--emit diffractive`).
        #[arg(long, default_value_t = 16)]
        levels: usize,
    },
    /// Start an interactive session: declare as in a file, step a solve, look at fields.
    #[command(
        after_help = "Example:\n  npdec repl\n  npde> :load examples/heat1d.npde\n  npde> :step 100\n  npde> :show u\n\nExit status: 0 when the session ends. With standard input not a terminal, as in\n`npdec repl < session.txt`, the status is 1 if any input line produced an error."
    )]
    Repl,
    /// Run the language server on standard input and output, for editors.
    #[command(
        after_help = "Example (Neovim 0.7 and later, for the current buffer):\n  vim.lsp.buf_attach_client(0, vim.lsp.start_client({ name = 'npdec', cmd = { 'npdec', 'lsp' } }))\n\nThe source tree has editor support in editors/: nvim/npdec.lua, which shares one server\nper folder, and a VS Code extension in vscode/."
    )]
    Lsp,
    /// Explain a diagnostic code, or show what a model becomes: its equations in normal form and
    /// its discretized dataflow graph.
    #[command(
        after_help = "Examples:\n  npdec explain E0221\n  npdec explain examples/heat2d.npde --dump-ir\n  npdec explain examples/heat2d.npde --dump-ir after:fuse_stencils"
    )]
    Explain {
        /// A diagnostic code such as E0100, or a model file.
        target: String,
        /// Print the dataflow graph of each task: as discretized (no value), or after an
        /// optimization pass (`after:PASS`, or `after:all` for every pass in turn). Only the
        /// table output shows it: with `--emit json` or `--emit dot` it is ignored, with a warning.
        #[arg(long, value_name = "WHEN", num_args = 0..=1, default_missing_value = "discretized",
              value_parser = explain::parse_dump_ir)]
        dump_ir: Option<explain::DumpIr>,
        /// The form of the recognized layers.
        #[arg(long, value_enum, default_value_t = explain::Emit::Table)]
        emit: explain::Emit,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum EngineArg {
    /// Compile solves, and the rates and adjoint of training, with Cranelift; what it cannot
    /// compile runs on the interpreter or the tape with a warning.
    Jit,
    /// The reference interpreter, the ground truth.
    Interp,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum PrecisionArg {
    F32,
    F64,
}

/// Parses a count that must be at least 1, such as `--epochs`.
fn parse_positive(value: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(0) => Err("expected a whole number of at least 1, found 0".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "expected a whole number of at least 1, found `{value}`"
        )),
    }
}

/// The most worker threads `--threads` accepts.
const MAX_THREADS: u64 = 1024;

/// Parses a thread count from 1 to [`MAX_THREADS`]: each thread has a stack, so a mistyped count
/// would otherwise exhaust the machine before the first sweep.
fn parse_threads(value: &str) -> Result<u64, String> {
    let count = parse_positive(value)?;
    if count > MAX_THREADS {
        return Err(format!(
            "expected at most {MAX_THREADS} threads, found {count} (this machine has {})",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        ));
    }
    Ok(count)
}

/// Restores the default action of SIGPIPE, which the Rust runtime ignores, so that `npdec … | head`
/// ends quietly when the reader closes the pipe, as other Unix tools do, instead of panicking on the
/// failed write to standard output.
#[cfg(unix)]
fn restore_sigpipe() {
    // SAFETY: this runs first in `main`, before any other thread exists, and `SIG_DFL` is a valid
    // action for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    #[cfg(unix)]
    restore_sigpipe();
    // Parsed in two steps because `npdec build` checks which flags were given, not only their
    // values, against `--emit`.
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)
        .unwrap_or_else(|error| error.format(&mut Cli::command()).exit());
    if let (Command::Build { emit, .. }, Some(build_matches)) =
        (&cli.command, matches.subcommand_matches("build"))
    {
        if let Err(error) = build::check_flags(*emit, build_matches) {
            let mut command = Cli::command();
            command.build();
            let build_command = command
                .find_subcommand_mut("build")
                .expect("npdec has a build subcommand");
            error.format(build_command).exit();
        }
    }
    terminal::init_logging(cli.quiet, cli.verbose);
    let result = match cli.command {
        Command::Check {
            files,
            format,
            gradients,
            engine,
        } => check::run(
            &files,
            format,
            gradients,
            engine == EngineArg::Jit,
            cli.quiet,
        ),
        Command::Explain {
            target,
            dump_ir,
            emit,
        } => explain::run(&target, &explain::ModelView { dump_ir, emit }),
        Command::Run {
            file,
            out,
            vtk,
            strict,
            precision,
            resume,
            seed,
            threads,
            snapshots,
            engine,
            epochs,
            train_samples,
        } => run::run(&run::RunArgs {
            file,
            out,
            vtk,
            strict,
            resume,
            seed,
            threads: threads.map(|n| n as usize),
            snapshots: snapshots.map(|n| n as usize),
            epochs: epochs.map(|n| n as usize),
            train_samples: train_samples.map(|n| n as usize),
            jit: engine == EngineArg::Jit,
            precision: match precision {
                PrecisionArg::F32 => npdec_runtime::Precision::F32,
                PrecisionArg::F64 => npdec_runtime::Precision::F64,
            },
            quiet: cli.quiet,
        }),
        Command::Repl => repl::run(),
        Command::Bench {
            json,
            cases,
            threads,
            steps,
            no_blocking,
            block_steps,
        } => bench::run(bench::Selection {
            json,
            cases,
            threads: threads.into_iter().map(|n| n as usize).collect(),
            steps: steps.map(|n| n as usize),
            temporal_blocking: !no_blocking,
            block_steps: block_steps.map(|n| n as usize),
        }),
        Command::Build {
            file,
            emit,
            out,
            f32,
            checkpoint,
            seed,
            robustness,
            trials,
            g_min,
            g_max,
            volts_per_unit,
            index,
            unit,
            levels,
        } => build::run(&build::BuildArgs {
            file,
            emit,
            out,
            f32,
            checkpoint,
            seed,
            robustness,
            trials: trials as usize,
            crossbar: npdec_hardware::CrossbarOptions {
                g_min,
                g_max,
                volts_per_unit,
            },
            diffractive: build::DiffractiveFlags {
                index,
                unit,
                levels,
            },
            quiet: cli.quiet,
        }),
        Command::Lsp => npdec_lsp::run_stdio()
            .map(|()| ExitCode::SUCCESS)
            .map_err(|e| format!("language server failed: {e}")),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            terminal::print_error(&message);
            ExitCode::from(1)
        }
    }
}
