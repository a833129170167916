//! Diffractive networks: a stack of thin phase masks separated by free space, with detector
//! rectangles in the output plane.
//!
//! [`DiffractiveLayout`] is what a trained paraxial NPDE describes; [`emit_diffractive`] writes its
//! phase masks (NPY, PNG), height maps for a material index, a layout JSON and GDSII.
//! [`AngularSpectrum`] propagates fields between the planes independently of the runtime's
//! split-step solver: the field is zero-padded to twice its size (linear, not circular,
//! convolution) and the transfer function is band-limited after Matsushima and Shimobaba,
//! "Band-limited angular spectrum method for numerical simulation of free-space propagation in far
//! and near fields", Optics Express 17(22), 2009.
//!
//! Convention: fields are envelopes of `exp(i(ωt − kz))`, as in `std::equations::paraxial`, so
//! free space multiplies the angular spectrum by `exp(−i(k_z − k)·d)` and a mask of height `h` and
//! index `n` multiplies the field by `exp(−iφ)` with `φ = 2π(n − 1)h/λ`.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use gds21::{GdsBoundary, GdsElement, GdsLibrary, GdsPoint, GdsStruct, GdsUnits};
use ndarray::Array2;
use num_complex::Complex64;
use rustfft::FftPlanner;
use serde::{Deserialize, Serialize};

use crate::{create_output_folder, write_json_file, HardwareError};

/// A rectangle in the plane, in metres, `x` along columns and `y` along rows.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rect {
    pub x_min: f64,
    pub x_max: f64,
    pub y_min: f64,
    pub y_max: f64,
}

/// A stack of masks on a square-pixel grid, in SI units (metres).
#[derive(Clone, Debug, PartialEq)]
pub struct DiffractiveLayout {
    pub wavelength: f64,
    /// Pixel pitch, equal along both axes.
    pub pitch: f64,
    /// Coordinates of the centre of pixel `(0, 0)`: `(x, y)`.
    pub origin: (f64, f64),
    /// The complex transmission of each mask, `[rows (y), columns (x)]`.
    pub masks: Vec<Array2<Complex64>>,
    /// `masks.len() + 1` distances: input plane to the first mask, between masks, last mask to
    /// the detector plane.
    pub distances: Vec<f64>,
    /// The detector of each class.
    pub detectors: Vec<Rect>,
}

/// How free space is propagated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// The exact transfer function `exp(−i(k_z − k)d)`, `k_z = sqrt(k² − k_x² − k_y²)`,
    /// evanescent waves dropped.
    Exact,
    /// The paraxial (Fresnel) transfer function `exp(i(k_x² + k_y²)d/(2k))`.
    Fresnel,
}

/// Free-space propagation over a fixed distance for fields of a fixed size, zero-padded to twice
/// that size and band-limited.
pub struct AngularSpectrum {
    rows: usize,
    columns: usize,
    transfer: Array2<Complex64>,
    row_fft: std::sync::Arc<dyn rustfft::Fft<f64>>,
    row_ifft: std::sync::Arc<dyn rustfft::Fft<f64>>,
    column_fft: std::sync::Arc<dyn rustfft::Fft<f64>>,
    column_ifft: std::sync::Arc<dyn rustfft::Fft<f64>>,
}

impl AngularSpectrum {
    /// A propagator over `distance` for `rows × columns` fields of pixel `pitch`.
    pub fn new(
        rows: usize,
        columns: usize,
        pitch: f64,
        wavelength: f64,
        distance: f64,
        kernel: Kernel,
    ) -> Self {
        let (padded_rows, padded_columns) = (2 * rows, 2 * columns);
        let k = 2.0 * PI / wavelength;
        let frequencies = |n: usize| -> Vec<f64> {
            (0..n)
                .map(|m| {
                    let signed = if m < n.div_ceil(2) {
                        m as f64
                    } else {
                        m as f64 - n as f64
                    };
                    signed / (n as f64 * pitch)
                })
                .collect()
        };
        // Band limit: beyond |f| = 1/(λ·sqrt((2·Δf·d)² + 1)) the sampled transfer function aliases.
        let limit = |n: usize| {
            let df = 1.0 / (n as f64 * pitch);
            1.0 / (wavelength * ((2.0 * df * distance).powi(2) + 1.0).sqrt())
        };
        let (fy, fx) = (frequencies(padded_rows), frequencies(padded_columns));
        let (limit_y, limit_x) = (limit(padded_rows), limit(padded_columns));
        let transfer = Array2::from_shape_fn((padded_rows, padded_columns), |(r, c)| {
            let (u, v) = (fx[c], fy[r]);
            if u.abs() > limit_x || v.abs() > limit_y {
                return Complex64::new(0.0, 0.0);
            }
            let kt2 = (2.0 * PI).powi(2) * (u * u + v * v);
            let phase = match kernel {
                Kernel::Exact => {
                    if kt2 >= k * k {
                        return Complex64::new(0.0, 0.0);
                    }
                    -((k * k - kt2).sqrt() - k) * distance
                }
                Kernel::Fresnel => kt2 * distance / (2.0 * k),
            };
            Complex64::from_polar(1.0, phase)
        });
        let mut planner = FftPlanner::<f64>::new();
        AngularSpectrum {
            rows,
            columns,
            transfer,
            row_fft: planner.plan_fft_forward(padded_columns),
            row_ifft: planner.plan_fft_inverse(padded_columns),
            column_fft: planner.plan_fft_forward(padded_rows),
            column_ifft: planner.plan_fft_inverse(padded_rows),
        }
    }

    /// Propagates a `rows × columns` field; the light that leaves the window is lost.
    pub fn propagate(&self, field: &Array2<Complex64>) -> Array2<Complex64> {
        let (pr, pc) = self.transfer.dim();
        let mut padded = Array2::zeros((pr, pc));
        padded
            .slice_mut(ndarray::s![..self.rows, ..self.columns])
            .assign(field);
        self.transform(&mut padded, false);
        padded *= &self.transfer;
        self.transform(&mut padded, true);
        let scale = 1.0 / (pr * pc) as f64;
        padded
            .slice(ndarray::s![..self.rows, ..self.columns])
            .mapv(|x| x * scale)
    }

    fn transform(&self, data: &mut Array2<Complex64>, inverse: bool) {
        let (rows, columns) = data.dim();
        let (along_rows, along_columns) = if inverse {
            (&self.row_ifft, &self.column_ifft)
        } else {
            (&self.row_fft, &self.column_fft)
        };
        for mut row in data.rows_mut() {
            let mut lane: Vec<Complex64> = row.to_vec();
            along_rows.process(&mut lane);
            row.iter_mut().zip(lane).for_each(|(x, y)| *x = y);
        }
        let mut lane = vec![Complex64::new(0.0, 0.0); rows];
        for c in 0..columns {
            for (r, x) in lane.iter_mut().enumerate() {
                *x = data[[r, c]];
            }
            along_columns.process(&mut lane);
            for (r, x) in lane.iter().enumerate() {
                data[[r, c]] = *x;
            }
        }
    }
}

/// Simulates the stack with its own propagators.
pub struct Simulator<'a> {
    layout: &'a DiffractiveLayout,
    gaps: Vec<AngularSpectrum>,
}

impl<'a> Simulator<'a> {
    pub fn new(layout: &'a DiffractiveLayout, kernel: Kernel) -> Result<Self, HardwareError> {
        layout.validate()?;
        let (rows, columns) = layout.masks[0].dim();
        let gaps = layout
            .distances
            .iter()
            .map(|d| {
                AngularSpectrum::new(rows, columns, layout.pitch, layout.wavelength, *d, kernel)
            })
            .collect();
        Ok(Simulator { layout, gaps })
    }

    /// The field in the detector plane for an input field.
    pub fn output_field(&self, input: &Array2<Complex64>) -> Array2<Complex64> {
        let mut field = self.gaps[0].propagate(input);
        for (mask, gap) in self.layout.masks.iter().zip(&self.gaps[1..]) {
            field *= mask;
            field = gap.propagate(&field);
        }
        field
    }

    /// The optical power on each detector (intensity times pixel area, summed over the pixels
    /// whose centres lie inside it).
    pub fn detector_powers(&self, input: &Array2<Complex64>) -> Vec<f64> {
        let field = self.output_field(input);
        let layout = self.layout;
        let area = layout.pitch * layout.pitch;
        layout
            .detectors
            .iter()
            .map(|rect| {
                let mut power = 0.0;
                for ((r, c), value) in field.indexed_iter() {
                    let (x, y) = layout.pixel_centre(r, c);
                    if x > rect.x_min && x < rect.x_max && y > rect.y_min && y < rect.y_max {
                        power += value.norm_sqr() * area;
                    }
                }
                power
            })
            .collect()
    }

    /// The class of the brightest detector.
    pub fn classify(&self, input: &Array2<Complex64>) -> usize {
        let powers = self.detector_powers(input);
        powers
            .iter()
            .enumerate()
            .fold(
                (0, f64::MIN),
                |best, (i, p)| if *p > best.1 { (i, *p) } else { best },
            )
            .0
    }
}

impl DiffractiveLayout {
    /// The centre `(x, y)` of pixel `(row, column)`.
    pub fn pixel_centre(&self, row: usize, column: usize) -> (f64, f64) {
        (
            self.origin.0 + column as f64 * self.pitch,
            self.origin.1 + row as f64 * self.pitch,
        )
    }

    fn validate(&self) -> Result<(), HardwareError> {
        let invalid = |message: String| Err(HardwareError::InvalidDiffractive { message });
        if self.masks.is_empty() {
            return invalid("the stack has no mask".into());
        }
        if !(self.wavelength > 0.0 && self.pitch > 0.0) {
            return invalid(format!(
                "wavelength {} m and pitch {} m must be positive",
                self.wavelength, self.pitch
            ));
        }
        if self.distances.len() != self.masks.len() + 1 {
            return invalid(format!(
                "{} masks need {} distances, found {}",
                self.masks.len(),
                self.masks.len() + 1,
                self.distances.len()
            ));
        }
        if self.distances.iter().any(|d| !(d.is_finite() && *d >= 0.0)) {
            return invalid("distances must be finite and not negative".into());
        }
        let dim = self.masks[0].dim();
        if self.masks.iter().any(|m| m.dim() != dim) {
            return invalid("the masks differ in size".into());
        }
        if self.detectors.is_empty() {
            return invalid("the stack has no detector".into());
        }
        Ok(())
    }

    /// The phase delay `φ ∈ [0, 2π)` of each mask pixel: the transmission is `|t|·exp(−iφ)`.
    pub fn phase_delays(&self) -> Vec<Array2<f64>> {
        self.masks
            .iter()
            .map(|m| m.mapv(|t| crate::photonic::wrap_phase(-t.arg())))
            .collect()
    }
}

/// Options of [`emit_diffractive`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiffractiveOptions {
    /// Refractive index of the mask material at the wavelength; the surrounding medium has 1.
    pub index: f64,
    /// Height levels of the GDSII layers (the NPY height maps are exact).
    pub levels: usize,
}

impl Default for DiffractiveOptions {
    fn default() -> Self {
        DiffractiveOptions {
            index: 1.5,
            levels: 16,
        }
    }
}

/// Summary of [`emit_diffractive`], also written as `layout.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiffractiveReport {
    pub wavelength_m: f64,
    pub pixel_pitch_m: f64,
    pub pixels: (usize, usize),
    /// Input plane to the first mask, between masks, last mask to the detectors.
    pub distances_m: Vec<f64>,
    pub material_index: f64,
    /// The height of a 2π delay, `λ/(n − 1)`.
    pub height_2pi_m: f64,
    pub gds_levels: usize,
    pub gds_units: String,
    pub layers: Vec<DiffractiveLayerFiles>,
    /// Detector rectangles in the output plane, one per class, centred coordinates.
    pub detectors: Vec<Rect>,
    pub gds: PathBuf,
}

/// The files of one mask.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiffractiveLayerFiles {
    /// Distance from the input plane.
    pub z_m: f64,
    pub phase_npy: PathBuf,
    pub phase_png: PathBuf,
    pub height_npy: PathBuf,
    /// Pixels that block the light (transmission amplitude below 1/2), drawn as an opaque frame.
    pub opaque_pixels: usize,
}

/// GDSII layer of opaque pixels.
pub const OPAQUE_LAYER: i16 = 100;
/// GDSII layer of detector rectangles.
pub const DETECTOR_LAYER: i16 = 101;

/// Writes `mask_<n>.phase.npy` (radians), `mask_<n>.phase.png` (0 to 2π as grey levels),
/// `mask_<n>.height.npy` (metres), `layout.json` and `diffractive.gds` into `out`.
pub fn emit_diffractive(
    layout: &DiffractiveLayout,
    options: &DiffractiveOptions,
    out: &Path,
) -> Result<DiffractiveReport, HardwareError> {
    layout.validate()?;
    if !(options.index.is_finite() && options.index > 1.0) {
        return Err(HardwareError::InvalidDiffractive {
            message: format!(
                "material index {} must be above 1 (the index of the surrounding air)",
                options.index
            ),
        });
    }
    if !(2..=64).contains(&options.levels) {
        return Err(HardwareError::InvalidDiffractive {
            message: format!("{} height levels: expected 2 to 64", options.levels),
        });
    }
    create_output_folder(out)?;
    let height_2pi = layout.wavelength / (options.index - 1.0);
    let phases = layout.phase_delays();
    let mut layers = Vec::new();
    let mut z = 0.0;
    for (n, (phase, mask)) in phases.iter().zip(&layout.masks).enumerate() {
        z += layout.distances[n];
        let stem = format!("mask_{n}");
        let phase_npy = out.join(format!("{stem}.phase.npy"));
        let phase_png = out.join(format!("{stem}.phase.png"));
        let height_npy = out.join(format!("{stem}.height.npy"));
        write_npy(&phase_npy, phase)?;
        write_npy(&height_npy, &phase.mapv(|p| p / (2.0 * PI) * height_2pi))?;
        write_grey_png(&phase_png, phase)?;
        layers.push(DiffractiveLayerFiles {
            z_m: z,
            phase_npy,
            phase_png,
            height_npy,
            opaque_pixels: mask.iter().filter(|t| t.norm() < 0.5).count(),
        });
    }
    let gds = out.join("diffractive.gds");
    let library = gds_library(layout, &phases, options);
    crate::write_atomically(&gds, |temporary| {
        library.save(temporary).map_err(|error| HardwareError::Gds {
            path: gds.clone(),
            message: error.to_string(),
        })
    })?;
    let report = DiffractiveReport {
        wavelength_m: layout.wavelength,
        pixel_pitch_m: layout.pitch,
        pixels: layout.masks[0].dim(),
        distances_m: layout.distances.clone(),
        material_index: options.index,
        height_2pi_m: height_2pi,
        gds_levels: options.levels,
        gds_units: "1 nm database unit; layer L < 100 holds the pixels of height level L (height L·h2π/levels); layer 100 opaque pixels; layer 101 detectors".into(),
        layers,
        detectors: layout.detectors.clone(),
        gds,
    };
    write_json_file(&out.join("layout.json"), &report)?;
    Ok(report)
}

fn write_npy(path: &Path, array: &Array2<f64>) -> Result<(), HardwareError> {
    crate::write_atomically(path, |temporary| {
        ndarray_npy::write_npy(temporary, array).map_err(|error| HardwareError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(error.to_string()),
        })
    })
}

/// Writes phases in `[0, 2π)` as an 8-bit grey PNG, black 0 and white 2π.
fn write_grey_png(path: &Path, phase: &Array2<f64>) -> Result<(), HardwareError> {
    let io = |source: std::io::Error| HardwareError::Io {
        path: path.to_path_buf(),
        source,
    };
    let (rows, columns) = phase.dim();
    // The image is encoded in memory, so that every write error surfaces here instead of being
    // lost when a buffered file is dropped.
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, columns as u32, rows as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let pixels: Vec<u8> = phase
        .iter()
        .map(|p| (p / (2.0 * PI) * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect();
    let mut writer = encoder
        .write_header()
        .map_err(|e| io(std::io::Error::other(e.to_string())))?;
    writer
        .write_image_data(&pixels)
        .and_then(|()| writer.finish())
        .map_err(|e| io(std::io::Error::other(e.to_string())))?;
    crate::write_atomically(path, |temporary| {
        std::fs::write(temporary, &bytes).map_err(io)
    })
}

fn nm(metres: f64) -> i32 {
    (metres * 1e9).round() as i32
}

fn rectangle(layer: i16, x0: i32, y0: i32, x1: i32, y1: i32) -> GdsElement {
    GdsElement::GdsBoundary(GdsBoundary {
        layer,
        datatype: 0,
        xy: GdsPoint::vec(&[(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]),
        ..Default::default()
    })
}

/// One structure per mask (`mask_<n>`: a square per pixel on the layer of its height level,
/// opaque pixels on [`OPAQUE_LAYER`]) and `detectors`, with integer coordinates in nanometres.
fn gds_library(
    layout: &DiffractiveLayout,
    phases: &[Array2<f64>],
    options: &DiffractiveOptions,
) -> GdsLibrary {
    let mut library = GdsLibrary::new("npdec_diffractive");
    library.units = GdsUnits::new(1e-3, 1e-9);
    let half = layout.pitch / 2.0;
    for (n, (phase, mask)) in phases.iter().zip(&layout.masks).enumerate() {
        let mut cell = GdsStruct::new(format!("mask_{n}"));
        for ((r, c), p) in phase.indexed_iter() {
            let (x, y) = layout.pixel_centre(r, c);
            let (x0, y0, x1, y1) = (nm(x - half), nm(y - half), nm(x + half), nm(y + half));
            if mask[[r, c]].norm() < 0.5 {
                cell.elems.push(rectangle(OPAQUE_LAYER, x0, y0, x1, y1));
                continue;
            }
            let level =
                ((p / (2.0 * PI)) * options.levels as f64).round() as usize % options.levels;
            if level > 0 {
                cell.elems.push(rectangle(level as i16, x0, y0, x1, y1));
            }
        }
        library.structs.push(cell);
    }
    let mut detectors = GdsStruct::new("detectors");
    for rect in &layout.detectors {
        detectors.elems.push(rectangle(
            DETECTOR_LAYER,
            nm(rect.x_min),
            nm(rect.y_min),
            nm(rect.x_max),
            nm(rect.y_max),
        ));
    }
    library.structs.push(detectors);
    library
}

/// The accuracy of the simulated stack on labelled input fields.
pub fn simulated_accuracy(
    layout: &DiffractiveLayout,
    kernel: Kernel,
    inputs: &[Array2<Complex64>],
    labels: &[usize],
) -> Result<f64, HardwareError> {
    let simulator = Simulator::new(layout, kernel)?;
    let correct = inputs
        .iter()
        .zip(labels)
        .filter(|(input, label)| simulator.classify(input) == **label)
        .count();
    Ok(correct as f64 / inputs.len().max(1) as f64)
}
