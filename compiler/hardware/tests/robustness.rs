//! Tests of `photonic_robustness` on a synthetic classifier: a random linear classifier labels
//! synthetic data, so the digital accuracy is 1, and phase errors lower it measurably.

mod common;

use ndarray::{Array1, Array2};
use npdec_hardware::random::GaussianSource;
use npdec_hardware::robustness::{photonic_robustness, RobustnessOptions};
use npdec_hardware::HardwareError;

const CLASSES: usize = 4;
const FEATURES: usize = 8;
const SAMPLES: usize = 400;

/// A random linear classifier and a test set labelled by it.
struct SyntheticTask {
    weights: Array2<f64>,
    inputs: Vec<Array1<f64>>,
    labels: Vec<usize>,
}

fn argmax(values: &Array1<f64>) -> usize {
    let mut best = 0;
    for (index, &value) in values.iter().enumerate() {
        if value > values[best] {
            best = index;
        }
    }
    best
}

fn synthetic_task(seed: u64) -> SyntheticTask {
    let mut source = GaussianSource::new(seed);
    let weights = Array2::from_shape_fn((CLASSES, FEATURES), |_| source.standard_normal());
    let inputs: Vec<Array1<f64>> = (0..SAMPLES)
        .map(|_| Array1::from_shape_fn(FEATURES, |_| source.standard_normal()))
        .collect();
    let labels = inputs.iter().map(|x| argmax(&weights.dot(x))).collect();
    SyntheticTask {
        weights,
        inputs,
        labels,
    }
}

impl SyntheticTask {
    fn accuracy(&self, weights: &Array2<f64>) -> f64 {
        let correct = self
            .inputs
            .iter()
            .zip(&self.labels)
            .filter(|(x, &label)| argmax(&weights.dot(*x)) == label)
            .count();
        correct as f64 / self.inputs.len() as f64
    }
}

#[test]
fn robustness_reports_real_accuracies() {
    let task = synthetic_task(21);
    let layers = vec![("classifier".to_string(), task.weights.clone())];
    let options = RobustnessOptions {
        trials: 20,
        ..RobustnessOptions::default()
    };
    let report = photonic_robustness(&layers, |w| task.accuracy(&w[0]), &options).unwrap();
    println!("{report:#?}");

    assert_eq!(report.digital_accuracy, 1.0);
    assert_eq!(report.rebuilt_accuracy, 1.0);
    assert_eq!(report.noise.len(), 2);
    assert_eq!(report.noise[0].sigma, 0.01);
    assert_eq!(report.noise[1].sigma, 0.05);
    assert_eq!(report.quantisation.bits, 8);

    // Weight errors grow with the noise level, and the small noise is nearly harmless.
    let small = &report.noise[0];
    let large = &report.noise[1];
    assert!(small.mean_weight_error > 0.0);
    assert!(large.mean_weight_error > 2.0 * small.mean_weight_error);
    assert!(small.mean_accuracy >= 0.95, "{small:?}");
    assert!(large.mean_accuracy < small.mean_accuracy, "{report:?}");
    assert!(small.min_accuracy <= small.mean_accuracy, "{small:?}");
    assert!(small.mean_accuracy <= small.max_accuracy, "{small:?}");

    // 8-bit quantisation moves every phase by at most π/256.
    assert!(report.quantisation.weight_error > 0.0);
    assert!(
        report.quantisation.accuracy >= 0.9,
        "{:?}",
        report.quantisation
    );
}

#[test]
fn robustness_depends_only_on_seed() {
    let task = synthetic_task(22);
    let layers = vec![("classifier".to_string(), task.weights.clone())];
    let options = RobustnessOptions {
        trials: 3,
        seed: 5,
        ..RobustnessOptions::default()
    };
    let first = photonic_robustness(&layers, |w| task.accuracy(&w[0]), &options).unwrap();
    let second = photonic_robustness(&layers, |w| task.accuracy(&w[0]), &options).unwrap();
    assert_eq!(first, second);

    let other_seed = RobustnessOptions { seed: 6, ..options };
    let third = photonic_robustness(&layers, |w| task.accuracy(&w[0]), &other_seed).unwrap();
    assert_ne!(
        first.noise[1].mean_weight_error,
        third.noise[1].mean_weight_error
    );
}

#[test]
fn robustness_settings_validated() {
    let task = synthetic_task(23);
    let layers = vec![("classifier".to_string(), task.weights.clone())];
    let invalid = [
        RobustnessOptions {
            trials: 0,
            ..RobustnessOptions::default()
        },
        RobustnessOptions {
            quantisation_bits: 0,
            ..RobustnessOptions::default()
        },
        RobustnessOptions {
            noise_levels: vec![-0.1],
            ..RobustnessOptions::default()
        },
    ];
    for options in invalid {
        let result = photonic_robustness(&layers, |w| task.accuracy(&w[0]), &options);
        assert!(
            matches!(result, Err(HardwareError::InvalidRobustnessSetting { .. })),
            "{options:?}"
        );
    }
}

#[test]
fn robustness_perturbs_every_layer() {
    // Two layers whose product is the classifier: a random 8 x 8 mixing layer near the identity,
    // then the classifier times its inverse. The closure receives both rebuilt layers in order.
    let task = synthetic_task(24);
    let mut source = GaussianSource::new(25);
    let mixing = Array2::from_shape_fn((FEATURES, FEATURES), |(r, c)| {
        let diagonal = if r == c { 1.0 } else { 0.0 };
        diagonal + 0.1 * source.standard_normal()
    });
    let mixing_matrix = nalgebra::DMatrix::from_fn(FEATURES, FEATURES, |r, c| mixing[(r, c)]);
    let inverse = mixing_matrix
        .try_inverse()
        .expect("near-identity matrix is invertible");
    let inverse = Array2::from_shape_fn((FEATURES, FEATURES), |(r, c)| inverse[(r, c)]);
    let readout = task.weights.dot(&inverse);
    let layers = vec![
        ("mixing".to_string(), mixing),
        ("readout".to_string(), readout),
    ];

    let mut calls = 0;
    let options = RobustnessOptions {
        trials: 4,
        ..RobustnessOptions::default()
    };
    let report = photonic_robustness(
        &layers,
        |w| {
            calls += 1;
            assert_eq!(w.len(), 2);
            task.accuracy(&w[1].dot(&w[0]))
        },
        &options,
    )
    .unwrap();
    // Digital, rebuilt, 2 noise levels x 4 trials, quantised.
    assert_eq!(calls, 1 + 1 + 2 * 4 + 1);
    assert!(report.digital_accuracy >= 0.99, "{report:?}");
    assert!(report.rebuilt_accuracy >= 0.99, "{report:?}");
    assert!(report.noise[1].mean_weight_error > 0.0);
    assert!(report.noise[1].mean_accuracy < 1.0, "{report:?}");
}
