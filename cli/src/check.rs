//! `npdec check`: diagnostics for one or more files, for people or as JSON for editors.

use crate::terminal;
use npdec_diagnostics::{render, to_json, Code, Diagnostic, RenderOptions, SourceMap, Span};
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
                any_error = true;
                let unreadable = unreadable_file(path, &error);
                match format {
                    Format::Json => {
                        let mut object = to_json(&unreadable.diagnostic, &unreadable.sources);
                        object.byte_end = unreadable.byte_end;
                        json.push(object);
                    }
                    Format::Human => {
                        let options = RenderOptions {
                            color: terminal::stderr_color(),
                        };
                        eprint!(
                            "{}",
                            render(&unreadable.diagnostic, &unreadable.sources, options)
                        );
                        eprintln!("{}: {}", path.display(), summary(1, 0));
                    }
                }
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

/// A model file that cannot be read, as an E0004 diagnostic.
struct UnreadableFile {
    /// The file's text as far as it could be read, so that the diagnostic can point into it.
    sources: SourceMap,
    diagnostic: Diagnostic,
    /// The end of the diagnostic's span in the file's bytes. For invalid UTF-8 it differs from the
    /// span in `sources`, where the invalid bytes became one U+FFFD replacement character.
    byte_end: usize,
}

/// Builds the E0004 diagnostic for a model file that `check_path` could not read: at the first
/// invalid byte for a file that is not UTF-8, else at the start of the file.
fn unreadable_file(path: &Path, error: &std::io::Error) -> UnreadableFile {
    let name = path.display().to_string();
    let mut sources = SourceMap::new();
    if error.kind() == std::io::ErrorKind::InvalidData {
        if let Ok(bytes) = std::fs::read(path) {
            if let Err(utf8) = std::str::from_utf8(&bytes) {
                let start = utf8.valid_up_to();
                let invalid = utf8.error_len().unwrap_or(bytes.len() - start);
                let invalid_bytes: Vec<String> = bytes[start..start + invalid]
                    .iter()
                    .map(|b| format!("0x{b:02x}"))
                    .collect();
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let file = sources.add(name.clone(), text);
                let replacement = '\u{FFFD}'.len_utf8();
                let diagnostic = Diagnostic::error(
                    Code::E0004,
                    format!(
                        "`{name}` is not valid UTF-8: invalid byte{} {} at byte offset {start}",
                        if invalid == 1 { "" } else { "s" },
                        invalid_bytes.join(" ")
                    ),
                    Span::new(file, start, start + replacement),
                    "not UTF-8",
                )
                .with_help("save the file as UTF-8; model files are UTF-8 text");
                return UnreadableFile {
                    sources,
                    diagnostic,
                    byte_end: start + invalid,
                };
            }
        }
    }
    let file = sources.add(name.clone(), String::new());
    let (message, help) = if error.kind() == std::io::ErrorKind::NotFound {
        (
            format!("model file `{name}` not found"),
            "check the path, which is relative to the current folder",
        )
    } else {
        (
            format!("cannot read `{name}`: {error}"),
            "pass a readable model file",
        )
    };
    let diagnostic =
        Diagnostic::error(Code::E0004, message, Span::new(file, 0, 0), "not read").with_help(help);
    UnreadableFile {
        sources,
        diagnostic,
        byte_end: 0,
    }
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
        // Tasks are named by kind and numbered from 0 among the tasks of that kind, like the
        // solve tasks `MODEL.solve0` of `npdec explain` and the `solve0_` of snapshot files.
        let task = format!(
            "{}.train{}",
            model.name,
            model.tasks[..check.task]
                .iter()
                .filter(|t| matches!(t, npdec_symbolic::Task::Train(_)))
                .count()
        );
        if let Some(reason) = &check.adjoint_fallback {
            terminal::print_warning(&format!(
                "{}: task {}: the JIT cannot compile the adjoint, so the tape computes it: {reason}",
                path.display(),
                task
            ));
        }
        let rates: Vec<String> = check.rates.iter().map(|r| format!("{r:.3}")).collect();
        let verdict = |passed: bool| if passed { "passed" } else { "FAILED" };
        if !quiet || !check.taylor_passed {
            eprintln!(
                "{}: task {}: Taylor test {} ({}, rates {}, expected 2 ± {})",
                path.display(),
                task,
                verdict(check.taylor_passed),
                npdec_arch::count(check.parameters, "parameter"),
                rates.join(", "),
                npdec_runtime::train::gradcheck::TAYLOR_RATE_TOLERANCE
            );
        }
        if !quiet || !check.dot_passed {
            eprintln!(
                "{}: task {}: dot test {} (<Jv, w> = {:.15e}, <v, J^T w> = {:.15e}, relative difference {:.1e}, adjoint by the {})",
                path.display(),
                task,
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
                task,
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
