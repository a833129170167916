//! Losses and metrics: values against hand computations, gradients against central differences.

use ndarray::{array, Array2};
use npdec_learn::data::ShuffleRng;
use npdec_learn::loss::{
    accuracy, add_l2_gradient, l2_penalty, log_softmax, mse, one_hot, predicted_classes,
    softmax_cross_entropy, ConfusionMatrix,
};

fn random_matrix(rows: usize, cols: usize, seed: u64, scale: f64) -> Array2<f64> {
    let mut rng = ShuffleRng::from_seed(seed);
    Array2::from_shape_fn((rows, cols), |_| scale * (2.0 * rng.uniform() - 1.0))
}

/// Returns the largest difference between `gradient` and central differences of `loss`, relative
/// to the largest gradient entry.
fn finite_difference_error(
    point: &Array2<f64>,
    gradient: &Array2<f64>,
    loss: impl Fn(&Array2<f64>) -> f64,
) -> f64 {
    let h = 1e-6;
    let mut worst: f64 = 0.0;
    for index in 0..point.len() {
        let (i, j) = (index / point.ncols(), index % point.ncols());
        let mut plus = point.clone();
        plus[[i, j]] += h;
        let mut minus = point.clone();
        minus[[i, j]] -= h;
        let numeric = (loss(&plus) - loss(&minus)) / (2.0 * h);
        worst = worst.max((numeric - gradient[[i, j]]).abs());
    }
    let scale = gradient.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    worst / scale
}

#[test]
fn mse_value_by_hand() {
    let prediction = array![[1.0, 2.0], [3.0, 4.0]];
    let target = array![[1.0, 0.0], [0.0, 4.0]];
    let result = mse(prediction.view(), target.view()).unwrap();
    assert_eq!(result.loss, (4.0 + 9.0) / 4.0);
    assert_eq!(result.gradient, array![[0.0, 1.0], [1.5, 0.0]]);
}

#[test]
fn mse_gradient_matches_finite_differences() {
    let prediction = random_matrix(5, 3, 1, 2.0);
    let target = random_matrix(5, 3, 2, 2.0);
    let result = mse(prediction.view(), target.view()).unwrap();
    let error = finite_difference_error(&prediction, &result.gradient, |p| {
        mse(p.view(), target.view()).unwrap().loss
    });
    assert!(error < 1e-8, "relative error {error}");
}

#[test]
fn mse_shape_mismatch_is_an_error() {
    let a = Array2::<f64>::zeros((2, 3));
    let b = Array2::<f64>::zeros((3, 2));
    let message = mse(a.view(), b.view()).unwrap_err().to_string();
    assert!(
        message.contains("[2, 3]") && message.contains("[3, 2]"),
        "{message}"
    );
}

#[test]
fn cross_entropy_value_by_hand() {
    // Uniform scores over 4 classes give log 4 whatever the label.
    let scores = Array2::<f64>::zeros((2, 4));
    let result = softmax_cross_entropy(scores.view(), &[0, 3]).unwrap();
    assert!((result.loss - 4f64.ln()).abs() < 1e-15);
    assert!((result.gradient[[0, 0]] - (0.25 - 1.0) / 2.0).abs() < 1e-15);
    assert!((result.gradient[[0, 1]] - 0.25 / 2.0).abs() < 1e-15);
}

#[test]
fn cross_entropy_gradient_matches_finite_differences() {
    let scores = random_matrix(6, 4, 3, 3.0);
    let labels = [0, 3, 1, 1, 2, 0];
    let result = softmax_cross_entropy(scores.view(), &labels).unwrap();
    let error = finite_difference_error(&scores, &result.gradient, |s| {
        softmax_cross_entropy(s.view(), &labels).unwrap().loss
    });
    assert!(error < 1e-8, "relative error {error}");
}

#[test]
fn cross_entropy_is_stable_for_large_scores() {
    let scores = array![[1000.0, 0.0, -1000.0], [-800.0, 800.0, 0.0]];
    let result = softmax_cross_entropy(scores.view(), &[0, 0]).unwrap();
    // Sample 0 is certain and right (loss 0); sample 1 is certain and wrong by 1600.
    assert!((result.loss - 800.0).abs() < 1e-9, "loss {}", result.loss);
    assert!(result.gradient.iter().all(|g| g.is_finite()));
    let log_probabilities = log_softmax(scores.view());
    assert!(log_probabilities.iter().all(|v| v.is_finite()));
}

#[test]
fn cross_entropy_bad_labels_are_errors() {
    let scores = Array2::<f64>::zeros((2, 3));
    let message = softmax_cross_entropy(scores.view(), &[0, 3])
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("label 3 of sample 1 is out of range for 3 classes"),
        "{message}"
    );
    assert!(softmax_cross_entropy(scores.view(), &[0]).is_err());
}

#[test]
fn l2_penalty_and_gradient() {
    let parameters = [1.0, -2.0, 3.0];
    assert_eq!(l2_penalty(0.5, &parameters), 0.25 * 14.0);
    let mut gradient = [1.0, 1.0, 1.0];
    add_l2_gradient(0.5, &parameters, &mut gradient).unwrap();
    assert_eq!(gradient, [1.5, 0.0, 2.5]);
    assert!(add_l2_gradient(0.5, &parameters, &mut [0.0; 2]).is_err());
    let message = add_l2_gradient(0.5, &[1.0], &mut [0.0; 2])
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("L2 gradient: 1 parameter but a gradient of length 2"),
        "{message}"
    );
}

#[test]
fn accuracy_and_predictions() {
    let scores = array![[0.1, 0.9], [2.0, 1.0], [0.5, 0.5], [f64::NAN, 1.0]];
    assert_eq!(predicted_classes(scores.view()), vec![1, 0, 0, 0]);
    let value = accuracy(scores.view(), &[1, 1, 0, 1]).unwrap();
    assert_eq!(value, 0.5);
}

#[test]
fn confusion_matrix_counts() {
    let mut matrix = ConfusionMatrix::new(3);
    matrix
        .add_predictions(&[0, 1, 1, 2, 2, 2], &[0, 1, 2, 2, 2, 0])
        .unwrap();
    assert_eq!(matrix.count(0, 0), 1);
    assert_eq!(matrix.count(2, 1), 1);
    assert_eq!(matrix.count(2, 2), 2);
    assert_eq!(matrix.count(0, 2), 1);
    assert_eq!(matrix.total(), 6);
    assert!((matrix.accuracy() - 4.0 / 6.0).abs() < 1e-15);
    assert_eq!(
        matrix.recall_per_class(),
        vec![Some(0.5), Some(1.0), Some(2.0 / 3.0)]
    );

    let scores = array![[0.0, 1.0, 0.0]];
    matrix.add_scores(scores.view(), &[1]).unwrap();
    assert_eq!(matrix.count(1, 1), 2);
    assert!(matrix.add_predictions(&[3], &[0]).is_err());
    assert!(matrix
        .add_scores(Array2::zeros((1, 2)).view(), &[0])
        .is_err());
}

#[test]
fn one_hot_rows() {
    assert_eq!(
        one_hot(&[2, 0], 3).unwrap(),
        array![[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    );
    assert!(one_hot(&[3], 3).is_err());
}
