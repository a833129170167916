//! The object file and header of a model's Euler step, compiled into a C program with the system
//! `cc` and run: its final state must match the interpreter's. The same program compiled as C++
//! must link against the header and give the same state.

mod common;

use common::{relative_error, solve_graph};
use ndarray::{ArrayD, IxDyn, Slice};
use npdec_jit::aot::write_step_object;
use npdec_jit::dead_kernels::remove_dead_kernels;
use npdec_jit::ghost_columns::fuse_ghost_columns;
use npdec_jit::step_faces::split_start_faces;
use npdec_jit::Precision;
use npdec_runtime::evaluate::field_shape;
use npdec_runtime::{Stepper, Value};
use npdec_symbolic::FieldId;
use std::process::Command;

const SOURCE: &str = "model aot\n\
    grid (x, y) in ([0, 1], [0, 2]) points (17, 23)\n\
    field u(x, y)\n\
    const nu = 0.05\n\
    equation e: dt(u) = nu * laplace(u) + sin(pi * x) * exp(-t) - u^3\n\
    boundary u: dirichlet(0.25 + 0.5 * x + t) on x\n\
    boundary u: robin(1, 0.5, 0.2 * x) on y.min\n\
    boundary u: neumann(0.3) on y.max\n\
    initial u = 0.5 + 0.25 * sin(3 * x) * cos(y)\n\
    solve e using euler(dt = 1e-4) until 2e-3 order 4\n";

const PROGRAM: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include "aot.h"

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    void *buffers[AOT_BUFFER_COUNT];
    for (int i = 0; i < AOT_BUFFER_COUNT; i++) {
        buffers[i] = calloc((size_t)aot_buffer_lengths[i], sizeof(aot_real));
        if (!buffers[i]) return 3;
    }
    FILE *in = fopen(argv[1], "rb");
    if (!in) return 4;
    size_t count = (size_t)aot_buffer_lengths[AOT_U_BUFFER];
    if (fread(buffers[AOT_U_BUFFER], sizeof(aot_real), count, in) != count) return 5;
    fclose(in);
    /* Calls of an odd, zero and odd number of steps: each state stays in the caller's buffer. */
    aot_real *u = (aot_real *)buffers[AOT_U_BUFFER];
    int64_t steps = atoll(argv[3]), first = steps / 2 + 1;
    aot_run(buffers, 0, first);
    if (buffers[AOT_U_BUFFER] != u) return 7;
    aot_run(buffers, first, 0);
    aot_run(buffers, first, steps - first);
    if (buffers[AOT_U_BUFFER] != u) return 7;
    FILE *out = fopen(argv[2], "wb");
    if (!out) return 6;
    fwrite(u, sizeof(aot_real), count, out);
    fclose(out);
    return 0;
}
"#;

#[test]
fn c_program_matches_interpreter() {
    let graph = solve_graph(SOURCE);
    let mut stepper = Stepper::<f64>::new(&graph).expect("time step");
    let steps = stepper.time_step().steps;
    let (initial, _) = stepper.initial_states();
    let expected = stepper.run(&mut |_, _, _| {});
    let initial = initial[0].as_ref().expect("state of u").real_part();
    let expected = expected[0].clone().expect("final u");

    let dir = std::env::temp_dir().join(format!("npdec-aot-{}", std::process::id()));
    let artifacts = write_step_object(&graph, Precision::F64, &dir).expect("object written");
    // The step function is the object's only global symbol: the kernels stay local.
    let symbols = Command::new("nm")
        .args(["-g", "--defined-only"])
        .arg(&artifacts.object)
        .output()
        .expect("`nm` runs");
    let symbols = String::from_utf8_lossy(&symbols.stdout);
    let globals: Vec<&str> = symbols
        .lines()
        .filter_map(|line| line.split_whitespace().last())
        .collect();
    assert_eq!(globals, ["aot_run"], "{symbols}");
    let header = std::fs::read_to_string(&artifacts.header).expect("header");
    assert!(
        header.contains("void aot_run(void **buffers, int64_t first_step, int64_t steps);"),
        "{header}"
    );
    // The object runs the step plan after the JIT's passes: running them again changes nothing.
    let shapes = vec![(FieldId(0), field_shape(&graph, FieldId(0)))];
    let mut again = artifacts.plan.clone();
    assert_eq!(remove_dead_kernels(&mut again, &shapes), 0);
    assert_eq!(fuse_ghost_columns(&mut again), 0);
    assert_eq!(split_start_faces(&mut again), Vec::<usize>::new());
    let update = &artifacts.plan.updates[0];
    assert!(
        header.contains(&format!("#define AOT_U_BUFFER {}", update.current)),
        "{header}"
    );

    // The initial state goes into the interior of the zeroed padded buffer.
    let layout = &artifacts.plan.layouts[update.current];
    let mut shape = vec![layout.channels];
    shape.extend(&layout.extents);
    let mut padded = ArrayD::<f64>::zeros(IxDyn(&shape));
    let window = |d: ndarray::AxisDescription| {
        let i = d.axis.index();
        if i == 0 {
            Slice::from(..)
        } else {
            let start = update.shift[i - 1] as usize;
            Slice::from(start..start + initial.shape()[i])
        }
    };
    padded.slice_each_axis_mut(window).assign(&initial);
    let bytes: Vec<u8> = padded.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(dir.join("initial.bin"), bytes).expect("initial state written");

    std::fs::write(dir.join("main.c"), PROGRAM).expect("program written");
    let program = dir.join("step");
    let status = Command::new("cc")
        .arg("-O1")
        .arg("-I")
        .arg(&dir)
        .arg(dir.join("main.c"))
        .arg(&artifacts.object)
        .arg("-lm")
        .arg("-o")
        .arg(&program)
        .status()
        .expect("the system C compiler `cc` runs");
    assert!(status.success(), "cc failed");
    let status = Command::new(&program)
        .arg(dir.join("initial.bin"))
        .arg(dir.join("final.bin"))
        .arg(steps.to_string())
        .status()
        .expect("the compiled program runs");
    assert!(status.success(), "the C program exited with {status}");

    let bytes = std::fs::read(dir.join("final.bin")).expect("final state");

    // The header declares the step with C linkage for C++ callers too.
    let cpp_program = dir.join("step_cpp");
    let status = Command::new("c++")
        .arg("-O1")
        .arg("-I")
        .arg(&dir)
        .arg("-x")
        .arg("c++")
        .arg(dir.join("main.c"))
        .arg("-x")
        .arg("none")
        .arg(&artifacts.object)
        .arg("-o")
        .arg(&cpp_program)
        .status()
        .expect("the system C++ compiler `c++` runs");
    assert!(
        status.success(),
        "c++ failed to compile or link against the header"
    );
    let status = Command::new(&cpp_program)
        .arg(dir.join("initial.bin"))
        .arg(dir.join("final_cpp.bin"))
        .arg(steps.to_string())
        .status()
        .expect("the compiled C++ program runs");
    assert!(status.success(), "the C++ program exited with {status}");
    let cpp_bytes = std::fs::read(dir.join("final_cpp.bin")).expect("final state of C++");
    assert_eq!(
        cpp_bytes, bytes,
        "C and C++ callers get the same final state"
    );

    let values: Vec<f64> = bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let final_padded = ArrayD::from_shape_vec(IxDyn(&shape), values).expect("buffer shape");
    let actual = final_padded.slice_each_axis(window).to_owned();
    let error = relative_error(&Value::Real(actual), &expected);
    assert!(error <= 1e-12, "relative error {error:e}");
    std::fs::remove_dir_all(&dir).ok();
}
