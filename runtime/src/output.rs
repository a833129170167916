//! The files `npdec run` writes: one `.npy` per snapshot (and with VTK output on, a `.vti` per
//! snapshot and a `.pvd` per field), a PNG plot per field and `summary.json`. Every file is written
//! to a temporary name and renamed, and snapshots are written as the solve produces them.
//!
//! Plots carry no text, so they need no font: a line for one-dimensional fields, a heat map (blue
//! low, red high) of the middle slice for fields with more axes. Complex fields plot their modulus.

use crate::run::RunReport;
use crate::value::{Real, Value};
use ndarray::{ArrayD, Axis};
use npdec_symbolic::{FieldId, Model};
use plotters::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Writes a file through `write`, which receives a temporary path in the same folder with the same
/// extension, then renames the temporary file to `path`. Readers see the old file or the whole new
/// one, and a failed write leaves the old file in place and removes the temporary one.
///
/// NOTE: the file is not synced to disk, so this protects against a failed or killed process, not
/// against a power loss.
pub fn write_atomically<E: std::fmt::Display>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), String> {
    let file_name = path
        .file_name()
        .ok_or_else(|| format!("`{}` is not a file path", path.display()))?
        .to_string_lossy();
    // The extension stays last because plotters chooses the image format from it.
    let temporary_name = match path.extension() {
        Some(extension) => format!(
            ".{file_name}.{}.tmp.{}",
            std::process::id(),
            extension.to_string_lossy()
        ),
        None => format!(".{file_name}.{}.tmp", std::process::id()),
    };
    let temporary = path.with_file_name(temporary_name);
    let result = write(&temporary)
        .map_err(|e| e.to_string())
        .and_then(|()| std::fs::rename(&temporary, path).map_err(|e| e.to_string()));
    if let Err(message) = result {
        let _ = std::fs::remove_file(&temporary);
        return Err(format!("{}: {message}", path.display()));
    }
    Ok(())
}

/// One saved state of one field, already on disk.
#[derive(Clone, Debug)]
pub struct SnapshotRecord {
    /// The field name, prefixed with `solve<k>_` when the model has several solve tasks.
    pub series: String,
    pub step: usize,
    pub time: f64,
    /// The VTK file of this state, relative to the output folder, when VTK output is on.
    pub vtk_file: Option<String>,
}

/// Writes the snapshots of solve tasks into the output folder as the solve produces them, so a
/// later failure keeps every state written before it.
#[derive(Debug)]
pub struct SnapshotWriter {
    dir: PathBuf,
    vtk: bool,
    records: Vec<SnapshotRecord>,
    written: Vec<PathBuf>,
}

impl SnapshotWriter {
    /// Creates `dir` if missing. With `vtk`, each snapshot of a field on at most three axes is also
    /// written as VTK image data.
    pub fn new(dir: &Path, vtk: bool) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(SnapshotWriter {
            dir: dir.to_path_buf(),
            vtk,
            records: Vec::new(),
            written: Vec::new(),
        })
    }

    /// Writes `<series>_<step>.npy` (and `.vti`) for one state of `field`.
    pub fn write<T: Real>(
        &mut self,
        model: &Model,
        series: &str,
        field: FieldId,
        step: usize,
        time: f64,
        value: &Value<T>,
    ) -> Result<(), String> {
        let stem = format!("{series}_{step:06}");
        let path = self.dir.join(format!("{stem}.npy"));
        // A field without channels is saved without the channel axis, as numpy users expect.
        write_atomically(&path, |temporary| match value {
            Value::Real(a) => T::write_npy(temporary, &squeeze_channels(a)),
            Value::Complex(a) => T::write_npy_complex(temporary, &squeeze_channels(a)),
        })?;
        self.written.push(path);

        let field = &model.fields[field.0];
        let mut vtk_file = None;
        if self.vtk && field.axes.len() <= crate::vtk::MAX_AXES {
            let data = crate::vtk::image_data(model, field, value)?;
            let name = format!("{stem}.vti");
            let path = self.dir.join(&name);
            write_atomically(&path, |temporary| data.clone().export(temporary))?;
            self.written.push(path);
            vtk_file = Some(name);
        }
        self.records.push(SnapshotRecord {
            series: series.to_string(),
            step,
            time,
            vtk_file,
        });
        Ok(())
    }

    /// Writes one ParaView collection `<series>.pvd` per series with VTK files, listing every state
    /// written so far with its time. Call it after each solve task.
    pub fn write_collections(&mut self) -> Result<(), String> {
        let mut series: BTreeMap<&str, Vec<(f64, String)>> = BTreeMap::new();
        for record in &self.records {
            if let Some(file) = &record.vtk_file {
                series
                    .entry(&record.series)
                    .or_default()
                    .push((record.time, file.clone()));
            }
        }
        for (name, entries) in series {
            let path = self.dir.join(format!("{name}.pvd"));
            let text = crate::vtk::collection_xml(&entries);
            write_atomically(&path, |temporary| std::fs::write(temporary, &text))?;
            if !self.written.contains(&path) {
                self.written.push(path);
            }
        }
        Ok(())
    }

    pub fn records(&self) -> &[SnapshotRecord] {
        &self.records
    }

    /// The files written so far.
    pub fn written(&self) -> &[PathBuf] {
        &self.written
    }
}

/// Writes a PNG plot per field of the final state and `summary.json` into `dir`, each atomically,
/// and returns their paths.
pub fn write_final_outputs<T: Real>(
    dir: &Path,
    model: &Model,
    snapshot_count: usize,
    final_states: &[Option<Value<T>>],
    report: &RunReport,
) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for (field, value) in final_states.iter().enumerate() {
        let Some(value) = value else { continue };
        let path = dir.join(format!("{}.png", model.fields[field].name));
        let magnitude: ArrayD<f64> = match value {
            Value::Real(a) => a.mapv(|x| x.to_f64_lossy()),
            Value::Complex(a) => a.mapv(|z| z.norm().to_f64_lossy()),
        };
        write_atomically(&path, |temporary| plot_field(temporary, &magnitude))?;
        written.push(path);
    }
    let summary = summary_json(report, snapshot_count);
    let path = dir.join("summary.json");
    let text = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
    write_atomically(&path, |temporary| std::fs::write(temporary, text + "\n"))?;
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
pub fn summary_json(report: &RunReport, snapshot_count: usize) -> serde_json::Value {
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
            // Null when the last task had no time loop: a steady solve, or no solve at all.
            "steps": last.and_then(|t| t.steps),
            "dt": last.and_then(|t| t.dt),
            "final_time": last.and_then(|t| t.final_time),
            "max_stable_dt": last.and_then(|t| t.max_stable_dt),
            "wall_time_seconds": report.wall_time_seconds,
            "snapshots": snapshot_count,
            "tasks": report.tasks,
            "test_accuracy": trained.and_then(|t| t.test_accuracy),
            "test_loss": trained.and_then(|t| t.test_loss),
            "train_loss": trained.map(|t| t.train_loss),
            "train_accuracy": trained.and_then(|t| t.train_accuracy),
            "test_mse": trained.and_then(|t| t.test_mse),
            "train_mse": trained.and_then(|t| t.train_mse),
            "epoch_seconds": mean_epoch_seconds,
            "training": report.training,
        },
        // The warnings of the check stage come first, then those of the run. Each is one string
        // that starts with its code, as in "W0005: step dt = …".
        "warnings": report
            .check_warnings
            .iter()
            .chain(&report.warnings)
            .map(|w| format!("{}: {}", w.code, w.message))
            .collect::<Vec<_>>(),
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
