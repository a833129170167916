//! `npdec explain`: the documented explanation of a diagnostic code, or what a model becomes.

use crate::terminal;
use npdec_diagnostics::{render, Code, RenderOptions};
use std::path::Path;
use std::process::ExitCode;

/// What to show about a model.
pub struct ModelView {
    /// Print the dataflow graph of each task, and at which point of the pipeline.
    pub dump_ir: Option<DumpIr>,
    pub emit: Emit,
}

/// The form of the recognized layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Emit {
    /// A readable table per task, with the model's equations.
    Table,
    /// A Graphviz digraph per task.
    Dot,
    /// One JSON array of architectures, for tools.
    Json,
}

/// The dataflow graph that `--dump-ir` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DumpIr {
    /// The graph as discretization built it, before any pass.
    Discretized,
    /// The graph after the named pass of the optimization pipeline.
    After(&'static str),
    /// The graph after each pass in turn.
    AfterEach,
}

/// Parses the value of `--dump-ir`: `discretized`, `after:PASS` or `after:all`.
pub fn parse_dump_ir(value: &str) -> Result<DumpIr, String> {
    let names = npdec_jit::passes::PASSES.join(", ");
    if value == "discretized" {
        return Ok(DumpIr::Discretized);
    }
    let Some(pass) = value.strip_prefix("after:") else {
        if value.ends_with(".npde") {
            return Err(format!(
                "`{value}` is a model file: write it before `--dump-ir`, as in `npdec explain {value} --dump-ir`"
            ));
        }
        return Err(format!(
            "expected `discretized` or `after:PASS` where PASS is `all` or one of: {names}"
        ));
    };
    if pass == "all" {
        return Ok(DumpIr::AfterEach);
    }
    npdec_jit::passes::PASSES
        .iter()
        .find(|name| **name == pass)
        .map(|name| DumpIr::After(name))
        .ok_or_else(|| format!("unknown optimization pass `{pass}`; the passes are: {names}"))
}

pub fn run(target: &str, view: &ModelView) -> Result<ExitCode, String> {
    if let Ok(code) = target.parse::<Code>() {
        let explanation = code
            .explanation()
            .ok_or_else(|| format!("no explanation is documented for {code}"))?;
        if view.dump_ir.is_some() || view.emit != Emit::Table {
            terminal::print_warning(&format!(
                "`--dump-ir` and `--emit` apply to a model file, so they were ignored for {code}"
            ));
        }
        println!("{}", explanation.text);
        return Ok(ExitCode::SUCCESS);
    }
    let path = Path::new(target);
    if path.exists() {
        return explain_model(path, view);
    }
    if looks_like_code(target) {
        return Err(format!(
            "`{target}` is not a diagnostic code of npdec; docs/diagnostics.md lists every code"
        ));
    }
    if path.extension().is_some_and(|e| e == "npde") {
        return Err(format!("cannot read `{target}`: the file does not exist"));
    }
    Err(format!(
        "`{target}` is neither a diagnostic code (such as E0100 or W0001, see docs/diagnostics.md) nor a model file"
    ))
}

/// Returns true for a word shaped like a diagnostic code: `E` or `W` and four digits, in any case.
fn looks_like_code(target: &str) -> bool {
    let bytes = target.trim().as_bytes();
    bytes.len() == 5
        && matches!(bytes[0], b'E' | b'e' | b'W' | b'w')
        && bytes[1..].iter().all(u8::is_ascii_digit)
}

fn explain_model(path: &Path, view: &ModelView) -> Result<ExitCode, String> {
    let (sources, checked) = npdec_sema::check_path(path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let options = RenderOptions {
        color: terminal::stderr_color(),
    };
    for diagnostic in &checked.diagnostics {
        eprint!("{}", render(diagnostic, &sources, options));
    }
    let Some(model) = checked.model else {
        return Ok(ExitCode::from(1));
    };

    let mut architectures = npdec_arch::recognize(&model);
    for layer in architectures.iter_mut().flat_map(|a| a.layers.iter_mut()) {
        layer.line = Some(
            sources
                .get(layer.span.file)
                .line_column(layer.span.start as usize)
                .line,
        );
    }
    if view.dump_ir.is_some() && view.emit != Emit::Table {
        let emit = if view.emit == Emit::Json {
            "json"
        } else {
            "dot"
        };
        terminal::print_warning(&format!(
            "`--dump-ir` adds the dataflow graph to the table output only, so it was ignored with \
             `--emit {emit}`; run without `--emit` to print the graph"
        ));
    }
    match view.emit {
        Emit::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&architectures).map_err(|e| e.to_string())?
            );
            return Ok(ExitCode::SUCCESS);
        }
        Emit::Dot => {
            for architecture in &architectures {
                print!("{}", npdec_arch::render_dot(architecture));
            }
            return Ok(ExitCode::SUCCESS);
        }
        Emit::Table => {}
    }

    println!("model {}", model.name);
    for field in &model.fields {
        println!("  {}", model.describe_field(field));
    }
    for param in &model.params {
        println!("  {}", model.describe_param(param));
    }
    println!("equations (normal form, one term per summand):");
    for equation in &model.equations {
        let line = sources
            .get(equation.span.file)
            .line_column(equation.span.start as usize)
            .line;
        println!(
            "  {}",
            describe_equation(&model, equation, &format!("line {line}"))
        );
    }

    let file_name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    println!("layers:");
    for architecture in &architectures {
        let source = |layer: &npdec_arch::Layer| {
            layer
                .line
                .map_or_else(String::new, |line| format!("{file_name}:{line}"))
        };
        print!("{}", npdec_arch::render_table(architecture, source));
    }

    let program = match npdec_ir::discretize_model(&model) {
        Ok(program) => program,
        Err(diagnostics) => {
            for diagnostic in &diagnostics {
                eprint!("{}", render(diagnostic, &sources, options));
            }
            return Ok(ExitCode::from(1));
        }
    };
    for graph in &program.solves {
        println!("task {}: {} nodes", graph.name, graph.node_count());
        match &view.dump_ir {
            None => {}
            Some(DumpIr::Discretized) => print!("{}", npdec_ir::dump_graph(graph)),
            Some(when) => {
                npdec_jit::passes::optimize_with(graph, &mut |pass, optimized| {
                    if matches!(when, DumpIr::AfterEach)
                        || matches!(when, DumpIr::After(name) if *name == pass)
                    {
                        println!("after {pass}: {} nodes", optimized.node_count());
                        print!("{}", npdec_ir::dump_graph(optimized));
                    }
                });
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Formats an equation in normal form, such as `heat: dt(u) = 0.1 * laplace(u)    (line 9)`, where
/// `source` names the place it was declared.
pub(crate) fn describe_equation(
    model: &npdec_symbolic::Model,
    equation: &npdec_symbolic::Equation,
    source: &str,
) -> String {
    let target = match equation.channel {
        Some(k) => format!("{}[{k}]", model.field(equation.field).name),
        None => model.field(equation.field).name.clone(),
    };
    let terms = model.display_sum(equation.terms.iter().map(|t| &t.expr));
    let name = &equation.name;
    match equation.time_order {
        0 => format!("{name}: {terms} = 0    (steady in {target}; {source})"),
        1 => format!("{name}: dt({target}) = {terms}    ({source})"),
        _ => format!("{name}: dt2({target}) = {terms}    ({source})"),
    }
}
