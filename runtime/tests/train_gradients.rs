//! Taylor and dot tests of the discrete adjoint for every operation training differentiates,
//! under both explicit schemes, plus checks of the batch gradient against central differences,
//! of checkpointing, of bit-identical resumption and of the divergence message.

use ndarray::Array2;
use npdec_learn::checkpoint::{read_checkpoint, write_checkpoint};
use npdec_runtime::train::adjoint::{Chunk, HeadSeed, Network};
use npdec_runtime::train::gemm::ProductPrecision;
use npdec_runtime::train::gradcheck::{check_gradients, DOT_TOLERANCE};
use npdec_runtime::train::params::{flatten_learnable, learnable, unflatten_learnable};
use npdec_runtime::train::training::{batch_gradient, label_matrix, prepare, CHECKPOINT_FILE};
use npdec_runtime::train::TrainOptions;
use npdec_runtime::{run_model, RunOptions};
use npdec_symbolic::{Model, Task};
use std::path::{Path, PathBuf};

/// Creates an empty directory under the system's temporary directory.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("npdec-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir
}

/// Writes a CSV of `samples` rows with `features` values in [0, 1) and a class label in
/// `0..classes` as the last column.
fn write_classes_csv(path: &Path, samples: usize, features: usize, classes: usize) {
    let mut state = 12345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut text = String::new();
    for i in 0..samples {
        let row: Vec<String> = (0..features).map(|_| format!("{:.6}", next())).collect();
        text.push_str(&row.join(","));
        text.push_str(&format!(",{}\n", i % classes));
    }
    std::fs::write(path, text).expect("write CSV");
}

/// Checks a model source whose data is `data.csv` in `dir` and returns the model.
fn checked_model(dir: &Path, source: &str) -> Model {
    let path = dir.join("model.npde");
    std::fs::write(&path, source).expect("write model");
    let (_, checked) = npdec_sema::check_path(&path).expect("read model");
    match checked.model {
        Some(model) => model,
        None => panic!("the test model does not check: {:#?}", checked.diagnostics),
    }
}

/// Returns a classifier over a 1-D index grid of 8 points. `body` is the equation's right-hand
/// side and `extra` adds declarations.
fn line_model(scheme: &str, body: &str, extra: &str) -> String {
    format!(
        "model line
grid k index 8
field u(k)
data d = csv(\"data.csv\", label = last) split 6
param Wout[3, 8] ~ glorot
param bout[3] ~ normal(0, 0.1)
{extra}
equation net: dt(u) = {body}
initial u = d.input
readout y = Wout @ u + bout
train net on d using {scheme}(steps = 3) until 0.6 loss cross_entropy(y, label) optimizer adam() epochs 1 batch 3
"
    )
}

fn assert_gradients(name: &str, source: &str, features: usize) {
    let dir = temp_dir(name);
    write_classes_csv(&dir.join("data.csv"), 8, features, 3);
    let model = checked_model(&dir, source);
    let report = check_gradients(&model, &dir, 7).expect("gradient check runs");
    for check in &report.checks {
        assert!(
            check.taylor_passed,
            "{name}: Taylor rates {:?} (remainders {:?})",
            check.rates, check.remainders
        );
        assert!(
            check.dot_relative_error <= DOT_TOLERANCE,
            "{name}: dot test {} vs {} (relative {:e})",
            check.dot_tangent,
            check.dot_adjoint,
            check.dot_relative_error
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

const SCHEMES: [&str; 2] = ["euler", "rk4"];

#[test]
fn pointwise_and_dense_gradients() {
    for scheme in SCHEMES {
        let source = line_model(
            scheme,
            "-u + tanh(W @ u + b) * sigmoid(u) + u^2 / (2 + u^2)",
            "param W[8, 8] ~ normal(0, 0.4)\nparam b[8] ~ normal(0, 0.1)",
        );
        assert_gradients(&format!("dense-{scheme}"), &source, 8);
    }
}

#[test]
fn neumann_stencil_gradients() {
    for scheme in SCHEMES {
        let source = line_model(
            scheme,
            "D * laplace(u) + tanh(W @ u + b)",
            "boundary u: neumann(0.5) on k\nparam W[8, 8] ~ normal(0, 0.4)\nparam b[8] ~ normal(0, 0.1)\nparam D = 0.3",
        );
        assert_gradients(&format!("neumann-{scheme}"), &source, 8);
    }
}

#[test]
fn dirichlet_and_robin_stencil_gradients() {
    for scheme in SCHEMES {
        let source = line_model(
            scheme,
            "D * diff(u, k, 2) + 0.1 * diff(u, k) + tanh(W @ u)",
            "boundary u: dirichlet(0.2) on k.min\nboundary u: robin(1, 2, 0.1) on k.max\nparam W[8, 8] ~ normal(0, 0.4)\nparam D = 0.3",
        );
        assert_gradients(&format!("dirichlet-{scheme}"), &source, 8);
    }
}

#[test]
fn per_step_and_grid_parameter_gradients() {
    for scheme in SCHEMES {
        let source = line_model(
            scheme,
            "tanh(V @ u + b) - P * u + max(u, 0.1 * u)",
            "param V(t)[8, 8] ~ normal(0, 0.4)\nparam P(k) = 0.1 * k\nparam b[8] ~ normal(0, 0.1)",
        );
        assert_gradients(&format!("per-step-{scheme}"), &source, 8);
    }
}

#[test]
fn convolution_and_channel_gradients() {
    for scheme in SCHEMES {
        let source = format!(
            "model image
grid (r, c) image (5, 4)
field u(r, c)[2]
data d = csv(\"data.csv\", label = last) split 6
param K[2, 2, 3, 3] ~ normal(0, 0.3)
param L[2, 2, 3, 1] ~ normal(0, 0.3)
param D = 0.2
param Wout[3, 40] ~ glorot
equation net: dt(u) = tanh(conv(K, u)) + conv(L, u) + D * laplace(u) - softmax(u)
boundary u: periodic on r
boundary u: neumann(0) on c
initial u = d.input
readout y = Wout @ u
train net on d using {scheme}(steps = 2) until 0.4 loss cross_entropy(y, label) optimizer adam() epochs 1 batch 3
"
        );
        assert_gradients(&format!("conv-{scheme}"), &source, 20);
    }
}

#[test]
fn pooling_and_upsampling_gradients() {
    for scheme in SCHEMES {
        let source = format!(
            "model pooled
grid (r, c) image (4, 6)
field u(r, c)[2]
data d = csv(\"data.csv\", label = last) split 6
param K[2, 2, 3, 3] ~ normal(0, 0.3)
param a = 0.4
param Wout[3, 12] ~ glorot
param bout[3] ~ normal(0, 0.1)
equation net: dt(u) = tanh(conv(K, u)) + a * upsample(pool(u * u, 2), 2) - u
boundary u: neumann(0) on r, c
initial u = d.input
readout y = Wout @ pool(tanh(u), 2) + bout + mean(pool(u, 2))
train net on d using {scheme}(steps = 2) until 0.4 loss cross_entropy(y, label) optimizer adam() epochs 1 batch 3
"
        );
        assert_gradients(&format!("pool-{scheme}"), &source, 24);
    }
}

#[test]
fn sequence_and_reduction_gradients() {
    for scheme in SCHEMES {
        let source = format!(
            "model seq
grid k index 6
field h(k)
data d = npy(\"x.npy\", labels = \"y.npy\") split 6
param W[6, 6] ~ normal(0, 0.4)
param U[6, 3] ~ normal(0, 0.5)
param a = 0.5
equation cell: dt(h) = -h + tanh(W @ h + U @ d.sequence)
initial h = 0.1
readout y = a * sum(h^2) + mean(h) + norm(h) + integral(h)
train cell on d using {scheme}(steps = 4) until 2 loss mse(y, label) optimizer adam() epochs 1 batch 3
"
        );
        let dir = temp_dir(&format!("sequence-{scheme}"));
        let samples = Array2::from_shape_fn((8, 12), |(i, j)| ((i * 7 + j * 3) % 11) as f64 / 11.0);
        let values = ndarray::Array3::from_shape_vec((8, 4, 3), samples.iter().copied().collect())
            .expect("reshape");
        ndarray_npy::write_npy(dir.join("x.npy"), &values).expect("write samples");
        let labels = Array2::from_shape_fn((8, 1), |(i, _)| i as f64 / 8.0);
        ndarray_npy::write_npy(dir.join("y.npy"), &labels).expect("write labels");
        let model = checked_model(&dir, &source);
        let report = check_gradients(&model, &dir, 3).expect("gradient check runs");
        let check = &report.checks[0];
        assert!(check.taylor_passed, "{scheme}: rates {:?}", check.rates);
        assert!(
            check.dot_passed,
            "{scheme}: dot {:e}",
            check.dot_relative_error
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Writes the data and checks the small classifier the training tests share.
fn small_classifier(dir: &Path, optimizer: &str, epochs: usize) -> Model {
    write_classes_csv(&dir.join("data.csv"), 40, 8, 3);
    checked_model(
        dir,
        &format!(
            "model small
grid k index 8
field u(k)
data d = csv(\"data.csv\", label = last) split 30
param W[8, 8] ~ glorot
param D = 0.2
param Wout[3, 8] ~ glorot
param bout[3] = 0
equation net: dt(u) = D * laplace(u) + tanh(W @ u)
boundary u: neumann(0) on k
initial u = d.input
readout y = Wout @ u + bout
train net on d using rk4(steps = 5) until 1 loss cross_entropy(y, label) optimizer {optimizer} epochs {epochs} batch 8
"
        ),
    )
}

#[test]
fn batch_gradient_matches_central_differences() {
    let dir = temp_dir("central");
    let model = small_classifier(&dir, "adam()", 1);
    let Task::Train(task) = &model.tasks[0] else {
        panic!("the model trains")
    };
    let prepared = prepare(&model, task, &dir, &TrainOptions::default()).expect("prepares");
    let network = Network {
        model: &model,
        task: &prepared.lowered,
        compiled: None,
    };
    let inputs = prepared.train.inputs.clone();
    let targets = prepared.train.targets.clone();
    let result =
        batch_gradient(&network, &prepared.params, &inputs, &targets, 2, 3).expect("finite");
    let learnable = learnable(&model);
    let theta = flatten_learnable(&prepared.params, &learnable);
    let gradient = flatten_learnable(&result.gradient, &learnable);
    let mean_loss = |x: &[f64]| {
        let mut params = prepared.params.clone();
        unflatten_learnable(x, &mut params, &learnable);
        let r = batch_gradient(&network, &params, &inputs, &targets, 2, 3).expect("finite");
        r.loss_sum / inputs.nrows() as f64
    };
    let h = 1e-5;
    for index in [0, 9, 37, 64, theta.len() - 1] {
        let mut plus = theta.clone();
        plus[index] += h;
        let mut minus = theta.clone();
        minus[index] -= h;
        let difference = (mean_loss(&plus) - mean_loss(&minus)) / (2.0 * h);
        assert!(
            (difference - gradient[index]).abs() <= 1e-7 * (1.0 + difference.abs()),
            "entry {index}: adjoint {} vs central difference {difference}",
            gradient[index]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn checkpointing_keeps_gradient_bit_identical() {
    let dir = temp_dir("snapshots");
    let model = small_classifier(&dir, "adam()", 1);
    let Task::Train(task) = &model.tasks[0] else {
        panic!("the model trains")
    };
    let prepared = prepare(&model, task, &dir, &TrainOptions::default()).expect("prepares");
    let network = Network {
        model: &model,
        task: &prepared.lowered,
        compiled: None,
    };
    let labels = label_matrix(&prepared.train.targets);
    let classes = match &prepared.train.targets {
        npdec_learn::data::Targets::Classes { labels, .. } => labels.clone(),
        npdec_learn::data::Targets::Values(_) => panic!("classes expected"),
    };
    let chunk = Chunk {
        samples: prepared.train.inputs.view(),
        labels: labels.view(),
        classes: Some(&classes),
        pass: None,
    };
    let seed = HeadSeed::Loss { normalizer: 30.0 };
    let mut all_states = prepared.params.zeros_like();
    network
        .gradient(&prepared.params, &chunk, &seed, 5, &mut all_states)
        .expect("finite");
    for snapshots in [1, 2, 3] {
        let mut checkpointed = prepared.params.zeros_like();
        network
            .gradient(
                &prepared.params,
                &chunk,
                &seed,
                snapshots,
                &mut checkpointed,
            )
            .expect("finite");
        assert_eq!(checkpointed, all_states, "{snapshots} snapshots");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn run_options(dir: &Path, out: &Path, epochs: usize, resume: bool) -> RunOptions {
    RunOptions {
        out_dir: Some(out.to_path_buf()),
        model_dir: Some(dir.to_path_buf()),
        train: TrainOptions {
            seed: 11,
            threads: Some(2),
            resume,
            max_epochs: Some(epochs),
            ..TrainOptions::default()
        },
        ..RunOptions::default()
    }
}

#[test]
fn resume_continues_bit_identically() {
    let dir = temp_dir("resume");
    for optimizer in ["adam(lr = 0.01)", "sgd(lr = 0.1, momentum = 0.9)"] {
        let model = small_classifier(&dir, optimizer, 3);
        let straight =
            run_model(&model, &run_options(&dir, &dir.join("straight"), 3, false)).expect("trains");
        run_model(&model, &run_options(&dir, &dir.join("resumed"), 2, false)).expect("trains");
        let resumed =
            run_model(&model, &run_options(&dir, &dir.join("resumed"), 3, true)).expect("resumes");
        assert_eq!(
            straight.training[0].parameters, resumed.training[0].parameters,
            "{optimizer}"
        );
        assert_eq!(resumed.training[0].history.len(), 3, "{optimizer}");
        assert_eq!(resumed.training[0].resumed_epochs, 2, "{optimizer}");
        assert_eq!(straight.training[0].resumed_epochs, 0, "{optimizer}");
        assert!(dir.join("resumed/summary.json").exists());
        assert!(dir.join("resumed/training_curves.png").exists());
        assert!(dir.join("resumed/confusion_matrix.png").exists());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resume_rejects_other_sample_count() {
    let dir = temp_dir("resume-samples");
    let model = small_classifier(&dir, "adam(lr = 0.01)", 2);
    let out = dir.join("out");
    run_model(&model, &run_options(&dir, &out, 1, false)).expect("trains");
    let mut fewer = run_options(&dir, &out, 2, true);
    fewer.train.max_train_samples = Some(3);
    let Err(diagnostics) = run_model(&model, &fewer) else {
        panic!("resuming on fewer training samples was accepted");
    };
    assert!(
        diagnostics[0]
            .message
            .contains("cannot resume: the checkpoint was trained on"),
        "{:?}",
        diagnostics[0].message
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--resume` rejects a run whose seed or precision differs from the checkpoint's, because the
/// first epochs used them; the help names the value to resume with.
#[test]
fn resume_rejects_other_seed_or_precision() {
    let dir = temp_dir("resume-settings");
    let model = small_classifier(&dir, "adam(lr = 0.01)", 2);
    let out = dir.join("out");
    run_model(&model, &run_options(&dir, &out, 1, false)).expect("trains");

    let mut other_seed = run_options(&dir, &out, 2, true);
    other_seed.train.seed = 12;
    let Err(diagnostics) = run_model(&model, &other_seed) else {
        panic!("resuming with another seed was accepted");
    };
    assert_eq!(
        diagnostics[0].message,
        "cannot resume: the checkpoint was written by a run with `--seed 11`, this run uses `--seed 12`"
    );
    let help = diagnostics[0].help.as_deref().unwrap_or_default();
    assert!(help.starts_with("resume with `--seed 11`"), "{help}");

    let mut other_precision = run_options(&dir, &out, 2, true);
    other_precision.train.products = ProductPrecision::F32;
    let Err(diagnostics) = run_model(&model, &other_precision) else {
        panic!("resuming with another precision was accepted");
    };
    assert_eq!(
        diagnostics[0].message,
        "cannot resume: the checkpoint was written by a run with `--precision f64`, this run uses `--precision f32`"
    );
    let help = diagnostics[0].help.as_deref().unwrap_or_default();
    assert!(help.starts_with("resume with `--precision f64`"), "{help}");

    // The rejected runs left the checkpoint as it was, so the matching run resumes after epoch 1.
    let resumed = run_model(&model, &run_options(&dir, &out, 2, true)).expect("resumes");
    assert_eq!(resumed.training[0].resumed_epochs, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A checkpoint written before the seed and the precision were recorded still resumes, with any
/// seed and precision.
#[test]
fn resume_accepts_checkpoint_without_settings() {
    let dir = temp_dir("resume-old");
    let model = small_classifier(&dir, "adam(lr = 0.01)", 2);
    let out = dir.join("out");
    run_model(&model, &run_options(&dir, &out, 1, false)).expect("trains");
    let path = out.join(CHECKPOINT_FILE);
    let mut checkpoint = read_checkpoint(&path).expect("reads the checkpoint");
    let metadata = checkpoint.metadata.as_object_mut().expect("a JSON object");
    assert_eq!(metadata.remove("seed"), Some(serde_json::json!(11)));
    assert_eq!(metadata.remove("precision"), Some(serde_json::json!("f64")));
    write_checkpoint(&path, &checkpoint).expect("writes the checkpoint");

    let mut other_seed = run_options(&dir, &out, 2, true);
    other_seed.train.seed = 12;
    let resumed = run_model(&model, &other_seed).expect("resumes");
    assert_eq!(resumed.training[0].resumed_epochs, 1);
    let rewritten = read_checkpoint(&path).expect("reads the checkpoint");
    assert_eq!(rewritten.metadata["seed"], serde_json::json!(12));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn divergence_names_epoch_field_and_keeps_checkpoint() {
    let dir = temp_dir("diverge");
    let model = small_classifier(&dir, "sgd(lr = 0.01)", 1);
    let out = dir.join("out");
    run_model(&model, &run_options(&dir, &out, 1, false)).expect("trains one epoch");

    // The same parameters with an exploding reaction and a huge step: the resumed epoch diverges.
    let exploding = checked_model(
        &dir,
        "model small
grid k index 8
field u(k)
data d = csv(\"data.csv\", label = last) split 30
param W[8, 8] ~ glorot
param D = 0.2
param Wout[3, 8] ~ glorot
param bout[3] = 0
equation net: dt(u) = D * laplace(u) + exp(40 * (W @ u))
boundary u: neumann(0) on k
initial u = d.input
readout y = Wout @ u + bout
train net on d using euler(steps = 5) until 1 loss cross_entropy(y, label) optimizer sgd(lr = 1e8) epochs 2 batch 8
",
    );
    let errors = run_model(&exploding, &run_options(&dir, &out, 2, true)).unwrap_err();
    let message = &errors[0].message;
    assert!(
        message.contains("training diverged in epoch 2"),
        "{message}"
    );
    let notes = errors[0].notes.join("\n");
    assert!(
        notes.contains("field `u`") || message.contains("field `u`"),
        "{message}\n{notes}"
    );
    assert!(notes.contains("parameter `"), "{notes}");
    let kept =
        npdec_learn::checkpoint::read_checkpoint(&out.join("checkpoint.npdc")).expect("kept");
    assert_eq!(kept.epoch, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An update that overflows a parameter stops training and names the parameter, although the
/// forward sweep before it was finite: SGD, and Adam whose update also writes the `f32` copies
/// and checks the values in the same pass.
#[test]
fn overflowing_update_names_the_parameter() {
    let dir = temp_dir("overflow");
    write_classes_csv(&dir.join("data.csv"), 40, 8, 3);
    // Scores scaled by 1e3 give gradients far above 1, so an SGD step of 1e308 overflows. Adam
    // moves each entry by about its step size, so two steps of 1e308 overflow.
    for optimizer in ["sgd(lr = 1e308)", "adam(lr = 1e308)"] {
        let model = checked_model(
            &dir,
            &format!(
                "model small
grid k index 8
field u(k)
data d = csv(\"data.csv\", label = last) split 30
param D = 0.2
param Wout[3, 8] ~ glorot
param bout[3] = 0
equation net: dt(u) = D * laplace(u)
boundary u: neumann(0) on k
initial u = d.input
readout y = 1000 * (Wout @ u + bout)
train net on d using euler(steps = 2) until 1 loss cross_entropy(y, label) optimizer {optimizer} epochs 1 batch 8
"
            ),
        );
        for products in [ProductPrecision::F64, ProductPrecision::F32] {
            let out = dir.join("out");
            let mut options = run_options(&dir, &out, 1, false);
            options.train.products = products;
            let errors = run_model(&model, &options).unwrap_err();
            let message = &errors[0].message;
            assert!(
                message.contains("training diverged in epoch 1"),
                "{optimizer} {products:?}: {message}"
            );
            let notes = errors[0].notes.join("\n");
            assert!(
                notes.contains("is not finite after the update"),
                "{optimizer} {products:?}: {notes}"
            );
            let _ = std::fs::remove_dir_all(&out);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Labels a cross-entropy loss cannot use and non-finite features stop training before it
/// starts, naming the sample, instead of training on a loss of 0 or reporting divergence.
#[test]
fn unusable_labels_and_features_are_rejected() {
    let dir = temp_dir("labels");
    let model_source = "model small
grid k index 8
field u(k)
data d = csv(\"data.csv\", label = last) split 30
param D = 0.2
param Wout[3, 8] ~ glorot
param bout[3] = 0
equation net: dt(u) = D * laplace(u)
boundary u: neumann(0) on k
initial u = d.input
readout y = Wout @ u + bout
train net on d using euler(steps = 2) until 1 loss cross_entropy(y, label) optimizer adam() epochs 1 batch 8
";
    // (row, replacement of the whole row, expected text of the error)
    let cases = [
        (
            4,
            "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,7",
            "label 7 of sample 4",
        ),
        (
            5,
            "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,-1",
            "label -1 of sample 5",
        ),
        (
            33,
            "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,1.5",
            "label 1.5 of sample 33",
        ),
        (
            6,
            "0.1,0.2,NaN,0.4,0.5,0.6,0.7,0.8,1",
            "sample 6 (counting from 0)",
        ),
        (7, "0.1,0.2,0.3,1", "cannot load data `d`"),
    ];
    // Errors in the data point at the `on` clause of the task and at the data declaration.
    let on_clause = model_source.find("on d using").expect("on clause");
    let declared = model_source.find("data d").expect("data declaration") + "data ".len();
    for (row, replacement, expected) in cases {
        write_classes_csv(&dir.join("data.csv"), 40, 8, 3);
        let text = std::fs::read_to_string(dir.join("data.csv")).expect("read CSV");
        let mut rows: Vec<&str> = text.lines().collect();
        rows[row] = replacement;
        std::fs::write(dir.join("data.csv"), rows.join("\n") + "\n").expect("write CSV");
        let model = checked_model(&dir, model_source);
        let out = dir.join("out");
        let errors = run_model(&model, &run_options(&dir, &out, 1, false)).unwrap_err();
        assert!(
            errors[0].message.contains(expected),
            "{}",
            errors[0].message
        );
        assert!(errors[0].help.is_some(), "{replacement}: no help");
        assert_eq!(
            errors[0].span().range(),
            on_clause..on_clause + "on d".len(),
            "{replacement}: primary span"
        );
        assert_eq!(
            errors[0].labels.get(1).map(|label| label.span.range()),
            Some(declared..declared + 1),
            "{replacement}: label on the data declaration"
        );
        assert!(
            !out.join("summary.json").exists(),
            "{replacement}: wrote a summary"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Samples whose size does not fit the field they initialize stop training before it starts,
/// pointing at the data, instead of a shape error about the whole task.
#[test]
fn sample_size_must_fit_initialized_field() {
    let dir = temp_dir("sample_size");
    write_classes_csv(&dir.join("data.csv"), 40, 8, 3);
    let model_source = "model small
grid k index 6
field u(k)
data d = csv(\"data.csv\", label = last) split 30
param D = 0.2
param Wout[3, 6] ~ glorot
equation net: dt(u) = D * laplace(u)
boundary u: neumann(0) on k
initial u = d.input
readout y = Wout @ u
train net on d using euler(steps = 2) until 1 loss cross_entropy(y, label) optimizer adam() epochs 1 batch 8
";
    let model = checked_model(&dir, model_source);
    let out = dir.join("out");
    let errors = run_model(&model, &run_options(&dir, &out, 1, false)).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].message.contains(
            "the samples of data `d` have 8 values each, but `initial u = d.input` needs 6"
        ),
        "{}",
        errors[0].message
    );
    assert_eq!(
        errors[0].help.as_deref(),
        Some("declare `u` on a grid of 8 points, or check the data file")
    );
    let on_clause = model_source.find("on d using").expect("on clause");
    assert_eq!(
        errors[0].span().range(),
        on_clause..on_clause + "on d".len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn split_step_complex_field_gradients() {
    // A small diffractive classifier: a complex field on a periodic 8 × 8 grid (4 × 4 samples
    // padded by 2), per-step phases, a real rate part, and detector integrals of |E|² and |E|.
    let source = "model d2nn
grid (x, y) in [-4, 4] points 8
field E(x, y): complex
data d = npy(\"x.npy\", labels = \"y.npy\") split 6 pad 2
param phase(t, x, y) ~ normal(0, 1)
param V(x, y) ~ normal(0, 0.5)
param gain = 3
equation propagate: dt(E) = -0.5i * laplace(E) - 1i * phase * E - 0.2 * V^2 * E + (0.1 + 0.3i) * E
boundary E: periodic on x, y
initial E = d.input * (1 + 0.5i)
readout scores = gain * [integral(abs(E)^2 * min(max(-x, 0), 1)), integral(abs(E)^2 * max(x, 0) * max(-y, 0)), integral(abs(E) * min(max(y + 1, 0), 1))] / integral(abs(E)^2)
train propagate on d using split_step(steps = 3) until 1.5 loss cross_entropy(scores, label) optimizer adam() epochs 1 batch 3
";
    let dir = temp_dir("split-step");
    let samples = ndarray::Array3::from_shape_fn((8, 4, 4), |(i, r, c)| {
        ((i * 5 + r * 3 + c * 7) % 11) as f64 / 11.0
    });
    ndarray_npy::write_npy(dir.join("x.npy"), &samples).expect("write samples");
    let labels = ndarray::Array1::from_shape_fn(8, |i| (i % 3) as i64);
    ndarray_npy::write_npy(dir.join("y.npy"), &labels).expect("write labels");
    let model = checked_model(&dir, source);
    let report = check_gradients(&model, &dir, 5).expect("gradient check runs");
    for check in &report.checks {
        assert!(
            check.taylor_passed,
            "Taylor rates {:?} (remainders {:?})",
            check.rates, check.remainders
        );
        assert!(
            check.dot_relative_error <= DOT_TOLERANCE,
            "dot test {} vs {} (relative {:e})",
            check.dot_tangent,
            check.dot_adjoint,
            check.dot_relative_error
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
