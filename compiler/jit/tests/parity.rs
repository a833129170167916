//! JIT against the interpreter on random models: random grids in 1-D, 2-D and 3-D, every boundary
//! kind on every side (Dirichlet, Neumann, Robin, periodic, mixed), space orders 2–8, f32 and f64,
//! and right-hand sides that exercise stencils, div-grad, upwind, convolutions, calls, coordinates
//! and time. The error relative to the interpreter's largest value must stay within 1e-12 in f64
//! and 1e-5 in f32.
//!
//! Models are written as `.npde` text and go through the real checker and discretization. The
//! generator is seeded, so a failure repeats; its message shows the model.

mod common;

use common::{random_states, relative_error, solve_graph, Rng};
use npdec_ir::graph::Graph;
use npdec_jit::{EulerStepper, JitEvaluator, JitFloat, JitOptions};
use npdec_runtime::evaluate::Evaluator;
use npdec_runtime::{Stepper, Value};

const F64_TOLERANCE: f64 = 1e-12;
const F32_TOLERANCE: f64 = 1e-5;
const AXIS_NAMES: [&str; 3] = ["x", "y", "z"];

/// A boundary condition of one side, as `.npde` text.
fn side_condition(rng: &mut Rng, first_axis: &str) -> String {
    match rng.below(3) {
        0 => format!("dirichlet(0.25 + 0.5 * {first_axis} + t)"),
        1 => "neumann(0.3)".to_string(),
        _ => format!("robin(1, 0.5, 0.2 * {first_axis})"),
    }
}

/// Returns a random model source and a description of its shape for failure messages.
fn random_model(rng: &mut Rng, dimensions: usize) -> String {
    let axes = &AXIS_NAMES[..dimensions];
    let order = [2, 4, 6, 8][rng.below(4)];
    let max_points = match dimensions {
        1 => 40,
        2 => 18,
        _ => 11,
    };
    let points: Vec<usize> = (0..dimensions)
        .map(|_| order + 1 + rng.below(max_points - order))
        .collect();
    let intervals: Vec<String> = (0..dimensions).map(|a| format!("[0, {}]", 1 + a)).collect();
    let axis_list = axes.join(", ");
    let grid = if dimensions == 1 {
        format!("grid x in [0, 1] points {}", points[0])
    } else {
        let counts: Vec<String> = points.iter().map(ToString::to_string).collect();
        format!(
            "grid ({axis_list}) in ({}) points ({})",
            intervals.join(", "),
            counts.join(", ")
        )
    };

    let mut boundaries = Vec::new();
    for axis in axes {
        if rng.below(4) == 0 {
            boundaries.push(format!("boundary u: periodic on {axis}"));
        } else {
            for side in ["min", "max"] {
                boundaries.push(format!(
                    "boundary u: {} on {axis}.{side}",
                    side_condition(rng, axes[0])
                ));
            }
        }
    }

    let rhs = match rng.below(7) {
        0 => "nu * laplace(u)".to_string(),
        1 => "nu * laplace(u) + u * (1 - u)".to_string(),
        2 => "div((1 + 0.5 * x) * grad(u))".to_string(),
        3 => "-upwind(sin(2 * pi * x), u, x, order = 2) + nu * diff(u, x, 2)".to_string(),
        4 => {
            "tanh(u) * laplace(u) + sin(pi * x) * exp(-t) + sqrt(u + 1) - relu(u - 0.5)".to_string()
        }
        5 if dimensions >= 2 => {
            "0.1 * laplace(u^2) + diff(u, x, y) + max(u, 0.3) / (1 + u^3)".to_string()
        }
        5 => "0.1 * laplace(u^2) + diff(u, x) + min(u, 0.3) / (1 + u^3)".to_string(),
        _ => "-upwind(0.7, u, x) + nu * laplace(u) + 0.5 * x * t".to_string(),
    };
    format!(
        "model random\n{grid}\nfield u({axis_list})\nconst nu = 0.05\n\
         equation e: dt(u) = {rhs}\n{}\ninitial u = 0.5\n\
         solve e using euler(dt = 1e-5) until 5e-5 order {order}\n",
        boundaries.join("\n")
    )
}

/// Evaluates the right-hand sides of a graph with both engines on one random state and returns
/// the worst relative error over the roots.
fn evaluation_error<T: JitFloat>(graph: &Graph, rng: &mut Rng, options: &JitOptions) -> f64 {
    let (step_id, _) = graph.time_step().expect("a solve graph has a time step");
    let roots = graph.inputs(step_id);
    let states = random_states::<T>(graph, rng);
    let time = T::of(0.375);
    let expected = Evaluator::<T>::new(graph, &roots).evaluate(&states, time);
    let jit = JitEvaluator::<T>::new(graph, &roots, options).unwrap_or_else(|e| panic!("{e}"));
    let actual = jit.evaluate(&states, time);
    roots
        .iter()
        .map(|r| {
            let (a, b) = (
                actual[r.index()].as_ref().expect("JIT value"),
                expected[r.index()].as_ref().expect("interpreter value"),
            );
            relative_error(a, b)
        })
        .fold(0.0, f64::max)
}

fn check_random_models<T: JitFloat>(seed: u64, cases: usize, tolerance: f64, options: &JitOptions) {
    let mut rng = Rng(seed);
    for case in 0..cases {
        let dimensions = 1 + case % 3;
        let source = random_model(&mut rng, dimensions);
        let graph = solve_graph(&source);
        let error = evaluation_error::<T>(&graph, &mut rng, options);
        assert!(
            error <= tolerance,
            "case {case}: relative error {error:e} above {tolerance:e} for\n{source}"
        );
    }
}

#[test]
fn random_models_f64() {
    check_random_models::<f64>(1, 60, F64_TOLERANCE, &JitOptions::default());
}

#[test]
fn random_models_f32() {
    check_random_models::<f32>(2, 60, F32_TOLERANCE, &JitOptions::default());
}

#[test]
fn random_models_two_threads_scalar_code() {
    let options = JitOptions {
        threads: 2,
        simd: false,
        ..JitOptions::default()
    };
    check_random_models::<f64>(3, 24, F64_TOLERANCE, &options);
}

/// Runs the whole solve with the interpreter and with the fused Euler stepper.
fn euler_error<T: JitFloat>(source: &str, options: &JitOptions) -> f64 {
    let graph = solve_graph(source);
    let mut stepper = Stepper::<T>::new(&graph).expect("a time step");
    let steps = stepper.time_step().steps;
    let (initial, _) = stepper.initial_states();
    let expected = stepper.run(&mut |_, _, _| {});
    let mut jit = EulerStepper::<T>::new(&graph, None, options).unwrap_or_else(|e| panic!("{e}"));
    for (field, state) in initial.iter().enumerate() {
        if let Some(state) = state {
            jit.set_state(npdec_symbolic::FieldId(field), state);
        }
    }
    jit.run(steps);
    let mut worst: f64 = 0.0;
    for (field, state) in expected.iter().enumerate() {
        if let (Some(state), Some(actual)) = (state, jit.state(npdec_symbolic::FieldId(field))) {
            worst = worst.max(relative_error(&actual, state));
        }
    }
    worst
}

#[test]
fn euler_stepper_random_models() {
    let mut rng = Rng(4);
    for case in 0..24 {
        let source = random_model(&mut rng, 1 + case % 3)
            .replace("initial u = 0.5", "initial u = 0.5 + 0.25 * sin(3 * x)");
        let error = euler_error::<f64>(&source, &JitOptions::default());
        assert!(
            error <= F64_TOLERANCE,
            "case {case}: relative error {error:e} for\n{source}"
        );
        let error = euler_error::<f32>(
            &source,
            &JitOptions {
                threads: 2,
                ..JitOptions::default()
            },
        );
        assert!(
            error <= F32_TOLERANCE,
            "case {case} in f32: relative error {error:e} for\n{source}"
        );
    }
}

/// Rows of 3 to 14 points along the innermost axis run every mix of the innermost loop's parts
/// (pairs of vectors, one more vector, single elements) with 4 lanes in f32 and 2 in f64, for the
/// update sweep, the Dirichlet faces and the ghost layers of whole Euler steps.
#[test]
fn every_innermost_remainder() {
    for points in 3..=14 {
        let source = format!(
            "model rows\ngrid (x, y) in ([0, 1], [0, 2]) points (6, {points})\nfield u(x, y)\n\
             const nu = 0.05\nequation e: dt(u) = nu * laplace(u) + 0.5 * x * t\n\
             boundary u: dirichlet(0.25 + 0.5 * x + t) on x\n\
             boundary u: neumann(0.3) on y.min\nboundary u: robin(1, 0.5, 0.2 * x) on y.max\n\
             initial u = 0.5 + 0.25 * sin(3 * x) * cos(2 * y)\n\
             solve e using euler(dt = 1e-6) until 5e-6 order 2\n"
        );
        let error = euler_error::<f64>(&source, &JitOptions::default());
        assert!(
            error <= F64_TOLERANCE,
            "{points} points: relative error {error:e} for\n{source}"
        );
        let error = euler_error::<f32>(&source, &JitOptions::default());
        assert!(
            error <= F32_TOLERANCE,
            "{points} points in f32: relative error {error:e} for\n{source}"
        );
    }
}

/// The update sweep computes the ghost columns of the innermost axis in its row prologue. This
/// holds for every boundary kind on that axis, with coordinates of both axes in the boundary
/// values, in 2-D and 3-D, at orders 2 and 8, on one and two threads.
#[test]
fn innermost_ghost_columns_in_row_prologue() {
    let sides = [
        "boundary u: dirichlet(0.25 + 0.5 * x + t) on {last}",
        "boundary u: neumann(0.3) on {last}.min\nboundary u: robin(1, 0.5, 0.2 * x + 0.1 * {last}) on {last}.max",
        "boundary u: periodic on {last}",
    ];
    for dimensions in [2, 3] {
        let axes = &AXIS_NAMES[..dimensions];
        let last = axes[dimensions - 1];
        for order in [2, 8] {
            for side in sides {
                let points: Vec<String> =
                    (0..dimensions).map(|a| (13 + 2 * a).to_string()).collect();
                let intervals: Vec<String> =
                    (0..dimensions).map(|a| format!("[0, {}]", 1 + a)).collect();
                let source = format!(
                    "model prologue\ngrid ({axes}) in ({intervals}) points ({points})\n\
                     field u({axes})\nconst nu = 0.05\n\
                     equation e: dt(u) = nu * laplace(u) + 0.5 * x * t\n\
                     boundary u: robin(1, 0.5, 0.2 * {last}) on x\n{middle}{side}\n\
                     initial u = 0.5 + 0.25 * sin(3 * x) * cos(2 * {last})\n\
                     solve e using euler(dt = 1e-6) until 6e-6 order {order}\n",
                    axes = axes.join(", "),
                    intervals = intervals.join(", "),
                    points = points.join(", "),
                    side = side.replace("{last}", last),
                    middle = if dimensions == 3 {
                        "boundary u: dirichlet(0.5 * y) on y\n"
                    } else {
                        ""
                    },
                );
                for threads in [1, 2] {
                    let options = JitOptions {
                        threads,
                        ..JitOptions::default()
                    };
                    let graph = solve_graph(&source);
                    let jit = EulerStepper::<f64>::new(&graph, None, &options)
                        .unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(
                        jit.kernels_with_row_prologue(),
                        1,
                        "the ghost columns are not fused for\n{source}"
                    );
                    let error = euler_error::<f64>(&source, &options);
                    assert!(
                        error <= F64_TOLERANCE,
                        "{threads} thread(s): relative error {error:e} for\n{source}"
                    );
                    let error = euler_error::<f32>(&source, &options);
                    assert!(
                        error <= F32_TOLERANCE,
                        "{threads} thread(s) in f32: relative error {error:e} for\n{source}"
                    );
                }
            }
        }
    }
}

/// Dirichlet faces that depend on neither time nor the state are written at the start of a step
/// only after a state is set, and those of the innermost axis by the update's rows. The steps match
/// the interpreter, corners included, and setting a state in the middle of a run imposes the faces
/// on it again.
#[test]
fn start_faces_run_after_set_state() {
    for dimensions in [2, 3] {
        let axes = &AXIS_NAMES[..dimensions];
        let last = axes[dimensions - 1];
        let points: Vec<String> = (0..dimensions).map(|a| (40 + 3 * a).to_string()).collect();
        let intervals: Vec<String> = (0..dimensions).map(|a| format!("[0, {}]", 1 + a)).collect();
        let source = format!(
            "model faces\ngrid ({axes}) in ({intervals}) points ({points})\nfield u({axes})\n\
             const nu = 0.05\nequation e: dt(u) = nu * laplace(u)\n\
             boundary u: dirichlet(0.25 + 0.5 * {last}) on x\n\
             boundary u: dirichlet(0.75 - 0.5 * x) on {rest}\n\
             initial u = 0.5 + 0.25 * sin(3 * x) * cos(2 * {last})\n\
             solve e using euler(dt = 1e-6) until 9e-6 order 4\n",
            axes = axes.join(", "),
            intervals = intervals.join(", "),
            points = points.join(", "),
            rest = axes[1..].join(", "),
        );
        let graph = solve_graph(&source);
        for threads in [1, 2] {
            let options = JitOptions {
                threads,
                ..JitOptions::default()
            };
            let error = euler_error::<f64>(&source, &options);
            assert!(
                error <= F64_TOLERANCE,
                "{threads} thread(s): relative error {error:e} for\n{source}"
            );
            let error = euler_error::<f32>(&source, &options);
            assert!(
                error <= F32_TOLERANCE,
                "{threads} thread(s) in f32: relative error {error:e} for\n{source}"
            );

            let stepper = Stepper::<f64>::new(&graph).expect("a time step");
            let (initial, _) = stepper.initial_states();
            let initial = initial[0].clone().expect("an initial state");
            let field = npdec_symbolic::FieldId(0);
            let mut straight =
                EulerStepper::<f64>::new(&graph, None, &options).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                straight.start_face_kernels() >= 2 * dimensions,
                "the start faces still run every step for\n{source}"
            );
            assert_eq!(
                straight.kernels_with_row_epilogue(),
                1,
                "the faces of the innermost axis are not in the update's rows for\n{source}"
            );
            straight.set_state(field, &initial);
            straight.run(9);

            // Three steps from another state, then the initial state again: the right-hand side
            // does not depend on time, so the nine steps after it match.
            let mut restarted =
                EulerStepper::<f64>::new(&graph, None, &options).unwrap_or_else(|e| panic!("{e}"));
            let Value::Real(values) = &initial else {
                panic!("a real state");
            };
            restarted.set_state(field, &Value::Real(values.mapv(|v| 1.0 - v)));
            restarted.run(3);
            restarted.set_state(field, &initial);
            restarted.run(9);

            let (Some(Value::Real(a)), Some(Value::Real(b))) =
                (straight.state(field), restarted.state(field))
            else {
                panic!("real states");
            };
            assert!(
                a.iter().zip(b.iter()).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{threads} thread(s): a state set after three steps is stepped differently for\n{source}"
            );
        }
    }
}

#[test]
fn convolution_and_channels() {
    let source = "model conv\n\
        grid (x, y) in [0, 1] points 12\n\
        field u(x, y)[2]\n\
        param K[2, 2, 3, 3] ~ glorot\n\
        equation e: dt(u) = tanh(conv(K, u)) + 0.1 * laplace(u)\n\
        boundary u: periodic on x\n\
        boundary u: neumann(0) on y\n\
        initial u = 0.5\n\
        solve e using euler(dt = 1e-3) until 5e-3\n";
    let graph = solve_graph(source);
    let mut rng = Rng(5);
    let error = evaluation_error::<f64>(&graph, &mut rng, &JitOptions::default());
    assert!(error <= F64_TOLERANCE, "relative error {error:e}");
    let error = evaluation_error::<f32>(&graph, &mut rng, &JitOptions::default());
    assert!(error <= F32_TOLERANCE, "relative error {error:e}");
}

#[test]
fn examples_evaluate_like_the_interpreter() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut compiled = 0;
    for name in [
        "heat1d",
        "heat2d",
        "advection1d",
        "burgers1d",
        "fisher_kpp",
        "gray_scott",
        "wave2d",
    ] {
        let source =
            std::fs::read_to_string(root.join(format!("{name}.npde"))).expect("example exists");
        let graph = solve_graph(&source);
        let mut rng = Rng(6);
        let error = evaluation_error::<f64>(&graph, &mut rng, &JitOptions::default());
        assert!(error <= F64_TOLERANCE, "{name}: relative error {error:e}");
        compiled += 1;
    }
    assert_eq!(compiled, 7);
}

/// The ghost layers of axis 1 read their own buffer, but only in the rows of axis 0 they write,
/// so a step without temporal blocking splits them across threads. Planes of 130 × 300 points
/// make them large enough to be split, and Dirichlet sides have ghost layers only at order 8. Two
/// threads match the interpreter and one thread bit for bit, for Neumann, Robin and Dirichlet
/// sides of axis 1 at orders 2 and 8.
#[test]
fn inner_ghost_layers_split_across_threads() {
    let sides = [
        "boundary u: neumann(0.3) on y",
        "boundary u: robin(1, 0.5, 0.2 * x) on y.min\nboundary u: neumann(0) on y.max",
        "boundary u: dirichlet(0.5 * z) on y",
    ];
    for order in [2, 8] {
        for side in sides {
            let source = format!(
                "model split\ngrid (x, y, z) in ([0, 1], [0, 0.1], [0, 2]) points (130, 10, 300)\n\
                 field u(x, y, z)\nconst nu = 0.05\n\
                 equation e: dt(u) = nu * laplace(u)\n\
                 boundary u: neumann(0.1) on x\n{side}\nboundary u: dirichlet(0) on z\n\
                 initial u = 0.5 + 0.25 * sin(3 * x) * cos(2 * z) * y\n\
                 solve e using euler(dt = 1e-7) until 3e-7 order {order}\n"
            );
            let graph = solve_graph(&source);
            let mut states = Vec::new();
            for threads in [1, 2] {
                let options = JitOptions {
                    threads,
                    temporal_blocking: false,
                    ..JitOptions::default()
                };
                let mut jit = EulerStepper::<f64>::new(&graph, None, &options)
                    .unwrap_or_else(|e| panic!("{e}"));
                let ghost_layers = order == 8 || !side.contains("dirichlet");
                assert!(
                    !ghost_layers || jit.split_kernels_reading_their_output() >= 2,
                    "the ghost layers of axis 1 do not split across threads for\n{source}"
                );
                let error = euler_error::<f64>(&source, &options);
                assert!(
                    error <= F64_TOLERANCE,
                    "{threads} thread(s): relative error {error:e} for\n{source}"
                );
                let error = euler_error::<f32>(&source, &options);
                assert!(
                    error <= F32_TOLERANCE,
                    "{threads} thread(s) in f32: relative error {error:e} for\n{source}"
                );
                let (initial, _) = Stepper::<f64>::new(&graph)
                    .expect("a time step")
                    .initial_states();
                let field = npdec_symbolic::FieldId(0);
                jit.set_state(field, initial[0].as_ref().expect("an initial state"));
                jit.run(3);
                states.push(jit.state(field).expect("a state"));
            }
            let (Value::Real(one), Value::Real(two)) = (&states[0], &states[1]) else {
                panic!("real states");
            };
            assert!(
                one.iter()
                    .zip(two.iter())
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "two threads step differently from one for\n{source}"
            );
        }
    }
}

/// Blocks of rows of axis 0 only change which loads the points of an iteration share, so every
/// block size steps bit for bit like one row per iteration. The extents of axis 0 (13 and 11) are
/// not multiples of the blocks, so the single rows at the end of a range run too, and the sides
/// put ghost layers and faces into the update's row prologue and epilogue. The states are also
/// within the parity tolerance of the interpreter.
#[test]
fn row_blocks_step_like_single_rows() {
    let sides = [
        "boundary u: neumann(0.3) on x\nboundary u: robin(1, 0.5, 0.2 * x) on y",
        "boundary u: dirichlet(0.25 + 0.5 * y) on x\nboundary u: dirichlet(0) on y",
        "boundary u: periodic on x\nboundary u: neumann(0.1) on y",
    ];
    let grids = [
        ("(x, y)", "([0, 1], [0, 2]) points (13, 23)", ""),
        (
            "(x, y, z)",
            "([0, 1], [0, 2], [0, 1]) points (11, 9, 14)",
            "\nboundary u: dirichlet(0) on z",
        ),
    ];
    for (axes, grid, third) in grids {
        for order in [2, 8] {
            for side in sides {
                let source = format!(
                    "model rows\ngrid {axes} in {grid}\nfield u{axes}\nconst nu = 0.05\n\
                     equation e: dt(u) = nu * laplace(u) + 0.1 * x * u\n{side}{third}\n\
                     initial u = 0.5 + 0.25 * sin(3 * x) * cos(y)\n\
                     solve e using euler(dt = 1e-5) until 3e-5 order {order}\n"
                );
                let graph = solve_graph(&source);
                let mut states: Vec<Vec<u64>> = Vec::new();
                for row_block in [1, 2, 3, 4, 5] {
                    let options = JitOptions {
                        row_block,
                        temporal_blocking: false,
                        ..JitOptions::default()
                    };
                    let error = euler_error::<f64>(&source, &options);
                    assert!(
                        error <= F64_TOLERANCE,
                        "blocks of {row_block} rows: relative error {error:e} for\n{source}"
                    );
                    let error = euler_error::<f32>(&source, &options);
                    assert!(
                        error <= F32_TOLERANCE,
                        "blocks of {row_block} rows in f32: relative error {error:e} for\n{source}"
                    );
                    let mut jit = EulerStepper::<f64>::new(&graph, None, &options)
                        .unwrap_or_else(|e| panic!("{e}"));
                    let (initial, _) = Stepper::<f64>::new(&graph)
                        .expect("a time step")
                        .initial_states();
                    let field = npdec_symbolic::FieldId(0);
                    jit.set_state(field, initial[0].as_ref().expect("an initial state"));
                    jit.run(3);
                    let Some(Value::Real(state)) = jit.state(field) else {
                        panic!("a real state");
                    };
                    states.push(state.iter().map(|v| v.to_bits()).collect());
                }
                for (index, state) in states.iter().enumerate().skip(1) {
                    assert!(
                        *state == states[0],
                        "blocks of {} rows step differently from single rows for\n{source}",
                        index + 1
                    );
                }
            }
        }
    }
}
