//! Losses with their gradients, L2 regularization and classification metrics.
//!
//! Predictions and scores are samples × outputs. Every loss is a mean over the samples of a
//! batch, and every gradient is the derivative of that mean, so a training loop can add the
//! gradients of batches of different sizes without rescaling them.

use std::fmt;

use ndarray::{Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

/// Inputs to a loss or metric that do not fit together.
#[derive(Clone, Debug, PartialEq)]
pub struct LossError {
    pub message: String,
}

impl fmt::Display for LossError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LossError {}

fn error(message: String) -> LossError {
    LossError { message }
}

/// A loss value and its gradient with respect to the prediction or the scores.
#[derive(Clone, Debug, PartialEq)]
pub struct LossAndGradient {
    pub loss: f64,
    pub gradient: Array2<f64>,
}

/// Mean squared error `Σ (p − t)² / (samples · outputs)`, the mean over every entry, and its
/// gradient `2 (p − t) / (samples · outputs)`.
pub fn mse(
    prediction: ArrayView2<f64>,
    target: ArrayView2<f64>,
) -> Result<LossAndGradient, LossError> {
    if prediction.shape() != target.shape() {
        return Err(error(format!(
            "MSE: prediction has shape {:?} but target has shape {:?}",
            prediction.shape(),
            target.shape()
        )));
    }
    if prediction.is_empty() {
        return Err(error("MSE of an empty batch".to_string()));
    }
    let count = prediction.len() as f64;
    let residual = &prediction - &target;
    let loss = residual.iter().map(|r| r * r).sum::<f64>() / count;
    let gradient = residual * (2.0 / count);
    Ok(LossAndGradient { loss, gradient })
}

/// Returns the log of the softmax of each row, computed as `s − max − log Σ exp(s − max)` so that
/// large scores neither overflow nor lose the small probabilities.
pub fn log_softmax(scores: ArrayView2<f64>) -> Array2<f64> {
    let mut out = scores.to_owned();
    for mut row in out.rows_mut() {
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        // A row of −∞ (or empty) has no finite maximum; shifting by 0 then yields NaN, as it should.
        let shift = if max.is_finite() { max } else { 0.0 };
        let log_sum = row.iter().map(|s| (s - shift).exp()).sum::<f64>().ln();
        row.mapv_inplace(|s| s - shift - log_sum);
    }
    out
}

/// Returns the softmax of each row.
pub fn softmax(scores: ArrayView2<f64>) -> Array2<f64> {
    log_softmax(scores).mapv(f64::exp)
}

/// Softmax cross-entropy, the mean over samples of `−log softmax(s)[label]`, and its gradient
/// `(softmax(s) − onehot(label)) / samples` with respect to the scores.
pub fn softmax_cross_entropy(
    scores: ArrayView2<f64>,
    labels: &[usize],
) -> Result<LossAndGradient, LossError> {
    check_labels("softmax cross-entropy", scores, labels)?;
    let samples = labels.len() as f64;
    let log_probabilities = log_softmax(scores);
    let mut loss = 0.0;
    for (row, &label) in log_probabilities.rows().into_iter().zip(labels) {
        loss -= row[label];
    }
    let mut gradient = log_probabilities.mapv(f64::exp);
    for (mut row, &label) in gradient.rows_mut().into_iter().zip(labels) {
        row[label] -= 1.0;
    }
    gradient /= samples;
    Ok(LossAndGradient {
        loss: loss / samples,
        gradient,
    })
}

fn check_labels(what: &str, scores: ArrayView2<f64>, labels: &[usize]) -> Result<(), LossError> {
    if scores.nrows() != labels.len() {
        return Err(error(format!(
            "{what}: {} rows of scores for {} labels",
            scores.nrows(),
            labels.len()
        )));
    }
    if labels.is_empty() {
        return Err(error(format!("{what} of an empty batch")));
    }
    let classes = scores.ncols();
    if let Some((sample, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= classes) {
        return Err(error(format!(
            "{what}: label {label} of sample {sample} is out of range for {classes} classes"
        )));
    }
    Ok(())
}

/// Computes the L2 penalty `(weight / 2) Σ θ²` over all given parameter values. Its gradient,
/// `weight · θ`, is added by [`add_l2_gradient`].
pub fn l2_penalty(weight: f64, parameters: &[f64]) -> f64 {
    0.5 * weight * parameters.iter().map(|p| p * p).sum::<f64>()
}

/// Adds the gradient of [`l2_penalty`] to `gradient`.
pub fn add_l2_gradient(
    weight: f64,
    parameters: &[f64],
    gradient: &mut [f64],
) -> Result<(), LossError> {
    if parameters.len() != gradient.len() {
        return Err(error(format!(
            "L2 gradient: {} but a gradient of length {}",
            crate::count(parameters.len(), "parameter"),
            gradient.len()
        )));
    }
    for (g, p) in gradient.iter_mut().zip(parameters) {
        *g += weight * p;
    }
    Ok(())
}

/// Returns the class with the highest score in each row. Ties go to the lowest class. A row
/// containing NaN predicts the class of its first NaN, so that a diverged model is not scored
/// by the order of its NaN comparisons.
pub fn predicted_classes(scores: ArrayView2<f64>) -> Vec<usize> {
    scores
        .rows()
        .into_iter()
        .map(|row| {
            let mut best = 0;
            for (class, &score) in row.iter().enumerate() {
                if score.is_nan() {
                    return class;
                }
                if score > row[best] {
                    best = class;
                }
            }
            best
        })
        .collect()
}

/// Returns the fraction of samples whose highest score is their label.
pub fn accuracy(scores: ArrayView2<f64>, labels: &[usize]) -> Result<f64, LossError> {
    check_labels("accuracy", scores, labels)?;
    let correct = predicted_classes(scores)
        .iter()
        .zip(labels)
        .filter(|(p, l)| p == l)
        .count();
    Ok(correct as f64 / labels.len() as f64)
}

/// Returns one-hot rows: samples × classes with a 1 in each sample's label column.
pub fn one_hot(labels: &[usize], classes: usize) -> Result<Array2<f64>, LossError> {
    let mut out = Array2::zeros((labels.len(), classes));
    for (sample, &label) in labels.iter().enumerate() {
        if label >= classes {
            return Err(error(format!(
                "one-hot: label {label} of sample {sample} is out of range for {classes} classes"
            )));
        }
        out[[sample, label]] = 1.0;
    }
    Ok(out)
}

/// Counts of (true class, predicted class) pairs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    pub classes: usize,
    /// Row-major `classes × classes`: `counts[true * classes + predicted]`.
    pub counts: Vec<u64>,
}

impl ConfusionMatrix {
    pub fn new(classes: usize) -> ConfusionMatrix {
        ConfusionMatrix {
            classes,
            counts: vec![0; classes * classes],
        }
    }

    /// Counts the predictions of a batch of scores (samples × classes).
    pub fn add_scores(
        &mut self,
        scores: ArrayView2<f64>,
        labels: &[usize],
    ) -> Result<(), LossError> {
        if scores.ncols() != self.classes {
            return Err(error(format!(
                "confusion matrix: scores have {} classes, the matrix has {}",
                scores.ncols(),
                self.classes
            )));
        }
        check_labels("confusion matrix", scores, labels)?;
        self.add_predictions(&predicted_classes(scores), labels)
    }

    /// Counts predicted classes against true labels.
    pub fn add_predictions(
        &mut self,
        predicted: &[usize],
        labels: &[usize],
    ) -> Result<(), LossError> {
        if predicted.len() != labels.len() {
            return Err(error(format!(
                "confusion matrix: {} predictions for {} labels",
                predicted.len(),
                labels.len()
            )));
        }
        for (&p, &l) in predicted.iter().zip(labels) {
            if p >= self.classes || l >= self.classes {
                return Err(error(format!(
                    "confusion matrix: class {} is out of range for {} classes",
                    p.max(l),
                    self.classes
                )));
            }
            self.counts[l * self.classes + p] += 1;
        }
        Ok(())
    }

    pub fn count(&self, true_class: usize, predicted_class: usize) -> u64 {
        self.counts[true_class * self.classes + predicted_class]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Returns the fraction on the diagonal, or 0 for an empty matrix.
    pub fn accuracy(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        let correct: u64 = (0..self.classes).map(|c| self.count(c, c)).sum();
        correct as f64 / total as f64
    }

    /// Returns the counts as a `classes × classes` array, true classes in rows.
    pub fn to_array(&self) -> Array2<u64> {
        Array2::from_shape_vec((self.classes, self.classes), self.counts.clone())
            .expect("square matrix")
    }

    /// Returns, for each true class, the fraction of its samples predicted correctly (recall);
    /// `None` for a class with no samples.
    pub fn recall_per_class(&self) -> Vec<Option<f64>> {
        let array = self.to_array();
        array
            .axis_iter(Axis(0))
            .enumerate()
            .map(|(class, row)| {
                let total: u64 = row.sum();
                (total > 0).then(|| row[class] as f64 / total as f64)
            })
            .collect()
    }
}
