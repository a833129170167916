//! Tests of the Clements decomposition: every unitary rebuilt from its emitted phases to 1e-10,
//! the mesh shape, the phase ranges, and the rejection of non-unitary input.

mod common;

use common::{dft_matrix, haar_unitary, permutation_matrix, real_gaussian};
use nalgebra::DMatrix;
use npdec_hardware::photonic::{decompose_clements, max_abs_difference, ClementsMesh};
use npdec_hardware::HardwareError;
use num_complex::Complex64;
use std::f64::consts::TAU;

const TOLERANCE: f64 = 1e-10;

/// Decomposes `unitary`, checks the mesh shape and phase ranges, and returns the rebuild error.
fn rebuild_error(unitary: &DMatrix<Complex64>) -> f64 {
    let n = unitary.nrows();
    let mesh = decompose_clements(unitary).expect("unitary input is accepted");
    check_mesh_shape(&mesh, n);
    max_abs_difference(&mesh.unitary(), unitary)
}

fn check_mesh_shape(mesh: &ClementsMesh, n: usize) {
    assert_eq!(mesh.modes, n);
    assert_eq!(mesh.mzis.len(), n * (n - 1) / 2, "MZI count for N = {n}");
    assert_eq!(mesh.output_phases.len(), n);
    let expected_columns = if n == 2 { 1 } else { n };
    if n > 1 {
        assert_eq!(mesh.columns(), expected_columns, "column count for N = {n}");
    }
    for mzi in &mesh.mzis {
        assert!(mzi.row + 1 < n, "MZI row {} out of range", mzi.row);
        assert_eq!(mzi.row % 2, mzi.column % 2, "rectangular parity of {mzi:?}");
        assert!(
            (0.0..TAU).contains(&mzi.theta),
            "theta {} not wrapped",
            mzi.theta
        );
        assert!((0.0..TAU).contains(&mzi.phi), "phi {} not wrapped", mzi.phi);
    }
    for &phase in &mesh.output_phases {
        assert!(
            (0.0..TAU).contains(&phase),
            "output phase {phase} not wrapped"
        );
    }
    for column in 0..mesh.columns() {
        let mut rows: Vec<usize> = mesh
            .mzis
            .iter()
            .filter(|mzi| mzi.column == column)
            .map(|mzi| mzi.row)
            .collect();
        rows.sort_unstable();
        for pair in rows.windows(2) {
            assert!(
                pair[1] >= pair[0] + 2,
                "overlapping MZIs in column {column}"
            );
        }
    }
}

#[test]
fn haar_unitaries_rebuild_for_n_2_to_64() {
    let mut report = Vec::new();
    for n in 2..=64 {
        let mut worst: f64 = 0.0;
        let trials = if n <= 16 { 5 } else { 1 };
        for trial in 0..trials {
            let unitary = haar_unitary(n, 1000 * n as u64 + trial);
            let error = rebuild_error(&unitary);
            assert!(
                error <= TOLERANCE,
                "N = {n}, trial {trial}: error {error:e}"
            );
            worst = worst.max(error);
        }
        report.push(format!("N={n}: {worst:.2e}"));
    }
    println!("worst Haar rebuild error per N: {}", report.join(", "));
}

#[test]
fn identity_rebuilds() {
    for n in [1, 2, 3, 8, 33] {
        let identity = DMatrix::<Complex64>::identity(n, n);
        let mesh = decompose_clements(&identity).unwrap();
        let error = max_abs_difference(&mesh.unitary(), &identity);
        assert!(error <= TOLERANCE, "N = {n}: error {error:e}");
    }
}

#[test]
fn anti_identity_rebuilds() {
    for n in [2, 3, 4, 7, 16] {
        let permutation: Vec<usize> = (0..n).rev().collect();
        let error = rebuild_error(&permutation_matrix(&permutation));
        assert!(error <= TOLERANCE, "N = {n}: error {error:e}");
    }
}

#[test]
fn permutations_rebuild() {
    let cases: Vec<Vec<usize>> = vec![
        vec![1, 0],
        vec![1, 2, 0],
        vec![2, 0, 1],
        vec![0, 2, 1, 3],
        vec![3, 1, 0, 2],
        vec![1, 0, 3, 2, 5, 4],
        vec![4, 7, 2, 0, 6, 1, 5, 3],
    ];
    for permutation in &cases {
        let error = rebuild_error(&permutation_matrix(permutation));
        assert!(error <= TOLERANCE, "{permutation:?}: error {error:e}");
    }
}

#[test]
fn dft_matrices_rebuild() {
    for n in [2, 3, 4, 5, 8, 16, 31, 64] {
        let error = rebuild_error(&dft_matrix(n));
        assert!(error <= TOLERANCE, "N = {n}: error {error:e}");
    }
}

#[test]
fn block_diagonal_unitaries_rebuild() {
    // Zero off-diagonal blocks make many nulling targets and neighbours exactly zero.
    for (top, bottom) in [(1, 1), (2, 3), (4, 4), (5, 11)] {
        let n = top + bottom;
        let mut unitary = DMatrix::<Complex64>::zeros(n, n);
        unitary
            .view_mut((0, 0), (top, top))
            .copy_from(&haar_unitary(top, 7));
        unitary
            .view_mut((top, top), (bottom, bottom))
            .copy_from(&haar_unitary(bottom, 8));
        let error = rebuild_error(&unitary);
        assert!(error <= TOLERANCE, "blocks {top}+{bottom}: error {error:e}");

        // The off-diagonal arrangement swaps the two blocks.
        let mut swapped = DMatrix::<Complex64>::zeros(n, n);
        swapped
            .view_mut((bottom, 0), (top, top))
            .copy_from(&haar_unitary(top, 9));
        swapped
            .view_mut((0, top), (bottom, bottom))
            .copy_from(&haar_unitary(bottom, 10));
        let error = rebuild_error(&swapped);
        assert!(
            error <= TOLERANCE,
            "swapped blocks {top}+{bottom}: error {error:e}"
        );
    }
}

#[test]
fn diagonal_phases_rebuild() {
    let n = 6;
    let unitary = DMatrix::from_fn(n, n, |row, column| {
        if row == column {
            Complex64::from_polar(1.0, -3.0 + row as f64)
        } else {
            Complex64::new(0.0, 0.0)
        }
    });
    let error = rebuild_error(&unitary);
    assert!(error <= TOLERANCE, "error {error:e}");
}

#[test]
fn non_unitary_input_rejected() {
    let matrix = real_gaussian(5, 5, 3);
    match decompose_clements(&matrix) {
        Err(HardwareError::NotUnitary {
            max_deviation,
            tolerance,
        }) => {
            assert!(max_deviation > tolerance);
        }
        other => panic!("expected NotUnitary, found {other:?}"),
    }

    let mut nearly = haar_unitary(4, 5);
    nearly[(2, 1)] += Complex64::new(1e-6, 0.0);
    assert!(matches!(
        decompose_clements(&nearly),
        Err(HardwareError::NotUnitary { .. })
    ));

    let mut not_finite = haar_unitary(3, 6);
    not_finite[(0, 0)] = Complex64::new(f64::NAN, 0.0);
    assert!(matches!(
        decompose_clements(&not_finite),
        Err(HardwareError::NotUnitary { .. })
    ));
}

#[test]
fn non_square_input_rejected() {
    let matrix = DMatrix::<Complex64>::zeros(3, 4);
    assert!(matches!(
        decompose_clements(&matrix),
        Err(HardwareError::NotSquare {
            rows: 3,
            columns: 4
        })
    ));
    let empty = DMatrix::<Complex64>::zeros(0, 0);
    assert!(matches!(
        decompose_clements(&empty),
        Err(HardwareError::NotSquare { .. })
    ));
}

#[test]
fn wrap_phase_stays_in_range() {
    use npdec_hardware::photonic::wrap_phase;
    assert_eq!(wrap_phase(-0.0).to_bits(), 0.0_f64.to_bits());
    assert_eq!(wrap_phase(TAU), 0.0);
    assert_eq!(wrap_phase(-1e-300), 0.0);
    assert!((wrap_phase(-std::f64::consts::PI) - std::f64::consts::PI).abs() < 1e-15);
    assert!((wrap_phase(7.0) - (7.0 - TAU)).abs() < 1e-15);
    for phase in [-1e-17, -3.0 * TAU, 1e6, 0.5] {
        let wrapped = wrap_phase(phase);
        assert!((0.0..TAU).contains(&wrapped), "{phase} -> {wrapped}");
    }
}

#[test]
fn large_random_permutation_rebuilds() {
    // A seeded Fisher–Yates shuffle of 64 modes: almost every entry is an exact zero.
    let mut source = npdec_hardware::random::GaussianSource::new(64);
    let mut permutation: Vec<usize> = (0..64).collect();
    for i in (1..64).rev() {
        let j = (source.uniform() * (i + 1) as f64) as usize;
        permutation.swap(i, j.min(i));
    }
    let error = rebuild_error(&permutation_matrix(&permutation));
    assert!(error <= TOLERANCE, "error {error:e}");
}
