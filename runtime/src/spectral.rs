//! Fourier transforms over the spatial axes of a field, for split-step Fourier.

use crate::value::Real;
use ndarray::{ArrayD, Axis};
use num_complex::Complex;
use rustfft::FftPlanner;

/// Transforms every spatial axis (all axes but the channel axis 0) in place. The inverse is
/// normalized, so a forward and an inverse transform return the input.
pub fn fft_spatial<T: Real>(array: &mut ArrayD<Complex<T>>, inverse: bool) {
    let mut planner = FftPlanner::<T>::new();
    for axis in 1..array.ndim() {
        let n = array.shape()[axis];
        let fft = if inverse {
            planner.plan_fft_inverse(n)
        } else {
            planner.plan_fft_forward(n)
        };
        let scale = if inverse {
            T::one() / T::of(n as f64)
        } else {
            T::one()
        };
        let mut buffer = vec![Complex::new(T::zero(), T::zero()); n];
        for mut lane in array.lanes_mut(Axis(axis)) {
            buffer
                .iter_mut()
                .zip(lane.iter())
                .for_each(|(b, x)| *b = *x);
            fft.process(&mut buffer);
            lane.iter_mut()
                .zip(&buffer)
                .for_each(|(x, b)| *x = *b * scale);
        }
    }
}

/// Returns the angular wave numbers `2π m / L` of an axis of `n` points and period `length`, in FFT
/// order (`m = 0, 1, …, n/2, −n/2 + 1, …, −1`).
pub fn wave_numbers(n: usize, length: f64) -> Vec<f64> {
    (0..n)
        .map(|m| {
            let signed = if m <= n / 2 {
                m as f64
            } else {
                m as f64 - n as f64
            };
            2.0 * std::f64::consts::PI * signed / length
        })
        .collect()
}
