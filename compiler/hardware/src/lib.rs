//! Hardware backends of npdec: a dense weight matrix becomes a photonic Mach–Zehnder mesh
//! ([`photonic`], files written by [`emit_photonic`]) or a resistive crossbar SPICE netlist
//! ([`spice`], written by [`emit_spice`]); a trained paraxial NPDE becomes a stack of diffractive
//! phase masks ([`diffractive`]), re-simulated by an independent angular-spectrum propagator. Each emitter rebuilds the weights from what it wrote
//! and rejects a layout that does not reproduce them.

pub mod diffractive;
pub mod error;
pub mod photonic;
pub mod photonic_files;
pub mod random;
pub mod robustness;
pub mod spice;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use std::time::Instant;

use nalgebra::DMatrix;
use ndarray::Array2;
use num_complex::Complex64;
use serde::{Deserialize, Serialize};

pub use error::HardwareError;
pub use photonic::{ClementsMesh, Mzi, PhotonicLayer, RebuildErrors};
pub use photonic_files::PhotonicFiles;
pub use robustness::{photonic_robustness, RobustnessOptions, RobustnessReport};
pub use spice::{emit_spice, CrossbarOptions, CrossbarReport, SpiceLayerReport};

/// Summary of [`emit_photonic`], also written as `photonic.json` in the output folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhotonicReport {
    pub layers: Vec<PhotonicLayerReport>,
}

/// Summary of one emitted photonic layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhotonicLayerReport {
    pub name: String,
    /// Shape `(m, n)` of the weight matrix.
    pub shape: (usize, usize),
    /// Optical modes `max(m, n)`.
    pub modes: usize,
    /// MZIs in both meshes together, `N (N - 1)`.
    pub mzis: usize,
    /// Largest singular value, the gain after the optical circuit.
    pub gain: f64,
    pub rebuild_errors: RebuildErrors,
    pub files: PhotonicFiles,
}

/// Checks that every layer name is a usable, unique file stem.
pub(crate) fn check_layer_names<'a>(
    names: impl Iterator<Item = &'a str>,
) -> Result<(), HardwareError> {
    let mut seen = HashSet::new();
    for name in names {
        let valid = !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid {
            return Err(HardwareError::InvalidLayerName {
                name: name.to_string(),
            });
        }
        if !seen.insert(name) {
            return Err(HardwareError::DuplicateLayerName {
                name: name.to_string(),
            });
        }
    }
    Ok(())
}

/// Writes a file through `write`, which receives a temporary path in the same folder, then renames
/// the temporary file to `path`. Readers see the old file or the whole new one, and a failed write
/// leaves an earlier file at `path` in place and removes the temporary one.
///
/// NOTE: the file is not synced to disk, so this protects against a failed or killed process, not
/// against a power loss. `npdec_runtime::output::write_atomically` does the same for `npdec run`,
/// but this crate depends on no other npdec crate.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), HardwareError>,
) -> Result<(), HardwareError> {
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = write(&temporary)
        .map_err(|error| error.with_path(path))
        .and_then(|()| {
            std::fs::rename(&temporary, path).map_err(|source| HardwareError::Io {
                path: path.to_path_buf(),
                source,
            })
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

/// Creates `directory` and its parents.
pub(crate) fn create_output_folder(directory: &Path) -> Result<(), HardwareError> {
    std::fs::create_dir_all(directory).map_err(|source| HardwareError::Io {
        path: directory.to_path_buf(),
        source,
    })
}

/// Maps each named real weight matrix onto two Clements meshes and attenuators, checks the
/// rebuild, and writes `<name>.layout.json`, `<name>.netlist.json`, `<name>.gds`, `<name>.svg` and
/// a summary `photonic.json` into `out` (created if missing).
///
/// No file is written unless every layer passes its rebuild check.
pub fn emit_photonic(
    weights: &[(String, Array2<f64>)],
    out: &Path,
) -> Result<PhotonicReport, HardwareError> {
    let complex: Vec<(String, DMatrix<Complex64>)> = weights
        .iter()
        .map(|(name, matrix)| (name.clone(), photonic::complex_matrix_from_real(matrix)))
        .collect();
    emit_photonic_complex(&complex, out)
}

/// Maps and writes complex weight matrices, like [`emit_photonic`] does for real ones.
pub fn emit_photonic_complex(
    weights: &[(String, DMatrix<Complex64>)],
    out: &Path,
) -> Result<PhotonicReport, HardwareError> {
    check_layer_names(weights.iter().map(|(name, _)| name.as_str()))?;
    let mut mapped = Vec::with_capacity(weights.len());
    for (name, matrix) in weights {
        let start = Instant::now();
        let (layer, rebuild_errors) = photonic::map_weight_matrix(name, matrix)?;
        tracing::debug!(
            layer = %name,
            modes = layer.modes,
            weight_error = rebuild_errors.weights,
            elapsed = ?start.elapsed(),
            "mapped weight matrix onto Clements meshes"
        );
        mapped.push((layer, rebuild_errors));
    }

    create_output_folder(out)?;
    let mut layers = Vec::with_capacity(mapped.len());
    for (layer, rebuild_errors) in mapped {
        let files = photonic_files::write_photonic_files(&layer, rebuild_errors, out)?;
        layers.push(PhotonicLayerReport {
            name: layer.name.clone(),
            shape: (layer.rows, layer.columns),
            modes: layer.modes,
            mzis: layer.input_mesh.mzis.len() + layer.output_mesh.mzis.len(),
            gain: layer.gain,
            rebuild_errors,
            files,
        });
    }
    let report = PhotonicReport { layers };
    write_json_file(&out.join("photonic.json"), &report)?;
    Ok(report)
}

/// Writes `value` as pretty-printed JSON.
pub(crate) fn write_json_file(path: &Path, value: &impl Serialize) -> Result<(), HardwareError> {
    let text = serde_json::to_string_pretty(value).map_err(|source| HardwareError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomically(path, |temporary| {
        std::fs::write(temporary, text).map_err(|source| HardwareError::Io {
            path: PathBuf::from(path),
            source,
        })
    })
}
