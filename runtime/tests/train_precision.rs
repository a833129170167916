//! Training with single-precision dense products (`npdec run --precision f32`) beside the default
//! f64 products, on a small residual MLP trained in seconds.

use npdec_runtime::train::gemm::ProductPrecision;
use npdec_runtime::train::{TrainOptions, TrainReport};
use npdec_runtime::{run_model, RunOptions};
use std::path::{Path, PathBuf};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("npdec-precision-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir
}

/// Writes 120 samples of 16 features: class c is bright in features 4c..4c + 4, plus noise.
fn write_samples_csv(path: &Path) {
    let mut state = 7u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut text = String::new();
    for i in 0..120 {
        let class = i % 4;
        let row: Vec<String> = (0..16)
            .map(|p| {
                let bright = if p / 4 == class { 1.0 } else { 0.0 };
                format!("{:.6}", bright + 0.5 * next())
            })
            .collect();
        text.push_str(&row.join(","));
        text.push_str(&format!(",{class}\n"));
    }
    std::fs::write(path, text).expect("write CSV");
}

/// Trains the residual MLP `dt(u) = swish(W @ u + b)` with the given product precision.
fn train(dir: &Path, products: ProductPrecision) -> TrainReport {
    write_samples_csv(&dir.join("data.csv"));
    let source = "model dense
use std::activations::swish
grid k index 16
field u(k)
data d = csv(\"data.csv\", label = last) split 96
param W[16, 16] ~ glorot
param b[16] = 0
param Wout[4, 16] ~ glorot
param bout[4] = 0
equation net: dt(u) = swish(W @ u + b)
boundary u: neumann(0) on k
initial u = d.input
readout y = Wout @ u + bout
train net on d using euler(steps = 2) until 1 loss cross_entropy(y, label)
      optimizer adam(lr = 1e-2) epochs 8 batch 16 metrics accuracy, loss l2 1e-4
";
    let path = dir.join("model.npde");
    std::fs::write(&path, source).expect("write model");
    let (_, checked) = npdec_sema::check_path(&path).expect("read model");
    let model = checked
        .model
        .unwrap_or_else(|| panic!("the test model does not check: {:#?}", checked.diagnostics));
    let options = RunOptions {
        out_dir: None,
        model_dir: Some(dir.to_path_buf()),
        train: TrainOptions {
            threads: Some(2),
            products,
            ..TrainOptions::default()
        },
        ..RunOptions::default()
    };
    let mut report = run_model(&model, &options).unwrap_or_else(|e| panic!("{e:#?}"));
    report.training.remove(0)
}

#[test]
fn f32_products_agree_with_f64() {
    let dir = temp_dir("agree");
    let double = train(&dir, ProductPrecision::F64);
    let single = train(&dir, ProductPrecision::F32);
    assert_eq!(double.history.len(), 8);
    assert_eq!(single.history.len(), 8);
    for (d, s) in double.history.iter().zip(&single.history) {
        // Products of 16 terms rounded to f32 have a relative error of about 1e-7, so the
        // losses of eight epochs of Adam should move by much less than 1e-4.
        let difference = (d.train_loss - s.train_loss).abs() / d.train_loss;
        assert!(
            difference < 1e-4,
            "epoch {}: train loss {} in f64 and {} in f32",
            d.epoch,
            d.train_loss,
            s.train_loss
        );
    }
    // The rounding does reach the result: f32 products are in use.
    assert_ne!(double.train_loss, single.train_loss);
    assert_ne!(double.parameters, single.parameters);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn f32_products_learn_separable_classes() {
    let dir = temp_dir("accuracy");
    let single = train(&dir, ProductPrecision::F32);
    let accuracy = single
        .test_accuracy
        .expect("classification reports accuracy");
    assert!(
        accuracy >= 0.9,
        "test accuracy {accuracy} after 8 epochs in f32"
    );
    assert!(single.train_loss < single.history[0].train_loss);
    let _ = std::fs::remove_dir_all(&dir);
}
