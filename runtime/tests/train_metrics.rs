//! Expectations on training metrics (`expect test_accuracy >= …`), the cosine learning-rate
//! schedule and the `shift` augmentation of image data, on a small classifier trained in seconds.

use npdec_learn::optim::{OptimizerState, StepOptimizer};
use npdec_runtime::train::training::scheduled_rate;
use npdec_runtime::train::TrainOptions;
use npdec_runtime::{run_model, RunOptions};
use npdec_symbolic::{Model, Schedule};
use std::path::{Path, PathBuf};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("npdec-metrics-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir
}

/// Writes 48 samples of 4 × 4 images: class c has a bright row c, plus noise.
fn write_images_csv(path: &Path) {
    let mut state = 99u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut text = String::new();
    for i in 0..48 {
        let class = i % 4;
        let row: Vec<String> = (0..16)
            .map(|p| {
                let bright = if p / 4 == class { 1.0 } else { 0.0 };
                format!("{:.6}", bright + 0.2 * next())
            })
            .collect();
        text.push_str(&row.join(","));
        text.push_str(&format!(",{class}\n"));
    }
    std::fs::write(path, text).expect("write CSV");
}

/// Writes the images and `source` to `dir` and checks the model.
fn checked_model(dir: &Path, source: &str) -> Model {
    write_images_csv(&dir.join("data.csv"));
    let path = dir.join("model.npde");
    std::fs::write(&path, source).expect("write model");
    let (_, checked) = npdec_sema::check_path(&path).expect("read model");
    checked
        .model
        .unwrap_or_else(|| panic!("the test model does not check: {:#?}", checked.diagnostics))
}

fn model(dir: &Path, data_clauses: &str, train_clauses: &str, expects: &str) -> Model {
    let source = format!(
        "model rows
grid (row, col) image (4, 4)
field u(row, col)
data d = csv(\"data.csv\", label = last) split 36 {data_clauses}
param K[1, 1, 3, 3] ~ he
param Wout[4, 16] ~ glorot
param bout[4] = 0
equation net: dt(u) = tanh(conv(K, u))
boundary u: neumann(0) on row, col
initial u = d.input
readout y = Wout @ u + bout
train net on d using euler(steps = 2) until 1 loss cross_entropy(y, label) batch 6 metrics accuracy {train_clauses}
{expects}
"
    );
    checked_model(dir, &source)
}

fn options(dir: &Path, out: &str, train: TrainOptions) -> RunOptions {
    RunOptions {
        out_dir: Some(dir.join(out)),
        model_dir: Some(dir.to_path_buf()),
        train: TrainOptions {
            threads: Some(2),
            ..train
        },
        ..RunOptions::default()
    }
}

#[test]
fn metric_expects_compare_the_reported_figures() {
    let dir = temp_dir("expects");
    let model = model(
        &dir,
        "",
        "optimizer adam(lr = 0.05) epochs 8",
        "expect test_accuracy >= 0.9
expect 0.5 > train_loss
expect test_loss < 0
expect train_accuracy > 0.9",
    );
    let report = run_model(&model, &options(&dir, "out", TrainOptions::default())).expect("trains");
    let trained = &report.training[0];
    let values: Vec<f64> = report.expects.iter().map(|e| e.value).collect();
    let last = trained.history.last().expect("one record per epoch");
    assert_eq!(
        values,
        vec![
            trained.test_accuracy.unwrap(),
            trained.train_loss,
            trained.test_loss.unwrap(),
            last.train_accuracy.unwrap(),
        ]
    );
    // The rows are easy to tell apart: the bounds hold except the impossible negative loss.
    let passed: Vec<bool> = report.expects.iter().map(|e| e.passed).collect();
    assert_eq!(
        passed,
        vec![true, true, false, true],
        "{:?}",
        report.expects
    );
    assert!(report.expects.iter().all(|e| e.skipped.is_none()));
    assert!(!report.all_passed());

    let summary = std::fs::read_to_string(dir.join("out/summary.json")).expect("summary");
    let summary: serde_json::Value = serde_json::from_str(&summary).expect("JSON");
    assert_eq!(summary["passed"], false);
    assert_eq!(summary["expects"][0]["text"], "test_accuracy >= 0.9");
    assert_eq!(summary["expects"][2]["passed"], false);
    assert_eq!(
        summary["expects"][0]["value"].as_f64(),
        summary["metrics"]["test_accuracy"].as_f64()
    );
    // Every metric an expectation can name is also under `metrics`.
    for (row, metric) in ["test_accuracy", "train_loss", "test_loss", "train_accuracy"]
        .iter()
        .enumerate()
    {
        assert_eq!(
            summary["expects"][row]["value"].as_f64(),
            summary["metrics"][metric].as_f64(),
            "{metric}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shortened_runs_report_metric_expects_as_skipped() {
    let dir = temp_dir("shortened");
    let model = model(
        &dir,
        "",
        "optimizer adam(lr = 0.05) epochs 8",
        "expect test_loss < 0",
    );
    for (epochs, samples) in [(Some(1), None), (None, Some(12))] {
        let train = TrainOptions {
            max_epochs: epochs,
            max_train_samples: samples,
            ..TrainOptions::default()
        };
        let report = run_model(&model, &options(&dir, "short", train)).expect("trains");
        assert!(report.training[0].shortened);
        let expect = &report.expects[0];
        assert!(!expect.passed);
        let reason = expect.skipped.as_deref().expect("skipped");
        assert!(reason.contains("shortened"), "{reason}");
        assert!(
            report.all_passed(),
            "a skipped expectation does not fail the run"
        );
        let summary = std::fs::read_to_string(dir.join("short/summary.json")).expect("summary");
        assert!(summary.contains("\"skipped\""), "{summary}");
    }
    // Limits at or above the task's own figures do not shorten it.
    let train = TrainOptions {
        max_epochs: Some(8),
        max_train_samples: Some(36),
        ..TrainOptions::default()
    };
    let report = run_model(&model, &options(&dir, "full", train)).expect("trains");
    assert!(!report.training[0].shortened);
    assert!(report.expects[0].skipped.is_none());
    assert!(!report.all_passed());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cosine_schedule_anneals_from_the_named_rate() {
    assert_eq!(scheduled_rate(Schedule::Constant, 0.1, 7, 10), 0.1);
    assert_eq!(scheduled_rate(Schedule::Cosine, 0.1, 0, 10), 0.1);
    assert!((scheduled_rate(Schedule::Cosine, 0.1, 5, 10) - 0.05).abs() < 1e-15);
    let last = scheduled_rate(Schedule::Cosine, 0.1, 9, 10);
    let expected = 0.05 * (1.0 + (std::f64::consts::PI * 0.9).cos());
    assert!((last - expected).abs() < 1e-15, "{last}");

    // The optimizer saved after the last epoch holds the rate of that epoch.
    let dir = temp_dir("cosine");
    let model = model(
        &dir,
        "",
        "optimizer adam(lr = 0.04) epochs 4 schedule cosine",
        "",
    );
    run_model(&model, &options(&dir, "out", TrainOptions::default())).expect("trains");
    let checkpoint = npdec_learn::checkpoint::read_checkpoint(&dir.join("out/checkpoint.npdc"))
        .expect("checkpoint");
    let OptimizerState::Adam(adam) = checkpoint.optimizer else {
        panic!("Adam state saved: {:?}", checkpoint.optimizer)
    };
    let rate = StepOptimizer::Adam(adam).learning_rate();
    let expected = 0.02 * (1.0 + (std::f64::consts::PI * 0.75).cos());
    assert!((rate - expected).abs() < 1e-15, "{rate} vs {expected}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shifted_training_resumes_bit_identically() {
    let dir = temp_dir("shift");
    let model = model(
        &dir,
        "shift 1",
        "optimizer adam(lr = 0.02) epochs 3 schedule cosine",
        "",
    );
    let run = |out: &str, epochs: usize, resume: bool| {
        let train = TrainOptions {
            max_epochs: Some(epochs),
            resume,
            ..TrainOptions::default()
        };
        run_model(&model, &options(&dir, out, train)).expect("trains")
    };
    let straight = run("straight", 3, false);
    run("resumed", 2, false);
    let resumed = run("resumed", 3, true);
    assert_eq!(
        straight.training[0].parameters,
        resumed.training[0].parameters
    );
    // Shifting changes what the network sees, so the trained parameters differ from a run
    // without it.
    let plain = model_without_shift(&dir);
    let unshifted = run_model(
        &plain,
        &options(
            &dir,
            "plain",
            TrainOptions {
                max_epochs: Some(3),
                ..TrainOptions::default()
            },
        ),
    )
    .expect("trains");
    assert_ne!(
        straight.training[0].parameters,
        unshifted.training[0].parameters
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn model_without_shift(dir: &Path) -> Model {
    model(
        dir,
        "shift 0",
        "optimizer adam(lr = 0.02) epochs 3 schedule cosine",
        "",
    )
}

#[test]
fn shift_of_samples_that_are_not_images_is_an_error() {
    let dir = temp_dir("not-images");
    write_images_csv(&dir.join("data.csv"));
    let path = dir.join("model.npde");
    std::fs::write(
        &path,
        "model line
grid k index 16
field u(k)
data d = csv(\"data.csv\", label = last) split 36 shift 1
param Wout[4, 16] ~ glorot
equation net: dt(u) = tanh(u)
boundary u: neumann(0) on k
initial u = d.input
readout y = Wout @ u
train net on d using euler(steps = 1) loss cross_entropy(y, label)
",
    )
    .expect("write model");
    let (_, checked) = npdec_sema::check_path(&path).expect("read model");
    let model = checked.model.expect("checks");
    let errors = run_model(&model, &options(&dir, "out", TrainOptions::default())).unwrap_err();
    assert!(
        errors[0]
            .message
            .contains("not images of a two-dimensional grid"),
        "{}",
        errors[0].message
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Checks the network of [`model`] with `outputs` readout values, trained for 2 epochs with the
/// given loss, optimizer and `metrics` clause.
fn model_with_metrics(
    dir: &Path,
    loss: &str,
    outputs: usize,
    optimizer: &str,
    metrics_clause: &str,
) -> Model {
    let source = format!(
        "model rows
grid (row, col) image (4, 4)
field u(row, col)
data d = csv(\"data.csv\", label = last) split 36
param K[1, 1, 3, 3] ~ he
param Wout[{outputs}, 16] ~ glorot
param bout[{outputs}] = 0
equation net: dt(u) = tanh(conv(K, u))
boundary u: neumann(0) on row, col
initial u = d.input
readout y = Wout @ u + bout
train net on d using euler(steps = 2) until 1 loss {loss} batch 6 optimizer {optimizer} epochs 2 {metrics_clause}
"
    );
    checked_model(dir, &source)
}

#[test]
fn metrics_clause_selects_reported_figures() {
    let dir = temp_dir("clause");
    // Without a clause, a classifier reports its accuracy as it always did.
    let cases = [
        ("metrics loss", false, false),
        ("metrics mse", false, true),
        ("metrics accuracy, mse", true, true),
        ("", true, false),
    ];
    for (index, (clause, accuracy, mse)) in cases.into_iter().enumerate() {
        let model = model_with_metrics(
            &dir,
            "cross_entropy(y, label)",
            4,
            "adam(lr = 0.05)",
            clause,
        );
        let out = format!("out{index}");
        let report =
            run_model(&model, &options(&dir, &out, TrainOptions::default())).expect("trains");
        let trained = &report.training[0];
        let last = trained.history.last().expect("one record per epoch");
        assert_eq!(last.train_accuracy.is_some(), accuracy, "{clause}");
        assert_eq!(last.test_accuracy.is_some(), accuracy, "{clause}");
        assert_eq!(trained.test_accuracy.is_some(), accuracy, "{clause}");
        assert_eq!(last.train_mse.is_some(), mse, "{clause}");
        assert_eq!(last.test_mse.is_some(), mse, "{clause}");
        // The softmax probabilities of 4 classes lie at most 2/4 from the one-hot labels.
        for value in [last.train_mse, last.test_mse].into_iter().flatten() {
            assert!(value > 0.0, "{clause}: mse {value}");
            assert!(value <= 0.5, "{clause}: mse {value}");
        }
        assert!(
            last.test_loss.is_some(),
            "{clause}: the loss is always reported"
        );

        let summary =
            std::fs::read_to_string(dir.join(&out).join("summary.json")).expect("summary");
        let summary: serde_json::Value = serde_json::from_str(&summary).expect("JSON");
        let metrics = &summary["metrics"];
        let figures = [
            "test_accuracy",
            "train_accuracy",
            "test_mse",
            "train_mse",
            "test_loss",
            "train_loss",
        ];
        for key in figures {
            assert!(metrics.get(key).is_some(), "{clause}: no key `{key}`");
        }
        assert_eq!(
            metrics["test_accuracy"].as_f64(),
            last.test_accuracy,
            "{clause}"
        );
        assert_eq!(metrics["test_mse"].as_f64(), last.test_mse, "{clause}");
        assert_eq!(metrics["train_mse"].as_f64(), last.train_mse, "{clause}");

        // Each entry of `metrics.training` has the same six figures as its last history record.
        let entry = &metrics["training"][0];
        let record = entry["history"]
            .as_array()
            .and_then(|history| history.last())
            .expect("a history in training[0]");
        for key in figures {
            assert!(
                entry.get(key).is_some(),
                "{clause}: no key `{key}` in training[0]"
            );
            assert_eq!(entry[key], record[key], "{clause}: `{key}` of training[0]");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mse_metric_of_mse_loss_is_loss() {
    let dir = temp_dir("mse-loss");
    for optimizer in ["adam(lr = 0.05)", "lbfgs(max_iter = 5)"] {
        // The labels 0 … 3 are the regression targets of the one readout value.
        let model = model_with_metrics(&dir, "mse(y, label)", 1, optimizer, "metrics mse");
        let report =
            run_model(&model, &options(&dir, "out", TrainOptions::default())).expect("trains");
        let last = report.training[0]
            .history
            .last()
            .expect("one record per epoch");
        let (test_mse, test_loss) = (last.test_mse.expect("test mse"), last.test_loss.unwrap());
        let (train_mse, train_loss) = (last.train_mse.expect("train mse"), last.train_loss);
        assert!(
            (test_mse - test_loss).abs() <= 1e-12 * test_loss,
            "{optimizer}: {test_mse} vs {test_loss}"
        );
        assert!(
            (train_mse - train_loss).abs() <= 1e-12 * train_loss,
            "{optimizer}: {train_mse} vs {train_loss}"
        );
        assert_eq!(last.test_accuracy, None);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
