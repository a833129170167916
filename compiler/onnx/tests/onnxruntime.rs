//! Every train example exported to ONNX passes `onnx.checker` and, run in onnxruntime on random
//! inputs, matches the interpreter's forward sweep to 1e-5 (relative to the largest output).
//!
//! The Python packages `onnx`, `onnxruntime` and `numpy` come from PyPI into the virtual
//! environment `/opt/npdec-venv` that `.ci/run` creates; `NPDEC_PYTHON` names another interpreter.
//! Without them the test fails when `CI` is set and prints a skip note otherwise.

use ndarray::Array2;
use npdec_learn::data::ShuffleRng;
use npdec_runtime::train::adjoint::{Chunk, Network};
use npdec_runtime::train::training::prepare;
use npdec_runtime::train::TrainOptions;
use npdec_symbolic::Task;
use std::path::{Path, PathBuf};
use std::process::Command;

const EXAMPLES: &[&str] = &[
    "mnist_mlp",
    "mnist_cnn",
    "mnist_rnn",
    "digits",
    "digits_pool",
    "identify_diffusion",
];

const SCRIPT: &str = r#"
import json, sys
import numpy as np
import onnx
import onnxruntime as ort
model_path, inputs_path = sys.argv[1], sys.argv[2]
model = onnx.load(model_path)
onnx.checker.check_model(model, full_check=True)
inputs = np.array(json.load(open(inputs_path)), dtype=np.float32)
session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
(outputs,) = session.run(None, {"input": inputs})
print(json.dumps(outputs.astype(np.float64).tolist()))
"#;

fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("NPDEC_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/npdec-venv/bin/python"));
    let works = Command::new(&candidate)
        .args(["-c", "import onnx, onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        return Some(candidate);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} cannot import onnx, onnxruntime and numpy: .ci/run installs them",
        candidate.display()
    );
    eprintln!(
        "skipping: {} cannot import onnx, onnxruntime and numpy (run .ci/run or set NPDEC_PYTHON)",
        candidate.display()
    );
    None
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

#[test]
fn exported_examples_match_the_interpreter_in_onnxruntime() {
    let Some(python) = python() else {
        return;
    };
    let folder = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("onnx-examples");
    std::fs::create_dir_all(&folder).unwrap();
    let script = folder.join("run_onnx.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let mut report = Vec::new();
    for name in EXAMPLES {
        let path = examples_dir().join(format!("{name}.npde"));
        let (_, checked) = npdec_sema::check_path(&path).expect("reads the example");
        let model = checked.model.expect("the example checks");
        let task = model
            .tasks
            .iter()
            .find_map(|t| match t {
                Task::Train(train) => Some(train),
                Task::Solve(_) => None,
            })
            .expect("a train task");
        let prepared = prepare(
            &model,
            task,
            &examples_dir(),
            &TrainOptions {
                seed: 7,
                ..TrainOptions::default()
            },
        )
        .expect("prepares");
        let features = prepared.train.features();
        let exported =
            npdec_onnx::export_network(&model, task, &prepared.lowered, &prepared.params, features)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        if name == &"digits_pool" {
            // 4 steps pool and upsample once each; the readout pools once more.
            assert_eq!(exported.operators.get("AveragePool"), Some(&5), "{name}");
            assert_eq!(exported.operators.get("Resize"), Some(&4), "{name}");
        }

        // Random inputs in [0, 1), the range of the scaled data.
        let batch = 3;
        let mut rng = ShuffleRng::from_seed(11);
        let inputs = Array2::from_shape_fn((batch, features), |_| rng.uniform());
        let label_width = match &prepared.train.targets {
            npdec_learn::data::Targets::Values(values) => values.ncols(),
            npdec_learn::data::Targets::Classes { .. } => 1,
        };
        let labels = Array2::zeros((batch, label_width));
        let classes = vec![0usize; batch];
        let network = Network {
            model: &model,
            task: &prepared.lowered,
            compiled: None,
        };
        let chunk = Chunk {
            samples: inputs.view(),
            labels: labels.view(),
            classes: Some(&classes),
            pass: None,
        };
        let expected = network
            .evaluate(&prepared.params, &chunk)
            .expect("finite")
            .outputs;

        let model_path = folder.join(format!("{name}.onnx"));
        std::fs::write(&model_path, &exported.bytes).unwrap();
        let inputs_path = folder.join(format!("{name}.inputs.json"));
        let rows: Vec<Vec<f64>> = inputs.rows().into_iter().map(|r| r.to_vec()).collect();
        std::fs::write(&inputs_path, serde_json::to_string(&rows).unwrap()).unwrap();
        let output = Command::new(&python)
            .arg(&script)
            .arg(&model_path)
            .arg(&inputs_path)
            .output()
            .expect("python starts");
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let actual: Vec<Vec<f64>> =
            serde_json::from_slice(&output.stdout).expect("JSON outputs from onnxruntime");
        assert_eq!(actual.len(), batch, "{name}");
        assert_eq!(actual[0].len(), expected.ncols(), "{name}");
        let scale = expected.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let worst = actual
            .iter()
            .enumerate()
            .flat_map(|(r, row)| {
                let expected = &expected;
                row.iter()
                    .enumerate()
                    .map(move |(c, v)| (v - expected[[r, c]]).abs())
            })
            .fold(0.0f64, f64::max);
        report.push(format!(
            "{name}: {} nodes, max |onnxruntime − interpreter| = {worst:.2e} (scale {scale:.2e})",
            exported.operators.values().sum::<usize>()
        ));
        assert!(
            worst <= 1e-5 * scale,
            "{name}: max error {worst:e} against outputs up to {scale:e}"
        );
    }
    println!("{}", report.join("\n"));
}
