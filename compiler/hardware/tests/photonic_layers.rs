//! Tests of the weight-matrix mapping `W = gain · U diag(attenuators) V*`: square, rectangular,
//! rank-deficient and block-structured weights rebuilt to 1e-10, and invalid input rejected.

mod common;

use common::{haar_unitary, real_gaussian};
use nalgebra::DMatrix;
use npdec_hardware::photonic::{map_weight_matrix, max_abs_difference, REBUILD_TOLERANCE};
use npdec_hardware::HardwareError;
use num_complex::Complex64;

/// Maps `weights`, checks the attenuator range and the three rebuild errors, and returns the
/// weight rebuild error.
fn mapped_error(name: &str, weights: &DMatrix<Complex64>) -> f64 {
    let (layer, errors) = map_weight_matrix(name, weights).expect("mapping succeeds");
    let (rows, columns) = weights.shape();
    assert_eq!(layer.modes, rows.max(columns));
    assert_eq!(layer.attenuators.len(), layer.modes);
    for &transmission in &layer.attenuators {
        assert!(
            (0.0..=1.0 + 1e-15).contains(&transmission),
            "{transmission}"
        );
    }
    assert!(
        errors.output_unitary <= REBUILD_TOLERANCE,
        "{name}: {errors:?}"
    );
    assert!(
        errors.input_unitary <= REBUILD_TOLERANCE,
        "{name}: {errors:?}"
    );
    let rebuilt = layer.weight_matrix();
    assert_eq!(rebuilt.shape(), weights.shape());
    let error = max_abs_difference(&rebuilt, weights);
    assert_eq!(error, errors.weights);
    error
}

#[test]
fn real_square_weights_rebuild() {
    for n in [1, 2, 3, 10, 32, 64] {
        let weights = real_gaussian(n, n, 40 + n as u64);
        let error = mapped_error("square", &weights);
        assert!(error <= REBUILD_TOLERANCE, "N = {n}: {error:e}");
    }
}

#[test]
fn complex_weights_rebuild() {
    let unitary = haar_unitary(12, 77);
    let weights =
        &unitary * DMatrix::from_fn(12, 12, |r, c| Complex64::new((r + 2 * c) as f64 * 0.1, 0.0));
    let error = mapped_error("complex", &weights);
    assert!(error <= REBUILD_TOLERANCE, "{error:e}");
}

#[test]
fn rectangular_weights_rebuild() {
    for (rows, columns) in [(1, 5), (5, 1), (3, 8), (8, 3), (10, 64), (64, 17)] {
        let weights = real_gaussian(rows, columns, (rows * 1000 + columns) as u64);
        let error = mapped_error("rectangular", &weights);
        assert!(error <= REBUILD_TOLERANCE, "{rows} x {columns}: {error:e}");
    }
}

#[test]
fn rank_deficient_weights_rebuild() {
    // Rank 2 in 16 x 16, and rank 1 in 9 x 5.
    let low = real_gaussian(16, 2, 5) * real_gaussian(2, 16, 6);
    let error = mapped_error("rank2", &low);
    assert!(error <= REBUILD_TOLERANCE, "rank 2: {error:e}");

    let outer = real_gaussian(9, 1, 7) * real_gaussian(1, 5, 8);
    let error = mapped_error("rank1", &outer);
    assert!(error <= REBUILD_TOLERANCE, "rank 1: {error:e}");
}

#[test]
fn zero_and_block_weights_rebuild() {
    let zero = DMatrix::<Complex64>::zeros(6, 4);
    let (layer, errors) = map_weight_matrix("zero", &zero).unwrap();
    assert_eq!(layer.gain, 0.0);
    assert!(layer.attenuators.iter().all(|&t| t == 0.0));
    assert!(errors.weights == 0.0, "{errors:?}");

    let mut blocks = DMatrix::<Complex64>::zeros(10, 10);
    blocks
        .view_mut((0, 5), (5, 5))
        .copy_from(&real_gaussian(5, 5, 11));
    blocks
        .view_mut((7, 0), (3, 3))
        .copy_from(&real_gaussian(3, 3, 12));
    let error = mapped_error("blocks", &blocks);
    assert!(error <= REBUILD_TOLERANCE, "{error:e}");
}

#[test]
fn large_weights_use_relative_tolerance() {
    let weights = real_gaussian(20, 20, 13) * Complex64::new(1e4, 0.0);
    let (layer, errors) = map_weight_matrix("large", &weights).unwrap();
    assert!(
        errors.weights <= REBUILD_TOLERANCE * layer.gain,
        "{errors:?}"
    );
}

#[test]
fn invalid_weights_rejected() {
    let empty = DMatrix::<Complex64>::zeros(0, 3);
    assert!(matches!(
        map_weight_matrix("empty", &empty),
        Err(HardwareError::EmptyMatrix { .. })
    ));

    let mut nan = real_gaussian(3, 3, 14);
    nan[(1, 2)] = Complex64::new(0.0, f64::NAN);
    match map_weight_matrix("nan", &nan) {
        Err(HardwareError::NonFiniteWeight { layer, row, column }) => {
            assert_eq!((layer.as_str(), row, column), ("nan", 1, 2));
        }
        other => panic!("expected NonFiniteWeight, found {other:?}"),
    }
}

#[test]
fn wide_layer_rebuilds() {
    // A 16 x 200 first layer pads to 200 modes, far beyond the 64 of the unitary tests.
    let weights = real_gaussian(16, 200, 15) * Complex64::new(0.05, 0.0);
    let start = std::time::Instant::now();
    let error = mapped_error("wide", &weights);
    println!(
        "16 x 200: weight error {error:.2e} in {:.1?}",
        start.elapsed()
    );
    assert!(error <= REBUILD_TOLERANCE, "{error:e}");
}

#[test]
fn mnist_width_layer_rebuilds() {
    // A layer reading 28 x 28 = 784 pixels pads to 784 modes. This is the slowest test of the
    // crate, a few seconds in release.
    let weights = real_gaussian(10, 784, 16) * Complex64::new(0.05, 0.0);
    let start = std::time::Instant::now();
    let error = mapped_error("mnist_width", &weights);
    println!(
        "10 x 784: weight error {error:.2e} in {:.1?}",
        start.elapsed()
    );
    assert!(error <= REBUILD_TOLERANCE, "{error:e}");
}

#[test]
fn repeated_singular_values_rebuild() {
    // Degenerate singular values leave U and V free within each eigenspace; W must still rebuild.
    let scaled_identity = DMatrix::<Complex64>::identity(7, 7) * Complex64::new(3.0, 0.0);
    let error = mapped_error("scaled_identity", &scaled_identity);
    assert!(error <= REBUILD_TOLERANCE, "3 I: {error:e}");

    let scaled_unitary = haar_unitary(9, 31) * Complex64::new(0.5, 0.0);
    let error = mapped_error("scaled_unitary", &scaled_unitary);
    assert!(error <= REBUILD_TOLERANCE, "U / 2: {error:e}");
}
