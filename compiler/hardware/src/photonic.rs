//! Photonic mapping of a weight matrix: `W = U Σ V*` by singular value decomposition, the unitaries
//! `U` and `V*` as Clements rectangular meshes of Mach–Zehnder interferometers (MZIs), and `Σ` as a
//! column of attenuators.
//!
//! # MZI convention
//!
//! An MZI at `row = k` couples the modes `k` and `k + 1` with the transfer matrix
//!
//! ```text
//! T(θ, φ) = [ e^{iφ} cos θ   -sin θ ]
//!           [ e^{iφ} sin θ    cos θ ]
//! ```
//!
//! that is, an external phase shifter `φ` on the upper input arm followed by a real rotation by the
//! internal angle `θ`. A physical MZI of two 50:50 couplers realises this rotation with an internal
//! phase of `2θ` plus an offset, and with fixed phases on its ports. Both depend on the coupler
//! convention, so a lab maps `θ` to a heater setting by calibration. Conventions differ between
//! papers and tools, so the emitted files state this one.
//! All angles are wrapped into `[0, 2π)` after every step.
//!
//! # Decomposition
//!
//! [`decompose_clements`] follows Clements et al., "Optimal design for universal multiport
//! interferometers", Optica 3, 1460 (2016). It nulls the lower triangle of `U` in anti-diagonals:
//! on even sweeps it multiplies `U` from the right by `T⁻¹` (mixing columns `c` and `c + 1`), on
//! odd sweeps from the left by `T` (mixing rows `r - 1` and `r`). Both angles come from `atan2` of
//! the two moduli and from differences of arguments, so a vanishing element never becomes a
//! denominator. What remains is a diagonal `D`. Each left factor is then moved to the right of `D`
//! with `T(θ, φ)⁻¹ D = D' T(θ, φ')`, which leaves `U = D' · ∏ T`: a rectangular mesh of
//! `N (N - 1) / 2` MZIs followed by `N` output phase shifters.
//!
//! # Columns
//!
//! MZIs are emitted in the order light meets them. Each MZI gets the first column after the last
//! MZI on either of its two modes, so MZIs in one column act on disjoint mode pairs and commute.
//! A Clements mesh of `N` modes fills `N` columns, except `N = 2`, which has one MZI.
//!
//! # Rectangular matrices
//!
//! A non-square `W` (m × n) is padded with zeros to `N = max(m, n)` modes, with `W` in the top-left
//! block. Light enters on input modes `0 .. n`, the other inputs stay dark, and the outputs are read
//! on modes `0 .. m`. The padding adds zero singular values, so the extra attenuators are set to 0.

use std::f64::consts::{PI, TAU};
use std::ops::Range;

use nalgebra::DMatrix;
use num_complex::Complex64;
use serde::{Deserialize, Serialize};

use crate::error::HardwareError;

/// Max-abs tolerance of the rebuild checks on `U`, `V*`, and on `W` relative to `max(1, σ_max)`.
pub const REBUILD_TOLERANCE: f64 = 1e-10;

/// Max-abs tolerance on `U* U - I` for a matrix accepted as unitary by [`decompose_clements`].
pub const UNITARY_TOLERANCE: f64 = 1e-10;

/// Iteration budget of the singular value decomposition, per mode.
const SVD_ITERATIONS_PER_MODE: usize = 1000;

/// One Mach–Zehnder interferometer of a mesh.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mzi {
    /// Position along the light path, counted from the mesh input.
    pub column: usize,
    /// Upper mode of the pair; the MZI couples modes `row` and `row + 1`.
    pub row: usize,
    /// Internal rotation angle in radians, in `[0, 2π)`.
    pub theta: f64,
    /// External phase on the upper input arm in radians, in `[0, 2π)`.
    pub phi: f64,
}

/// A unitary realised as a rectangular MZI mesh followed by one phase shifter per output mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClementsMesh {
    /// Number of optical modes `N`.
    pub modes: usize,
    /// MZIs in the order light meets them (non-decreasing column).
    pub mzis: Vec<Mzi>,
    /// Output phases in radians, in `[0, 2π)`, one per mode.
    pub output_phases: Vec<f64>,
}

/// Maps a phase into `[0, 2π)`.
pub fn wrap_phase(phase: f64) -> f64 {
    // Adding +0.0 turns -0.0 into +0.0, so no file ever shows a phase of "-0.0".
    let wrapped = phase.rem_euclid(TAU) + 0.0;
    // `rem_euclid` can round up to exactly 2π for tiny negative inputs.
    if wrapped >= TAU {
        0.0
    } else {
        wrapped
    }
}

/// Returns the 2 × 2 transfer matrix `T(θ, φ)` of one MZI, row-major.
pub fn mzi_transfer_matrix(theta: f64, phi: f64) -> [[Complex64; 2]; 2] {
    let external = Complex64::from_polar(1.0, phi);
    let (sin, cos) = theta.sin_cos();
    [
        [external * cos, Complex64::new(-sin, 0.0)],
        [external * sin, Complex64::new(cos, 0.0)],
    ]
}

/// Multiplies rows `row` and `row + 1` of `matrix` from the left by a 2 × 2 matrix, touching only
/// the entries in `columns`.
fn apply_to_rows(
    matrix: &mut DMatrix<Complex64>,
    row: usize,
    columns: Range<usize>,
    transfer: &[[Complex64; 2]; 2],
) {
    for column in columns {
        let upper = matrix[(row, column)];
        let lower = matrix[(row + 1, column)];
        matrix[(row, column)] = transfer[0][0] * upper + transfer[0][1] * lower;
        matrix[(row + 1, column)] = transfer[1][0] * upper + transfer[1][1] * lower;
    }
}

/// Multiplies columns `column` and `column + 1` of `matrix` from the right by a 2 × 2 matrix,
/// touching only the entries in `rows`.
fn apply_to_columns(
    matrix: &mut DMatrix<Complex64>,
    column: usize,
    rows: Range<usize>,
    transfer: &[[Complex64; 2]; 2],
) {
    for row in rows {
        let left = matrix[(row, column)];
        let right = matrix[(row, column + 1)];
        matrix[(row, column)] = left * transfer[0][0] + right * transfer[1][0];
        matrix[(row, column + 1)] = left * transfer[0][1] + right * transfer[1][1];
    }
}

/// Returns the inverse (conjugate transpose) of a 2 × 2 unitary.
fn adjoint_2x2(transfer: &[[Complex64; 2]; 2]) -> [[Complex64; 2]; 2] {
    [
        [transfer[0][0].conj(), transfer[1][0].conj()],
        [transfer[0][1].conj(), transfer[1][1].conj()],
    ]
}

/// Returns the transpose (without conjugation) of a 2 × 2 matrix.
fn transpose_2x2(transfer: &[[Complex64; 2]; 2]) -> [[Complex64; 2]; 2] {
    [
        [transfer[0][0], transfer[1][0]],
        [transfer[0][1], transfer[1][1]],
    ]
}

/// Returns the larger of two values, or NaN when either is NaN (unlike `f64::max`), so a NaN
/// entry fails every tolerance check.
fn max_propagating_nan(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Returns max-abs of `U* U - I`, or NaN when the matrix has a NaN entry.
pub fn unitarity_deviation(matrix: &DMatrix<Complex64>) -> f64 {
    let gram = matrix.adjoint() * matrix;
    let mut deviation: f64 = 0.0;
    for row in 0..gram.nrows() {
        for column in 0..gram.ncols() {
            let identity = if row == column { 1.0 } else { 0.0 };
            deviation = max_propagating_nan(deviation, (gram[(row, column)] - identity).norm());
        }
    }
    deviation
}

/// Returns max-abs of `a - b`, or NaN when an entry is NaN; the matrices must have equal shapes.
pub fn max_abs_difference(a: &DMatrix<Complex64>, b: &DMatrix<Complex64>) -> f64 {
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).norm())
        .fold(0.0, max_propagating_nan)
}

/// Decomposes a unitary matrix into a Clements rectangular MZI mesh (Clements et al. 2016).
///
/// Returns [`HardwareError::NotSquare`] or [`HardwareError::NotUnitary`] when `unitary` is not a
/// square matrix with max-abs `U* U - I` within [`UNITARY_TOLERANCE`].
pub fn decompose_clements(unitary: &DMatrix<Complex64>) -> Result<ClementsMesh, HardwareError> {
    let modes = unitary.nrows();
    if modes != unitary.ncols() || modes == 0 {
        return Err(HardwareError::NotSquare {
            rows: unitary.nrows(),
            columns: unitary.ncols(),
        });
    }
    let max_deviation = unitarity_deviation(unitary);
    if max_deviation.is_nan() || max_deviation > UNITARY_TOLERANCE {
        return Err(HardwareError::NotUnitary {
            max_deviation,
            tolerance: UNITARY_TOLERANCE,
        });
    }

    // Null the lower triangle one anti-diagonal per sweep, alternating sides. When (row, column)
    // is nulled, every entry below it in the two mixed columns, and every entry left of it in the
    // two mixed rows, is already zero: it lies on an earlier anti-diagonal or was nulled by the
    // previous step of this sweep. The 2 × 2 operations therefore skip those entries, which
    // changes no bit of the result and saves about a quarter of the time at 784 modes.
    let mut residual = unitary.clone();
    let mut right_factors: Vec<(usize, f64, f64)> = Vec::new();
    let mut left_factors: Vec<(usize, f64, f64)> = Vec::new();
    for sweep in 0..modes.saturating_sub(1) {
        for step in 0..=sweep {
            if sweep % 2 == 0 {
                // Null (modes-1-step, sweep-step) by mixing it with its right neighbour.
                let row = modes - 1 - step;
                let column = sweep - step;
                let target = residual[(row, column)];
                let neighbour = residual[(row, column + 1)];
                let phi = wrap_phase(target.arg() - neighbour.arg());
                let theta = wrap_phase(target.norm().atan2(neighbour.norm()));
                let inverse = adjoint_2x2(&mzi_transfer_matrix(theta, phi));
                apply_to_columns(&mut residual, column, 0..row + 1, &inverse);
                right_factors.push((column, theta, phi));
            } else {
                // Null (modes-1-sweep+step, step) by mixing it with the row above.
                let row = modes - 1 - sweep + step;
                let column = step;
                let above = residual[(row - 1, column)];
                let target = residual[(row, column)];
                let phi = wrap_phase(PI + target.arg() - above.arg());
                let theta = wrap_phase(target.norm().atan2(above.norm()));
                let transfer = mzi_transfer_matrix(theta, phi);
                apply_to_rows(&mut residual, row - 1, column..modes, &transfer);
                left_factors.push((row - 1, theta, phi));
            }
        }
    }

    // Move every left factor through the diagonal: T(θ, φ)⁻¹ D = D' T(θ, φ') with
    // φ' = π + arg d_k - arg d_{k+1} and d'_k = -e^{-iφ} d_{k+1}; d_{k+1} is unchanged.
    let mut diagonal: Vec<Complex64> = (0..modes).map(|mode| residual[(mode, mode)]).collect();
    let mut moved_factors: Vec<(usize, f64, f64)> = Vec::with_capacity(left_factors.len());
    for &(row, theta, phi) in left_factors.iter().rev() {
        let upper = diagonal[row];
        let lower = diagonal[row + 1];
        let moved_phi = wrap_phase(PI + upper.arg() - lower.arg());
        diagonal[row] = -Complex64::from_polar(1.0, -phi) * lower;
        moved_factors.push((row, theta, moved_phi));
    }

    // Light meets the right factors first (in the order they were found), then the moved ones.
    let mut next_free_column = vec![0usize; modes];
    let mut mzis = Vec::with_capacity(right_factors.len() + moved_factors.len());
    for (row, theta, phi) in right_factors.into_iter().chain(moved_factors) {
        let column = next_free_column[row].max(next_free_column[row + 1]);
        next_free_column[row] = column + 1;
        next_free_column[row + 1] = column + 1;
        mzis.push(Mzi {
            column,
            row,
            theta,
            phi,
        });
    }
    mzis.sort_by_key(|mzi| mzi.column);

    let output_phases = diagonal.iter().map(|d| wrap_phase(d.arg())).collect();
    Ok(ClementsMesh {
        modes,
        mzis,
        output_phases,
    })
}

impl ClementsMesh {
    /// Returns the number of MZI columns.
    pub fn columns(&self) -> usize {
        self.mzis
            .iter()
            .map(|mzi| mzi.column + 1)
            .max()
            .unwrap_or(0)
    }

    /// Rebuilds the unitary from the emitted phases: MZIs in column order, then the output phases.
    pub fn unitary(&self) -> DMatrix<Complex64> {
        let mut ordered = self.mzis.clone();
        ordered.sort_by_key(|mzi| mzi.column);

        // Accumulate the transpose, because nalgebra stores matrices by column and column
        // operations run over contiguous memory: (T_k ⋯ T_1)ᵀ = T_1ᵀ ⋯ T_kᵀ.
        let modes = self.modes;
        let mut transpose = DMatrix::<Complex64>::identity(modes, modes);
        for mzi in &ordered {
            let transfer = transpose_2x2(&mzi_transfer_matrix(mzi.theta, mzi.phi));
            apply_to_columns(&mut transpose, mzi.row, 0..modes, &transfer);
        }
        for (mode, &phase) in self.output_phases.iter().enumerate() {
            let factor = Complex64::from_polar(1.0, phase);
            for row in 0..modes {
                transpose[(row, mode)] *= factor;
            }
        }
        transpose.transpose()
    }

    /// Returns a copy with every MZI phase (θ and φ) and every output phase changed by `perturb`,
    /// then wrapped into `[0, 2π)`.
    pub fn map_phases(&self, mut perturb: impl FnMut(f64) -> f64) -> ClementsMesh {
        let mzis = self
            .mzis
            .iter()
            .map(|mzi| {
                let theta = wrap_phase(perturb(mzi.theta));
                let phi = wrap_phase(perturb(mzi.phi));
                Mzi { theta, phi, ..*mzi }
            })
            .collect();
        let output_phases = self
            .output_phases
            .iter()
            .map(|&phase| wrap_phase(perturb(phase)))
            .collect();
        ClementsMesh {
            modes: self.modes,
            mzis,
            output_phases,
        }
    }
}

/// One weight matrix mapped onto photonics: `W = gain · U diag(attenuators) V*`, restricted to the
/// top-left `rows × columns` block of the `modes × modes` product.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhotonicLayer {
    /// Layer name, used as the file stem.
    pub name: String,
    /// Rows `m` of `W` (output modes read).
    pub rows: usize,
    /// Columns `n` of `W` (input modes lit).
    pub columns: usize,
    /// Optical modes `N = max(m, n)`.
    pub modes: usize,
    /// The mesh realising `V*`, which light meets first.
    pub input_mesh: ClementsMesh,
    /// Attenuator transmissions `σ_i / σ_max` in `[0, 1]`, one per mode.
    pub attenuators: Vec<f64>,
    /// Largest singular value `σ_max`, the electronic gain after the optical circuit.
    pub gain: f64,
    /// The mesh realising `U`, which light meets last.
    pub output_mesh: ClementsMesh,
}

/// Max-abs errors of the rebuild check.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RebuildErrors {
    /// Max-abs error of `U` rebuilt from the output mesh.
    pub output_unitary: f64,
    /// Max-abs error of `V*` rebuilt from the input mesh.
    pub input_unitary: f64,
    /// Max-abs error of `W` rebuilt from both meshes, the attenuators and the gain.
    pub weights: f64,
}

impl PhotonicLayer {
    /// Rebuilds `W` (rows × columns) from the emitted phases, attenuators and gain.
    pub fn weight_matrix(&self) -> DMatrix<Complex64> {
        self.weight_matrix_with(&self.input_mesh, &self.output_mesh)
    }

    /// Rebuilds `W` with other meshes in place of the emitted ones, as the robustness study does.
    pub fn weight_matrix_with(
        &self,
        input_mesh: &ClementsMesh,
        output_mesh: &ClementsMesh,
    ) -> DMatrix<Complex64> {
        self.weight_matrix_from_unitaries(&output_mesh.unitary(), &input_mesh.unitary())
    }

    /// Computes `W = gain · U diag(attenuators) V*`, restricted to rows × columns, from already
    /// rebuilt unitaries.
    fn weight_matrix_from_unitaries(
        &self,
        output_unitary: &DMatrix<Complex64>,
        input_unitary: &DMatrix<Complex64>,
    ) -> DMatrix<Complex64> {
        // Only the first `columns` columns of V* and the first `rows` rows of U reach W.
        let mut product = input_unitary.columns(0, self.columns).into_owned();
        for (mode, &transmission) in self.attenuators.iter().enumerate() {
            let factor = self.gain * transmission;
            for column in 0..self.columns {
                product[(mode, column)] *= factor;
            }
        }
        output_unitary.rows(0, self.rows) * product
    }
}

/// Checks that `weights` is non-empty and finite.
pub(crate) fn check_weights(
    layer: &str,
    weights: &DMatrix<Complex64>,
) -> Result<(), HardwareError> {
    if weights.nrows() == 0 || weights.ncols() == 0 {
        return Err(HardwareError::EmptyMatrix {
            layer: layer.to_string(),
        });
    }
    for row in 0..weights.nrows() {
        for column in 0..weights.ncols() {
            let value = weights[(row, column)];
            if !value.re.is_finite() || !value.im.is_finite() {
                return Err(HardwareError::NonFiniteWeight {
                    layer: layer.to_string(),
                    row,
                    column,
                });
            }
        }
    }
    Ok(())
}

/// Maps a real or complex weight matrix onto two Clements meshes and attenuators, then rebuilds
/// `U`, `V*` and `W` from the emitted settings and returns the max-abs errors.
///
/// Returns [`HardwareError::RebuildMismatch`] when `U` or `V*` is off by more than
/// [`REBUILD_TOLERANCE`], or `W` by more than `REBUILD_TOLERANCE · max(1, σ_max)`. The scaling
/// keeps the check meaningful for weights far from unit size.
pub fn map_weight_matrix(
    name: &str,
    weights: &DMatrix<Complex64>,
) -> Result<(PhotonicLayer, RebuildErrors), HardwareError> {
    check_weights(name, weights)?;
    let (rows, columns) = weights.shape();
    let modes = rows.max(columns);

    // Pad to a square matrix with W in the top-left block.
    let mut padded = DMatrix::<Complex64>::zeros(modes, modes);
    padded.view_mut((0, 0), (rows, columns)).copy_from(weights);

    // SVD in f64; nalgebra sorts the singular values in descending order.
    let max_iterations = SVD_ITERATIONS_PER_MODE * modes;
    let svd = padded
        .clone()
        .try_svd(true, true, f64::EPSILON, max_iterations)
        .ok_or_else(|| HardwareError::SvdFailed {
            layer: name.to_string(),
            max_iterations,
        })?;
    let (Some(left), Some(right_adjoint)) = (svd.u, svd.v_t) else {
        return Err(HardwareError::SvdFailed {
            layer: name.to_string(),
            max_iterations,
        });
    };
    let singular_values: Vec<f64> = svd.singular_values.iter().copied().collect();
    let gain = singular_values.iter().copied().fold(0.0, f64::max);
    let attenuators = singular_values
        .iter()
        .map(|&sigma| if gain > 0.0 { sigma / gain } else { 0.0 })
        .collect();

    let layer = PhotonicLayer {
        name: name.to_string(),
        rows,
        columns,
        modes,
        input_mesh: decompose_clements(&right_adjoint)?,
        attenuators,
        gain,
        output_mesh: decompose_clements(&left)?,
    };

    // Rebuild check on every part.
    let output_unitary = layer.output_mesh.unitary();
    let input_unitary = layer.input_mesh.unitary();
    let rebuilt_weights = layer.weight_matrix_from_unitaries(&output_unitary, &input_unitary);
    let errors = RebuildErrors {
        output_unitary: max_abs_difference(&output_unitary, &left),
        input_unitary: max_abs_difference(&input_unitary, &right_adjoint),
        weights: max_abs_difference(&rebuilt_weights, weights),
    };
    let checks = [
        ("U", errors.output_unitary, REBUILD_TOLERANCE),
        ("V*", errors.input_unitary, REBUILD_TOLERANCE),
        ("W", errors.weights, REBUILD_TOLERANCE * gain.max(1.0)),
    ];
    for (part, max_abs_error, tolerance) in checks {
        if max_abs_error.is_nan() || max_abs_error > tolerance {
            return Err(HardwareError::RebuildMismatch {
                layer: name.to_string(),
                part,
                max_abs_error,
                tolerance,
            });
        }
    }
    Ok((layer, errors))
}

/// Converts a real `ndarray` weight matrix to a complex `nalgebra` matrix.
pub fn complex_matrix_from_real(weights: &ndarray::Array2<f64>) -> DMatrix<Complex64> {
    let (rows, columns) = weights.dim();
    DMatrix::from_fn(rows, columns, |row, column| {
        Complex64::new(weights[(row, column)], 0.0)
    })
}
