//! Temporally blocked Euler steps against plain steps and the interpreter: random 2-D and 3-D
//! models with Dirichlet, Neumann and Robin sides on the blocked axis and every boundary kind on
//! the others, orders 2–8, f32 and f64, one thread and two threads on slabs. Blocked steps must
//! equal plain steps bit for bit, and both must stay within the parity tolerance of the interpreter.

mod common;

use common::{relative_error, solve_graph, Rng};
use npdec_jit::{EulerStepper, JitFloat, JitOptions};
use npdec_runtime::{Stepper, Value};
use npdec_symbolic::FieldId;

const F64_TOLERANCE: f64 = 1e-12;
const F32_TOLERANCE: f64 = 1e-5;

fn side_condition(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => "dirichlet(0.25 + 0.5 * x + t)".to_string(),
        1 => "neumann(0.3)".to_string(),
        _ => "robin(1, 0.5, 0.2 * x)".to_string(),
    }
}

/// A random model whose first axis is long enough for two slabs; `steps` Euler steps.
fn random_model(rng: &mut Rng, dimensions: usize, steps: usize) -> String {
    let axes = &["x", "y", "z"][..dimensions];
    let order = [2, 4, 6, 8][rng.below(4)];
    let mut points = vec![420 + rng.below(20)];
    for _ in 1..dimensions {
        points.push(order + 1 + rng.below(6));
    }
    let mut boundaries = Vec::new();
    for (a, axis) in axes.iter().enumerate() {
        if a > 0 && rng.below(3) == 0 {
            boundaries.push(format!("boundary u: periodic on {axis}"));
        } else {
            for side in ["min", "max"] {
                boundaries.push(format!(
                    "boundary u: {} on {axis}.{side}",
                    side_condition(rng)
                ));
            }
        }
    }
    // Right-hand sides that read the state only through its boundary node, so the state lives
    // in the padded buffer and the step writes no other buffer.
    let rhs = match rng.below(3) {
        0 => "nu * laplace(u)",
        1 => "div((1 + 0.5 * x) * grad(u)) + sin(pi * x) * exp(-t)",
        _ => "nu * laplace(u) + 0.5 * x * t - 0.1 * y",
    };
    let intervals: Vec<String> = (0..dimensions).map(|a| format!("[0, {}]", 1 + a)).collect();
    let counts: Vec<String> = points.iter().map(ToString::to_string).collect();
    format!(
        "model blocked\ngrid ({}) in ({}) points ({})\nfield u({})\nconst nu = 0.05\n\
         equation e: dt(u) = {rhs}\n{}\ninitial u = 0.5 + 0.25 * sin(3 * x) * cos(2 * y)\n\
         solve e using euler(dt = 1e-6) until {} order {order}\n",
        axes.join(", "),
        intervals.join(", "),
        counts.join(", "),
        axes.join(", "),
        boundaries.join("\n"),
        steps as f64 * 1e-6,
    )
}

/// Runs the solve with the JIT's Euler stepper and returns the final state of field 0.
fn jit_run<T: JitFloat>(
    graph: &npdec_ir::graph::Graph,
    initial: &Value<T>,
    steps: usize,
    options: &JitOptions,
) -> (Value<T>, Result<usize, String>, usize) {
    let mut jit = EulerStepper::<T>::new(graph, None, options).unwrap_or_else(|e| panic!("{e}"));
    jit.set_state(FieldId(0), initial);
    let blocking = jit.blocking().map_err(str::to_string);
    let slabs = jit.blocked_slabs();
    // Uneven calls: the passes do not line up with the calls.
    jit.run(steps / 3);
    jit.run(steps - steps / 3);
    (jit.state(FieldId(0)).expect("a state"), blocking, slabs)
}

fn check<T: JitFloat + Bits>(seed: u64, cases: usize, tolerance: f64) {
    let mut rng = Rng(seed);
    for case in 0..cases {
        let steps = 11 + rng.below(6);
        let source = random_model(&mut rng, 2 + case % 2, steps);
        let graph = solve_graph(&source);
        let mut stepper = Stepper::<T>::new(&graph).expect("a time step");
        let (initial, _) = stepper.initial_states();
        let initial = initial[0].clone().expect("an initial state");
        let expected = stepper.run(&mut |_, _, _| {});
        let expected = expected[0].as_ref().expect("a final state");

        let plain = JitOptions {
            temporal_blocking: false,
            ..JitOptions::default()
        };
        let (reference, _, _) = jit_run::<T>(&graph, &initial, steps, &plain);
        let error = relative_error(&reference, expected);
        assert!(
            error <= tolerance,
            "case {case}: plain steps {error:e} from the interpreter for\n{source}"
        );
        for (threads, block) in [(1, 3), (2, 2), (2, 3), (1, 7)] {
            let options = JitOptions {
                threads,
                block_steps: Some(block),
                ..JitOptions::default()
            };
            let (actual, blocking, slabs) = jit_run::<T>(&graph, &initial, steps, &options);
            assert_eq!(
                blocking,
                Ok(block),
                "case {case}: the model is not blocked\n{source}"
            );
            if threads == 2 {
                assert_eq!(
                    slabs, 2,
                    "case {case}, {block} steps per pass: one slab\n{source}"
                );
            }
            let (Value::Real(a), Value::Real(b)) = (&actual, &reference) else {
                panic!("real states");
            };
            assert!(
                a.iter()
                    .zip(b.iter())
                    .all(|(x, y)| x.to_bits_u64() == y.to_bits_u64()),
                "case {case}, {threads} thread(s), {block} steps per pass: blocked steps differ \
                 from plain steps by {:e} for\n{source}",
                relative_error(&actual, &reference)
            );
        }
    }
}

trait Bits {
    fn to_bits_u64(self) -> u64;
}

impl Bits for f64 {
    fn to_bits_u64(self) -> u64 {
        self.to_bits()
    }
}

impl Bits for f32 {
    fn to_bits_u64(self) -> u64 {
        u64::from(self.to_bits())
    }
}

#[test]
fn blocked_steps_equal_plain_steps_f64() {
    check::<f64>(11, 10, F64_TOLERANCE);
}

#[test]
fn blocked_steps_equal_plain_steps_f32() {
    check::<f32>(12, 10, F32_TOLERANCE);
}

#[test]
fn periodic_first_axis_runs_unblocked() {
    let source = "model ring\ngrid (x, y) in ([0, 1], [0, 1]) points (40, 8)\nfield u(x, y)\n\
        equation e: dt(u) = 0.05 * laplace(u)\nboundary u: periodic on x\n\
        boundary u: dirichlet(0) on y\ninitial u = sin(2 * pi * x)\n\
        solve e using euler(dt = 1e-5) until 1e-4\n";
    let graph = solve_graph(source);
    let jit = EulerStepper::<f64>::new(&graph, None, &JitOptions::default()).expect("compiles");
    let reason = jit
        .blocking()
        .expect_err("a periodic first axis is not blocked");
    assert!(reason.contains("rows"), "{reason}");
}

#[test]
fn state_read_twice_runs_unblocked() {
    let source = "model logistic\ngrid (x, y) in ([0, 1], [0, 1]) points (40, 8)\nfield u(x, y)\n\
        equation e: dt(u) = 0.05 * laplace(u) + u * (1 - u)\nboundary u: dirichlet(0) on x, y\n\
        initial u = sin(pi * x)\nsolve e using euler(dt = 1e-5) until 1e-4\n";
    let graph = solve_graph(source);
    let jit = EulerStepper::<f64>::new(&graph, None, &JitOptions::default()).expect("compiles");
    let reason = jit.blocking().expect_err("a copied state is not blocked");
    assert!(reason.contains("other than a state"), "{reason}");
}

/// Returns a 2-D diffusion model on 200 × 500 points with the boundary lines `x_sides` and zero
/// Dirichlet on y.
fn first_axis_model(x_sides: &str, order: usize) -> String {
    format!(
        "model slab\ngrid (x, y) in ([0, 1], [0, 1]) points (200, 500)\nfield u(x, y)\n\
         equation e: dt(u) = 0.05 * laplace(u)\n{x_sides}\n\
         boundary u: dirichlet(0) on y\ninitial u = sin(pi * x) * sin(pi * y)\n\
         solve e using euler(dt = 1e-6) until 1e-4 order {order}\n"
    )
}

/// Returns the number of kernels of the model's step plan that write ghost rows of axis 0
/// (outside the interior rows of the state), before and after the removal of dead kernels.
fn ghost_rows_of_axis_0(source: &str) -> (usize, usize) {
    use npdec_jit::plan::{build_plan, Mode, Op};
    let graph = solve_graph(source);
    let (step_id, step) = graph.time_step().expect("a time step");
    let dt = step.dt;
    let shapes: Vec<_> = [FieldId(0)]
        .iter()
        .map(|f| (*f, npdec_runtime::evaluate::field_shape(&graph, *f)))
        .collect();
    let mut plan = build_plan(&graph, &graph.inputs(step_id), Mode::EulerStep { dt })
        .unwrap_or_else(|e| panic!("{e}"));
    let ghost_rows = |plan: &npdec_jit::plan::Plan| {
        let update = &plan.updates[0];
        let interior = (update.shift[0], update.shift[0] + shapes[0].1[1] as isize);
        plan.ops
            .iter()
            .filter(|op| {
                let Op::Kernel { kernel, .. } = op else {
                    return false;
                };
                let spec = &plan.kernels[*kernel];
                let first = spec.region[0].0 + spec.output_shift[0];
                let last = spec.region[0].1 + spec.output_shift[0];
                spec.output == update.current && (last <= interior.0 || first >= interior.1)
            })
            .count()
    };
    let before = ghost_rows(&plan);
    npdec_jit::dead_kernels::remove_dead_kernels(&mut plan, &shapes);
    (before, ghost_rows(&plan))
}

#[test]
fn dirichlet_first_axis_drops_dead_ghost_rows() {
    // At order 2 the only ghost layer of each side is read by the update of the boundary row
    // alone, which the Dirichlet face overwrites; at order 4 the outer one of two layers.
    assert_eq!(
        ghost_rows_of_axis_0(&first_axis_model("boundary u: dirichlet(0.5) on x", 2)),
        (2, 0)
    );
    assert_eq!(
        ghost_rows_of_axis_0(&first_axis_model("boundary u: dirichlet(0.5) on x", 4)),
        (4, 2)
    );
    // Mixed sides: only the Dirichlet side's layer is dead.
    assert_eq!(
        ghost_rows_of_axis_0(&first_axis_model(
            "boundary u: dirichlet(0.5) on x.min\nboundary u: neumann(0.3) on x.max",
            2
        )),
        (2, 1)
    );
    // Neumann and Robin sides keep the computed boundary row, so every ghost layer is read.
    assert_eq!(
        ghost_rows_of_axis_0(&first_axis_model("boundary u: neumann(0.3) on x", 2)),
        (2, 2)
    );
    assert_eq!(
        ghost_rows_of_axis_0(&first_axis_model("boundary u: robin(1, 0.5, 0.2) on x", 4)),
        (4, 4)
    );
}

#[test]
fn dirichlet_first_axis_blocks_more_steps() {
    // One row of the two f64 buffers is 8 KB, so 256 KiB hold 32 rows. The one-sided ghost
    // extrapolation of the low side reads several rows, and the update of the next step waits
    // for it unless the ghost layer is dropped.
    let graph = solve_graph(&first_axis_model("boundary u: dirichlet(0.5) on x", 2));
    let options = JitOptions {
        cache_bytes: 256 << 10,
        ..JitOptions::default()
    };
    let jit = EulerStepper::<f64>::new(&graph, None, &options).expect("compiles");
    let steps = jit.blocking().expect("a blocked step");
    assert!(steps >= 12, "{steps} steps per pass");
}

/// Planes of 40 × 50 f64 points are 32 KB per buffer, so the 64 KiB rule alone advances the
/// wavefront 1 row at a time; with blocks of rows it advances a whole block, and the blocked steps
/// stay equal to plain steps bit for bit, for blocks of 3 and 4 rows, 1 and 2 threads, and an
/// axis 0 of 23 rows that no block divides.
#[test]
fn bands_hold_whole_row_blocks() {
    let source = "model bands\ngrid (x, y, z) in ([0, 1], [0, 1], [0, 2]) points (23, 40, 50)\n\
                  field u(x, y, z)\nconst nu = 0.05\nequation e: dt(u) = nu * laplace(u)\n\
                  boundary u: dirichlet(0.5 * y) on x\nboundary u: neumann(0.2) on y\n\
                  boundary u: robin(1, 0.5, 0.1) on z\n\
                  initial u = 0.5 + 0.25 * sin(3 * x) * cos(2 * z) * y\n\
                  solve e using euler(dt = 1e-6) until 1.4e-5\n";
    let graph = solve_graph(source);
    let stepper = Stepper::<f64>::new(&graph).expect("a time step");
    let steps = stepper.time_step().steps;
    let (initial, _) = stepper.initial_states();
    let initial = initial[0].clone().expect("an initial state");
    for row_block in [3, 4] {
        let plain = JitOptions {
            temporal_blocking: false,
            row_block,
            ..JitOptions::default()
        };
        let (reference, _, _) = jit_run::<f64>(&graph, &initial, steps, &plain);
        for threads in [1, 2] {
            let options = JitOptions {
                threads,
                row_block,
                block_steps: Some(4),
                ..JitOptions::default()
            };
            let (actual, blocking, _) = jit_run::<f64>(&graph, &initial, steps, &options);
            assert_eq!(blocking, Ok(4), "the model is not blocked");
            let (Value::Real(a), Value::Real(b)) = (&actual, &reference) else {
                panic!("real states");
            };
            assert!(
                a.iter()
                    .zip(b.iter())
                    .all(|(x, y)| x.to_bits() == y.to_bits()),
                "blocks of {row_block} rows, {threads} thread(s): blocked steps differ from \
                 plain steps by {:e}",
                relative_error(&actual, &reference)
            );
        }
    }
}
