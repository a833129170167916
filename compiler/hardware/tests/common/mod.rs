//! Test matrices shared by the integration tests: Haar-random unitaries, the DFT matrix,
//! permutations and seeded Gaussian matrices.

#![allow(dead_code)]

use nalgebra::DMatrix;
use npdec_hardware::random::GaussianSource;
use num_complex::Complex64;

/// Draws an `n × n` matrix of independent standard complex Gaussians (unit variance per entry).
pub fn complex_gaussian(n: usize, source: &mut GaussianSource) -> DMatrix<Complex64> {
    let scale = std::f64::consts::FRAC_1_SQRT_2;
    DMatrix::from_fn(n, n, |_, _| {
        Complex64::new(
            scale * source.standard_normal(),
            scale * source.standard_normal(),
        )
    })
}

/// Draws a Haar-random unitary: the Q factor of a complex Gaussian matrix with each column
/// multiplied by the phase of the matching diagonal entry of R. Without that phase correction the
/// QR factor is not Haar-distributed.
pub fn haar_unitary(n: usize, seed: u64) -> DMatrix<Complex64> {
    let mut source = GaussianSource::new(seed);
    let qr = complex_gaussian(n, &mut source).qr();
    let mut q = qr.q();
    let r = qr.r();
    for column in 0..n {
        let diagonal = r[(column, column)];
        let phase = if diagonal.norm() > 0.0 {
            diagonal / diagonal.norm()
        } else {
            Complex64::new(1.0, 0.0)
        };
        for row in 0..n {
            q[(row, column)] *= phase;
        }
    }
    q
}

/// Returns the unitary DFT matrix `F_jk = e^{-2πi jk/n} / √n`.
pub fn dft_matrix(n: usize) -> DMatrix<Complex64> {
    let norm = 1.0 / (n as f64).sqrt();
    DMatrix::from_fn(n, n, |j, k| {
        let angle = -std::f64::consts::TAU * ((j * k) % n) as f64 / n as f64;
        Complex64::from_polar(norm, angle)
    })
}

/// Returns the permutation matrix that sends input `k` to output `permutation[k]`.
pub fn permutation_matrix(permutation: &[usize]) -> DMatrix<Complex64> {
    let n = permutation.len();
    let mut matrix = DMatrix::<Complex64>::zeros(n, n);
    for (input, &output) in permutation.iter().enumerate() {
        matrix[(output, input)] = Complex64::new(1.0, 0.0);
    }
    matrix
}

/// Draws a real `rows × columns` matrix of standard Gaussians.
pub fn real_gaussian(rows: usize, columns: usize, seed: u64) -> DMatrix<Complex64> {
    let mut source = GaussianSource::new(seed);
    DMatrix::from_fn(rows, columns, |_, _| {
        Complex64::new(source.standard_normal(), 0.0)
    })
}
