//! The linear part of a split-step Fourier step for training: `u ← exp(h·c·∇²) u` on a periodic
//! grid, applied to complex states stored as real rows `[re block, im block]`.
//!
//! With the forward transform unnormalised and the inverse divided by the point count, the step is
//! `F⁻¹ D F` with `D` the diagonal of factors `exp(−h·c·|k|²)`. Read as a real linear map of
//! `(re, im)` under the inner product `Σ re·re′ + im·im′`, its transpose is the complex adjoint
//! `F⁻¹ conj(D) F`, so the reverse sweep applies the same step with conjugated factors.

use ndarray::Array2;
use num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use std::sync::Arc;

/// One half step `exp(h·c·∇²)` on a periodic grid, with its Fourier plans.
pub struct SpectralStep {
    extents: Vec<usize>,
    points: usize,
    factors: Vec<Complex<f64>>,
    forward: Vec<Arc<dyn Fft<f64>>>,
    inverse: Vec<Arc<dyn Fft<f64>>>,
}

impl std::fmt::Debug for SpectralStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpectralStep")
            .field("extents", &self.extents)
            .finish_non_exhaustive()
    }
}

impl SpectralStep {
    /// A step of length `h` of `∂u/∂t = c ∇²u` on a periodic grid of `extents` points per axis
    /// and periods `lengths`, with `coefficient = (re, im)` of `c`.
    pub fn new(extents: &[usize], lengths: &[f64], coefficient: (f64, f64), h: f64) -> Self {
        let numbers: Vec<Vec<f64>> = extents
            .iter()
            .zip(lengths)
            .map(|(n, length)| crate::spectral::wave_numbers(*n, *length))
            .collect();
        let points: usize = extents.iter().product();
        let c = Complex::new(coefficient.0, coefficient.1) * h;
        let mut index = vec![0usize; extents.len()];
        let factors = (0..points)
            .map(|flat| {
                let mut rest = flat;
                for (position, n) in extents.iter().enumerate().rev() {
                    index[position] = rest % n;
                    rest /= n;
                }
                let k2: f64 = numbers.iter().zip(&index).map(|(k, i)| k[*i] * k[*i]).sum();
                (c * -k2).exp()
            })
            .collect();
        let mut planner = FftPlanner::<f64>::new();
        SpectralStep {
            extents: extents.to_vec(),
            points,
            factors,
            forward: extents
                .iter()
                .map(|n| planner.plan_fft_forward(*n))
                .collect(),
            inverse: extents
                .iter()
                .map(|n| planner.plan_fft_inverse(*n))
                .collect(),
        }
    }

    /// The number of grid points; rows hold twice as many entries.
    pub fn points(&self) -> usize {
        self.points
    }

    /// Applies the step (or its transpose when `transpose`) to every row of `state`, each row
    /// holding the real parts of a field and then its imaginary parts.
    pub fn apply(&self, state: &mut Array2<f64>, transpose: bool) {
        let n = self.points;
        let mut buffer = vec![Complex::new(0.0, 0.0); n];
        let mut lane = Vec::new();
        for mut row in state.rows_mut() {
            for (i, b) in buffer.iter_mut().enumerate() {
                *b = Complex::new(row[i], row[n + i]);
            }
            self.transform(&mut buffer, &mut lane, false);
            for (b, f) in buffer.iter_mut().zip(&self.factors) {
                *b *= if transpose { f.conj() } else { *f };
            }
            self.transform(&mut buffer, &mut lane, true);
            let scale = 1.0 / n as f64;
            for (i, b) in buffer.iter().enumerate() {
                row[i] = b.re * scale;
                row[n + i] = b.im * scale;
            }
        }
    }

    /// Transforms along every axis in place (row-major, the last axis contiguous), unnormalised.
    fn transform(&self, data: &mut [Complex<f64>], lane: &mut Vec<Complex<f64>>, inverse: bool) {
        let dims = self.extents.len();
        for axis in 0..dims {
            let n = self.extents[axis];
            let stride: usize = self.extents[axis + 1..].iter().product();
            let outer = self.points / (n * stride);
            let plan = if inverse {
                &self.inverse[axis]
            } else {
                &self.forward[axis]
            };
            lane.resize(n, Complex::new(0.0, 0.0));
            for o in 0..outer {
                for s in 0..stride {
                    let base = o * n * stride + s;
                    for (i, x) in lane.iter_mut().enumerate() {
                        *x = data[base + i * stride];
                    }
                    plan.process(lane);
                    for (i, x) in lane.iter().enumerate() {
                        data[base + i * stride] = *x;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_rows(rows: usize, len: usize, seed: u64) -> Array2<f64> {
        let mut state = seed;
        Array2::from_shape_fn((rows, len), |_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        })
    }

    #[test]
    fn transpose_passes_the_dot_test_and_the_step_keeps_the_norm() {
        let step = SpectralStep::new(&[6, 8], &[3.0, 5.0], (0.0, -0.3), 0.7);
        let u = random_rows(2, 96, 1);
        let w = random_rows(2, 96, 2);
        let mut lu = u.clone();
        step.apply(&mut lu, false);
        let mut ltw = w.clone();
        step.apply(&mut ltw, true);
        let left: f64 = (&lu * &w).sum();
        let right: f64 = (&u * &ltw).sum();
        assert!(
            (left - right).abs() < 1e-12 * left.abs().max(1.0),
            "{left} vs {right}"
        );
        let norm = |a: &Array2<f64>| a.iter().map(|x| x * x).sum::<f64>();
        assert!((norm(&lu) - norm(&u)).abs() < 1e-12 * norm(&u));
    }

    #[test]
    fn a_plane_wave_takes_the_exact_phase() {
        // u = exp(i·k·x) with k = 2π·2/L on 16 points: one step multiplies it by exp(−h·c·k²).
        let (n, length, h) = (16usize, 4.0, 0.3);
        let c = (0.0, 0.5);
        let step = SpectralStep::new(&[n], &[length], c, h);
        let k = 2.0 * std::f64::consts::PI * 2.0 / length;
        let mut u = Array2::from_shape_fn((1, 2 * n), |(_, i)| {
            let x = (i % n) as f64 * length / n as f64;
            if i < n {
                (k * x).cos()
            } else {
                (k * x).sin()
            }
        });
        let original = u.clone();
        step.apply(&mut u, false);
        let factor = (Complex::new(c.0, c.1) * h * -(k * k)).exp();
        for i in 0..n {
            let expected = Complex::new(original[[0, i]], original[[0, n + i]]) * factor;
            assert!((u[[0, i]] - expected.re).abs() < 1e-12);
            assert!((u[[0, n + i]] - expected.im).abs() < 1e-12);
        }
    }
}
