//! `npdec build`: ahead-of-time output. `--emit obj` writes an object file and a C header with the
//! step function of each solve task (explicit Euler solves of real fields).

use crate::terminal;
use npdec_diagnostics::{render, RenderOptions};
use std::path::Path;
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Emit {
    /// An object file and a C header per solve task.
    Obj,
}

pub fn run(file: &Path, emit: Emit, out: &Path, f32: bool) -> Result<ExitCode, String> {
    let (sources, checked) = npdec_sema::check_path(file)
        .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
    let options = RenderOptions {
        color: terminal::stderr_color(),
    };
    for diagnostic in &checked.diagnostics {
        eprint!("{}", render(diagnostic, &sources, options));
    }
    let Some(model) = checked.model else {
        return Ok(ExitCode::from(1));
    };
    let program = match npdec_ir::discretize_model(&model) {
        Ok(program) => program,
        Err(diagnostics) => {
            for diagnostic in &diagnostics {
                eprint!("{}", render(diagnostic, &sources, options));
            }
            return Ok(ExitCode::from(1));
        }
    };
    if program.solves.is_empty() {
        return Err(format!("`{}` has no solve task to compile", file.display()));
    }
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create `{}`: {e}", out.display()))?;
    match emit {
        Emit::Obj => {
            let precision = if f32 {
                npdec_jit::Precision::F32
            } else {
                npdec_jit::Precision::F64
            };
            for graph in &program.solves {
                // The object file implements explicit Euler steps only.
                if let Some((_, step)) = graph.time_step() {
                    if step.scheme != npdec_symbolic::Scheme::Euler {
                        return Err(format!(
                            "`--emit obj` compiles explicit Euler solves, and `{}` uses `{}`; use `euler` for this task",
                            graph.name,
                            step.scheme.name()
                        ));
                    }
                }
                let artifacts = npdec_jit::aot::write_step_object(graph, precision, out)
                    .map_err(|e| e.to_string())?;
                println!(
                    "wrote {} and {} (entry point `{}`)",
                    artifacts.object.display(),
                    artifacts.header.display(),
                    artifacts.run_symbol
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
