//! `npdec build --emit photonic|spice` on a briefly trained `examples/mnist_mlp.npde`: the build
//! reads the run's checkpoint, writes the layouts, passes the rebuild check, and the crossbar
//! netlist simulated in ngspice reproduces the trained readout `Wout · x`. Bad checkpoints exit 1.

use npdec_runtime::train::TrainOptions;
use npdec_runtime::{run_model, RunOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("build-hardware")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Trains `mnist_mlp` for one epoch on 256 images (two batches) once, and returns the run folder.
fn trained_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let out = scratch("mnist_mlp_run");
        let path = root().join("examples/mnist_mlp.npde");
        let (_, checked) = npdec_sema::check_path(&path).expect("reads the example");
        let model = checked.model.expect("mnist_mlp checks");
        let options = RunOptions {
            out_dir: Some(out.clone()),
            model_dir: Some(root().join("examples")),
            train: TrainOptions {
                max_epochs: Some(1),
                max_train_samples: Some(256),
                ..TrainOptions::default()
            },
            ..RunOptions::default()
        };
        run_model(&model, &options).expect("shortened training runs");
        assert!(out.join("checkpoint.npdc").is_file());
        out
    })
}

fn npdec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_npdec"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("npdec runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Returns a parameter of the checkpoint by name.
fn checkpoint_parameter(run: &Path, name: &str) -> (Vec<usize>, Vec<f64>) {
    let checkpoint =
        npdec_learn::checkpoint::read_checkpoint(&run.join("checkpoint.npdc")).expect("reads");
    let array = checkpoint
        .parameters
        .into_iter()
        .find(|p| p.name == name)
        .expect("parameter in checkpoint");
    (array.shape, array.values)
}

/// The largest singular value of a `rows × columns` matrix with few rows, by power iteration on
/// `W Wᵀ`.
fn largest_singular_value(rows: usize, columns: usize, w: &[f64]) -> f64 {
    let gram: Vec<f64> = (0..rows * rows)
        .map(|k| {
            let (i, j) = (k / rows, k % rows);
            (0..columns)
                .map(|c| w[i * columns + c] * w[j * columns + c])
                .sum()
        })
        .collect();
    let mut v = vec![1.0; rows];
    let mut lambda = 0.0;
    for _ in 0..500 {
        let next: Vec<f64> = (0..rows)
            .map(|i| (0..rows).map(|j| gram[i * rows + j] * v[j]).sum())
            .collect();
        let norm = next.iter().map(|x| x * x).sum::<f64>().sqrt();
        lambda = norm;
        v = next.iter().map(|x| x / norm).collect();
    }
    lambda.sqrt()
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("JSON")
}

#[test]
fn photonic_build_uses_the_checkpoint_and_passes_the_rebuild_check() {
    let run = trained_run();
    let out = scratch("photonic");
    let output = npdec(&[
        "build",
        "examples/mnist_mlp.npde",
        "--emit",
        "photonic",
        "--checkpoint",
        run.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("using trained parameters from"), "{stderr}");
    for layer in ["W", "Wout"] {
        for extension in ["layout.json", "netlist.json", "gds", "svg"] {
            let file = out.join(format!("{layer}.{extension}"));
            let size = std::fs::metadata(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
                .len();
            assert!(size > 0, "{} is empty", file.display());
        }
    }
    let summary = read_json(&out.join("photonic.json"));
    let layers = summary["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 2, "{summary}");
    for layer in layers {
        for (key, error) in layer["rebuild_errors"].as_object().expect("errors") {
            let error = error.as_f64().expect("number");
            assert!(error <= 1e-10, "{}: {key} error {error:e}", layer["name"]);
        }
    }
    // The readout's gain is the largest singular value of the trained `Wout`.
    let (shape, values) = checkpoint_parameter(run, "Wout");
    let sigma = largest_singular_value(shape[0], shape[1], &values);
    let wout = layers.iter().find(|l| l["name"] == "Wout").expect("Wout");
    assert_eq!(wout["shape"], serde_json::json!([10, 784]));
    assert_eq!(wout["modes"], 784);
    let gain = wout["gain"].as_f64().expect("gain");
    assert!(
        (gain - sigma).abs() <= 1e-9 * sigma,
        "gain {gain} vs σ_max {sigma}"
    );
}

#[test]
fn spice_build_reproduces_the_trained_readout_in_ngspice() {
    let found = Command::new("ngspice")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "ngspice not found: CI must install the Debian package `ngspice`"
        );
        eprintln!("skipping: ngspice not found (install the Debian package `ngspice`)");
        return;
    }
    let run = trained_run();
    let out = scratch("spice");
    let output = npdec(&[
        "build",
        "examples/mnist_mlp.npde",
        "--emit",
        "spice",
        "--checkpoint",
        run.join("checkpoint.npdc").to_str().unwrap(),
        "--g-min",
        "2e-6",
        "--g-max",
        "5e-5",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let summary = read_json(&out.join("crossbar.json"));
    assert_eq!(summary["options"]["g_min"], 2e-6);
    assert_eq!(summary["options"]["g_max"], 5e-5);
    let mapping = read_json(&out.join("Wout.crossbar.json"));
    let amperes = summary["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "Wout")
        .expect("Wout")["amperes_per_unit_output"]
        .as_f64()
        .unwrap();
    assert_eq!(mapping["outputs"], 10);

    // Simulate the emitted netlist (every input at one unit) and read the ammeter currents.
    let raw = out.join("Wout.raw");
    let simulated = Command::new("ngspice")
        .arg("-b")
        .arg("-r")
        .arg(&raw)
        .arg(out.join("Wout.cir"))
        .env("SPICE_ASCIIRAWFILE", "1")
        .output()
        .expect("ngspice starts");
    assert!(simulated.status.success(), "{}", text(&simulated.stderr));
    let raw = std::fs::read_to_string(&raw).expect("raw file");
    let (header, values) = raw.split_once("Values:").expect("values");
    let names: Vec<&str> = header
        .split_once("\nVariables:")
        .expect("variables")
        .1
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .collect();
    let numbers: Vec<f64> = values
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().expect("number"))
        .collect();
    let current = |name: String| numbers[names.iter().position(|n| *n == name).expect("name")];

    let (shape, w) = checkpoint_parameter(run, "Wout");
    let mut scale: f64 = 0.0;
    let mut worst: f64 = 0.0;
    for i in 0..shape[0] {
        let expected: f64 = w[i * shape[1]..(i + 1) * shape[1]].iter().sum();
        let y = (current(format!("i(vpout{i})")) - current(format!("i(vnout{i})"))) / amperes;
        scale = scale.max(expected.abs());
        worst = worst.max((y - expected).abs());
    }
    println!(
        "max |y_spice - Wout·1| / max |Wout·1| = {:.2e}",
        worst / scale
    );
    assert!(worst <= 1e-6 * scale, "{worst:e} vs {scale:e}");
}

#[test]
fn build_without_checkpoint_says_it_uses_initial_parameters() {
    let out = scratch("initial");
    let output = npdec(&[
        "build",
        "examples/mnist_rnn.npde",
        "--emit",
        "spice",
        "--seed",
        "3",
        "-o",
        out.to_str().unwrap(),
    ]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("initial parameters (seed 3)"), "{stderr}");
    for layer in ["W", "U", "Wout"] {
        assert!(out.join(format!("{layer}.cir")).is_file(), "{layer}");
    }
}

#[test]
fn bad_checkpoints_are_clear_errors() {
    let out = scratch("bad");
    let missing = npdec(&[
        "build",
        "examples/mnist_mlp.npde",
        "--emit",
        "photonic",
        "--checkpoint",
        "no/such/run",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(missing.status.code(), Some(1));
    let stderr = text(&missing.stderr);
    assert!(stderr.contains("`no/such/run` does not exist"), "{stderr}");

    let empty = scratch("empty_run");
    std::fs::create_dir_all(&empty).unwrap();
    let output = npdec(&[
        "build",
        "examples/mnist_mlp.npde",
        "--emit",
        "spice",
        "--checkpoint",
        empty.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("contains no `checkpoint.npdc`"),
        "{}",
        text(&output.stderr)
    );

    let garbage = empty.join("garbage.npdc");
    std::fs::write(&garbage, b"not a checkpoint").unwrap();
    let output = npdec(&[
        "build",
        "examples/mnist_mlp.npde",
        "--emit",
        "spice",
        "--checkpoint",
        garbage.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("cannot read checkpoint"),
        "{}",
        text(&output.stderr)
    );

    // A checkpoint of another model.
    let run = trained_run();
    let output = npdec(&[
        "build",
        "examples/mnist_rnn.npde",
        "--emit",
        "spice",
        "--checkpoint",
        run.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("does not fit model `mnist_rnn`")
            && stderr.contains("written by a run of model `mnist_mlp`"),
        "{stderr}"
    );
    assert!(!out.join("W.cir").exists(), "nothing is written");
}

/// Runs a build expected to find nothing to make, and returns its standard error after checking
/// the exit status, the code and that the output folder was not created.
fn nothing_to_build(args: &[&str], out: &Path) -> String {
    let mut all: Vec<&str> = vec!["build"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", out.to_str().unwrap()]);
    let output = npdec(&all);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(stderr.contains("[E0280] Error: "), "{args:?}: {stderr}");
    assert!(stderr.contains("Help: "), "{args:?}: {stderr}");
    assert!(!out.exists(), "{args:?} created {}", out.display());
    stderr
}

#[test]
fn models_without_what_an_emit_needs_get_e0280() {
    let out = scratch("nothing");
    for emit in ["photonic", "spice"] {
        let stderr = nothing_to_build(&["examples/heat1d.npde", "--emit", emit], &out);
        assert!(
            stderr.contains(&format!(
                "model `heat1d` has no dense layer `W @ u` with a matrix parameter `W[rows, columns]`, so `--emit {emit}` has nothing to map onto hardware"
            )),
            "{stderr}"
        );
        // The parameters are not announced for a build that cannot use them, and a model
        // without a train task is not sent to `--emit onnx`.
        assert!(!stderr.contains("initial parameters"), "{stderr}");
        assert!(!stderr.contains("--emit onnx"), "{stderr}");
    }

    // A model with a train task but no dense layer may still go to ONNX.
    let stderr = nothing_to_build(&["examples/digits_d2nn.npde", "--emit", "spice"], &out);
    assert!(stderr.contains("no dense layer in this task"), "{stderr}");
    assert!(stderr.contains("--emit onnx"), "{stderr}");

    // A model without a train task has no masks, whatever `--checkpoint` names.
    let stderr = nothing_to_build(
        &[
            "examples/paraxial_beam.npde",
            "--emit",
            "diffractive",
            "--checkpoint",
            "no/such/run",
        ],
        &out,
    );
    assert!(
        stderr.contains(
            "`--emit diffractive` needs exactly one train task, and model `paraxial_beam` has 0"
        ),
        "{stderr}"
    );

    let stderr = nothing_to_build(&["examples/digits.npde", "--emit", "obj"], &out);
    assert!(
        stderr.contains(
            "model `digits` has no solve task, so `--emit obj` has no time step to compile"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("no solve task in this model"), "{stderr}");

    // A split-step task has no ONNX export; the error points at the train task.
    let stderr = nothing_to_build(&["examples/digits_d2nn.npde", "--emit", "onnx"], &out);
    assert!(
        stderr.contains("cannot export `digits_d2nn` to ONNX"),
        "{stderr}"
    );
    assert!(stderr.contains("the network of this task"), "{stderr}");
    assert!(stderr.contains("train "), "{stderr}");
    assert!(!stderr.contains("initial parameters"), "{stderr}");

    // A dense network has no phase masks, even with a checkpoint of its own.
    let run = trained_run();
    let stderr = nothing_to_build(
        &[
            "examples/mnist_mlp.npde",
            "--emit",
            "diffractive",
            "--checkpoint",
            run.to_str().unwrap(),
        ],
        &out,
    );
    assert!(
        stderr.contains("a diffractive stack needs a complex field advanced by `split_step`"),
        "{stderr}"
    );
    assert!(stderr.contains("this task"), "{stderr}");
}
