//! `npdec check --gradients` on small train tasks whose adjoint the JIT compiles: a right-hand side
//! that reads the labels, a `div` whose coefficient is its operand, and split-step Fourier. Each
//! passes the Taylor and dot tests with the adjoint by the JIT and without a fallback warning, and
//! `--engine interp` runs the same checks on the tape.

use std::path::{Path, PathBuf};
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("check-gradients")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// Writes `rows` samples of `features` values in [−0.5, 0.5) with a class label in `0..3` last.
fn write_csv(path: &Path, rows: usize, features: usize) {
    let mut text = String::new();
    for row in 0..rows {
        let values: Vec<String> = (0..features)
            .map(|i| format!("{:.4}", ((row * 7 + i * 3) % 11) as f64 / 11.0 - 0.5))
            .collect();
        text.push_str(&format!("{},{}\n", values.join(","), row % 3));
    }
    std::fs::write(path, text).expect("write data");
}

/// Returns a classifier over a line of 9 points with mixed boundaries whose equation is
/// `dt(u) = body`.
fn line_model(name: &str, body: &str) -> String {
    format!(
        "model {name}
grid x in [0, 1] points 9
field u(x)
boundary u: dirichlet(-0.1) on x.min
boundary u: robin(2, 1, 0.3) on x.max
data d = csv(\"data.csv\", label = last) split 8
param D = 0.3
param P(x) ~ normal(0.1, 0.05)
param Wout[3, 9] ~ glorot
equation net: dt(u) = {body}
initial u = d.input
readout y = Wout @ u
train net on d using rk4(steps = 3) until 0.003 loss cross_entropy(y, label) optimizer adam() epochs 1 batch 4
"
    )
}

const SPLIT_STEP: &str = "model split_line
grid x in [-4, 4] points 8
field E(x): complex
data d = csv(\"data.csv\", label = last) split 8
param phase(t, x) ~ normal(0, 1)
param V(x) ~ normal(0, 0.5)
param gain = 3
param g = 0.2
equation propagate: dt(E) = -0.5i * laplace(E) - 1i * phase * E - g * V^2 * E + (0.1 + 0.3i) * E + 0.1i * d.input * E - 0.05 * d.label * E
boundary E: periodic on x
initial E = (0.5 + d.input) * (1 + 0.5i)
readout scores = gain * [integral(abs(E)^2 * max(x, 0)), integral(abs(E)^2 * max(-x, 0)), integral(abs(E))] / integral(abs(E)^2)
train propagate on d using split_step(steps = 3) until 1.5 loss cross_entropy(scores, label) optimizer adam() epochs 1 batch 4
";

/// Runs `npdec check --gradients --engine ENGINE model.npde` in `dir` and returns its exit code
/// and its standard output and error together.
fn check_gradients(dir: &Path, engine: &str) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_npdec"))
        .args(["check", "--gradients", "--engine", engine, "model.npde"])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("npdec runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[test]
fn jit_adjoint_passes_gradient_checks() {
    let cases = [
        (
            "label",
            line_model(
                "label_rhs",
                "D * laplace(u) + 0.1 * P * d.label - 0.2 * u * tanh(u + d.label)",
            ),
            9,
        ),
        (
            "shared-operand",
            line_model(
                "shared_operand",
                "D * div(u * grad(u)) + 0.1 * div((1 + P^2) * grad(tanh(u))) + P * u - 0.5 * u^3",
            ),
            9,
        ),
        ("split-step", SPLIT_STEP.to_string(), 8),
    ];
    for (name, source, features) in cases {
        let dir = scratch(name);
        write_csv(&dir.join("data.csv"), 12, features);
        std::fs::write(dir.join("model.npde"), &source).expect("write model");

        let (code, output) = check_gradients(&dir, "jit");
        assert_eq!(code, Some(0), "{name}:\n{output}");
        // The one train task is numbered from 0, as solve tasks are.
        let model = source.split_whitespace().nth(1).expect("model name");
        assert!(
            output.contains(&format!(": task {model}.train0: Taylor test")),
            "{name}: task not named {model}.train0:\n{output}"
        );
        assert!(
            output.contains("Taylor test passed"),
            "{name}: no Taylor test passed:\n{output}"
        );
        assert!(
            output.contains("dot test passed"),
            "{name}: no dot test passed:\n{output}"
        );
        assert!(
            output.contains("adjoint by the JIT"),
            "{name}: the adjoint did not run on the JIT:\n{output}"
        );
        assert!(!output.contains("W0003"), "{name}: fell back:\n{output}");

        let (code, output) = check_gradients(&dir, "interp");
        assert_eq!(code, Some(0), "{name}, interp:\n{output}");
        assert!(
            output.contains("adjoint by the tape"),
            "{name}: the interpreter's adjoint did not run on the tape:\n{output}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A model without a train task among the files is reported as having nothing to check, not as
/// an error, so `npdec check --gradients examples/*.npde` checks the train examples only.
#[test]
fn solve_only_model_has_no_gradients_to_check() {
    let dir = scratch("solve_only");
    std::fs::write(
        dir.join("heat.npde"),
        "model heat
grid x in [0, 1] points 17
field u(x)
param nu = 0.1
equation diffusion: dt(u) = nu * laplace(u)
boundary u: dirichlet(0) on x
initial u = sin(pi * x)
solve diffusion using euler(dt = 1e-3) until 0.01
",
    )
    .expect("write model");
    let output = Command::new(env!("CARGO_BIN_EXE_npdec"))
        .args(["check", "--gradients", "heat.npde"])
        .current_dir(&dir)
        .output()
        .expect("npdec runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("no train task, so there are no gradients to check"),
        "{stderr}"
    );
    assert!(!stderr.contains("cannot check"), "{stderr}");
}
