//! Shortened runs of the training examples: each trains briefly on part of its training set and
//! must beat chance on the test set; the parameter identification runs in full and must pass its
//! expectation. The full runs take minutes each and are not part of the test suite.
//!
//! The classification examples state their full-run accuracy as `expect test_accuracy >= …`. A
//! shortened run cannot reach it, so `npdec` reports those expectations as skipped, with the
//! reason; the tests check that they are skipped, not failed, and that nothing else fails.

use npdec_runtime::train::TrainOptions;
use npdec_runtime::{run_model, RunOptions, RunReport};
use std::path::{Path, PathBuf};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn run_short(name: &str, epochs: usize, samples: usize) -> RunReport {
    let path = examples_dir().join(format!("{name}.npde"));
    let (_, checked) = npdec_sema::check_path(&path).expect("reads the example");
    let model = checked
        .model
        .unwrap_or_else(|| panic!("{name} does not check: {:#?}", checked.diagnostics));
    let out = std::env::temp_dir().join(format!("npdec-example-{name}-{}", std::process::id()));
    let options = RunOptions {
        out_dir: Some(out.clone()),
        model_dir: Some(examples_dir()),
        train: TrainOptions {
            max_epochs: Some(epochs),
            max_train_samples: Some(samples),
            ..TrainOptions::default()
        },
        ..RunOptions::default()
    };
    let report = run_model(&model, &options).unwrap_or_else(|e| panic!("{name}: {e:#?}"));
    let summary = std::fs::read_to_string(out.join("summary.json")).expect("summary written");
    let summary: serde_json::Value = serde_json::from_str(&summary).expect("summary is JSON");
    assert!(
        summary["metrics"]["train_loss"].is_number(),
        "{name}: {summary}"
    );
    assert!(
        summary["metrics"]["epoch_seconds"].is_number(),
        "{name}: {summary}"
    );
    let _ = std::fs::remove_dir_all(&out);
    report
}

/// Checks that the example states its full-run accuracy, that the shortened run skipped that
/// expectation (reporting the value it reached), and that the run counts as passed.
fn skips_accuracy_expect(report: &RunReport, bound: f64) {
    let expect = report
        .expects
        .iter()
        .find(|e| e.text.starts_with("test_accuracy >="))
        .unwrap_or_else(|| panic!("no accuracy expectation: {:?}", report.expects));
    assert_eq!(expect.bound, bound);
    assert_eq!(Some(expect.value), report.training[0].test_accuracy);
    let reason = expect
        .skipped
        .as_deref()
        .expect("skipped in a shortened run");
    assert!(reason.contains("shortened"), "{reason}");
    assert!(report.all_passed(), "{:?}", report.expects);
}

fn test_accuracy(report: &RunReport) -> f64 {
    report.training[0]
        .test_accuracy
        .expect("classification reports accuracy")
}

#[test]
fn digits_beats_chance() {
    let report = run_short("digits", 3, 1440);
    skips_accuracy_expect(&report, 0.95);
    let accuracy = test_accuracy(&report);
    assert!(accuracy > 0.5, "test accuracy {accuracy}");
}

#[test]
fn digits_pool_beats_chance() {
    let report = run_short("digits_pool", 3, 1440);
    skips_accuracy_expect(&report, 0.9);
    let accuracy = test_accuracy(&report);
    assert!(accuracy > 0.5, "test accuracy {accuracy}");
}

#[test]
fn mnist_mlp_beats_chance() {
    let report = run_short("mnist_mlp", 1, 1000);
    skips_accuracy_expect(&report, 0.96);
    let accuracy = test_accuracy(&report);
    assert!(accuracy > 0.5, "test accuracy {accuracy}");
}

#[test]
fn mnist_cnn_beats_chance() {
    let report = run_short("mnist_cnn", 1, 500);
    skips_accuracy_expect(&report, 0.98);
    let accuracy = test_accuracy(&report);
    assert!(accuracy > 0.3, "test accuracy {accuracy}");
}

#[test]
fn mnist_rnn_beats_chance() {
    let report = run_short("mnist_rnn", 1, 1000);
    skips_accuracy_expect(&report, 0.95);
    let accuracy = test_accuracy(&report);
    assert!(accuracy > 0.2, "test accuracy {accuracy}");
}

#[test]
fn identify_diffusion_recovers_coefficient() {
    let report = run_short("identify_diffusion", 1, 20);
    assert!(report.all_passed(), "{:?}", report.expects);
}
