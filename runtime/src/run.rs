//! `run_model`: discretize a model, run its solve tasks, evaluate its expectations and write results.

use crate::evaluate::Evaluator;
use crate::output::{write_final_outputs, SnapshotWriter};
use crate::stepping::{States, Stepper};
use crate::train::{train_task, TrainErrorSubject, TrainOptions, TrainReport};
use crate::value::{Real, Value};
use npdec_diagnostics::{Code, Diagnostic, Span};
use npdec_ir::graph::NodeKind;
use npdec_ir::pointwise::compare;
use npdec_ir::{analyze_stability, discretize_model, verify};
use npdec_symbolic::{Model, Scheme, Task};
use num_complex::Complex64;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// The floating-point type the interpreter computes in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    #[default]
    F64,
}

/// The response to a step above the stability limit of an explicit scheme.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StabilityPolicy {
    /// Report a warning and run.
    #[default]
    Warn,
    /// Report an error and do not run (`npdec run --strict`).
    Strict,
}

/// Options of [`run_model`].
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// The directory for snapshots, plots and `summary.json`. `None` writes nothing.
    pub out_dir: Option<PathBuf>,
    /// Also writes each snapshot as VTK image data and a ParaView collection per field.
    pub vtk: bool,
    pub precision: Precision,
    pub stability: StabilityPolicy,
    /// The directory data paths are relative to (the model file's); `None` is the current one.
    pub model_dir: Option<PathBuf>,
    /// Seeds, threads, resumption and checkpointing of train tasks.
    pub train: TrainOptions,
    /// A compiler for the right-hand sides of solves (the JIT); `None` uses the interpreter.
    pub compiler: Option<std::sync::Arc<dyn crate::engine::Compiler>>,
    /// The warnings that checking the model reported, such as W0001 or W0008. `run_model` copies
    /// them to [`RunReport::check_warnings`], so that `summary.json` lists them.
    pub check_warnings: Vec<Diagnostic>,
}

/// The outcome of one expectation. In JSON, `passed` is null for a skipped expectation, whose
/// `skipped` key contains the reason; `skipped` is left out otherwise.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpectResult {
    pub text: String,
    /// The value of the left-hand side.
    pub value: f64,
    /// The value of the right-hand side.
    pub bound: f64,
    pub passed: bool,
    /// Why the outcome does not count, when it does not: an expectation on a training metric
    /// of a shortened run (see [`TrainReport::shortened`]). A skipped expectation never fails a
    /// run.
    pub skipped: Option<String>,
}

impl Serialize for ExpectResult {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let fields = if self.skipped.is_some() { 5 } else { 4 };
        let mut object = serializer.serialize_struct("ExpectResult", fields)?;
        object.serialize_field("text", &self.text)?;
        object.serialize_field("value", &self.value)?;
        object.serialize_field("bound", &self.bound)?;
        // A skipped expectation neither passed nor failed.
        let passed = self.skipped.is_none().then_some(self.passed);
        object.serialize_field("passed", &passed)?;
        if let Some(reason) = &self.skipped {
            object.serialize_field("skipped", reason)?;
        }
        object.end()
    }
}

/// Measurements of one solve task.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskMetrics {
    /// The names of the equation declarations the solve task advances, each once, in the order of
    /// its `solve` clause.
    pub equations: Vec<String>,
    pub scheme: String,
    /// The time step, the number of steps and the end time; `None` for a steady solve, which has
    /// no time loop.
    pub dt: Option<f64>,
    pub steps: Option<usize>,
    pub final_time: Option<f64>,
    /// The largest stable step of an explicit scheme; `None` when there is no limit.
    pub max_stable_dt: Option<f64>,
    pub linear_iterations: usize,
    pub worst_linear_residual: f64,
    pub wall_time_seconds: f64,
    pub graph_nodes: usize,
}

/// The result of [`run_model`].
#[derive(Clone, Debug, PartialEq)]
pub struct RunReport {
    pub model: String,
    pub precision: Precision,
    pub expects: Vec<ExpectResult>,
    pub tasks: Vec<TaskMetrics>,
    /// Warnings of the run, such as a step above the stability limit.
    pub warnings: Vec<Diagnostic>,
    /// The warnings of the check stage, as given in [`RunOptions::check_warnings`].
    pub check_warnings: Vec<Diagnostic>,
    /// Files written, in writing order.
    pub outputs: Vec<PathBuf>,
    /// Final field values as `(field name, flattened values)`, real parts for complex fields.
    pub final_fields: Vec<(String, Vec<f64>)>,
    /// The outcome of each train task, in task order.
    pub training: Vec<TrainReport>,
    pub wall_time_seconds: f64,
}

impl RunReport {
    /// Returns true when every expectation passed or was skipped.
    pub fn all_passed(&self) -> bool {
        self.expects.iter().all(|e| e.passed || e.skipped.is_some())
    }
}

/// Runs the solve tasks of a checked model, evaluates its expectations on the final state and, when
/// `options.out_dir` is set, writes `.npy` snapshots, PNG plots and `summary.json` there.
///
/// Train tasks run after the solves (see [`crate::train`]); with a train task, expectations are
/// evaluated on the trained parameters instead of the final state. Errors (invalid discretization, a step above the stability limit under
/// [`StabilityPolicy::Strict`], an output that cannot be written) come back as diagnostics.
pub fn run_model(model: &Model, options: &RunOptions) -> Result<RunReport, Vec<Diagnostic>> {
    match options.precision {
        Precision::F32 => run_typed::<f32>(model, options),
        Precision::F64 => run_typed::<f64>(model, options),
    }
}

fn run_typed<T: Real>(model: &Model, options: &RunOptions) -> Result<RunReport, Vec<Diagnostic>> {
    let started = Instant::now();
    if let Some(available) = crate::memory::available_memory_bytes() {
        crate::memory::check_field_memory(model, std::mem::size_of::<T>(), available)
            .map_err(|diagnostic| vec![diagnostic])?;
    }
    let program = discretize_model(model)?;
    let mut warnings = Vec::new();
    if model.tasks.is_empty() {
        warnings.push(
            Diagnostic::warning(
                Code::W0004,
                format!(
                    "model `{}` has no solve or train task, so nothing was run",
                    model.name
                ),
                model.span,
                "no task in this model",
            )
            .with_help("add a task such as `solve EQUATION using euler(dt = 1e-3) until 1`"),
        );
    }
    let mut tasks = Vec::new();
    // Results are written for the first solve, or for the first task of a model that only trains.
    let solve_span = model
        .tasks
        .iter()
        .find_map(|t| match t {
            Task::Solve(s) => Some(s.span),
            Task::Train(_) => None,
        })
        .or_else(|| {
            model.tasks.first().map(|t| match t {
                Task::Solve(s) => s.span,
                Task::Train(t) => t.span,
            })
        })
        .unwrap_or_default();
    let mut snapshots = match &options.out_dir {
        Some(dir) => Some(
            SnapshotWriter::new(dir, options.vtk)
                .map_err(|message| vec![output_error(solve_span, dir, &message)])?,
        ),
        None => None,
    };
    let mut final_states: States<T> = vec![None; model.fields.len()];
    let mut final_time = 0.0;

    // `discretize_model` keeps the order of the solve tasks, so `solve_tasks[index]` is the task of
    // `program.solves[index]`.
    let solve_tasks: Vec<&npdec_symbolic::SolveTask> = model
        .tasks
        .iter()
        .filter_map(|t| match t {
            Task::Solve(s) => Some(s),
            Task::Train(_) => None,
        })
        .collect();
    for (index, (graph, span)) in program.solves.iter().zip(&program.solve_spans).enumerate() {
        if let Err(errors) = verify(graph) {
            let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Err(vec![internal_error(*span, &text)]);
        }
        let task_started = Instant::now();
        let Some(mut stepper) = Stepper::<T>::new(graph) else {
            continue;
        };
        if let Some(compiler) = &options.compiler {
            // Whole compiled steps replace the right-hand sides of an explicit Euler solve, so
            // those are compiled only when the compiler cannot produce whole steps. The stepper
            // then evaluates the compiled right-hand sides step by step.
            let whole_steps = stepper.time_step().scheme == Scheme::Euler
                && match T::compile_euler(compiler.as_ref(), graph) {
                    Ok(steps) => {
                        stepper.use_compiled_steps(steps);
                        true
                    }
                    Err(_) => false,
                };
            if !whole_steps {
                match T::compile_rhs(compiler.as_ref(), graph, stepper.rhs_roots()) {
                    Ok(compiled) => stepper.use_compiled(compiled),
                    Err(reason) => warnings.push(
                        Diagnostic::warning(
                            Code::W0003,
                            format!("the {} cannot compile this task; it runs on the interpreter", compiler.name()),
                            *span,
                            "solved by the interpreter",
                        )
                        .with_note(reason)
                        .with_help("the results are the same, only slower; `--engine interp` silences this warning"),
                    ),
                }
            }
        }
        let step = stepper.time_step().clone();

        // Stability of explicit schemes, with coefficients frozen at the initial state.
        let (initial, _) = stepper.initial_states();
        let values = stepper.evaluate_all(&initial, T::zero());
        let lookup = |id: npdec_ir::NodeId| -> Option<Vec<Complex64>> {
            values.get(id.index())?.as_ref().map(Value::to_complex64)
        };
        let limit = analyze_stability(graph, &lookup);
        let max_stable_dt = limit.as_ref().and_then(|l| l.max_stable_dt);
        if let Some(max_dt) = max_stable_dt {
            if step.dt > max_dt * (1.0 + 1e-9) {
                let diagnostic = stability_diagnostic(
                    step.scheme.name(),
                    step.dt,
                    max_dt,
                    *span,
                    options.stability,
                );
                match options.stability {
                    StabilityPolicy::Strict => return Err(vec![diagnostic]),
                    StabilityPolicy::Warn => warnings.push(diagnostic),
                }
            }
        }

        let prefix = if program.solves.len() > 1 {
            format!("solve{index}_")
        } else {
            String::new()
        };
        // The first failed write stops further writes; the run reports it after the solve.
        let mut write_error: Option<String> = None;
        // The first saved step (or the initial state) with a NaN or an infinity, and the field.
        // Only saved steps are checked, so the last saved step that was finite bounds the step
        // at which the value went bad from below.
        let mut first_non_finite: Option<(usize, f64, usize)> =
            non_finite_field(&initial).map(|field| (0, 0.0, field));
        let mut last_finite: (usize, f64) = (0, 0.0);
        let initial_not_finite = first_non_finite.is_some();
        let states = stepper.run(&mut |n, t, states: &States<T>| {
            if first_non_finite.is_none() {
                first_non_finite = non_finite_field(states).map(|field| (n, t, field));
                if first_non_finite.is_none() {
                    last_finite = (n, t);
                }
            }
            let Some(writer) = snapshots.as_mut() else {
                return;
            };
            for (field, value) in states.iter().enumerate() {
                let Some(value) = value else { continue };
                if write_error.is_some() {
                    return;
                }
                let series = format!("{prefix}{}", model.fields[field].name);
                let field = npdec_symbolic::FieldId(field);
                if let Err(message) = writer.write(model, &series, field, n, t, value) {
                    write_error = Some(message);
                }
            }
        });
        if let (Some(writer), Some(dir)) = (snapshots.as_mut(), &options.out_dir) {
            let result = match write_error {
                Some(message) => Err(message),
                None => writer.write_collections(),
            };
            result.map_err(|message| vec![output_error(*span, dir, &message)])?;
        }
        if let Some((step, time, field)) = first_non_finite {
            let first = if initial_not_finite {
                None
            } else {
                Some((step, time))
            };
            warnings.push(non_finite_warning(
                &model.fields[field].name,
                first,
                last_finite,
                *span,
            ));
        }
        let counters = stepper.counters().clone();
        if counters.unconverged_solves > 0 {
            warnings.push(
                Diagnostic::warning(
                    Code::W0007,
                    format!(
                        "{} linear solve{} stopped before {} tolerance",
                        counters.unconverged_solves,
                        if counters.unconverged_solves == 1 {
                            ""
                        } else {
                            "s"
                        },
                        if counters.unconverged_solves == 1 {
                            "its"
                        } else {
                            "their"
                        },
                    ),
                    *span,
                    "the iterative solver did not converge",
                )
                .with_note(format!(
                    "worst relative residual {:.3e}",
                    counters.worst_relative_residual
                ))
                .with_help("use a smaller step, or more iterations for a steady solve"),
            );
        }
        for (field, value) in states.into_iter().enumerate() {
            if value.is_some() {
                final_states[field] = value;
            }
        }
        final_time = counters.final_time;
        let time_loop = !matches!(step.scheme, Scheme::Steady { .. });
        // The equations of a block share the block's name, which is listed once.
        let mut equations: Vec<String> = Vec::new();
        for id in &solve_tasks[index].equations {
            let name = &model.equation(*id).name;
            if !equations.contains(name) {
                equations.push(name.clone());
            }
        }
        tasks.push(TaskMetrics {
            equations,
            scheme: step.scheme.name().to_string(),
            dt: time_loop.then_some(step.dt),
            steps: time_loop.then_some(counters.steps),
            final_time: time_loop.then_some(counters.final_time),
            max_stable_dt: max_stable_dt.filter(|d| d.is_finite()),
            linear_iterations: counters.linear_iterations,
            worst_linear_residual: counters.worst_relative_residual,
            wall_time_seconds: task_started.elapsed().as_secs_f64(),
            graph_nodes: graph.node_count(),
        });
    }

    let mut training = Vec::new();
    for task in &model.tasks {
        let Task::Train(train) = task else { continue };
        let base_dir = options
            .model_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("."));
        let report = train_task(
            model,
            train,
            &base_dir,
            options.out_dir.as_deref(),
            &options.train,
            options.compiler.as_deref(),
        )
        .map_err(|error| {
            let mut diagnostic = match error.subject {
                TrainErrorSubject::Task => Diagnostic::error(
                    Code::E0261,
                    error.message,
                    train.span,
                    "while training this task",
                ),
                TrainErrorSubject::Data => {
                    let source = &model.data[train.data.0];
                    Diagnostic::error(
                        Code::E0261,
                        error.message,
                        train.data_span,
                        "the task trains on this data",
                    )
                    .with_label(source.span, format!("`{}` is declared here", source.name))
                }
            };
            for note in error.notes {
                diagnostic = diagnostic.with_note(note);
            }
            if let Some(help) = error.help {
                diagnostic = diagnostic.with_help(help);
            }
            vec![diagnostic]
        })?;
        if let (Some(compiler), Some(reason)) = (&options.compiler, &report.adjoint_fallback) {
            warnings.push(
                Diagnostic::warning(
                    Code::W0003,
                    format!(
                        "the {} cannot compile the adjoint of this task; it trains on the tape",
                        compiler.name()
                    ),
                    train.span,
                    "trained with the tape's adjoint",
                )
                .with_note(reason.clone())
                .with_help("the gradients are the same, only slower; `--engine interp` silences this warning"),
            );
        }
        training.push(report);
    }

    let mut expects = match training.last() {
        Some(trained) => evaluate_trained_expects(model, trained)?,
        None => evaluate_expects(&program.expects, &final_states, final_time),
    };
    if let Some(trained) = training.last() {
        expects.extend(evaluate_metric_expects(model, trained));
    }
    let final_fields = final_states
        .iter()
        .enumerate()
        .filter_map(|(f, v)| {
            v.as_ref().map(|v| {
                (
                    model.fields[f].name.clone(),
                    v.real_part().iter().map(|x| x.to_f64_lossy()).collect(),
                )
            })
        })
        .collect();
    let mut report = RunReport {
        model: model.name.clone(),
        precision: if T::NAME == "f32" {
            Precision::F32
        } else {
            Precision::F64
        },
        expects,
        tasks,
        warnings,
        check_warnings: options.check_warnings.clone(),
        outputs: Vec::new(),
        final_fields,
        training,
        wall_time_seconds: started.elapsed().as_secs_f64(),
    };
    if let Some(dir) = &options.out_dir {
        let mut outputs: Vec<PathBuf> = report
            .training
            .iter()
            .flat_map(|t| t.outputs.iter().cloned())
            .collect();
        let (snapshot_files, snapshot_count) = snapshots.as_ref().map_or((Vec::new(), 0), |w| {
            (w.written().to_vec(), w.records().len())
        });
        outputs.extend(snapshot_files);
        outputs.extend(
            write_final_outputs(dir, model, snapshot_count, &final_states, &report)
                .map_err(|message| vec![output_error(solve_span, dir, &message)])?,
        );
        report.outputs = outputs;
    }
    Ok(report)
}

fn evaluate_expects<T: Real>(
    graph: &npdec_ir::Graph,
    states: &States<T>,
    time: f64,
) -> Vec<ExpectResult> {
    let sinks = graph.find(|k| matches!(k, NodeKind::Expect { .. }));
    let roots: Vec<npdec_ir::NodeId> = sinks.iter().flat_map(|s| graph.inputs(*s)).collect();
    let evaluator = Evaluator::<T>::new(graph, &roots);
    let values = evaluator.evaluate(states, T::of(time));
    let number = |id: npdec_ir::NodeId| -> f64 {
        values[id.index()]
            .as_ref()
            .and_then(|v| v.real_part().iter().next().map(|x| x.to_f64_lossy()))
            .unwrap_or(f64::NAN)
    };
    let mut results: Vec<(usize, ExpectResult)> = sinks
        .iter()
        .filter_map(|sink| {
            let NodeKind::Expect { index, op, text } = &graph.node(*sink).kind else {
                return None;
            };
            let inputs = graph.inputs(*sink);
            let (value, bound) = (number(inputs[0]), number(inputs[1]));
            let passed = compare(*op, value, bound);
            Some((
                *index,
                ExpectResult {
                    text: text.clone(),
                    value,
                    bound,
                    passed,
                    skipped: None,
                },
            ))
        })
        .collect();
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Evaluates the expectations of a trained model on its trained parameters.
fn evaluate_trained_expects(
    model: &Model,
    trained: &TrainReport,
) -> Result<Vec<ExpectResult>, Vec<Diagnostic>> {
    use crate::train::tape::{Env, ParamValues};
    let params = ParamValues::new(
        trained.parameters.iter().map(|(_, v)| v.clone()).collect(),
        model
            .params
            .iter()
            .map(|p| crate::train::lower::param_entries(model, p))
            .collect(),
    );
    let mut results = Vec::new();
    for expect in &model.expects {
        let npdec_symbolic::Expr::Compare(op, lhs, rhs) = &expect.expr else {
            continue;
        };
        let side = |expr: &npdec_symbolic::Expr| -> Result<f64, Vec<Diagnostic>> {
            let (tape, node) =
                crate::train::lower::lower_scalar(model, expr).map_err(|message| {
                    vec![Diagnostic::error(
                        Code::E0261,
                        format!("cannot evaluate this expectation after training: {message}"),
                        expect.span,
                        "in this expectation",
                    )
                    .with_help("after training, expectations may use parameters and numbers")]
                })?;
            let env = Env {
                states: &[],
                params: &params,
                samples: None,
                labels: None,
                step: 0,
                time: 0.0,
                batch: 1,
            };
            let values = tape.forward(&env);
            Ok(values[node].iter().next().copied().unwrap_or(f64::NAN))
        };
        let (value, bound) = (side(lhs)?, side(rhs)?);
        results.push(ExpectResult {
            text: expect.text.clone(),
            value,
            bound,
            passed: compare(*op, value, bound),
            skipped: None,
        });
    }
    Ok(results)
}

/// Compares the training metrics of the last train task with their bounds. On a shortened run
/// the results are reported as skipped: its metrics are not those of the task as written.
fn evaluate_metric_expects(model: &Model, trained: &TrainReport) -> Vec<ExpectResult> {
    use npdec_symbolic::TrainingMetric;
    model
        .metric_expects
        .iter()
        .map(|expect| {
            let value = match expect.metric {
                TrainingMetric::TestAccuracy => trained.test_accuracy,
                TrainingMetric::TestLoss => trained.test_loss,
                TrainingMetric::TrainAccuracy => trained.train_accuracy,
                TrainingMetric::TrainLoss => Some(trained.train_loss),
                TrainingMetric::TestMse => trained.test_mse,
                TrainingMetric::TrainMse => trained.train_mse,
            }
            .unwrap_or(f64::NAN);
            ExpectResult {
                text: expect.text.clone(),
                value,
                bound: expect.bound,
                passed: compare(expect.op, value, expect.bound),
                skipped: trained.shortened.then(|| {
                    format!(
                        "the run was shortened to {} {} on {} training {}, so `{}` is not that of the task as written",
                        trained.epochs,
                        if trained.epochs == 1 { "epoch" } else { "epochs" },
                        trained.train_samples,
                        if trained.train_samples == 1 { "sample" } else { "samples" },
                        expect.metric.name()
                    )
                }),
            }
        })
        .collect()
}

const NON_FINITE_HELP: &str = "check the initial and boundary values for a division by zero or the logarithm or square root of a negative number, and the step size against the stability limit";

/// Builds the W0006 warning for field `name`, first seen not finite at the saved step
/// `first = (step, time)`, or in the initial state when `first` is `None`. `last_finite` is the
/// last saved step before it where every field was finite.
fn non_finite_warning(
    name: &str,
    first: Option<(usize, f64)>,
    last_finite: (usize, f64),
    span: Span,
) -> Diagnostic {
    // Times summed from many steps print as `0.3`, not `0.30000000000000004`.
    let short = |t: f64| format!("{t:.11e}").parse::<f64>().unwrap_or(t);
    let Some((step, time)) = first else {
        let message =
            format!("`{name}` is not finite (NaN or infinite) in the initial state (t = 0)");
        return Diagnostic::warning(Code::W0006, message, span, "in the states of this solve")
            .with_help(NON_FINITE_HELP);
    };
    let (message, note) = if step == 0 {
        // A steady solve saves its solution as step 0.
        (
            format!("`{name}` is not finite (NaN or infinite) in the solution"),
            None,
        )
    } else if step == last_finite.0 + 1 {
        (
            format!(
                "`{name}` became NaN or infinite at step {step} (t = {})",
                short(time)
            ),
            None,
        )
    } else {
        (
            format!(
                "`{name}` became NaN or infinite after step {} (t = {}) and by step {step} (t = {})",
                last_finite.0,
                short(last_finite.1),
                short(time)
            ),
            Some("the fields are checked at the saved steps only: save every step with `every 1` to find the first step that is not finite"),
        )
    };
    let diagnostic = Diagnostic::warning(Code::W0006, message, span, "in the states of this solve")
        .with_help(NON_FINITE_HELP);
    match note {
        Some(note) => diagnostic.with_note(note),
        None => diagnostic,
    }
}

fn stability_diagnostic(
    scheme: &str,
    dt: f64,
    max_dt: f64,
    span: Span,
    policy: StabilityPolicy,
) -> Diagnostic {
    let message = if max_dt == 0.0 {
        format!("scheme `{scheme}` is unstable for this equation at any step")
    } else {
        format!("step dt = {dt:e} exceeds the stability limit {max_dt:.4e} of scheme `{scheme}`")
    };
    let label = "explicit step above the stability limit";
    let help = if max_dt == 0.0 {
        "use `rk4`, an upwind discretization or an implicit scheme such as `crank_nicolson`"
            .to_string()
    } else {
        format!(
            "use dt <= {max_dt:.4e}, more steps, or an implicit scheme such as `crank_nicolson`"
        )
    };
    // `--strict` turns the warning into the error for invalid time stepping.
    let diagnostic = match policy {
        StabilityPolicy::Strict => Diagnostic::error(Code::E0242, message, span, label),
        StabilityPolicy::Warn => Diagnostic::warning(Code::W0005, message, span, label),
    };
    diagnostic.with_note("von Neumann analysis of the discretized operator with coefficients frozen at the initial state").with_help(help)
}

/// Returns the first field with a NaN or an infinity among `states`.
fn non_finite_field<T: Real>(states: &States<T>) -> Option<usize> {
    states.iter().position(|value| match value {
        Some(Value::Real(a)) => a.iter().any(|x| !x.is_finite()),
        Some(Value::Complex(a)) => a.iter().any(|z| !z.re.is_finite() || !z.im.is_finite()),
        None => false,
    })
}

fn internal_error(span: Span, problems: &[String]) -> Diagnostic {
    Diagnostic::error(
        Code::E0241,
        "internal error: the discretized graph is invalid",
        span,
        "while discretizing this solve",
    )
    .with_note(problems.join("; "))
    .with_help("report this model to the npdec developers")
}

fn output_error(span: Span, dir: &std::path::Path, message: &str) -> Diagnostic {
    Diagnostic::error(
        Code::E0252,
        format!("failed to write results to `{}`", dir.display()),
        span,
        "while writing the results of this task",
    )
    .with_note(message.to_string())
    .with_help("choose a writable output directory with `--out DIR`")
}
