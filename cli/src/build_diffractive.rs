//! `npdec build --emit diffractive`: the phase masks of a trained split-step task, their files,
//! and their re-simulation by the independent angular-spectrum propagator of `npdec-hardware`.

use npdec_diagnostics::Span;
use npdec_hardware::diffractive::{
    emit_diffractive, simulated_accuracy, DiffractiveLayout, DiffractiveOptions, Kernel, Rect,
};
use npdec_runtime::output::write_atomically;
use npdec_runtime::train::diffractive::StackError;
use npdec_symbolic::{Model, Task};
use serde::Serialize;
use std::path::Path;

/// Options of the diffractive emitter from the command line.
pub struct DiffractiveArgs<'a> {
    pub checkpoint: &'a Path,
    /// Refractive index of the mask material.
    pub index: f64,
    /// Metres per length unit of the model's coordinates.
    pub unit: f64,
    /// Height levels in the GDSII file.
    pub levels: usize,
    /// Leave out the status lines (`-q`).
    pub quiet: bool,
}

/// The reason a diffractive build wrote no masks.
pub enum EmitError {
    /// The model has no trained diffractive network, and `span` points at the part that lacks it.
    Unfit {
        span: Span,
        message: String,
        label: &'static str,
    },
    /// Any other failure: a flag value, the data, the checkpoint or a file.
    Failed(String),
}

impl From<String> for EmitError {
    fn from(message: String) -> Self {
        EmitError::Failed(message)
    }
}

#[derive(Serialize)]
struct Verification {
    test_samples: usize,
    digital_accuracy: f64,
    simulated_accuracy: f64,
    /// `simulated − digital`, in percentage points.
    difference_points: f64,
    simulated_accuracy_fresnel: f64,
    propagator: &'static str,
}

/// Returns the model's one train task, which `--emit diffractive` maps.
pub fn train_task(model: &Model) -> Result<&npdec_symbolic::TrainTask, EmitError> {
    let tasks: Vec<_> = model
        .tasks
        .iter()
        .filter_map(|t| match t {
            Task::Train(task) => Some(task),
            _ => None,
        })
        .collect();
    match tasks.as_slice() {
        [task] => Ok(task),
        _ => Err(EmitError::Unfit {
            span: model.span,
            message: format!(
                "`--emit diffractive` needs exactly one train task, and model `{}` has {}",
                model.name,
                tasks.len()
            ),
            label: "this model",
        }),
    }
}

/// Writes the stack of the model's one train task and compares its re-simulation with the
/// digital model.
pub fn emit(
    model: &Model,
    file: &Path,
    out: &Path,
    args: &DiffractiveArgs,
) -> Result<(), EmitError> {
    let task = train_task(model)?;
    if !(args.unit.is_finite() && args.unit > 0.0) {
        return Err(EmitError::Failed(format!(
            "--unit {} must be a positive length in metres",
            args.unit
        )));
    }
    let base_dir = file.parent().unwrap_or(Path::new("."));
    let stack = npdec_runtime::train::diffractive::diffractive_stack(
        model,
        task,
        base_dir,
        args.checkpoint,
    )
    .map_err(|error| match error {
        StackError::Unfit(message) => EmitError::Unfit {
            span: task.span,
            message,
            label: "this task",
        },
        StackError::Failed(message) => EmitError::Failed(message),
    })?;
    let unit = args.unit;
    // Layout rows follow the field's first axis (y), columns its second axis (x).
    let layout = DiffractiveLayout {
        wavelength: 2.0 * std::f64::consts::PI / stack.wave_number * unit,
        pitch: stack.spacing.0 * unit,
        origin: (stack.origin.1 * unit, stack.origin.0 * unit),
        masks: stack.masks.clone(),
        distances: stack.distances.iter().map(|d| d * unit).collect(),
        detectors: stack
            .detectors
            .iter()
            .map(|r| Rect {
                x_min: r.second.0 * unit,
                x_max: r.second.1 * unit,
                y_min: r.first.0 * unit,
                y_max: r.first.1 * unit,
            })
            .collect(),
    };
    let options = DiffractiveOptions {
        index: args.index,
        levels: args.levels,
    };
    let report = emit_diffractive(&layout, &options, out).map_err(|e| e.to_string())?;
    let simulated = simulated_accuracy(
        &layout,
        Kernel::Exact,
        &stack.test_inputs,
        &stack.test_labels,
    )
    .map_err(|e| e.to_string())?;
    let fresnel = simulated_accuracy(
        &layout,
        Kernel::Fresnel,
        &stack.test_inputs,
        &stack.test_labels,
    )
    .map_err(|e| e.to_string())?;
    let verification = Verification {
        test_samples: stack.test_labels.len(),
        digital_accuracy: stack.digital_accuracy,
        simulated_accuracy: simulated,
        difference_points: 100.0 * (simulated - stack.digital_accuracy),
        simulated_accuracy_fresnel: fresnel,
        propagator: "angular spectrum, zero-padded to twice the window, band-limited (Matsushima and Shimobaba 2009)",
    };
    let path = out.join("verification.json");
    let text = serde_json::to_string_pretty(&verification).map_err(|e| e.to_string())?;
    write_atomically(&path, |temporary| std::fs::write(temporary, text))
        .map_err(|e| format!("cannot write {e}"))?;
    crate::terminal::status(
        args.quiet,
        &format!(
            "wrote {} masks of {} × {} pixels ({:.3} µm pitch, λ = {:.4} µm) and {}",
            report.layers.len(),
            report.pixels.0,
            report.pixels.1,
            report.pixel_pitch_m * 1e6,
            report.wavelength_m * 1e6,
            report.gds.display()
        ),
    );
    crate::terminal::status(args.quiet, &format!(
        "test accuracy on {} samples: digital {:.2} %, re-simulated {:.2} % (difference {:+.2} points; paraxial kernel {:.2} %)",
        verification.test_samples,
        100.0 * verification.digital_accuracy,
        100.0 * verification.simulated_accuracy,
        verification.difference_points,
        100.0 * verification.simulated_accuracy_fresnel
    ));
    Ok(())
}
