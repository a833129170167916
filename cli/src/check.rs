//! `npdec check`: diagnostics for one or more files, for people or as JSON for editors.

use crate::terminal;
use npdec_diagnostics::{render, to_json, RenderOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    /// Rendered diagnostics with source excerpts, on standard error.
    Human,
    /// One JSON array of diagnostics on standard output.
    Json,
}

pub fn run(
    files: &[PathBuf],
    format: Format,
    gradients: bool,
    jit: bool,
    quiet: bool,
) -> Result<ExitCode, String> {
    let mut any_error = false;
    let mut json = Vec::new();
    for path in files {
        let (sources, checked) = match npdec_sema::check_path(path) {
            Ok(result) => result,
            Err(error) => {
                terminal::print_error(&format!("cannot read `{}`: {error}", path.display()));
                any_error = true;
                continue;
            }
        };
        any_error |= checked.has_errors();
        if gradients {
            if let Some(model) = &checked.model {
                let trains = model
                    .tasks
                    .iter()
                    .any(|task| matches!(task, npdec_symbolic::Task::Train(_)));
                if trains {
                    any_error |= !check_gradients(path, model, jit, quiet);
                } else if !quiet {
                    // A solve-only model among several files is not an error: nothing to check.
                    eprintln!(
                        "{}: no train task, so there are no gradients to check",
                        path.display()
                    );
                }
            }
        }
        match format {
            Format::Json => json.extend(checked.diagnostics.iter().map(|d| to_json(d, &sources))),
            Format::Human => {
                let options = RenderOptions {
                    color: terminal::stderr_color(),
                };
                for diagnostic in &checked.diagnostics {
                    if quiet && !diagnostic.is_error() {
                        continue;
                    }
                    eprint!("{}", render(diagnostic, &sources, options));
                }
                let errors = checked.diagnostics.iter().filter(|d| d.is_error()).count();
                let warnings = checked.diagnostics.len() - errors;
                if !quiet || errors > 0 {
                    eprintln!("{}: {}", path.display(), summary(errors, warnings));
                }
            }
        }
    }
    if let Format::Json = format {
        println!(
            "{}",
            serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?
        );
    }
    Ok(ExitCode::from(u8::from(any_error)))
}

/// Runs the Taylor and dot tests of every train task and prints their figures. The JIT computes the
/// adjoint of the rates when `jit` is set and it compiles them. Returns whether the tests passed.
fn check_gradients(path: &Path, model: &npdec_symbolic::Model, jit: bool, quiet: bool) -> bool {
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let compiler = crate::engine::Jit {
        options: npdec_jit::JitOptions::default(),
    };
    let compiler = jit.then_some(&compiler as &dyn npdec_runtime::engine::Compiler);
    let report = match npdec_runtime::train::check_gradients_compiled(model, base_dir, 0, compiler)
    {
        Ok(report) => report,
        Err(message) => {
            terminal::print_error(&format!(
                "cannot check the gradients of `{}`: {message}",
                path.display()
            ));
            return false;
        }
    };
    for check in &report.checks {
        if let Some(reason) = &check.adjoint_fallback {
            terminal::print_warning(&format!(
                "{}: task {}: the JIT cannot compile the adjoint, so the tape computes it: {reason}",
                path.display(),
                check.task + 1
            ));
        }
        let rates: Vec<String> = check.rates.iter().map(|r| format!("{r:.3}")).collect();
        let verdict = |passed: bool| if passed { "passed" } else { "FAILED" };
        if !quiet || !check.taylor_passed {
            eprintln!(
                "{}: task {}: Taylor test {} ({} parameters, rates {}, expected 2 ± {})",
                path.display(),
                check.task + 1,
                verdict(check.taylor_passed),
                check.parameters,
                rates.join(", "),
                npdec_runtime::train::gradcheck::TAYLOR_RATE_TOLERANCE
            );
        }
        if !quiet || !check.dot_passed {
            eprintln!(
                "{}: task {}: dot test {} (<Jv, w> = {:.15e}, <v, J^T w> = {:.15e}, relative difference {:.1e}, adjoint by the {})",
                path.display(),
                check.task + 1,
                verdict(check.dot_passed),
                check.dot_tangent,
                check.dot_adjoint,
                check.dot_relative_error,
                check.adjoint_engine
            );
        }
        if let (false, Some(difference)) = (quiet, check.continuous_difference) {
            eprintln!(
                "{}: task {}: the continuous adjoint's gradient differs from the discrete one by {:.2e} (relative)",
                path.display(),
                check.task + 1,
                difference
            );
        }
    }
    report.passed()
}

fn summary(errors: usize, warnings: usize) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    match (errors, warnings) {
        (0, 0) => "ok".to_string(),
        (0, w) => format!("ok, {}", plural(w, "warning")),
        (e, 0) => plural(e, "error"),
        (e, w) => format!("{}, {}", plural(e, "error"), plural(w, "warning")),
    }
}
