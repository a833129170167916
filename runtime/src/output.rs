//! The files `npdec run` writes: one `.npy` per snapshot, a PNG plot per field and `summary.json`.
//!
//! Plots carry no text, so they need no font: a line for one-dimensional fields, a heat map (blue
//! low, red high) of the middle slice for fields with more axes. Complex fields plot their modulus.

use crate::run::RunReport;
use crate::value::{Real, Value};
use ndarray::{ArrayD, Axis};
use npdec_symbolic::Model;
use plotters::prelude::*;
use serde_json::json;
use std::path::{Path, PathBuf};

/// One saved state of one field.
#[derive(Clone, Debug)]
pub struct Snapshot<T: Real> {
    /// The file stem, `<field>_<step>`.
    pub name: String,
    pub step: usize,
    pub time: f64,
    pub value: Value<T>,
}

/// Writes every output into `dir` (created if missing) and returns the written paths.
pub fn write_outputs<T: Real>(
    dir: &Path,
    model: &Model,
    snapshots: &[Snapshot<T>],
    final_states: &[Option<Value<T>>],
    report: &RunReport,
) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut written = Vec::new();
    for snapshot in snapshots {
        let path = dir.join(format!("{}.npy", snapshot.name));
        // A field without channels is saved without the channel axis, as numpy users expect.
        match &snapshot.value {
            Value::Real(a) => T::write_npy(&path, &squeeze_channels(a))?,
            Value::Complex(a) => T::write_npy_complex(&path, &squeeze_channels(a))?,
        }
        written.push(path);
    }
    for (field, value) in final_states.iter().enumerate() {
        let Some(value) = value else { continue };
        let path = dir.join(format!("{}.png", model.fields[field].name));
        let magnitude: ArrayD<f64> = match value {
            Value::Real(a) => a.mapv(|x| x.to_f64_lossy()),
            Value::Complex(a) => a.mapv(|z| z.norm().to_f64_lossy()),
        };
        plot_field(&path, &magnitude).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path);
    }
    let summary = summary_json(report, snapshots);
    let path = dir.join("summary.json");
    let text = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
    std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    written.push(path);
    Ok(written)
}

fn squeeze_channels<A: Clone>(array: &ArrayD<A>) -> ArrayD<A> {
    if array.ndim() > 1 && array.shape()[0] == 1 {
        array.index_axis(Axis(0), 0).to_owned()
    } else {
        array.clone()
    }
}

/// Returns the JSON summary: the model, the expectations and the metrics of each task.
pub fn summary_json<T: Real>(report: &RunReport, snapshots: &[Snapshot<T>]) -> serde_json::Value {
    let last = report.tasks.last();
    let trained = report.training.last();
    let mean_epoch_seconds =
        trained.map(|t| t.epoch_seconds.iter().sum::<f64>() / t.epoch_seconds.len().max(1) as f64);
    json!({
        "model": report.model,
        "precision": report.precision,
        "expects": report.expects,
        "passed": report.all_passed(),
        "metrics": {
            "steps": last.map_or(0, |t| t.steps),
            "dt": last.map_or(0.0, |t| t.dt),
            "final_time": last.map_or(0.0, |t| t.final_time),
            "max_stable_dt": last.and_then(|t| t.max_stable_dt),
            "wall_time_seconds": report.wall_time_seconds,
            "snapshots": snapshots.len(),
            "tasks": report.tasks,
            "test_accuracy": trained.and_then(|t| t.test_accuracy),
            "test_loss": trained.and_then(|t| t.test_loss),
            "train_loss": trained.map(|t| t.train_loss),
            "epoch_seconds": mean_epoch_seconds,
            "training": report.training,
        },
        "warnings": report.warnings.iter().map(|w| w.message.clone()).collect::<Vec<_>>(),
    })
}

/// Draws a field without text: a line plot in 1-D, a heat map of the middle slice otherwise.
pub fn plot_field(path: &Path, values: &ArrayD<f64>) -> Result<(), Box<dyn std::error::Error>> {
    let channel = values.index_axis(Axis(0), 0);
    let mut plane = channel.to_owned();
    while plane.ndim() > 2 {
        let middle = plane.shape()[plane.ndim() - 1] / 2;
        plane = plane.index_axis(Axis(plane.ndim() - 1), middle).to_owned();
    }
    let finite = plane.iter().copied().filter(|v| v.is_finite());
    let (low, high) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
        (l.min(v), h.max(v))
    });
    let (low, high) = if low.is_finite() && high > low {
        (low, high)
    } else {
        (low.min(0.0) - 1.0, high.max(0.0) + 1.0)
    };
    let root = BitMapBackend::new(path, (640, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    if plane.ndim() == 1 {
        let n = plane.len();
        let mut chart = ChartBuilder::on(&root)
            .margin(20)
            .build_cartesian_2d(0.0..(n.max(2) - 1) as f64, low..high)?;
        chart.draw_series(LineSeries::new(
            plane.iter().enumerate().map(|(i, v)| (i as f64, *v)),
            BLUE.stroke_width(2),
        ))?;
    } else {
        let (rows, columns) = (plane.shape()[0], plane.shape()[1]);
        let mut chart = ChartBuilder::on(&root)
            .margin(20)
            .build_cartesian_2d(0..rows, 0..columns)?;
        chart.draw_series(plane.indexed_iter().map(|(index, v)| {
            let (i, j) = (index[0], index[1]);
            let level = if v.is_finite() {
                (v - low) / (high - low)
            } else {
                0.0
            };
            let color = RGBColor((255.0 * level) as u8, 64, (255.0 * (1.0 - level)) as u8);
            Rectangle::new([(i, j), (i + 1, j + 1)], color.filled())
        }))?;
    }
    root.present()?;
    Ok(())
}
