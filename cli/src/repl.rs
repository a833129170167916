//! `npdec repl`: declarations as in a file, checked one statement at a time, and commands to step
//! the first solve task and look at its fields.
//!
//! The session is the text of a model that grows with every accepted statement. A statement that
//! adds an error is shown as a diagnostic and left out, so the session always checks. `:step N`
//! runs the reference interpreter from the initial state to the requested step, so what it shows is
//! exactly what `npdec run` computes for that many steps.

use crate::terminal;
use npdec_diagnostics::{render, RenderOptions, SourceMap};
use npdec_runtime::{Stepper, Value};
use npdec_symbolic::{Model, Task};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const COMMANDS: &[(&str, &str)] = &[
    (":help", "show this help"),
    (":check", "check the session and show its diagnostics"),
    (
        ":explain",
        "show the equations in normal form and the layers they generate",
    ),
    (
        ":step N",
        "advance the first solve task by N steps (default 1)",
    ),
    (
        ":show FIELD",
        "a numeric summary and a small text heat map of a field",
    ),
    (":plot FIELD FILE.png", "plot a field to a PNG file"),
    (
        ":load FILE.npde",
        "add the statements of a file to the session",
    ),
    (":source", "print the session as a model file"),
    (":reset", "forget every statement and the step count"),
    (":quit", "leave (or Ctrl-D)"),
];

struct Session {
    /// The accepted statements, as the text of a model file.
    text: String,
    /// Where each accepted statement of `text` came from, in order of its byte offset.
    origins: Vec<Origin>,
    /// Steps taken by `:step` in the first solve task.
    step: usize,
    /// The folder data paths are relative to.
    base_dir: PathBuf,
    color: bool,
    /// Whether any input so far produced an error. A script piped to standard input exits with 1
    /// when it did.
    failed: bool,
}

/// The start of statements in the session text that were typed or loaded from one file.
struct Origin {
    /// Byte offset in the session text.
    start: usize,
    /// The file of `:load`, with the one-based session line its first line became. `None` for
    /// statements typed at the prompt.
    file: Option<(String, usize)>,
}

/// Completes commands, keywords, built-in names and the names the session declares.
struct ReplHelper {
    names: Vec<String>,
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let start = line[..pos]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |i| i + 1);
        let prefix = &line[start..pos];
        if prefix.is_empty() {
            return Ok((start, Vec::new()));
        }
        let mut candidates: Vec<String> = if prefix.starts_with(':') {
            COMMANDS
                .iter()
                .map(|(c, _)| c.split(' ').next().unwrap_or(c).to_string())
                .collect()
        } else {
            let mut all: Vec<String> = npdec_sema::KEYWORDS.iter().map(|s| s.to_string()).collect();
            all.extend(npdec_sema::builtin_names().iter().map(|s| s.to_string()));
            all.extend(self.names.iter().cloned());
            all
        };
        candidates.retain(|c| c.starts_with(prefix));
        candidates.sort();
        candidates.dedup();
        Ok((
            start,
            candidates
                .into_iter()
                .map(|c| Pair {
                    display: c.clone(),
                    replacement: c,
                })
                .collect(),
        ))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}
impl Highlighter for ReplHelper {}
impl Validator for ReplHelper {}
impl Helper for ReplHelper {}

pub fn run() -> Result<ExitCode, String> {
    let color = terminal::stderr_color();
    let mut session = Session {
        text: String::new(),
        origins: Vec::new(),
        step: 0,
        base_dir: std::env::current_dir().unwrap_or_default(),
        color,
        failed: false,
    };
    let interactive = std::io::stdin().is_terminal();
    let mut editor: Editor<ReplHelper, rustyline::history::DefaultHistory> =
        Editor::new().map_err(|e| format!("cannot start the line editor: {e}"))?;
    editor.set_helper(Some(ReplHelper { names: Vec::new() }));
    // A script piped to standard input is not typed, so it stays out of the history file.
    let history = if interactive {
        std::env::var_os("HOME").map(|home| Path::new(&home).join(".npdec_history"))
    } else {
        None
    };
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    println!(
        "npdec {} — declarations as in a .npde file; :help lists the commands",
        env!("CARGO_PKG_VERSION")
    );

    let mut pending = String::new();
    loop {
        let prompt = if pending.is_empty() {
            "npde> "
        } else {
            "  ... "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                pending.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(error) => return Err(format!("cannot read input: {error}")),
        };
        let trimmed = line.trim();
        if pending.is_empty() && trimmed.starts_with(':') {
            let _ = editor.add_history_entry(trimmed);
            if !session.command(trimmed) {
                break;
            }
            continue;
        }
        if trimmed.is_empty() && pending.is_empty() {
            continue;
        }
        pending.push_str(&line);
        pending.push('\n');
        if continues(&pending) {
            continue;
        }
        let _ = editor.add_history_entry(pending.trim_end());
        session.add(&pending, None);
        pending.clear();
        if let Some(helper) = editor.helper_mut() {
            helper.names = session.declared_names();
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    // A script must be able to tell that a line failed; at a terminal the user saw it.
    if session.failed && !interactive {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Returns true while the input so far is visibly unfinished: open brackets, or a last line that ends
/// with an operator, `=`, `,` or `:`.
fn continues(text: &str) -> bool {
    let mut depth = 0i64;
    let mut in_string = false;
    for line in text.lines() {
        let code = if in_string {
            line
        } else {
            line.split('#').next().unwrap_or("")
        };
        for c in code.chars() {
            match c {
                '"' => in_string = !in_string,
                '(' | '[' | '{' if !in_string => depth += 1,
                ')' | ']' | '}' if !in_string => depth -= 1,
                _ => {}
            }
        }
        in_string = false;
    }
    let last = text
        .lines()
        .last()
        .unwrap_or("")
        .split('#')
        .next()
        .unwrap_or("")
        .trim_end();
    depth > 0
        || ["+", "-", "*", "/", "^", "@", "=", ",", ":", "~"]
            .iter()
            .any(|end| last.ends_with(end))
}

impl Session {
    fn options(&self) -> RenderOptions {
        RenderOptions { color: self.color }
    }

    fn check_text(&self, text: &str) -> (SourceMap, npdec_sema::Checked) {
        let mut sources = SourceMap::new();
        let file = sources.add("<repl>", text.to_string());
        let checked = npdec_sema::check(
            &mut sources,
            file,
            &npdec_sema::CheckOptions {
                base_dir: Some(self.base_dir.clone()),
            },
        );
        (sources, checked)
    }

    /// Reports an error that is not a diagnostic, such as a command with a missing argument.
    fn error(&mut self, message: &str) {
        self.failed = true;
        eprintln!("{message}");
    }

    /// Adds statements if they bring no new error; otherwise shows the new errors. `file` is the
    /// path of `:load`, or `None` for statements typed at the prompt.
    fn add(&mut self, statement: &str, file: Option<&str>) {
        let (_, before) = self.check_text(&self.text);
        let errors_before = before.diagnostics.iter().filter(|d| d.is_error()).count();
        let candidate = format!("{}{statement}", self.text);
        let (sources, after) = self.check_text(&candidate);
        let new_errors: Vec<_> = after
            .diagnostics
            .iter()
            .filter(|d| d.is_error() && d.span().start as usize >= self.text.len())
            .collect();
        // Missing conditions are reported at earlier statements, such as an equation that waits for
        // its boundary condition. They are expected while a model is being typed in.
        let incomplete =
            |d: &&npdec_diagnostics::Diagnostic| matches!(d.code.as_str(), "E0220" | "E0221");
        let blocking: Vec<_> = new_errors.iter().filter(|d| !incomplete(d)).collect();
        if blocking.is_empty()
            && after
                .diagnostics
                .iter()
                .filter(|d| d.is_error() && !incomplete(d))
                .count()
                <= errors_before
        {
            let first_line = self.text.lines().count() + 1;
            self.origins.push(Origin {
                start: self.text.len(),
                file: file.map(|path| (path.to_string(), first_line)),
            });
            self.text = candidate;
            return;
        }
        self.failed = true;
        for diagnostic in blocking {
            eprint!("{}", render(diagnostic, &sources, self.options()));
        }
    }

    /// Returns where the session text at byte `offset` came from: `<repl>:LINE` for typed
    /// statements, or the file and line of a `:load`ed one.
    fn locate(&self, sources: &SourceMap, span: npdec_diagnostics::Span) -> String {
        let line = sources.get(span.file).line_column(span.start as usize).line;
        let origin = self
            .origins
            .iter()
            .rev()
            .find(|origin| origin.start <= span.start as usize);
        match origin.and_then(|origin| origin.file.as_ref()) {
            Some((path, first_line)) => format!("{path}:{}", line + 1 - first_line),
            None => format!("<repl>:{line}"),
        }
    }

    fn declared_names(&self) -> Vec<String> {
        let (_, checked) = self.check_text(&self.text);
        let model = &checked.partial;
        let mut names: Vec<String> = model.axes.iter().map(|a| a.name.clone()).collect();
        names.extend(model.fields.iter().map(|f| f.name.clone()));
        names.extend(model.params.iter().map(|p| p.name.clone()));
        names.extend(model.equations.iter().map(|e| e.name.clone()));
        names
    }

    /// Runs a command; returns false to leave the session.
    fn command(&mut self, line: &str) -> bool {
        let mut words = line.split_whitespace();
        let command = words.next().unwrap_or("");
        let arguments: Vec<&str> = words.collect();
        match command {
            ":quit" | ":q" | ":exit" => return false,
            ":help" => {
                for (name, help) in COMMANDS {
                    println!("  {name:<22} {help}");
                }
            }
            ":source" => print!("{}", self.text),
            ":reset" => {
                self.text.clear();
                self.origins.clear();
                self.step = 0;
            }
            ":check" => {
                let (sources, checked) = self.check_text(&self.text);
                for diagnostic in &checked.diagnostics {
                    eprint!("{}", render(diagnostic, &sources, self.options()));
                }
                let errors = checked.diagnostics.iter().filter(|d| d.is_error()).count();
                self.failed |= errors > 0;
                println!(
                    "{} error{}, {} warning{}",
                    errors,
                    plural(errors),
                    checked.diagnostics.len() - errors,
                    plural(checked.diagnostics.len() - errors)
                );
            }
            ":load" => match arguments.first() {
                None => self.error("usage: :load FILE.npde"),
                Some(path) => match std::fs::read_to_string(path) {
                    Err(error) => {
                        self.failed = true;
                        terminal::print_error(&format!("cannot read `{path}`: {error}"))
                    }
                    Ok(text) => {
                        if let Some(parent) = Path::new(path)
                            .parent()
                            .filter(|p| !p.as_os_str().is_empty())
                        {
                            self.base_dir = parent.to_path_buf();
                        }
                        let before = self.text.len();
                        self.add(&format!("{text}\n"), Some(path));
                        if self.text.len() > before {
                            println!("loaded {path}");
                        }
                    }
                },
            },
            ":explain" => self.explain(),
            ":step" => {
                let count = match arguments.first().map(|a| a.parse::<usize>()) {
                    None => 1,
                    Some(Ok(n)) => n,
                    Some(Err(_)) => {
                        self.error("usage: :step N, with N a whole number");
                        return true;
                    }
                };
                self.advance(count);
            }
            ":show" => match arguments.first() {
                None => self.error("usage: :show FIELD"),
                Some(name) => self.show(name, None),
            },
            ":plot" => match (arguments.first(), arguments.get(1)) {
                (Some(name), Some(file)) => self.show(name, Some(Path::new(file))),
                _ => self.error("usage: :plot FIELD FILE.png"),
            },
            other => {
                let names = COMMANDS
                    .iter()
                    .map(|(usage, _)| usage.split(' ').next().unwrap_or(usage));
                let message = match npdec_diagnostics::suggest::closest(other, names) {
                    Some(name) => {
                        format!("unknown command `{other}`; did you mean `{name}`? :help lists the commands")
                    }
                    None => format!("unknown command `{other}`; :help lists the commands"),
                };
                self.error(&message);
            }
        }
        true
    }

    fn model(&mut self) -> Option<Model> {
        let (sources, checked) = self.check_text(&self.text);
        if checked.model.is_none() {
            self.failed = true;
            for diagnostic in checked.diagnostics.iter().filter(|d| d.is_error()) {
                eprint!("{}", render(diagnostic, &sources, self.options()));
            }
        }
        checked.model
    }

    fn explain(&mut self) {
        let Some(model) = self.model() else { return };
        let mut sources = SourceMap::new();
        sources.add("<repl>", self.text.clone());
        for equation in &model.equations {
            let source = self.locate(&sources, equation.span);
            println!(
                "  {}",
                crate::explain::describe_equation(&model, equation, &source)
            );
        }
        for architecture in npdec_arch::recognize(&model) {
            let source = |layer: &npdec_arch::Layer| self.locate(&sources, layer.span);
            print!("{}", npdec_arch::render_table(&architecture, source));
        }
    }

    fn advance(&mut self, count: usize) {
        let Some(mut model) = self.model() else {
            return;
        };
        let Some(index) = model.tasks.iter().position(|t| matches!(t, Task::Solve(_))) else {
            self.error(
                "no solve task yet: add one, e.g. `solve heat using euler(dt = 1e-3) until 1`",
            );
            return;
        };
        self.step += count;
        let Task::Solve(task) = &mut model.tasks[index] else {
            return;
        };
        let dt = task.discretization.dt;
        task.discretization.steps = self.step;
        task.discretization.until = self.step as f64 * dt;
        match solve_states(&model, index) {
            Ok(_) => println!("step {} (t = {})", self.step, self.step as f64 * dt),
            Err(message) => {
                self.failed = true;
                terminal::print_error(&message)
            }
        }
    }

    /// Prints a summary and heat map of a field at the current step, or plots it to `plot`.
    fn show(&mut self, name: &str, plot: Option<&Path>) {
        let Some(mut model) = self.model() else {
            return;
        };
        let Some(field) = model.fields.iter().position(|f| f.name == name) else {
            let names: Vec<&str> = model.fields.iter().map(|f| f.name.as_str()).collect();
            self.error(&format!(
                "unknown field `{name}`; the fields are {}",
                names.join(", ")
            ));
            return;
        };
        let Some(index) = model.tasks.iter().position(|t| matches!(t, Task::Solve(_))) else {
            self.error("no solve task yet: add one to give the fields values");
            return;
        };
        if let Task::Solve(task) = &mut model.tasks[index] {
            task.discretization.until = self.step as f64 * task.discretization.dt;
            task.discretization.steps = self.step;
        }
        let states = match solve_states(&model, index) {
            Ok(states) => states,
            Err(message) => {
                self.failed = true;
                return terminal::print_error(&message);
            }
        };
        let Some(value) = states.get(field).cloned().flatten() else {
            self.error(&format!("`{name}` has no value in the first solve task"));
            return;
        };
        let magnitude: ndarray::ArrayD<f64> = match &value {
            Value::Real(a) => a.clone(),
            Value::Complex(a) => a.mapv(|z| z.norm()),
        };
        if let Some(path) = plot {
            // The plot is drawn to a temporary file and renamed, so a failed plot leaves an earlier
            // file of that name intact.
            let written = npdec_runtime::output::write_atomically(path, |temporary| {
                npdec_runtime::output::plot_field(temporary, &magnitude)
            });
            match written {
                Ok(()) => println!("wrote {}", path.display()),
                Err(error) => {
                    self.failed = true;
                    terminal::print_error(&format!("cannot plot to {error}"))
                }
            }
            return;
        }
        let count = magnitude.len().max(1) as f64;
        let min = magnitude.iter().copied().fold(f64::INFINITY, f64::min);
        let max = magnitude.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mean = magnitude.sum() / count;
        let rms = (magnitude.iter().map(|v| v * v).sum::<f64>() / count).sqrt();
        let kind = if matches!(value, Value::Complex(_)) {
            "|"
        } else {
            ""
        };
        println!("{kind}{name}{kind} at step {}: min {min:.6e}  max {max:.6e}  mean {mean:.6e}  rms {rms:.6e}", self.step);
        print!("{}", heat_map(&magnitude, min, max));
    }
}

/// Runs the solve task at `index` of the model and returns its final states.
fn solve_states(model: &Model, index: usize) -> Result<npdec_runtime::States<f64>, String> {
    let Task::Solve(task) = &model.tasks[index] else {
        return Err("not a solve task".to_string());
    };
    // A solve of zero steps is invalid, so the state before the first step comes from a solve of
    // one step that never runs.
    let steps = task.discretization.steps;
    let mut task = task.clone();
    if steps == 0 {
        task.discretization.steps = 1;
        task.discretization.until = task.discretization.dt;
    }
    let graph = npdec_ir::discretize_solve(model, &task).map_err(|d| {
        d.first().map_or_else(
            || "the model cannot be discretized".to_string(),
            |d| format!("{}: {}", d.code, d.message),
        )
    })?;
    let mut stepper = Stepper::<f64>::new(&graph).ok_or("the solve task has no time step")?;
    if steps == 0 {
        return Ok(stepper.initial_states().0);
    }
    Ok(stepper.run(&mut |_, _, _| {}))
}

/// Draws the first channel of a field as shaded characters: one row for 1-D, up to 16 rows for 2-D
/// (the middle slice of higher dimensions).
fn heat_map(values: &ndarray::ArrayD<f64>, min: f64, max: f64) -> String {
    const SHADES: &[char] = &[' ', '░', '▒', '▓', '█'];
    let channel = values.index_axis(ndarray::Axis(0), 0);
    let mut plane = channel.to_owned();
    while plane.ndim() > 2 {
        let middle = plane.shape()[plane.ndim() - 1] / 2;
        plane = plane
            .index_axis(ndarray::Axis(plane.ndim() - 1), middle)
            .to_owned();
    }
    let shade = |v: f64| {
        let t = if max > min {
            (v - min) / (max - min)
        } else {
            0.5
        };
        SHADES[((t * (SHADES.len() - 1) as f64).round() as usize).min(SHADES.len() - 1)]
    };
    let (rows, columns) = match plane.ndim() {
        1 => (1, plane.shape()[0]),
        _ => (plane.shape()[0], plane.shape()[1]),
    };
    let (out_rows, out_columns) = (rows.min(16), columns.min(64));
    let mut out = String::new();
    for r in 0..out_rows {
        out.push_str("  ");
        for c in 0..out_columns {
            let (i, j) = (r * rows / out_rows, c * columns / out_columns);
            let v = if plane.ndim() == 1 {
                plane[[j]]
            } else {
                plane[[i, j]]
            };
            out.push(shade(v));
        }
        out.push('\n');
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
