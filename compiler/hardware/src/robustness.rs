//! Robustness of a photonic model to phase errors: the weights are mapped onto Clements meshes,
//! every phase of every mesh is perturbed (Gaussian noise) or quantised, the weights are rebuilt
//! from the perturbed phases, and a caller-supplied closure measures the model's test accuracy
//! with them.
//!
//! The perturbed phases are the θ and φ of every MZI and the output phase shifters of both meshes;
//! attenuators and gain stay exact. A perturbed mesh is no longer the digital `W`, and the rebuilt
//! matrix is complex. The closure receives its real part, which is what a coherent (homodyne)
//! readout of the output field measures for real input amplitudes.

use std::f64::consts::TAU;

use nalgebra::DMatrix;
use ndarray::Array2;
use num_complex::Complex64;
use serde::{Deserialize, Serialize};

use crate::error::HardwareError;
use crate::photonic::{complex_matrix_from_real, map_weight_matrix, wrap_phase, PhotonicLayer};
use crate::random::GaussianSource;

/// Settings of [`photonic_robustness`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RobustnessOptions {
    /// Standard deviations of the Gaussian phase noise, in radians.
    pub noise_levels: Vec<f64>,
    /// Noisy draws per noise level; the report gives their mean, minimum and maximum accuracy.
    pub trials: usize,
    /// Bits of the phase quantiser: phases are rounded to multiples of `2π / 2^bits`.
    pub quantisation_bits: u32,
    /// Seed of the noise; the same seed gives the same report.
    pub seed: u64,
}

impl Default for RobustnessOptions {
    fn default() -> Self {
        RobustnessOptions {
            noise_levels: vec![0.01, 0.05],
            trials: 10,
            quantisation_bits: 8,
            seed: 0,
        }
    }
}

/// Accuracy under one phase-noise level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseResult {
    /// Standard deviation of the phase noise, in radians.
    pub sigma: f64,
    pub mean_accuracy: f64,
    pub min_accuracy: f64,
    pub max_accuracy: f64,
    /// Mean over the trials of the largest max-abs weight error over the layers.
    pub mean_weight_error: f64,
}

/// Accuracy with quantised phases.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantisationResult {
    pub bits: u32,
    pub accuracy: f64,
    /// Largest max-abs weight error over the layers.
    pub weight_error: f64,
}

/// Accuracies of the digital model, of the model with weights rebuilt from the exact phases, under
/// phase noise and under phase quantisation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RobustnessReport {
    pub digital_accuracy: f64,
    pub rebuilt_accuracy: f64,
    pub noise: Vec<NoiseResult>,
    pub quantisation: QuantisationResult,
}

/// Returns the real part of a complex matrix as an `ndarray` matrix.
fn real_part(matrix: &DMatrix<Complex64>) -> Array2<f64> {
    Array2::from_shape_fn(matrix.shape(), |(row, column)| matrix[(row, column)].re)
}

/// Rebuilds every layer with each phase replaced by `perturb(phase)` and returns the real weight
/// matrices and the largest max-abs weight error.
fn rebuild_perturbed(
    layers: &[PhotonicLayer],
    digital: &[(String, Array2<f64>)],
    mut perturb: impl FnMut(f64) -> f64,
) -> (Vec<Array2<f64>>, f64) {
    let mut matrices = Vec::with_capacity(layers.len());
    let mut worst_error: f64 = 0.0;
    for (layer, (_, original)) in layers.iter().zip(digital) {
        let input_mesh = layer.input_mesh.map_phases(&mut perturb);
        let output_mesh = layer.output_mesh.map_phases(&mut perturb);
        let rebuilt = real_part(&layer.weight_matrix_with(&input_mesh, &output_mesh));
        let error = (&rebuilt - original)
            .iter()
            .fold(0.0_f64, |worst, value| worst.max(value.abs()));
        worst_error = worst_error.max(error);
        matrices.push(rebuilt);
    }
    (matrices, worst_error)
}

/// Measures `accuracy` (a model's test accuracy as a function of its weight matrices, in the
/// order of `weights`) with the digital weights, with the weights rebuilt from the exact mesh
/// phases, under Gaussian phase noise and under phase quantisation.
pub fn photonic_robustness(
    weights: &[(String, Array2<f64>)],
    mut accuracy: impl FnMut(&[Array2<f64>]) -> f64,
    options: &RobustnessOptions,
) -> Result<RobustnessReport, HardwareError> {
    if options.trials == 0 {
        return Err(HardwareError::InvalidRobustnessSetting {
            message: "trials is 0, expected at least 1".to_string(),
        });
    }
    if !(1..=24).contains(&options.quantisation_bits) {
        return Err(HardwareError::InvalidRobustnessSetting {
            message: format!(
                "quantisation_bits is {}, expected 1 to 24",
                options.quantisation_bits
            ),
        });
    }
    if let Some(sigma) = options
        .noise_levels
        .iter()
        .find(|sigma| !(sigma.is_finite() && **sigma >= 0.0))
    {
        return Err(HardwareError::InvalidRobustnessSetting {
            message: format!("noise level {sigma} rad, expected a finite value >= 0"),
        });
    }

    let mut layers = Vec::with_capacity(weights.len());
    for (name, matrix) in weights {
        let (layer, _) = map_weight_matrix(name, &complex_matrix_from_real(matrix))?;
        layers.push(layer);
    }

    let digital: Vec<Array2<f64>> = weights.iter().map(|(_, matrix)| matrix.clone()).collect();
    let digital_accuracy = accuracy(&digital);
    let (rebuilt, _) = rebuild_perturbed(&layers, weights, |phase| phase);
    let rebuilt_accuracy = accuracy(&rebuilt);

    // Gaussian noise on every phase, one independent draw per phase and trial.
    let mut source = GaussianSource::new(options.seed);
    let mut noise = Vec::with_capacity(options.noise_levels.len());
    for &sigma in &options.noise_levels {
        let mut accuracies = Vec::with_capacity(options.trials);
        let mut error_sum = 0.0;
        for _ in 0..options.trials {
            let (matrices, error) = rebuild_perturbed(&layers, weights, |phase| {
                phase + sigma * source.standard_normal()
            });
            accuracies.push(accuracy(&matrices));
            error_sum += error;
        }
        noise.push(NoiseResult {
            sigma,
            mean_accuracy: accuracies.iter().sum::<f64>() / accuracies.len() as f64,
            min_accuracy: accuracies.iter().copied().fold(f64::INFINITY, f64::min),
            max_accuracy: accuracies.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            mean_weight_error: error_sum / options.trials as f64,
        });
    }

    // Quantisation to 2^bits levels over one period.
    let step = TAU / f64::from(1u32 << options.quantisation_bits);
    let (quantised, weight_error) = rebuild_perturbed(&layers, weights, |phase| {
        wrap_phase((phase / step).round() * step)
    });
    let quantisation = QuantisationResult {
        bits: options.quantisation_bits,
        accuracy: accuracy(&quantised),
        weight_error,
    };

    Ok(RobustnessReport {
        digital_accuracy,
        rebuilt_accuracy,
        noise,
        quantisation,
    })
}
