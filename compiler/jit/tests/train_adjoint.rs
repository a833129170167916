//! The JIT's rates and adjoint of training against the tape's: single Euler and RK4 steps forward
//! and backward on random states, adjoints and parameters for every boundary kind in 1-D and 2-D
//! and with several channels in 3-D, in f64 and f32, and for split-step Fourier; Taylor and dot tests through the JIT; the recovery
//! of the diffusion coefficient of `identify_diffusion`; and the fallback to the tape for an
//! operation the JIT cannot compile.

use ndarray::Array2;
use npdec_ir::graph::{Graph, NodeId};
use npdec_jit::adjoint::CompiledTape;
use npdec_jit::{JitFloat, JitOptions};
use npdec_runtime::engine::{CompiledRhs, Compiler};
use npdec_runtime::train::adjoint::{Chunk, Network};
use npdec_runtime::train::compiled::{CompiledRates, Pass};
use npdec_runtime::train::gemm::ProductPrecision;
use npdec_runtime::train::gradcheck::{
    check_gradients_compiled, DOT_TOLERANCE, TAYLOR_RATE_TOLERANCE,
};
use npdec_runtime::train::lower::StateSlot;
use npdec_runtime::train::lower::{lower_train_task, LoweredTask, SampleShape};
use npdec_runtime::train::params::initialize_params;
use npdec_runtime::train::tape::{Env, Op, ParamValues, Shrink, Tape};
use npdec_runtime::train::TrainOptions;
use npdec_runtime::{run_model, RunOptions};
use npdec_symbolic::{BinaryOp, FieldId, ParamId};
use npdec_symbolic::{Model, Task};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("npdec-jitadj-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir
}

/// A linear congruential generator: small, seeded, enough for test data.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Returns a value in [−1, 1).
    fn symmetric(&mut self) -> f64 {
        2.0 * self.next() - 1.0
    }
}

/// Writes `samples` rows of `features` values in [−1, 1) with a class label in `0..3` last.
fn write_csv(path: &Path, samples: usize, features: usize, seed: u64) {
    let mut rng = Lcg(seed);
    let mut text = String::new();
    for i in 0..samples {
        let row: Vec<String> = (0..features)
            .map(|_| format!("{:.6}", 0.5 * rng.symmetric()))
            .collect();
        text.push_str(&row.join(","));
        text.push_str(&format!(",{}\n", i % 3));
    }
    std::fs::write(path, text).expect("write CSV");
}

fn checked_model(dir: &Path, source: &str) -> Model {
    let path = dir.join("model.npde");
    std::fs::write(&path, source).expect("write model");
    let (_, checked) = npdec_sema::check_path(&path).expect("read model");
    match checked.model {
        Some(model) => model,
        None => panic!(
            "the test model does not check: {:#?}\n{source}",
            checked.diagnostics
        ),
    }
}

/// The JIT as a compiler of train tasks only, as the command line's engine uses it.
#[derive(Debug)]
struct TrainJit;

impl Compiler for TrainJit {
    fn name(&self) -> &str {
        "JIT"
    }

    fn compile_f64<'g>(
        &self,
        _graph: &'g Graph,
        _roots: &[NodeId],
    ) -> Result<Box<dyn CompiledRhs<f64> + 'g>, String> {
        Err("this test compiler compiles train tasks only".into())
    }

    fn compile_f32<'g>(
        &self,
        _graph: &'g Graph,
        _roots: &[NodeId],
    ) -> Result<Box<dyn CompiledRhs<f32> + 'g>, String> {
        Err("this test compiler compiles train tasks only".into())
    }

    fn compile_rates(
        &self,
        task: &LoweredTask,
        _precision: ProductPrecision,
    ) -> Result<Box<dyn CompiledRates>, String> {
        let compiled = CompiledTape::<f64>::new(task, &JitOptions::default())
            .map_err(|unsupported| unsupported.to_string())?;
        Ok(Box::new(compiled))
    }
}

/// The boundary declarations of every kind on `x`, and the same kind on both sides.
const BOUNDARIES: [(&str, &str); 5] = [
    ("periodic", "boundary u: periodic on x"),
    ("dirichlet", "boundary u: dirichlet(0.2) on x"),
    ("neumann", "boundary u: neumann(0.5) on x"),
    ("robin", "boundary u: robin(1, 2, 0.1) on x"),
    (
        "mixed",
        "boundary u: dirichlet(-0.1) on x.min\nboundary u: robin(2, 1, 0.3) on x.max",
    ),
];

const SCHEMES: [&str; 2] = ["euler", "rk4"];

/// Reaction–diffusion with a scalar and a grid coefficient, first and second derivatives of the
/// state and of a nonlinear operand, and every pointwise function the examples use.
const BODY_1D: &str = "D * laplace(u) + P * u - 0.5 * u^3 + 0.2 * tanh(u) * exp(-u^2) - 0.1 * diff(u^2, x) + 0.05 * laplace(tanh(u)) + 0.1 * sin(x) / (1.5 + cos(u))";

/// A classifier over a 1-D grid of 9 points whose equation is `dt(u) = body`.
fn line_model(boundary: &str, scheme: &str, body: &str) -> String {
    format!(
        "model line
grid x in [0, 1] points 9
field u(x)
{boundary}
data d = csv(\"data.csv\", label = last) split 6
param D = 0.3
param P(x) ~ normal(0.1, 0.05)
param Wout[3, 9] ~ glorot
equation net: dt(u) = {body}
initial u = d.input
readout y = Wout @ u
train net on d using {scheme}(steps = 3) until 0.003 loss cross_entropy(y, label) optimizer adam() epochs 1 batch 3
"
    )
}

/// A classifier over a 2-D grid of 6 × 5 points and two channels, with a one-channel grid
/// coefficient read by both channels.
fn plane_model(boundaries: &str, scheme: &str) -> String {
    format!(
        "model plane
grid x in [0, 1] points 6
grid y in [0, 1] points 5
field u(x, y)[2]
{boundaries}
data d = csv(\"data.csv\", label = last) split 6
param D = 0.2
param P(x, y) ~ normal(0.1, 0.05)
param Wout[3, 60] ~ glorot
equation net: dt(u) = D * laplace(u) + P * u - 0.3 * u^3 + 0.1 * diff(tanh(u), y) + 0.05 * diff(u, x) * exp(-u^2)
initial u = 0.1 * sin(3 * x) * cos(2 * y)
readout s = Wout @ u
train net on d using {scheme}(steps = 2) until 0.002 loss cross_entropy(s, label) optimizer adam() epochs 1 batch 3
"
    )
}

/// Returns a classifier over a 3-D grid of 4 × 3 × 5 points and three channels, whose sparse
/// operators run over the channels as a fourth kernel axis.
fn volume_model(boundaries: &str, scheme: &str) -> String {
    format!(
        "model volume
grid x in [0, 1] points 4
grid y in [0, 1] points 3
grid z in [0, 1] points 5
field u(x, y, z)[3]
{boundaries}
data d = csv(\"data.csv\", label = last) split 6
param D = 0.2
param P(x, y, z) ~ normal(0.1, 0.05)
param Wout[3, 180] ~ glorot
equation net: dt(u) = D * laplace(u) + P * u - 0.3 * u^3 + 0.1 * diff(tanh(u), z) + 0.05 * diff(u, x) * exp(-u^2)
initial u = 0.1 * sin(3 * x) * cos(2 * y) * z
readout s = Wout @ u
train net on d using {scheme}(steps = 2) until 0.002 loss cross_entropy(s, label) optimizer adam() epochs 1 batch 3
"
    )
}

/// A right-hand side with the conservative `div`, `upwind` and every reduction.
const BODY_SPATIAL: &str = "div((1 + P^2) * grad(u)) - upwind(P + 0.2 * u, tanh(u), x) + 0.1 * mean(u) * u - 0.05 * norm(u) + 0.1 * max(u) - 0.1 * min(u) + 0.02 * sum(u^2) - 0.1 * integral(u) * D";

/// A right-hand side that reads the labels, as a factor and inside a nonlinear function.
const BODY_LABEL: &str = "D * laplace(u) + 0.1 * P * d.label - 0.2 * u * tanh(u + d.label)";

/// A conservative `div` whose coefficient is its operand, so that both of the operation's operand
/// adjoints add up in one value, beside one with a distinct coefficient.
const BODY_SHARED_OPERAND: &str =
    "D * div(u * grad(u)) + 0.1 * div((1 + P^2) * grad(tanh(u))) + P * u - 0.5 * u^3";

/// Returns a classifier over a 1-D grid of 9 points whose equation has a dense layer of the state.
fn dense_model(boundary: &str, scheme: &str) -> String {
    line_model(
        boundary,
        scheme,
        "D * laplace(u) + tanh(W @ u + P) - 0.2 * u * (W @ tanh(u))",
    )
    .replace(
        "param D = 0.3",
        "param D = 0.3\nparam W[9, 9] ~ normal(0, 0.3)",
    )
}

/// Returns a classifier over an image of 6 × 4 pixels and two channels whose equation has a convolution
/// with a kernel per step, pooling and upsampling.
fn image_model(boundaries: &str, scheme: &str) -> String {
    format!(
        "model image
grid (row, col) image (6, 4)
field u(row, col)[2]
{boundaries}
data d = csv(\"data.csv\", label = last) split 6
param K(t)[2, 2, 3, 3] ~ he
param c = 0.1
param a = 0.5
param Wout[3, 48] ~ glorot
equation net: dt(u) = tanh(conv(K, u) + c) + a * (upsample(pool(u, 2), 2) - u) + 0.1 * conv(K, tanh(u)) + 0.05 * d.input
initial u = d.input
readout s = Wout @ u
train net on d using {scheme}(steps = 2) until 0.002 loss cross_entropy(s, label) optimizer adam() epochs 1 batch 3
"
    )
}

/// Returns a recurrent classifier whose equation reads the samples through `reader` (`d.input`, or
/// `d.sequence` for samples of 4 rows of 3 features) with the matrix `U` of `inputs` columns.
fn recurrent_model(scheme: &str, reader: &str, inputs: usize) -> String {
    format!(
        "model recurrent
grid k index 6
field h(k)
data d = csv(\"data.csv\", label = last) split 6
param W[6, 6] ~ normal(0, 0.3)
param U[6, {inputs}] ~ glorot
param b[6] = 0.1
param Wout[3, 6] ~ glorot
equation cell: dt(h) = -h + tanh(W @ h + U @ {reader} + b)
initial h = 0
readout y = Wout @ h
train cell on d using {scheme}(steps = 4) until 2 loss cross_entropy(y, label) optimizer adam() epochs 1 batch 3
"
    )
}

/// Returns a recurrent classifier whose equation stacks six scalars of the state into a vector.
fn stacked_model(scheme: &str) -> String {
    recurrent_model(scheme, "d.input", 12).replace(
        "-h + tanh(W @ h + U @ d.input + b)",
        "-h + tanh(W @ h + U @ d.input + b) + 0.1 * [sum(h^2), max(h), min(h), mean(tanh(h)), norm(h), sum(W @ h)]",
    )
}

/// Returns a diffractive classifier of a complex field on a periodic line of 8 points advanced by
/// split-step Fourier, whose rate reads a phase per step, a grid parameter, a scalar, the samples
/// and the labels.
fn split_line_model() -> String {
    "model split_line
grid x in [-4, 4] points 8
field E(x): complex
data d = csv(\"data.csv\", label = last) split 6
param phase(t, x) ~ normal(0, 1)
param V(x) ~ normal(0, 0.5)
param gain = 3
param g = 0.2
equation propagate: dt(E) = -0.5i * laplace(E) - 1i * phase * E - g * V^2 * E + (0.1 + 0.3i) * E + 0.1i * d.input * E - 0.05 * d.label * E
boundary E: periodic on x
initial E = (0.5 + d.input) * (1 + 0.5i)
readout scores = gain * [integral(abs(E)^2 * max(x, 0)), integral(abs(E)^2 * max(-x, 0)), integral(abs(E))] / integral(abs(E)^2)
train propagate on d using split_step(steps = 3) until 1.5 loss cross_entropy(scores, label) optimizer adam() epochs 1 batch 3
"
    .to_string()
}

/// Returns a diffractive classifier of a complex field on a periodic 6 × 4 grid advanced by
/// split-step Fourier, with a phase mask per step and a real and an imaginary rate part.
fn split_plane_model() -> String {
    "model split_plane
grid x in [-3, 3] points 6
grid y in [-2, 2] points 4
field E(x, y): complex
data d = csv(\"data.csv\", label = last) split 6
param phase(t, x, y) ~ normal(0, 1)
param V(x, y) ~ normal(0, 0.5)
param gain = 3
equation propagate: dt(E) = -0.5i * laplace(E) - 1i * phase * E - 0.2 * tanh(V) * E + (0.1 + 0.3i) * V^2 * E
boundary E: periodic on x, y
initial E = exp(-x^2 - y^2) * (1 + 0.5i)
readout scores = gain * [integral(abs(E)^2 * max(x, 0)), integral(abs(E)^2 * max(-x, 0) * max(y, 0)), integral(abs(E))] / integral(abs(E)^2)
train propagate on d using split_step(steps = 2) until 1 loss cross_entropy(scores, label) optimizer adam() epochs 1 batch 3
"
    .to_string()
}

/// Boundary sets of the image model.
const IMAGE_BOUNDARIES: [(&str, &str); 2] = [
    ("neumann", "boundary u: neumann(0) on row, col"),
    (
        "mixed",
        "boundary u: periodic on row\nboundary u: dirichlet(0.1) on col",
    ),
];

/// Boundary sets of the 2-D model: every kind, and a different kind on each side and axis.
const PLANE_BOUNDARIES: [(&str, &str); 3] = [
    (
        "mixed",
        "boundary u: neumann(0.2) on x.min\nboundary u: dirichlet(0.1) on x.max\nboundary u: periodic on y",
    ),
    (
        "robin",
        "boundary u: robin(1, 2, 0.1) on x\nboundary u: dirichlet(-0.2) on y.min\nboundary u: neumann(0.3) on y.max",
    ),
    (
        "periodic",
        "boundary u: periodic on x\nboundary u: periodic on y",
    ),
];

/// Boundary sets of the 3-D model: a different kind on each side and axis, and Neumann
/// conditions everywhere as in `examples/digits.npde`.
const VOLUME_BOUNDARIES: [(&str, &str); 2] = [
    (
        "mixed",
        "boundary u: neumann(0.2) on x.min\nboundary u: dirichlet(0.1) on x.max\nboundary u: periodic on y\nboundary u: robin(1, 2, 0.1) on z",
    ),
    ("neumann", "boundary u: neumann(0) on x, y, z"),
];

struct Fixture {
    dir: PathBuf,
    model: Model,
    lowered: LoweredTask,
    features: usize,
}

fn fixture(name: &str, source: &str, features: usize) -> Fixture {
    fixture_with_dims(name, source, vec![features])
}

/// Returns the fixture of a model whose samples have the shape `dims`.
fn fixture_with_dims(name: &str, source: &str, dims: Vec<usize>) -> Fixture {
    let features = dims.iter().product();
    let dir = temp_dir(name);
    write_csv(&dir.join("data.csv"), 8, features, 99);
    let model = checked_model(&dir, source);
    let task = model
        .tasks
        .iter()
        .find_map(|t| match t {
            Task::Train(t) => Some(t.clone()),
            _ => None,
        })
        .expect("a train task");
    let sample = SampleShape {
        features,
        dims,
        label_width: 1,
    };
    let lowered = lower_train_task(&model, &task, &sample).expect("lowers");
    Fixture {
        dir,
        model,
        lowered,
        features,
    }
}

/// Returns `max |a − b| / max |b|` over two lists of arrays.
fn relative_difference(a: &[Array2<f64>], b: &[Array2<f64>]) -> f64 {
    let mut difference = 0.0f64;
    let mut scale = 0.0f64;
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.dim(), y.dim());
        for (p, q) in x.iter().zip(y) {
            difference = difference.max((p - q).abs());
            scale = scale.max(q.abs());
        }
    }
    difference / scale.max(1e-300)
}

fn flat_gradient(values: &ParamValues) -> Array2<f64> {
    let flat: Vec<f64> = values.values.iter().flatten().copied().collect();
    let len = flat.len();
    Array2::from_shape_vec((1, len), flat).expect("one row")
}

/// Runs one step forward and one step backward through the tape and through the JIT compiled in
/// precision `T`, from random states, adjoints and parameters, and returns the relative
/// differences of the new states, the adjoints and the parameter gradients.
fn step_differences<T: JitFloat>(
    fixture: &Fixture,
    seed: u64,
    products: ProductPrecision,
) -> [f64; 3] {
    let lowered = &fixture.lowered;
    let compiled = CompiledTape::<T>::new(lowered, &JitOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", fixture.dir.display()));
    let mut rng = Lcg(seed);
    let mut params = initialize_params(
        &fixture.model,
        lowered.steps,
        &lowered.param_step_sizes,
        seed,
    )
    .expect("params");
    for values in &mut params.values {
        for v in values.iter_mut() {
            *v += 0.1 * rng.symmetric();
        }
    }
    params.set_product_precision(products);
    let batch = 3;
    let samples = Array2::from_shape_fn((batch, fixture.features), |_| rng.symmetric());
    // The labels come from a generator of their own, so that the other inputs do not depend on
    // whether a model reads them.
    let mut label_rng = Lcg(seed + 1000);
    let labels = Array2::from_shape_fn((batch, 1), |_| label_rng.symmetric());
    let chunk = Chunk {
        samples: samples.view(),
        labels: labels.view(),
        classes: None,
        pass: None,
    };
    let states: Vec<Array2<f64>> = lowered
        .states
        .iter()
        .map(|slot| Array2::from_shape_fn((batch, slot.len()), |_| 0.8 * rng.symmetric()))
        .collect();
    let lambda: Vec<Array2<f64>> = states
        .iter()
        .map(|s| Array2::from_shape_fn(s.raw_dim(), |_| rng.symmetric()))
        .collect();
    let tape = Network {
        model: &fixture.model,
        task: lowered,
        compiled: None,
    };
    let jit = Network {
        model: &fixture.model,
        task: lowered,
        compiled: Some(&compiled),
    };
    let step = 1;

    let (mut tape_next, mut jit_next) = (states.clone(), states.clone());
    tape.step_forward(&params, &chunk, step, &mut tape_next);
    jit.step_forward(&params, &chunk, step, &mut jit_next);

    let (mut tape_lambda, mut jit_lambda) = (lambda.clone(), lambda);
    let (mut tape_gradient, mut jit_gradient) = (params.zeros_like(), params.zeros_like());
    tape.step_reverse(
        &params,
        &chunk,
        step,
        &states,
        &mut tape_lambda,
        &mut tape_gradient,
    );
    jit.step_reverse(
        &params,
        &chunk,
        step,
        &states,
        &mut jit_lambda,
        &mut jit_gradient,
    );
    [
        relative_difference(&jit_next, &tape_next),
        relative_difference(&jit_lambda, &tape_lambda),
        relative_difference(
            &[flat_gradient(&jit_gradient)],
            &[flat_gradient(&tape_gradient)],
        ),
    ]
}

fn assert_steps_agree(name: &str, fixture: &Fixture) {
    for seed in [1, 2] {
        let [states, adjoints, gradients] =
            step_differences::<f64>(fixture, seed, ProductPrecision::F64);
        assert!(states <= 1e-12, "{name}, f64: states differ by {states:e}");
        assert!(
            adjoints <= 1e-12,
            "{name}, f64: adjoints differ by {adjoints:e}"
        );
        assert!(
            gradients <= 1e-12,
            "{name}, f64: parameter gradients differ by {gradients:e}"
        );
        let [states, adjoints, gradients] =
            step_differences::<f32>(fixture, seed, ProductPrecision::F64);
        assert!(states <= 1e-5, "{name}, f32: states differ by {states:e}");
        assert!(
            adjoints <= 1e-5,
            "{name}, f32: adjoints differ by {adjoints:e}"
        );
        assert!(
            gradients <= 1e-5,
            "{name}, f32: parameter gradients differ by {gradients:e}"
        );
    }
}

#[test]
fn line_steps_match_tape_for_every_boundary() {
    for (kind, boundary) in BOUNDARIES {
        for scheme in SCHEMES {
            let name = format!("line-{kind}-{scheme}");
            let fixture = fixture(&name, &line_model(boundary, scheme, BODY_1D), 9);
            assert_steps_agree(&name, &fixture);
            let _ = std::fs::remove_dir_all(&fixture.dir);
        }
    }
}

#[test]
fn plane_steps_match_tape_for_every_boundary() {
    for (kind, boundaries) in PLANE_BOUNDARIES {
        for scheme in SCHEMES {
            let name = format!("plane-{kind}-{scheme}");
            let fixture = fixture(&name, &plane_model(boundaries, scheme), 4);
            assert_steps_agree(&name, &fixture);
            let _ = std::fs::remove_dir_all(&fixture.dir);
        }
    }
}

#[test]
fn volume_steps_match_tape_for_every_boundary() {
    for (kind, boundaries) in VOLUME_BOUNDARIES {
        for scheme in SCHEMES {
            let name = format!("volume-{kind}-{scheme}");
            let fixture = fixture(&name, &volume_model(boundaries, scheme), 4);
            assert_steps_agree(&name, &fixture);
            let _ = std::fs::remove_dir_all(&fixture.dir);
        }
    }
}

#[test]
fn spatial_and_reduction_steps_match_tape() {
    for (kind, boundary) in BOUNDARIES {
        for scheme in SCHEMES {
            let name = format!("spatial-{kind}-{scheme}");
            let fixture = fixture(&name, &line_model(boundary, scheme, BODY_SPATIAL), 9);
            assert_steps_agree(&name, &fixture);
            let _ = std::fs::remove_dir_all(&fixture.dir);
        }
    }
}

#[test]
fn softmax_steps_match_tape() {
    for scheme in SCHEMES {
        let name = format!("softmax-{scheme}");
        let source = plane_model(PLANE_BOUNDARIES[0].1, scheme)
            .replace("+ 0.05 * diff(u, x) * exp(-u^2)", "+ 0.3 * softmax(u) * P");
        let fixture = fixture(&name, &source, 4);
        assert_steps_agree(&name, &fixture);
        let _ = std::fs::remove_dir_all(&fixture.dir);
    }
}

#[test]
fn dense_steps_match_tape() {
    for (kind, boundary) in [BOUNDARIES[0], BOUNDARIES[4]] {
        for scheme in SCHEMES {
            let name = format!("dense-{kind}-{scheme}");
            let fixture = fixture(&name, &dense_model(boundary, scheme), 9);
            assert_steps_agree(&name, &fixture);
            let _ = std::fs::remove_dir_all(&fixture.dir);
        }
    }
}

/// Single-precision products round the same operands and run the same `f32` GEMMs in both
/// engines, so only the `f64` arithmetic around them differs.
#[test]
fn dense_steps_match_tape_with_f32_products() {
    let name = "dense-f32-products";
    let fixture = fixture(name, &dense_model(BOUNDARIES[4].1, "rk4"), 9);
    for seed in [1, 2] {
        let [states, adjoints, gradients] =
            step_differences::<f64>(&fixture, seed, ProductPrecision::F32);
        assert!(states <= 1e-12, "{name}: states differ by {states:e}");
        assert!(adjoints <= 1e-12, "{name}: adjoints differ by {adjoints:e}");
        assert!(
            gradients <= 1e-12,
            "{name}: parameter gradients differ by {gradients:e}"
        );
    }
    let _ = std::fs::remove_dir_all(&fixture.dir);
}

#[test]
fn image_steps_match_tape() {
    for (kind, boundaries) in IMAGE_BOUNDARIES {
        for scheme in SCHEMES {
            let name = format!("image-{kind}-{scheme}");
            let fixture = fixture(&name, &image_model(boundaries, scheme), 24);
            assert_steps_agree(&name, &fixture);
            let _ = std::fs::remove_dir_all(&fixture.dir);
        }
    }
}

#[test]
fn recurrent_steps_match_tape() {
    for scheme in SCHEMES {
        let name = format!("recurrent-input-{scheme}");
        let fixture = fixture(&name, &recurrent_model(scheme, "d.input", 12), 12);
        assert_steps_agree(&name, &fixture);
        let _ = std::fs::remove_dir_all(&fixture.dir);

        let name = format!("recurrent-sequence-{scheme}");
        let source = recurrent_model(scheme, "d.sequence", 3);
        let fixture = fixture_with_dims(&name, &source, vec![4, 3]);
        assert_steps_agree(&name, &fixture);
        let _ = std::fs::remove_dir_all(&fixture.dir);
    }
}

#[test]
fn label_steps_match_tape() {
    for (kind, boundary) in [BOUNDARIES[0], BOUNDARIES[4]] {
        for scheme in SCHEMES {
            let name = format!("label-{kind}-{scheme}");
            let fixture = fixture(&name, &line_model(boundary, scheme, BODY_LABEL), 9);
            assert_steps_agree(&name, &fixture);
            let _ = std::fs::remove_dir_all(&fixture.dir);
        }
    }
}

#[test]
fn shared_operand_steps_match_tape() {
    for (kind, boundary) in BOUNDARIES {
        for scheme in SCHEMES {
            let name = format!("shared-operand-{kind}-{scheme}");
            let fixture = fixture(&name, &line_model(boundary, scheme, BODY_SHARED_OPERAND), 9);
            let shared = fixture.lowered.rhs.nodes.iter().any(|node| {
                matches!(node.op, Op::DivGrad { coefficient, operand, .. } if coefficient == operand)
            });
            assert!(shared, "{name}: no `div` reads one value as both operands");
            assert_steps_agree(&name, &fixture);
            let _ = std::fs::remove_dir_all(&fixture.dir);
        }
    }
}

/// Evaluates the rate `upwind(w, w, x)` with `w = P · u` on a line of 8 points and its adjoint at
/// random states, parameters and rate adjoints, with the JIT in precision `T` and on the tape.
/// Returns the relative differences of the rates, the state adjoints and the gradient of `P`.
fn upwind_of_one_value_differences<T: JitFloat>(seed: u64) -> [f64; 3] {
    let (points, batch, spacing) = (8, 3, 0.125);
    let mut tape = Tape::default();
    let state = tape.push(Op::State(0), points);
    let param = tape.push(Op::Param(ParamId(0)), points);
    let w = tape.push(Op::Binary(BinaryOp::Mul, param, state), points);
    let geometry = Arc::new(Shrink::new(&[points], &[1]));
    let out = geometry.out_points();
    let upwind = tape.push(
        Op::Upwind {
            velocity: w,
            operand: w,
            channels: 1,
            geometry,
            backward: vec![(-1, -1.0 / spacing), (0, 1.0 / spacing)],
            forward: vec![(0, -1.0 / spacing), (1, 1.0 / spacing)],
        },
        out,
    );
    // The rate has `out` entries, which the compiled rates repeat over the slot's `points`. The
    // seeds of the entries past `out` are zero, so both engines see the same cotangent.
    let slot = StateSlot {
        field: FieldId(0),
        channels: 1,
        points,
        rhs: vec![(None, upwind)],
        initial: 0,
        dirichlet: Vec::new(),
        split: None,
    };
    let compiled = CompiledTape::<T>::compile(
        &tape,
        std::slice::from_ref(&slot),
        &[upwind],
        &JitOptions::default(),
    )
    .expect("compiles");

    let mut rng = Lcg(seed);
    let params = ParamValues::new(
        vec![(0..points).map(|_| 0.5 + rng.symmetric()).collect()],
        vec![points],
    );
    let states = vec![Array2::from_shape_fn((batch, points), |_| rng.symmetric())];
    let d_rate =
        Array2::from_shape_fn(
            (batch, points),
            |(_, i)| {
                if i < out {
                    rng.symmetric()
                } else {
                    0.0
                }
            },
        );
    let no_data = Array2::zeros((0, 0));
    let env = Env {
        states: &states,
        params: &params,
        samples: None,
        labels: None,
        step: 0,
        time: 0.0,
        batch,
    };
    let values = tape.forward(&env);
    let mut tape_adjoints = vec![Array2::zeros((batch, points))];
    let mut tape_gradients = params.zeros_like();
    let seed_rows = d_rate.slice(ndarray::s![.., ..out]).to_owned();
    tape.backward(
        &env,
        &values,
        vec![(upwind, seed_rows)],
        &mut tape_adjoints,
        &mut tape_gradients,
    );

    let rates = compiled.rates(
        &states,
        no_data.view(),
        no_data.view(),
        None,
        &params,
        0,
        0.0,
    );
    let mut jit_adjoints = vec![Array2::zeros((batch, points))];
    let mut jit_gradients = params.zeros_like();
    compiled.rates_backward(
        &states,
        no_data.view(),
        no_data.view(),
        None,
        &params,
        0,
        0.0,
        std::slice::from_ref(&d_rate),
        Some(&mut jit_adjoints),
        &mut jit_gradients,
    );
    let jit_rate = rates[0].slice(ndarray::s![.., ..out]).to_owned();
    [
        relative_difference(&[jit_rate], &[values[upwind].clone()]),
        relative_difference(&jit_adjoints, &tape_adjoints),
        relative_difference(
            &[flat_gradient(&jit_gradients)],
            &[flat_gradient(&tape_gradients)],
        ),
    ]
}

/// The lowering never reads one value as both operands of `upwind`, because it reads the velocity
/// on the output grid and the operand on a wider one, so a tape built by hand covers that case.
#[test]
fn upwind_of_one_value_matches_tape() {
    for seed in [1, 2, 3] {
        let [rates, adjoints, gradients] = upwind_of_one_value_differences::<f64>(seed);
        assert!(rates <= 1e-12, "f64: rates differ by {rates:e}");
        assert!(adjoints <= 1e-12, "f64: adjoints differ by {adjoints:e}");
        assert!(
            gradients <= 1e-12,
            "f64: parameter gradients differ by {gradients:e}"
        );
        let [rates, adjoints, gradients] = upwind_of_one_value_differences::<f32>(seed);
        assert!(rates <= 1e-5, "f32: rates differ by {rates:e}");
        assert!(adjoints <= 1e-5, "f32: adjoints differ by {adjoints:e}");
        assert!(
            gradients <= 1e-5,
            "f32: parameter gradients differ by {gradients:e}"
        );
    }
}

#[test]
fn stacked_vector_steps_match_tape() {
    for scheme in SCHEMES {
        let name = format!("stack-{scheme}");
        let fixture = fixture(&name, &stacked_model(scheme), 12);
        let stacks = fixture
            .lowered
            .rhs
            .nodes
            .iter()
            .any(|node| matches!(node.op, Op::Stack(_)));
        assert!(stacks, "{name}: the right-hand side stacks no vector");
        assert_steps_agree(&name, &fixture);
        let _ = std::fs::remove_dir_all(&fixture.dir);
    }
}

#[test]
fn split_steps_match_tape() {
    let cases = [
        ("split-line", split_line_model(), 8),
        ("split-plane", split_plane_model(), 4),
    ];
    for (name, source, features) in cases {
        let fixture = fixture(name, &source, features);
        assert_steps_agree(name, &fixture);
        let _ = std::fs::remove_dir_all(&fixture.dir);
    }
}

#[test]
fn taylor_and_dot_tests_through_jit() {
    let cases = [
        (
            "taylor-line-mixed",
            line_model(BOUNDARIES[4].1, "rk4", BODY_1D),
            9,
        ),
        (
            "taylor-line-robin",
            line_model(BOUNDARIES[3].1, "euler", BODY_1D),
            9,
        ),
        ("taylor-plane", plane_model(PLANE_BOUNDARIES[1].1, "rk4"), 4),
        ("taylor-dense", dense_model(BOUNDARIES[4].1, "rk4"), 9),
        (
            "taylor-image",
            image_model(IMAGE_BOUNDARIES[1].1, "euler"),
            24,
        ),
        (
            "taylor-spatial",
            line_model(BOUNDARIES[4].1, "rk4", BODY_SPATIAL),
            9,
        ),
        (
            "taylor-recurrent",
            recurrent_model("rk4", "d.input", 12),
            12,
        ),
        (
            "taylor-label",
            line_model(BOUNDARIES[4].1, "rk4", BODY_LABEL),
            9,
        ),
        (
            "taylor-shared-operand",
            line_model(BOUNDARIES[3].1, "rk4", BODY_SHARED_OPERAND),
            9,
        ),
        ("taylor-stack", stacked_model("euler"), 12),
        ("taylor-split-line", split_line_model(), 8),
        ("taylor-split-plane", split_plane_model(), 4),
    ];
    for (name, source, features) in cases {
        let dir = temp_dir(name);
        write_csv(&dir.join("data.csv"), 8, features, 7);
        let model = checked_model(&dir, &source);
        let report =
            check_gradients_compiled(&model, &dir, 5, Some(&TrainJit)).expect("the check runs");
        for check in &report.checks {
            assert_eq!(
                check.adjoint_engine, "JIT",
                "{name}: {:?}",
                check.adjoint_fallback
            );
            assert!(
                check
                    .rates
                    .iter()
                    .all(|r| (r - 2.0).abs() <= TAYLOR_RATE_TOLERANCE),
                "{name}: Taylor rates {:?} (remainders {:?})",
                check.rates,
                check.remainders
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
}

#[test]
fn identify_diffusion_through_jit() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let path = examples.join("identify_diffusion.npde");
    let (_, checked) = npdec_sema::check_path(&path).expect("reads the example");
    let model = checked.model.expect("the example checks");
    let out = temp_dir("identify");
    let options = RunOptions {
        out_dir: Some(out.clone()),
        model_dir: Some(examples),
        train: TrainOptions::default(),
        compiler: Some(Arc::new(TrainJit)),
        ..RunOptions::default()
    };
    let report = run_model(&model, &options).expect("trains");
    let trained = &report.training[0];
    assert_eq!(trained.adjoint_engine, "JIT");
    assert_eq!(trained.adjoint_fallback, None);
    let (_, d) = trained
        .parameters
        .iter()
        .find(|(name, _)| name == "D")
        .expect("parameter D");
    assert!(
        (d[0] - 0.1).abs() <= 0.001,
        "D = {} is not within 1 % of 0.1",
        d[0]
    );
    assert!(
        report.expects.iter().all(|e| e.passed),
        "{:?}",
        report.expects
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// A grid parameter read by 65 channels has more copies than the reverse kernels sum with
/// unrolled loads, so the task trains on the tape.
#[test]
fn wide_broadcast_falls_back_to_tape() {
    let source = "model wide
grid x in [0, 1] points 3
field u(x)[65]
boundary u: periodic on x
data d = csv(\"data.csv\", label = last) split 6
param P(x) ~ normal(0.1, 0.05)
param Wout[3, 195] ~ glorot
equation net: dt(u) = P * u
initial u = 0.1 + 0.1 * sin(x)
readout y = Wout @ u
train net on d using euler(steps = 2) until 0.002 loss cross_entropy(y, label) optimizer adam() epochs 1 batch 3
";
    let fixture = fixture("fallback", source, 3);
    let error = match CompiledTape::<f64>::new(&fixture.lowered, &JitOptions::default()) {
        Ok(_) => panic!("a value read 65 times compiled"),
        Err(error) => error,
    };
    assert_eq!(error.op, "Binary");
    assert!(error.reason.contains("65 times"), "{error}");

    let options = RunOptions {
        out_dir: Some(fixture.dir.join("out")),
        model_dir: Some(fixture.dir.clone()),
        train: TrainOptions {
            max_epochs: Some(1),
            ..TrainOptions::default()
        },
        compiler: Some(Arc::new(TrainJit)),
        ..RunOptions::default()
    };
    let report = run_model(&fixture.model, &options).expect("trains on the tape");
    assert_eq!(report.training[0].adjoint_engine, "tape");
    let warnings: Vec<&str> = report
        .warnings
        .iter()
        .filter(|w| w.message.contains("adjoint"))
        .map(|w| w.message.as_str())
        .collect();
    assert_eq!(warnings.len(), 1, "{:?}", report.warnings);
    let notes: Vec<&String> = report.warnings.iter().flat_map(|w| &w.notes).collect();
    assert!(
        notes.iter().any(|n| n.contains("Binary")),
        "the warning does not name the operation: {notes:?}"
    );
    let _ = std::fs::remove_dir_all(&fixture.dir);
}

#[test]
fn abs_derivative_matches_signum() {
    let fixture = fixture(
        "abs",
        &line_model(BOUNDARIES[0].1, "euler", "abs(u) + D * P"),
        9,
    );
    let compiled =
        CompiledTape::<f64>::new(&fixture.lowered, &JitOptions::default()).expect("compiles");
    let lowered = &fixture.lowered;
    let params = initialize_params(&fixture.model, lowered.steps, &lowered.param_step_sizes, 1)
        .expect("params");
    let values = [
        -0.0,
        0.0,
        f64::NAN,
        f64::NEG_INFINITY,
        f64::INFINITY,
        -2.0,
        3.0,
        -1e-300,
        1e-300,
    ];
    let states = vec![Array2::from_shape_vec((1, 9), values.to_vec()).expect("one row")];
    let d_rates = vec![Array2::from_elem((1, 9), 1.0)];
    let mut adjoints = vec![Array2::zeros((1, 9))];
    let mut gradients = params.zeros_like();
    let samples = Array2::zeros((1, 9));
    let labels = Array2::zeros((1, 1));
    compiled.rates_backward(
        &states,
        samples.view(),
        labels.view(),
        None,
        &params,
        0,
        0.0,
        &d_rates,
        Some(&mut adjoints),
        &mut gradients,
    );
    for (x, derivative) in values.iter().zip(adjoints[0].iter()) {
        let expected = x.signum();
        if expected.is_nan() {
            assert!(derivative.is_nan(), "abs' at {x} is {derivative}, not NaN");
        } else {
            assert_eq!(
                derivative.to_bits(),
                expected.to_bits(),
                "abs' at {x} is {derivative}, not {expected}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&fixture.dir);
}

/// The reverse sweep reuses the forward values of the last `rates` call only at equal inputs.
#[test]
fn reverse_sweep_reuses_only_equal_forward() {
    let fixture = fixture("reuse", &dense_model(BOUNDARIES[0].1, "euler"), 9);
    let lowered = &fixture.lowered;
    let params = initialize_params(&fixture.model, lowered.steps, &lowered.param_step_sizes, 3)
        .expect("params");
    let mut rng = Lcg(5);
    let mut random = |rows: usize| Array2::from_shape_fn((rows, 9), |_| rng.symmetric());
    let (first, second, d_rates, samples) = (random(3), random(3), random(3), random(3));
    let labels = Array2::from_shape_fn((3, 1), |(b, _)| b as f64);
    let backward = |compiled: &CompiledTape<f64>, states: &Array2<f64>| {
        let mut adjoints = vec![Array2::zeros((3, 9))];
        let mut gradients = params.zeros_like();
        compiled.rates_backward(
            std::slice::from_ref(states),
            samples.view(),
            labels.view(),
            None,
            &params,
            1,
            0.5,
            std::slice::from_ref(&d_rates),
            Some(&mut adjoints),
            &mut gradients,
        );
        (adjoints, gradients)
    };
    let reference = CompiledTape::<f64>::new(lowered, &JitOptions::default()).expect("compiles");
    let expected = backward(&reference, &second);

    let compiled = CompiledTape::<f64>::new(lowered, &JitOptions::default()).expect("compiles");
    let _ = compiled.rates(
        std::slice::from_ref(&first),
        samples.view(),
        labels.view(),
        None,
        &params,
        1,
        0.5,
    );
    let after_other_state = backward(&compiled, &second);
    assert_eq!(after_other_state.0, expected.0, "state adjoints");
    assert_eq!(after_other_state.1, expected.1, "parameter gradients");

    let _ = compiled.rates(
        std::slice::from_ref(&second),
        samples.view(),
        labels.view(),
        None,
        &params,
        1,
        0.5,
    );
    let after_same_state = backward(&compiled, &second);
    assert_eq!(after_same_state.0, expected.0, "state adjoints");
    assert_eq!(after_same_state.1, expected.1, "parameter gradients");
    let _ = std::fs::remove_dir_all(&fixture.dir);
}

/// A reverse sweep of the forward sweep's pass compares only the states before reusing its
/// values; one of another pass compares the parameters too, so changed weights are not missed.
#[test]
fn reverse_sweep_of_another_pass_compares_parameters() {
    let fixture = fixture("pass", &dense_model(BOUNDARIES[0].1, "euler"), 9);
    let lowered = &fixture.lowered;
    let params = initialize_params(&fixture.model, lowered.steps, &lowered.param_step_sizes, 3)
        .expect("params");
    let mut changed = params.clone();
    for values in &mut changed.values {
        for value in values.iter_mut() {
            *value = 0.5 * *value + 0.25;
        }
    }
    let mut rng = Lcg(11);
    let mut random = |rows: usize| Array2::from_shape_fn((rows, 9), |_| rng.symmetric());
    let (first, second, d_rates, samples) = (random(3), random(3), random(3), random(3));
    let labels = Array2::from_shape_fn((3, 1), |(b, _)| b as f64);
    let backward = |compiled: &CompiledTape<f64>,
                    states: &Array2<f64>,
                    pass: Option<Pass>,
                    params: &ParamValues| {
        let mut adjoints = vec![Array2::zeros((3, 9))];
        let mut gradients = params.zeros_like();
        compiled.rates_backward(
            std::slice::from_ref(states),
            samples.view(),
            labels.view(),
            pass,
            params,
            1,
            0.5,
            std::slice::from_ref(&d_rates),
            Some(&mut adjoints),
            &mut gradients,
        );
        (adjoints, gradients)
    };
    let forward = |compiled: &CompiledTape<f64>,
                   states: &Array2<f64>,
                   pass: Option<Pass>,
                   params: &ParamValues| {
        compiled.rates(
            std::slice::from_ref(states),
            samples.view(),
            labels.view(),
            pass,
            params,
            1,
            0.5,
        )
    };
    let reference = CompiledTape::<f64>::new(lowered, &JitOptions::default()).expect("compiles");
    let expected = backward(&reference, &first, None, &params);
    let expected_changed = backward(&reference, &first, None, &changed);
    assert_ne!(
        expected.1, expected_changed.1,
        "the change must reach the gradients"
    );

    let compiled = CompiledTape::<f64>::new(lowered, &JitOptions::default()).expect("compiles");
    let pass = Pass::fresh();
    let _ = forward(&compiled, &first, Some(pass), &params);
    assert_eq!(backward(&compiled, &first, Some(pass), &params), expected);

    let _ = forward(&compiled, &second, Some(pass), &params);
    assert_eq!(backward(&compiled, &first, Some(pass), &params), expected);

    let _ = forward(&compiled, &first, Some(pass), &params);
    let other = Pass::fresh();
    assert_ne!(other, pass);
    assert_eq!(
        backward(&compiled, &first, Some(other), &changed),
        expected_changed
    );
    let _ = forward(&compiled, &first, Some(other), &params);
    assert_eq!(
        backward(&compiled, &first, None, &changed),
        expected_changed
    );
    let _ = std::fs::remove_dir_all(&fixture.dir);
}

/// The reverse sweep adds to the gradients it is given: a dense weight used twice, a pointwise
/// parameter read once or twice and a scalar all end at the given values plus those of a sweep
/// into zeros, and the image model's convolution kernel (a parameter per step) as well, in f64
/// and f32.
#[test]
fn reverse_sweep_adds_to_given_gradients() {
    assert_sweep_adds::<f64>();
    assert_sweep_adds::<f32>();
}

fn assert_sweep_adds<T: JitFloat>() {
    let models = [
        (
            "accumulate-dense",
            dense_model(BOUNDARIES[2].1, "euler"),
            9,
            9,
        ),
        (
            "accumulate-twice",
            line_model(
                BOUNDARIES[2].1,
                "euler",
                "D * laplace(u) + tanh(W @ u + P) + P * u",
            )
            .replace(
                "param D = 0.3",
                "param D = 0.3\nparam W[9, 9] ~ normal(0, 0.3)",
            ),
            9,
            9,
        ),
        (
            "accumulate-image",
            image_model(IMAGE_BOUNDARIES[0].1, "euler"),
            24,
            48,
        ),
    ];
    for (name, source, features, len) in models {
        let fixture = fixture(name, &source, features);
        let lowered = &fixture.lowered;
        let params = initialize_params(&fixture.model, lowered.steps, &lowered.param_step_sizes, 2)
            .expect("params");
        let mut rng = Lcg(17);
        let mut random = |rows: usize, columns: usize| {
            Array2::from_shape_fn((rows, columns), |_| rng.symmetric())
        };
        let (states, d_rates) = (random(3, len), random(3, len));
        let samples = random(3, features);
        let labels = random(3, 1);
        let compiled = CompiledTape::<T>::new(lowered, &JitOptions::default()).expect("compiles");
        let backward = |gradients: &mut ParamValues| {
            compiled.rates_backward(
                std::slice::from_ref(&states),
                samples.view(),
                labels.view(),
                None,
                &params,
                1,
                0.5,
                std::slice::from_ref(&d_rates),
                None,
                gradients,
            );
        };
        let mut fresh = params.zeros_like();
        backward(&mut fresh);
        let mut given = params.zeros_like();
        for values in &mut given.values {
            values.iter_mut().for_each(|v| *v = rng.symmetric());
        }
        let mut expected = flat_gradient(&given);
        expected += &flat_gradient(&fresh);
        backward(&mut given);
        let added = flat_gradient(&given);
        assert!(
            flat_gradient(&fresh).iter().any(|g| *g != 0.0),
            "{name} {:?}: the sweep computes gradients",
            T::PRECISION
        );
        for (i, (a, e)) in added.iter().zip(&expected).enumerate() {
            assert!(
                (a - e).abs() <= 1e-13 * (1.0 + e.abs()),
                "{name} {:?}: gradient entry {i} is {a}, expected {e}",
                T::PRECISION
            );
        }
        let _ = std::fs::remove_dir_all(&fixture.dir);
    }
}

/// Splitting a product's rows (more rows than columns) or columns across the pool gives the same
/// bits as one call, for any number of parts, a row stride longer than a row, and `beta` 0 or 1.
#[test]
fn split_products_match_one_call() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .expect("thread pool");
    let mut rng = Lcg(3);
    for (m, k, n, row_stride) in [(7, 5, 6, 9), (4, 5, 9, 11)] {
        let a: Vec<f64> = (0..m * k).map(|_| rng.symmetric()).collect();
        let b: Vec<f64> = (0..k * n).map(|_| rng.symmetric()).collect();
        let start: Vec<f64> = (0..m * row_stride).map(|_| rng.symmetric()).collect();
        for beta in [0.0, 1.0] {
            let mut expected = start.clone();
            f64::gemm(
                m,
                k,
                n,
                &a,
                (k as isize, 1),
                &b,
                (n as isize, 1),
                beta,
                &mut expected,
                (row_stride as isize, 1),
            );
            for parts in 1..=m.max(n) + 1 {
                let mut split = start.clone();
                pool.install(|| {
                    f64::gemm_split(
                        parts,
                        m,
                        k,
                        n,
                        &a,
                        (k as isize, 1),
                        &b,
                        (n as isize, 1),
                        beta,
                        &mut split,
                        (row_stride as isize, 1),
                    )
                });
                assert_eq!(split, expected, "{m} x {n}, {parts} parts, beta {beta}");
            }
        }
    }
}

/// A batch whose work is almost all one large dense product runs as one chunk whose products
/// split across the pool, with the same rates, adjoints and gradients as on one thread.
#[test]
fn wide_dense_batch_splits_products() {
    assert_split_batch_matches::<f64>();
    assert_split_batch_matches::<f32>();
}

fn assert_split_batch_matches<T: JitFloat>() {
    let width = 256;
    let source = format!(
        "model wide
grid k index {width}
field u(k)
data d = csv(\"data.csv\", label = last) split 6
param W[{width}, {width}] ~ normal(0, 0.05)
param b[{width}] = 0
param Wout[3, {width}] ~ glorot
equation net: dt(u) = tanh(W @ u + b)
initial u = d.input
readout y = Wout @ u
train net on d using euler(steps = 1) until 1 loss cross_entropy(y, label) optimizer adam() epochs 1 batch 4
"
    );
    let fixture = fixture("wide", &source, width);
    let lowered = &fixture.lowered;
    let params = initialize_params(&fixture.model, lowered.steps, &lowered.param_step_sizes, 4)
        .expect("params");
    let compiled = CompiledTape::<T>::new(lowered, &JitOptions::default()).expect("compiles");
    let batch = 128;
    assert_eq!(
        compiled.chunks(batch, 2),
        1,
        "one chunk for a wide dense batch"
    );
    assert_eq!(compiled.chunks(batch, 1), 1);
    assert_eq!(
        compiled.chunks(2, 2),
        2,
        "a small batch keeps a chunk per thread"
    );
    let small = fixture_with_dims("narrow", &dense_model(BOUNDARIES[0].1, "euler"), vec![9]);
    let narrow = CompiledTape::<T>::new(&small.lowered, &JitOptions::default()).expect("compiles");
    assert_eq!(
        narrow.chunks(batch, 2),
        2,
        "a narrow dense model keeps a chunk per thread"
    );

    let mut rng = Lcg(23);
    let mut random = |rows: usize| Array2::from_shape_fn((rows, width), |_| rng.symmetric());
    let (states, d_rates, samples) = (random(batch), random(batch), random(batch));
    let labels = Array2::<f64>::zeros((batch, 1));
    let sweep = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        pool.install(|| {
            let rates = compiled.rates(
                std::slice::from_ref(&states),
                samples.view(),
                labels.view(),
                None,
                &params,
                0,
                0.0,
            );
            let mut adjoints = vec![Array2::zeros((batch, width))];
            let mut gradients = params.zeros_like();
            compiled.rates_backward(
                std::slice::from_ref(&states),
                samples.view(),
                labels.view(),
                None,
                &params,
                0,
                0.0,
                std::slice::from_ref(&d_rates),
                Some(&mut adjoints),
                &mut gradients,
            );
            (rates, adjoints, flat_gradient(&gradients))
        })
    };
    let (one_rates, one_adjoints, one_gradients) = sweep(1);
    let (split_rates, split_adjoints, split_gradients) = sweep(2);
    assert_eq!(split_rates, one_rates, "{:?} rates", T::PRECISION);
    assert_eq!(split_adjoints, one_adjoints, "{:?} adjoints", T::PRECISION);
    assert_eq!(
        split_gradients,
        one_gradients,
        "{:?} gradients",
        T::PRECISION
    );
    let _ = std::fs::remove_dir_all(&fixture.dir);
    let _ = std::fs::remove_dir_all(&small.dir);
}

/// Without state adjoints, the reverse sweep skips the products that only feed them and still
/// gives the same parameter gradients.
#[test]
fn parameter_only_sweep_keeps_gradients() {
    let fixture = fixture("params-only", &dense_model(BOUNDARIES[1].1, "euler"), 9);
    let lowered = &fixture.lowered;
    let params = initialize_params(&fixture.model, lowered.steps, &lowered.param_step_sizes, 7)
        .expect("params");
    let mut rng = Lcg(11);
    let mut random = |rows: usize| Array2::from_shape_fn((rows, 9), |_| rng.symmetric());
    let (states, d_rates, samples) = (random(4), random(4), random(4));
    let labels = Array2::from_shape_fn((4, 1), |(b, _)| b as f64);
    let compiled = CompiledTape::<f64>::new(lowered, &JitOptions::default()).expect("compiles");
    let backward = |with_states: bool| {
        let mut adjoints = vec![Array2::zeros((4, 9))];
        let mut gradients = params.zeros_like();
        compiled.rates_backward(
            std::slice::from_ref(&states),
            samples.view(),
            labels.view(),
            None,
            &params,
            0,
            0.0,
            std::slice::from_ref(&d_rates),
            with_states.then_some(&mut adjoints[..]),
            &mut gradients,
        );
        (adjoints, gradients)
    };
    let (full_adjoints, full_gradients) = backward(true);
    let (skipped_adjoints, skipped_gradients) = backward(false);
    assert!(
        full_adjoints[0].iter().any(|a| *a != 0.0),
        "the full sweep computes state adjoints"
    );
    assert!(
        skipped_adjoints[0].iter().all(|a| *a == 0.0),
        "the parameter-only sweep leaves state adjoints alone"
    );
    assert_eq!(
        flat_gradient(&skipped_gradients),
        flat_gradient(&full_gradients)
    );
    let _ = std::fs::remove_dir_all(&fixture.dir);
}
