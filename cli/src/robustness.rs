//! `npdec build --emit photonic --robustness`: the model's test accuracy with its dense weight
//! matrices rebuilt from perturbed mesh phases, evaluated by the training network on the test
//! split of the task's data.

use crate::build::BuildArgs;
use crate::trained::{first_train_task, DenseMatrix, Parameters};
use ndarray::Array2;
use npdec_hardware::{photonic_robustness, RobustnessOptions, RobustnessReport};
use npdec_learn::data::Targets;
use npdec_runtime::train::adjoint::Network;
use npdec_runtime::train::training::{evaluate_dataset, prepare};
use npdec_runtime::train::TrainOptions;
use npdec_symbolic::Model;
use std::path::Path;

/// Measures the test accuracy of the digital model, of the weights rebuilt from the exact phases,
/// under phase noise of 0.01 and 0.05 rad and with 8-bit phases.
pub fn measure(
    model: &Model,
    args: &BuildArgs,
    parameters: &Parameters,
    matrices: &[DenseMatrix],
) -> Result<RobustnessReport, String> {
    let task = first_train_task(model).ok_or_else(|| {
        "`--robustness` measures test accuracy, and the model has no train task".to_string()
    })?;
    let base_dir = args.file.parent().unwrap_or(Path::new("."));
    let options = TrainOptions {
        seed: args.seed,
        ..TrainOptions::default()
    };
    let prepared = prepare(model, task, base_dir, &options).map_err(|e| e.message)?;
    let labels = match &prepared.test.targets {
        Targets::Classes { labels, .. } if !prepared.test.is_empty() => labels.clone(),
        Targets::Classes { .. } => {
            return Err("`--robustness` needs test samples: the data's split leaves none".into())
        }
        Targets::Values(_) => {
            return Err(
                "`--robustness` measures classification accuracy, and the task's loss is not cross-entropy"
                    .into(),
            )
        }
    };
    let network = Network {
        model,
        task: &prepared.lowered,
        compiled: None,
    };
    let weights: Vec<(String, Array2<f64>)> = matrices
        .iter()
        .map(|m| {
            let array = Array2::from_shape_vec((m.rows, m.columns), m.values.clone())
                .expect("a matrix parameter holds rows × columns values");
            (m.name.clone(), array)
        })
        .collect();
    let batch = task.batch.max(64);
    let mut failure: Option<String> = None;
    let accuracy = |rebuilt: &[Array2<f64>]| -> f64 {
        let mut values = parameters.values.clone();
        for (matrix, array) in matrices.iter().zip(rebuilt) {
            let size = matrix.rows * matrix.columns;
            let offset = matrix.step.unwrap_or(0) * size;
            let target = &mut values.values[matrix.param.0][offset..offset + size];
            for (t, v) in target.iter_mut().zip(array.iter()) {
                *t = *v;
            }
        }
        match evaluate_dataset(&network, &values, &prepared.test, batch) {
            Ok((_, scores)) => {
                npdec_learn::loss::accuracy(scores.view(), &labels).unwrap_or_else(|e| {
                    failure.get_or_insert(e.to_string());
                    f64::NAN
                })
            }
            Err(e) => {
                failure.get_or_insert(format!(
                    "the network is not finite after step {} with perturbed weights",
                    e.step
                ));
                f64::NAN
            }
        }
    };
    let options = RobustnessOptions {
        trials: args.trials,
        seed: args.seed,
        ..RobustnessOptions::default()
    };
    let report = photonic_robustness(&weights, accuracy, &options).map_err(|e| e.to_string())?;
    if let Some(message) = failure {
        return Err(format!("cannot measure the robustness: {message}"));
    }
    Ok(report)
}

/// Describes a robustness report in a few lines.
pub fn describe(report: &RobustnessReport) -> String {
    let mut text = format!(
        "test accuracy: digital {:.2} %, rebuilt from the exact phases {:.2} %",
        100.0 * report.digital_accuracy,
        100.0 * report.rebuilt_accuracy
    );
    for noise in &report.noise {
        text.push_str(&format!(
            "\n  phase noise σ = {} rad: mean {:.2} % (min {:.2} %, max {:.2} %), mean max-abs weight error {:.2e}",
            noise.sigma,
            100.0 * noise.mean_accuracy,
            100.0 * noise.min_accuracy,
            100.0 * noise.max_accuracy,
            noise.mean_weight_error
        ));
    }
    text.push_str(&format!(
        "\n  {}-bit phases: {:.2} %, max-abs weight error {:.2e}",
        report.quantisation.bits,
        100.0 * report.quantisation.accuracy,
        report.quantisation.weight_error
    ));
    text
}
