//! Checkpoint files: exact round trips, validation on load, and bit-identical resumption of a
//! small training loop.

mod common;

use ndarray::Array2;
use npdec_learn::checkpoint::{
    decode_checkpoint, encode_checkpoint, read_checkpoint, write_checkpoint, Checkpoint, NamedArray,
};
use npdec_learn::data::{Dataset, MiniBatches, ShuffleRng, Targets};
use npdec_learn::loss::mse;
use npdec_learn::optim::{Adam, Lbfgs, LbfgsOptions, OptimizerState, Sgd, StepOptimizer};

fn bits(values: &[f64]) -> Vec<u64> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// Builds a noisy linear regression problem: 64 samples, 5 features, 2 outputs.
fn regression_data() -> Dataset {
    let mut rng = ShuffleRng::from_seed(11);
    let inputs = Array2::from_shape_fn((64, 5), |_| rng.uniform() - 0.5);
    let truth = Array2::from_shape_fn((5, 2), |(i, j)| (i as f64 - 2.0) * (j as f64 + 1.0));
    let noise = Array2::from_shape_fn((64, 2), |_| 0.01 * (rng.uniform() - 0.5));
    let targets = inputs.dot(&truth) + noise;
    Dataset {
        inputs,
        targets: Targets::Values(targets),
        sample_shape: vec![5],
    }
}

/// The state a training loop carries from epoch to epoch.
struct Run {
    epoch: usize,
    weights: Vec<f64>,
    optimizer: StepOptimizer,
    rng: ShuffleRng,
}

/// Trains a linear model `y = x W` (W is 5 × 2, row-major) for epochs up to `last_epoch`.
fn train_until(run: &mut Run, data: &Dataset, last_epoch: usize) {
    while run.epoch < last_epoch {
        for batch in MiniBatches::shuffled(data, 10, &mut run.rng).unwrap() {
            let weights = Array2::from_shape_vec((5, 2), run.weights.clone()).unwrap();
            let prediction = batch.inputs.dot(&weights);
            let Targets::Values(target) = &batch.targets else {
                unreachable!("regression targets")
            };
            let loss = mse(prediction.view(), target.view()).unwrap();
            let gradient = batch.inputs.t().dot(&loss.gradient);
            let gradient: Vec<f64> = gradient.iter().copied().collect();
            run.optimizer.step(&mut run.weights, &gradient).unwrap();
        }
        run.epoch += 1;
    }
}

fn save(run: &Run) -> Checkpoint {
    Checkpoint {
        epoch: run.epoch,
        rng: Some(run.rng.state()),
        parameters: vec![NamedArray::new("W", vec![5, 2], run.weights.clone())],
        optimizer: run.optimizer.clone().into(),
        metadata: serde_json::json!({ "note": "resume test" }),
    }
}

fn restore(checkpoint: Checkpoint) -> Run {
    checkpoint.check_parameters(&[("W", &[5, 2])]).unwrap();
    let optimizer = match checkpoint.optimizer {
        OptimizerState::Sgd(sgd) => StepOptimizer::Sgd(sgd),
        OptimizerState::Adam(adam) => StepOptimizer::Adam(adam),
        other => panic!("unexpected optimizer {other:?}"),
    };
    Run {
        epoch: checkpoint.epoch,
        weights: checkpoint.parameters[0].values.clone(),
        optimizer,
        rng: ShuffleRng::from_state(&checkpoint.rng.unwrap()),
    }
}

#[test]
fn resume_reproduces_uninterrupted_run_bitwise() {
    let data = regression_data();
    let folder = common::scratch_folder("resume");
    let optimizers = [
        StepOptimizer::Adam(Adam::new(0.05, 0.9, 0.999, 1e-8).unwrap()),
        StepOptimizer::Sgd(Sgd::new(0.1, 0.9).unwrap()),
    ];
    for optimizer in optimizers {
        let fresh = || Run {
            epoch: 0,
            weights: vec![0.0; 10],
            optimizer: optimizer.clone(),
            rng: ShuffleRng::from_seed(2024),
        };

        let mut uninterrupted = fresh();
        train_until(&mut uninterrupted, &data, 8);

        let mut interrupted = fresh();
        train_until(&mut interrupted, &data, 3);
        let path = folder.join("run.ckpt");
        write_checkpoint(&path, &save(&interrupted)).unwrap();
        drop(interrupted);
        let mut resumed = restore(read_checkpoint(&path).unwrap());
        assert_eq!(resumed.epoch, 3);
        train_until(&mut resumed, &data, 8);

        assert_eq!(bits(&resumed.weights), bits(&uninterrupted.weights));
        assert_eq!(resumed.optimizer, uninterrupted.optimizer);
        assert_eq!(resumed.rng.state(), uninterrupted.rng.state());
        // The run must actually have learned something for the comparison to mean anything.
        assert!(
            (resumed.weights[0] + 2.0).abs() < 0.3,
            "{:?}",
            resumed.weights
        );
    }
}

#[test]
fn round_trip_is_exact_for_every_optimizer() {
    let mut objective = |x: &[f64], g: &mut [f64]| {
        g[0] = 2.0 * (x[0] - 1.0 / 3.0);
        g[1] = 20.0 * (x[1] + 0.1);
        (x[0] - 1.0 / 3.0).powi(2) + 10.0 * (x[1] + 0.1).powi(2)
    };
    let mut lbfgs = Lbfgs::start(vec![0.7, 0.3], LbfgsOptions::default(), &mut objective).unwrap();
    lbfgs.iterate(&mut objective).unwrap();
    lbfgs.iterate(&mut objective).unwrap();
    assert!(!lbfgs.steps.is_empty());

    let mut adam = Adam::new(0.1 + 0.2, 0.9, 0.999, 1e-8).unwrap();
    adam.step(&mut [0.1, 0.2, 0.3], &[1.0 / 3.0, -2.0 / 7.0, 1e-300])
        .unwrap();
    let sgd = Sgd {
        learning_rate: std::f64::consts::PI,
        momentum: 0.3,
        velocity: vec![f64::MIN_POSITIVE, -0.0, 1.0 / 7.0],
    };

    for optimizer in [
        OptimizerState::None,
        OptimizerState::Sgd(sgd),
        OptimizerState::Adam(adam),
        OptimizerState::Lbfgs(lbfgs),
    ] {
        let checkpoint = Checkpoint {
            epoch: 17,
            rng: Some(ShuffleRng::from_seed(3).state()),
            parameters: vec![
                NamedArray::new(
                    "kernel",
                    vec![2, 2],
                    vec![f64::NAN, f64::INFINITY, -0.0, 0.1],
                ),
                NamedArray::new("bias", vec![], vec![1.0 / 3.0]),
            ],
            optimizer,
            metadata: serde_json::json!({ "history": [1.5, 2.5] }),
        };
        let decoded = decode_checkpoint(&encode_checkpoint(&checkpoint).unwrap()).unwrap();
        assert_eq!(decoded.epoch, 17);
        assert_eq!(decoded.rng, checkpoint.rng);
        assert_eq!(decoded.metadata, checkpoint.metadata);
        assert_eq!(decoded.optimizer, checkpoint.optimizer);
        for (a, b) in decoded.parameters.iter().zip(&checkpoint.parameters) {
            assert_eq!(a.name, b.name);
            assert_eq!(a.shape, b.shape);
            assert_eq!(bits(&a.values), bits(&b.values));
        }
    }
}

fn small_checkpoint() -> Checkpoint {
    Checkpoint {
        epoch: 1,
        rng: None,
        parameters: vec![NamedArray::new("w", vec![3], vec![1.0, 2.0, 3.0])],
        optimizer: OptimizerState::None,
        metadata: serde_json::Value::Null,
    }
}

#[test]
fn corrupt_files_are_rejected() {
    let bytes = encode_checkpoint(&small_checkpoint()).unwrap();

    let mut wrong_magic = bytes.clone();
    wrong_magic[0] = b'X';
    let message = decode_checkpoint(&wrong_magic).unwrap_err();
    assert!(message.contains("magic bytes"), "{message}");

    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let message = decode_checkpoint(&flipped).unwrap_err();
    assert!(message.contains("CRC-32"), "{message}");

    let mut extended = bytes.clone();
    extended.extend_from_slice(&[0; 8]);
    let message = decode_checkpoint(&extended).unwrap_err();
    assert!(message.contains("the header announces"), "{message}");

    let key = b"\"version\":1";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap();
    let mut newer = bytes.clone();
    newer[at + key.len() - 1] = b'9';
    let message = decode_checkpoint(&newer).unwrap_err();
    assert!(
        message.contains("unsupported checkpoint version 9"),
        "{message}"
    );

    let mut huge_header = bytes.clone();
    huge_header[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(decode_checkpoint(&huge_header).is_err());
}

#[test]
fn mismatched_shape_is_rejected_on_write() {
    let mut checkpoint = small_checkpoint();
    checkpoint.parameters[0].shape = vec![2, 2];
    let message = encode_checkpoint(&checkpoint).unwrap_err();
    assert!(message.contains("shape [2, 2] but 3 values"), "{message}");
}

#[test]
fn parameter_check_names_the_problem() {
    let checkpoint = small_checkpoint();
    assert!(checkpoint.check_parameters(&[("w", &[3])]).is_ok());
    let message = checkpoint.check_parameters(&[("w", &[4])]).unwrap_err();
    assert!(message.contains("shape [3] in the checkpoint"), "{message}");
    let message = checkpoint.check_parameters(&[("v", &[3])]).unwrap_err();
    assert!(message.contains("no parameter `v`"), "{message}");
    let message = checkpoint.check_parameters(&[]).unwrap_err();
    assert!(message.contains("does not declare"), "{message}");
}

#[test]
fn missing_checkpoint_names_the_path() {
    let folder = common::scratch_folder("missing-checkpoint");
    let path = folder.join("absent.ckpt");
    let message = read_checkpoint(&path).unwrap_err().to_string();
    assert!(
        message.contains("absent.ckpt: cannot read the checkpoint"),
        "{message}"
    );
}
