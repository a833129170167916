//! `npdec run`: check a model, run its tasks, evaluate its expectations and write the results.

use crate::terminal;
use npdec_diagnostics::{render, Diagnostic, RenderOptions, SourceMap};
use npdec_runtime::train::gemm::ProductPrecision;
use npdec_runtime::train::TrainOptions;
use npdec_runtime::{run_model, Precision, RunOptions, StabilityPolicy};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Options of `npdec run` that the command line sets.
pub struct RunArgs {
    pub file: PathBuf,
    pub out: Option<PathBuf>,
    /// Also writes VTK image data and ParaView collections of the snapshots.
    pub vtk: bool,
    pub strict: bool,
    pub precision: Precision,
    pub quiet: bool,
    /// Continue training from the checkpoint in the output folder.
    pub resume: bool,
    pub seed: u64,
    pub threads: Option<usize>,
    pub snapshots: Option<usize>,
    /// Overrides the epoch count of every train task.
    pub epochs: Option<usize>,
    /// Trains on the first N training samples only.
    pub train_samples: Option<usize>,
    /// Compile solves with the JIT; false forces the interpreter.
    pub jit: bool,
}

pub fn run(args: &RunArgs) -> Result<ExitCode, String> {
    let (sources, checked) = npdec_sema::check_path(&args.file)
        .map_err(|e| format!("cannot read `{}`: {e}", args.file.display()))?;
    print_diagnostics(&checked.diagnostics, &sources, args.quiet);
    let Some(model) = checked.model else {
        let errors = checked.diagnostics.iter().filter(|d| d.is_error()).count();
        terminal::print_error(&format!(
            "`{}` has {errors} error{}; nothing was run",
            args.file.display(),
            if errors == 1 { "" } else { "s" }
        ));
        return Ok(ExitCode::from(1));
    };
    let has_train_task = model
        .tasks
        .iter()
        .any(|task| matches!(task, npdec_symbolic::Task::Train(_)));
    if !has_train_task && !args.quiet {
        let training_flags: Vec<&str> = [
            ("--epochs", args.epochs.is_some()),
            ("--train-samples", args.train_samples.is_some()),
            ("--resume", args.resume),
            ("--snapshots", args.snapshots.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, given)| given.then_some(flag))
        .collect();
        if !training_flags.is_empty() {
            terminal::print_warning(&format!(
                "{} {} only train tasks, and `{}` has none, so {} ignored",
                training_flags.join(", "),
                if training_flags.len() == 1 {
                    "affects"
                } else {
                    "affect"
                },
                args.file.display(),
                if training_flags.len() == 1 {
                    "it was"
                } else {
                    "they were"
                },
            ));
        }
    }

    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("out").join(&model.name));
    if out_dir.exists() && !out_dir.is_dir() {
        terminal::print_error(&format!(
            "the output folder `{}` is a file; choose a folder with `--out DIR`",
            out_dir.display()
        ));
        return Ok(ExitCode::from(1));
    }
    crate::interrupt::remove_temporaries_on_interrupt(out_dir.clone());
    let options = RunOptions {
        out_dir: Some(out_dir.clone()),
        vtk: args.vtk,
        precision: args.precision,
        stability: if args.strict {
            StabilityPolicy::Strict
        } else {
            StabilityPolicy::Warn
        },
        model_dir: args.file.parent().map(Path::to_path_buf),
        train: TrainOptions {
            seed: args.seed,
            threads: args.threads,
            resume: args.resume,
            snapshots: args.snapshots,
            max_epochs: args.epochs,
            max_train_samples: args.train_samples,
            progress: !args.quiet && std::io::stderr().is_terminal(),
            products: match args.precision {
                Precision::F32 => ProductPrecision::F32,
                Precision::F64 => ProductPrecision::F64,
            },
        },
        compiler: args.jit.then(|| {
            let threads = args
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            std::sync::Arc::new(crate::engine::Jit {
                options: npdec_jit::JitOptions {
                    threads,
                    ..Default::default()
                },
            }) as std::sync::Arc<dyn npdec_runtime::engine::Compiler>
        }),
        check_warnings: checked
            .diagnostics
            .iter()
            .filter(|d| !d.is_error())
            .cloned()
            .collect(),
    };
    let report = match run_model(&model, &options) {
        Ok(report) => report,
        Err(diagnostics) => {
            print_diagnostics(&diagnostics, &sources, false);
            return Ok(ExitCode::from(1));
        }
    };
    print_diagnostics(&report.warnings, &sources, args.quiet);

    if !args.quiet {
        for task in &report.tasks {
            eprintln!("{}", describe_solve(task));
        }
    }
    for trained in &report.training {
        if let Some(requested) = args.train_samples.filter(|n| *n > trained.train_samples) {
            if !args.quiet {
                terminal::print_warning(&format!(
                    "--train-samples {requested} is more than the {} training samples, so all of them were used",
                    trained.train_samples
                ));
            }
        }
        if args.quiet {
            continue;
        }
        let epochs = |n: usize| format!("{n} epoch{}", if n == 1 { "" } else { "s" });
        let figures = training_figures(trained);
        if trained.resumed_epochs > 0 && trained.resumed_epochs >= trained.requested_epochs {
            // The checkpoint's parameters stay as they are, so report them and not a training run.
            eprintln!(
                "the checkpoint already contains {} and this run requests {}, so nothing more was trained (request more with `--epochs`)",
                epochs(trained.resumed_epochs),
                epochs(trained.requested_epochs)
            );
            eprintln!(
                "checkpoint after {} with {}: {figures}",
                epochs(trained.resumed_epochs),
                trained.optimizer,
            );
            continue;
        }
        if trained.resumed_epochs > 0 {
            let first = trained.resumed_epochs + 1;
            let trained_now = if first == trained.epochs {
                format!("epoch {first}")
            } else {
                format!("epochs {first} to {}", trained.epochs)
            };
            eprintln!(
                "resumed from the checkpoint after epoch {}; trained {trained_now}",
                trained.resumed_epochs
            );
        }
        let mean_seconds =
            trained.epoch_seconds.iter().sum::<f64>() / trained.epoch_seconds.len().max(1) as f64;
        eprintln!(
            "trained with {} for {} ({:.2} s per epoch): {figures}",
            trained.optimizer,
            epochs(trained.epochs),
            mean_seconds,
        );
    }
    for expect in &report.expects {
        if let Some(reason) = &expect.skipped {
            if !args.quiet {
                eprintln!(
                    "expect {}: skipped (value {:e}): {reason}",
                    expect.text, expect.value
                );
            }
            continue;
        }
        let verdict = if expect.passed { "passed" } else { "FAILED" };
        if !args.quiet || !expect.passed {
            eprintln!(
                "expect {}: {verdict} (value {:e})",
                expect.text, expect.value
            );
        }
    }
    if !args.quiet {
        let files = report.outputs.len();
        eprintln!(
            "wrote {files} file{} to {}",
            if files == 1 { "" } else { "s" },
            out_dir.display()
        );
        let earlier = earlier_outputs(&out_dir, &report.outputs);
        if let Some(first) = earlier.first() {
            eprintln!(
                "note: {} also holds {} snapshot file{} this run did not write ({first}{}), kept from an earlier run",
                out_dir.display(),
                earlier.len(),
                if earlier.len() == 1 { "" } else { "s" },
                if earlier.len() > 1 { ", …" } else { "" }
            );
        }
    }
    if report.all_passed() {
        Ok(ExitCode::SUCCESS)
    } else {
        let failed = report
            .expects
            .iter()
            .filter(|e| !e.passed && e.skipped.is_none())
            .count();
        terminal::print_error(&format!(
            "{failed} expectation{} failed",
            if failed == 1 { "" } else { "s" }
        ));
        Ok(ExitCode::from(1))
    }
}

/// Formats every figure that a train task computed in its last epoch: the loss, which every task
/// computes, then the accuracy and the mean squared error when the task's `metrics` list them.
/// Each is given for the training samples and then, with a test set, for the test set.
fn training_figures(trained: &npdec_runtime::train::TrainReport) -> String {
    let percent: fn(f64) -> String = |fraction| format!("{:.2} %", 100.0 * fraction);
    let figures = [
        (
            "train loss",
            Some(trained.train_loss),
            significant as fn(f64) -> String,
        ),
        ("test loss", trained.test_loss, significant),
        ("train accuracy", trained.train_accuracy, percent),
        ("test accuracy", trained.test_accuracy, percent),
        ("train mse", trained.train_mse, significant),
        ("test mse", trained.test_mse, significant),
    ];
    figures
        .iter()
        .filter_map(|(name, value, format)| value.map(|v| format!("{name} {}", format(v))))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Returns `x` with 4 significant digits: in fixed notation from 0.001 to below 100000, so that
/// `0.1439` and `12.35` read as usual, and in scientific notation otherwise, so that a loss of
/// `1.5e-9` does not print as `0.0000`.
fn significant(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let magnitude = x.abs().log10().floor() as i32;
    if (-3..5).contains(&magnitude) {
        let decimals = (3 - magnitude).max(0) as usize;
        format!("{x:.decimals$}")
    } else {
        format!("{x:.3e}")
    }
}

/// Returns a step size in scientific notation without a zero exponent: `2e-4`, `1`, `1.5`.
fn step_size(dt: f64) -> String {
    let text = format!("{dt:e}");
    text.strip_suffix("e0").map_or(text.clone(), str::to_string)
}

/// Returns `x` rounded to 12 significant digits, so that a time summed over many steps prints as
/// `0.0001` rather than `0.00009999999999999999`.
fn round_to_digits(x: f64) -> f64 {
    format!("{x:.11e}").parse().unwrap_or(x)
}

/// Describes what a solve task did, in one line: the equations, the scheme, and the steps of a time
/// loop or the linear iterations and the residual of a steady solve.
fn describe_solve(task: &npdec_runtime::TaskMetrics) -> String {
    let equations: Vec<String> = task.equations.iter().map(|e| format!("`{e}`")).collect();
    let equations = equations.join(", ");
    match (task.steps, task.dt, task.final_time) {
        (Some(steps), Some(dt), Some(final_time)) => format!(
            "solved {equations} with {} in {steps} step{} of dt = {} to t = {} ({:.2} s)",
            task.scheme,
            if steps == 1 { "" } else { "s" },
            step_size(dt),
            round_to_digits(final_time),
            task.wall_time_seconds
        ),
        _ => {
            let iterations = task.linear_iterations;
            format!(
                "solved {equations} with {} in {iterations} linear iteration{} to a relative residual of {:.1e} ({:.2} s)",
                task.scheme,
                if iterations == 1 { "" } else { "s" },
                task.worst_linear_residual,
                task.wall_time_seconds
            )
        }
    }
}

fn print_diagnostics(diagnostics: &[Diagnostic], sources: &SourceMap, quiet: bool) {
    let options = RenderOptions {
        color: terminal::stderr_color(),
    };
    for diagnostic in diagnostics {
        if quiet && !diagnostic.is_error() {
            continue;
        }
        eprint!("{}", render(diagnostic, sources, options));
    }
}

/// Returns the names of the snapshot files (`.npy`, `.vti`, `.pvd`) in the output folder that are
/// not among `written`, sorted: what an earlier run into the same folder left there.
fn earlier_outputs(dir: &std::path::Path, written: &[std::path::PathBuf]) -> Vec<String> {
    let written: std::collections::HashSet<&std::ffi::OsStr> =
        written.iter().filter_map(|p| p.file_name()).collect();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut earlier: Vec<String> = entries
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .filter(|entry| {
            let path = entry.path();
            let snapshot = path
                .extension()
                .is_some_and(|e| e == "npy" || e == "vti" || e == "pvd");
            snapshot && !written.contains(entry.file_name().as_os_str())
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    earlier.sort();
    earlier
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solve_line_numbers_are_short() {
        assert_eq!(step_size(2e-4), "2e-4");
        assert_eq!(step_size(1.0), "1");
        assert_eq!(step_size(1.5), "1.5");
        assert_eq!(step_size(1e10), "1e10");
        assert_eq!(round_to_digits(9.999999999999999e-5).to_string(), "0.0001");
        assert_eq!(round_to_digits(0.5).to_string(), "0.5");
        assert_eq!(round_to_digits(2.0).to_string(), "2");
    }

    #[test]
    fn solve_line_counts_steps() {
        let task = |steps| npdec_runtime::TaskMetrics {
            equations: vec!["e".to_string()],
            scheme: "euler".to_string(),
            dt: Some(1.0),
            steps: Some(steps),
            final_time: Some(steps as f64),
            max_stable_dt: None,
            linear_iterations: 0,
            worst_linear_residual: 0.0,
            wall_time_seconds: 0.0,
            graph_nodes: 1,
        };
        assert!(describe_solve(&task(1)).contains("in 1 step of dt = 1 to t = 1 "));
        assert!(describe_solve(&task(2)).contains("in 2 steps of dt = 1 to t = 2 "));
    }

    /// Returns a report of one epoch with a training loss of 0.5 and the given other figures.
    fn trained(
        test_loss: Option<f64>,
        accuracies: (Option<f64>, Option<f64>),
        errors: (Option<f64>, Option<f64>),
    ) -> npdec_runtime::train::TrainReport {
        npdec_runtime::train::TrainReport {
            optimizer: "adam".to_string(),
            epochs: 1,
            train_samples: 8,
            test_samples: 4,
            test_accuracy: accuracies.1,
            test_loss,
            test_mse: errors.1,
            train_accuracy: accuracies.0,
            train_loss: 0.5,
            train_mse: errors.0,
            resumed_epochs: 0,
            requested_epochs: 1,
            epoch_seconds: vec![0.25],
            shortened: false,
            history: Vec::new(),
            adjoint_engine: "JIT".to_string(),
            adjoint_fallback: None,
            parameters: Vec::new(),
            confusion: None,
            outputs: Vec::new(),
        }
    }

    #[test]
    fn training_figures_show_every_computed_one() {
        let everything = trained(
            Some(0.75),
            (Some(0.875), Some(0.5)),
            (Some(0.125), Some(0.25)),
        );
        assert_eq!(
            training_figures(&everything),
            "train loss 0.5000, test loss 0.7500, train accuracy 87.50 %, test accuracy 50.00 %, \
             train mse 0.1250, test mse 0.2500"
        );
        // `metrics accuracy, loss` with a test set.
        let classified = trained(Some(0.75), (Some(0.875), Some(0.5)), (None, None));
        assert_eq!(
            training_figures(&classified),
            "train loss 0.5000, test loss 0.7500, train accuracy 87.50 %, test accuracy 50.00 %"
        );
        // `metrics mse` with a test set.
        let errors = trained(Some(0.75), (None, None), (Some(0.125), Some(0.25)));
        assert_eq!(
            training_figures(&errors),
            "train loss 0.5000, test loss 0.7500, train mse 0.1250, test mse 0.2500"
        );
        // `metrics accuracy` without a test set.
        let no_test_set = trained(None, (Some(0.875), None), (None, None));
        assert_eq!(
            training_figures(&no_test_set),
            "train loss 0.5000, train accuracy 87.50 %"
        );
    }

    #[test]
    fn training_figures_show_small_values() {
        assert_eq!(significant(0.14393629), "0.1439");
        assert_eq!(significant(1.4567), "1.457");
        assert_eq!(significant(12.345678), "12.35");
        assert_eq!(significant(0.001234), "0.001234");
        assert_eq!(significant(1.5e-9), "1.500e-9");
        assert_eq!(significant(-2.5e-5), "-2.500e-5");
        assert_eq!(significant(123456.0), "1.235e5");
        assert_eq!(significant(0.0), "0");
    }
}
