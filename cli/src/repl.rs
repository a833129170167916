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
use npdec_symbolic::{Model, Scheme, Task};
use rustyline::completion::{Completer, FilenameCompleter, Pair};
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

/// Completes commands, keywords, built-in names and the names the session declares, the field
/// names after `:show` and `:plot`, and file names after `:load` and as the file of `:plot`.
struct ReplHelper {
    names: Vec<String>,
    fields: Vec<String>,
    files: FilenameCompleter,
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        context: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let typed = &line[..pos];
        if typed.trim_start().starts_with(':') {
            let words: Vec<&str> = typed.split_whitespace().collect();
            let partial = if typed.ends_with(char::is_whitespace) {
                ""
            } else {
                words.last().copied().unwrap_or("")
            };
            let start = pos - partial.len();
            // The index of the word being completed: 0 for the command, 1 for its first argument.
            let word = words.len() - usize::from(!partial.is_empty());
            return match (words[0], word) {
                (_, 0) => {
                    let commands: Vec<String> = COMMANDS
                        .iter()
                        .map(|(c, _)| c.split(' ').next().unwrap_or(c).to_string())
                        .collect();
                    // The space after a whole command leaves the cursor where its argument goes.
                    Ok((start, matching(&commands, partial, " ")))
                }
                (":load", 1) | (":plot", 2) => self.files.complete(line, pos, context),
                (":show", 1) | (":plot", 1) => Ok((start, matching(&self.fields, partial, ""))),
                _ => Ok((start, Vec::new())),
            };
        }
        let start = typed
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let prefix = &line[start..pos];
        if prefix.is_empty() {
            return Ok((start, Vec::new()));
        }
        let mut all: Vec<String> = npdec_sema::KEYWORDS.iter().map(|s| s.to_string()).collect();
        all.extend(npdec_sema::builtin_names().iter().map(|s| s.to_string()));
        all.extend(self.names.iter().cloned());
        Ok((start, matching(&all, prefix, "")))
    }
}

/// Returns the sorted, distinct `names` that start with `prefix`, each followed by `suffix`.
fn matching(names: &[String], prefix: &str, suffix: &str) -> Vec<Pair> {
    let mut found: Vec<&String> = names.iter().filter(|n| n.starts_with(prefix)).collect();
    found.sort();
    found.dedup();
    found
        .into_iter()
        .map(|name| Pair {
            display: name.clone(),
            replacement: format!("{name}{suffix}"),
        })
        .collect()
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
    editor.set_helper(Some(ReplHelper {
        names: Vec::new(),
        fields: Vec::new(),
        files: FilenameCompleter::new(),
    }));
    if interactive {
        interrupt::install();
    }
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
    // The one-based number of the input line just read, and of the first line of `pending`.
    let mut line_number = 0;
    let mut pending_line = 0;
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
            Err(ReadlineError::Eof) if !pending.is_empty() && interactive => {
                // Ctrl-D on a continuation line drops the statement and keeps the session.
                println!("discarded the unfinished statement; Ctrl-D at the prompt leaves");
                pending.clear();
                continue;
            }
            Err(ReadlineError::Eof) => {
                if let Some(reason) = unfinished(&pending, pending_line) {
                    session.failed = true;
                    terminal::print_error(&format!(
                        "the input ended inside an unfinished statement, so it was discarded: \
                         {reason}\n  {}",
                        pending.trim_end().replace('\n', "\n  ")
                    ));
                }
                break;
            }
            Err(error) => return Err(format!("cannot read input: {error}")),
        };
        line_number += 1;
        let trimmed = line.trim();
        if pending.is_empty() && trimmed.starts_with(':') {
            let _ = editor.add_history_entry(trimmed);
            if !session.command(trimmed) {
                break;
            }
        } else if trimmed.is_empty() && pending.is_empty() {
            continue;
        } else {
            if pending.is_empty() {
                pending_line = line_number;
            }
            pending.push_str(&line);
            pending.push('\n');
            if unfinished(&pending, pending_line).is_some() {
                continue;
            }
            let _ = editor.add_history_entry(pending.trim_end());
            session.add(&pending, None);
            pending.clear();
        }
        if let Some(helper) = editor.helper_mut() {
            (helper.names, helper.fields) = session.declared_names();
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

/// Returns why the input so far is visibly unfinished, or `None` when it is not: an open bracket,
/// or a last line that ends with an operator, `=`, `,` or `:`. `first_line` is the input line
/// number of the first line of `text`.
fn unfinished(text: &str, first_line: usize) -> Option<String> {
    // The brackets still open, with the one-based line of each.
    let mut open: Vec<(char, usize)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let mut in_string = false;
        for c in line.chars() {
            match c {
                '"' => in_string = !in_string,
                '#' if !in_string => break,
                '(' | '[' | '{' if !in_string => open.push((c, first_line + index)),
                ')' | ']' | '}' if !in_string => {
                    open.pop();
                }
                _ => {}
            }
        }
    }
    if let Some((bracket, line)) = open.last() {
        let closing = match bracket {
            '(' => ')',
            '[' => ']',
            _ => '}',
        };
        return Some(format!(
            "the `{bracket}` on line {line} is never closed with `{closing}`"
        ));
    }
    let last = text
        .lines()
        .last()
        .unwrap_or("")
        .split('#')
        .next()
        .unwrap_or("")
        .trim_end();
    ["+", "-", "*", "/", "^", "@", "=", ",", ":", "~"]
        .iter()
        .find(|end| last.ends_with(*end))
        .map(|end| {
            let line = first_line + text.lines().count() - 1;
            format!("line {line} ends with `{end}`, so the statement goes on")
        })
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

    /// Returns the names the session declares, and the field names among them.
    fn declared_names(&self) -> (Vec<String>, Vec<String>) {
        let (_, checked) = self.check_text(&self.text);
        let model = &checked.partial;
        let fields: Vec<String> = model.fields.iter().map(|f| f.name.clone()).collect();
        let mut names: Vec<String> = model.axes.iter().map(|a| a.name.clone()).collect();
        names.extend(fields.iter().cloned());
        names.extend(model.params.iter().map(|p| p.name.clone()));
        names.extend(model.equations.iter().map(|e| e.name.clone()));
        (names, fields)
    }

    /// Runs a command; returns false to leave the session.
    fn command(&mut self, line: &str) -> bool {
        let mut words = line.split_whitespace();
        let command = words.next().unwrap_or("");
        let arguments: Vec<&str> = words.collect();
        if let Some(usage) = extra_arguments(command, &arguments) {
            self.error(&format!(
                "`{command}` takes {usage}, but got `{}`",
                arguments.join(" ")
            ));
            return true;
        }
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
                (Some(name), Some(file)) => match check_plot_path(Path::new(file)) {
                    Ok(()) => self.show(name, Some(Path::new(file))),
                    Err(message) => {
                        self.failed = true;
                        terminal::print_error(&message);
                    }
                },
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
        let previous = self.step;
        let Task::Solve(task) = &mut model.tasks[index] else {
            return;
        };
        if matches!(task.discretization.scheme, Scheme::Steady { .. }) {
            self.error("the solve task is steady, so it has no time steps: `:show FIELD` shows its solution");
            return;
        }
        // The solve ends at `until`, after `last` steps; `:step` goes no further.
        let (dt, until, last) = (
            task.discretization.dt,
            task.discretization.until,
            task.discretization.steps,
        );
        if previous >= last {
            println!(
                "already at the end of the solve, step {last} (t = {until}); `until` in the solve task sets the end time"
            );
            return;
        }
        self.step = (previous + count).min(last);
        let time = |step: usize| {
            if step == last {
                until
            } else {
                step as f64 * dt
            }
        };
        task.discretization.steps = self.step;
        task.discretization.until = time(self.step);
        match solve_states(&model, index) {
            Ok(_) if previous + count > last => {
                let skipped = previous + count - last;
                println!(
                    "step {last} (t = {until}), the end of the solve; {skipped} requested step{} not taken",
                    if skipped == 1 { " was" } else { "s were" }
                )
            }
            Ok(_) => println!("step {} (t = {})", self.step, time(self.step)),
            Err(Stop::Interrupted(reached)) => {
                // Every `:step` solves from the initial state, so a stop short of the earlier
                // step keeps that step.
                self.step = reached.max(previous);
                println!(
                    "interrupted; at step {} (t = {})",
                    self.step,
                    time(self.step)
                );
            }
            Err(Stop::Failed(message)) => {
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
            if names.is_empty() {
                self.error(&format!(
                    "unknown field `{name}`: no field is declared yet (e.g. `field u(x)`)"
                ));
            } else {
                self.error(&format!(
                    "unknown field `{name}`; the fields are {}",
                    names.join(", ")
                ));
            }
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
            Err(Stop::Interrupted(_)) => {
                println!("interrupted; nothing shown");
                return;
            }
            Err(Stop::Failed(message)) => {
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

/// Returns the argument list a command takes when `arguments` has more than that, or `None`.
fn extra_arguments(command: &str, arguments: &[&str]) -> Option<&'static str> {
    let (max, usage) = match command {
        ":help" | ":check" | ":explain" | ":source" | ":reset" | ":quit" | ":q" | ":exit" => {
            (0, "no argument")
        }
        ":step" => (1, "one argument: :step N"),
        ":show" => (1, "one argument: :show FIELD"),
        ":load" => (1, "one argument: :load FILE.npde"),
        ":plot" => (2, "two arguments: :plot FIELD FILE.png"),
        _ => return None,
    };
    (arguments.len() > max).then_some(usage)
}

/// Checks that `path` can take a PNG plot: a `.png` name in a folder that exists.
fn check_plot_path(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err(format!(
            "`{}` is a folder; give a file name in it, such as `{}`",
            path.display(),
            path.join("plot.png").display()
        ));
    }
    let is_png = path
        .extension()
        .is_some_and(|extension| extension.eq_ignore_ascii_case("png"));
    if !is_png {
        return Err(format!(
            "cannot plot to `{}`: the file name must end in `.png`",
            path.display()
        ));
    }
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(folder) = folder {
        if folder.exists() && !folder.is_dir() {
            return Err(format!(
                "cannot plot to `{}`: `{}` is a file, not a folder",
                path.display(),
                folder.display()
            ));
        }
        if !folder.exists() {
            return Err(format!(
                "cannot plot to `{}`: the folder `{}` does not exist; create it first",
                path.display(),
                folder.display()
            ));
        }
    }
    Ok(())
}

/// Why a solve in the session returned no states.
enum Stop {
    /// The solve failed, with the message to show.
    Failed(String),
    /// Ctrl-C stopped the solve after this many steps.
    Interrupted(usize),
}

/// Runs the solve task at `index` of the model and returns its final states. Ctrl-C at a terminal
/// stops it after the step that is running.
fn solve_states(model: &Model, index: usize) -> Result<npdec_runtime::States<f64>, Stop> {
    let Task::Solve(task) = &model.tasks[index] else {
        return Err(Stop::Failed("not a solve task".to_string()));
    };
    // A solve of zero steps is invalid, so the state before the first step comes from a solve of
    // one step that never runs.
    let steps = task.discretization.steps;
    let mut task = task.clone();
    if steps == 0 {
        task.discretization.steps = 1;
        task.discretization.until = task.discretization.dt;
    }
    // A snapshot after every step is where an interrupt is noticed. The session saves no files,
    // so the snapshots cost only the call.
    task.every = Some(1);
    let graph = npdec_ir::discretize_solve(model, &task).map_err(|d| {
        Stop::Failed(d.first().map_or_else(
            || "the model cannot be discretized".to_string(),
            |d| format!("{}: {}", d.code, d.message),
        ))
    })?;
    let mut stepper = Stepper::<f64>::new(&graph)
        .ok_or_else(|| Stop::Failed("the solve task has no time step".to_string()))?;
    if steps == 0 {
        return Ok(stepper.initial_states().0);
    }
    interrupt::clear();
    // `Stepper::run` has no way to stop early, so the snapshot callback unwinds out of it with
    // `resume_unwind`, which skips the panic hook and so prints nothing.
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        stepper.run(&mut |step, _, _| {
            if interrupt::take() {
                std::panic::resume_unwind(Box::new(Stop::Interrupted(step)));
            }
        })
    }));
    match run {
        Ok(states) => Ok(states),
        Err(payload) => match payload.downcast::<Stop>() {
            Ok(stop) => Err(*stop),
            Err(payload) => std::panic::resume_unwind(payload),
        },
    }
}

/// Ctrl-C while a command runs. A SIGINT handler sets a flag that the solve checks after every
/// step. At the prompt the terminal is in raw mode, so Ctrl-C reaches rustyline as a key and
/// clears the line instead.
#[cfg(unix)]
mod interrupt {
    use std::sync::atomic::{AtomicBool, Ordering};

    static REQUESTED: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_sigint(_: libc::c_int) {
        REQUESTED.store(true, Ordering::SeqCst);
    }

    /// Replaces the default SIGINT action, which ends the process, with setting the flag.
    pub fn install() {
        let handler: extern "C" fn(libc::c_int) = on_sigint;
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe. Rustyline
        // saves and restores this handler around each line it reads.
        unsafe {
            libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        }
    }

    pub fn clear() {
        REQUESTED.store(false, Ordering::SeqCst);
    }

    /// Returns whether Ctrl-C was pressed since the last call or `clear`.
    pub fn take() -> bool {
        REQUESTED.swap(false, Ordering::SeqCst)
    }
}

/// Without SIGINT, Ctrl-C keeps its default action of ending the session.
#[cfg(not(unix))]
mod interrupt {
    pub fn install() {}

    pub fn clear() {}

    pub fn take() -> bool {
        false
    }
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
