//! Dirichlet faces that a step writes at its start and the previous step already wrote at its end.
//!
//! A fused Euler step imposes the Dirichlet faces on the current state before it fills the ghost
//! layers (once for the update and once for the boundary node), and on the new state after the
//! update. Take face values that depend neither on time nor on any buffer. Then the faces written
//! at the start of step `n + 1` repeat what step `n` wrote at its end into the same buffer, and
//! only the first step after the caller sets a state needs them.
//!
//! The start faces of a state buffer `A` are the kernels at [`Instant::Now`] that write `A` before
//! any operation reads it; the end faces are the kernels after the update that write the next
//! buffer `B`. Both sets must consist of such pure face kernels. The start faces are a no-op on the
//! end faces' output when, keeping the last occurrence of each kernel, both lists are the same
//! kernels in the same order: then every point they cover has the same last writer, and so the
//! same value.

use crate::codegen::KernelSpec;
use crate::kexpr::Kexpr;
use crate::plan::{Instant, Op, Plan};

/// Removes the start faces that repeat the end faces from the plan's operations and returns
/// their kernels, to run once before the first step after a state is set.
pub fn split_start_faces(plan: &mut Plan) -> Vec<usize> {
    let mut removed_ops = Vec::new();
    for update in plan.updates.clone() {
        if let Some(ops) = start_faces(plan, update.current, update.next) {
            removed_ops.extend(ops);
        }
    }
    removed_ops.sort_unstable();
    let kernels = removed_ops
        .iter()
        .filter_map(|i| match plan.ops[*i] {
            Op::Kernel { kernel, .. } => Some(kernel),
            _ => None,
        })
        .collect();
    let mut index = 0;
    plan.ops.retain(|_| {
        let keep = removed_ops.binary_search(&index).is_err();
        index += 1;
        keep
    });
    kernels
}

/// Returns true when a kernel stores a function of the coordinates only.
pub(crate) fn pure_face(spec: &KernelSpec) -> bool {
    let mut pure = spec.row_prologue.is_empty() && spec.row_epilogue.is_empty();
    for (_, expr) in &spec.channels {
        expr.walk(&mut |e| {
            pure &= !matches!(e, Kexpr::Load { .. } | Kexpr::Uniform { .. } | Kexpr::Time);
        });
    }
    pure
}

/// Returns true when the operation reads `buffer`, or writes it other than as a pure face.
pub(crate) fn uses(plan: &Plan, op: &Op, buffer: usize) -> bool {
    match op {
        Op::Kernel { kernel, .. } => {
            let spec = &plan.kernels[*kernel];
            let mut reads = spec
                .row_prologue
                .iter()
                .chain(&spec.row_epilogue)
                .any(|s| s.buffer == buffer);
            for expr in spec.exprs() {
                expr.walk(&mut |e| {
                    reads |= matches!(e, Kexpr::Load { buffer: b, .. } if *b == buffer);
                });
            }
            reads || (spec.output == buffer && !pure_face(spec))
        }
        Op::CopyState { view, .. } => view.buffer == buffer,
        Op::Reduce { input, output, .. } => *input == buffer || *output == buffer,
        Op::Dense {
            matrix,
            operand,
            output,
            ..
        } => *matrix == buffer || *operand == buffer || *output == buffer,
    }
}

/// Returns the kernels of a list with only the last occurrence of equal kernels, compared by
/// region, output position and values.
fn last_occurrences<'a>(specs: &[&'a KernelSpec]) -> Vec<&'a KernelSpec> {
    let mut kept: Vec<&KernelSpec> = Vec::new();
    for spec in specs.iter().rev() {
        if !kept.iter().any(|k| same_face(k, spec)) {
            kept.push(spec);
        }
    }
    kept.reverse();
    kept
}

fn same_face(a: &KernelSpec, b: &KernelSpec) -> bool {
    a.region == b.region && a.output_shift == b.output_shift && a.channels == b.channels
}

/// Returns the operations of the start faces of `current` when they repeat the end faces that
/// the step writes into `next`.
fn start_faces(plan: &Plan, current: usize, next: usize) -> Option<Vec<usize>> {
    let mut start = Vec::new();
    let mut first_use = None;
    for (index, op) in plan.ops.iter().enumerate() {
        if uses(plan, op, current) {
            first_use = Some(index);
            break;
        }
        if let Op::Kernel { kernel, instant } = op {
            if plan.kernels[*kernel].output == current {
                if *instant != Instant::Now {
                    return None;
                }
                start.push(index);
            }
        }
    }
    first_use?;
    if start.is_empty() {
        return None;
    }

    // The end faces: the kernels after the last operation that reads or writes `next`
    // otherwise, all of which must be pure faces of `next` at the end of the step.
    let last_use = plan.ops.iter().rposition(|op| uses(plan, op, next))?;
    let mut end = Vec::new();
    for op in &plan.ops[last_use + 1..] {
        if let Op::Kernel { kernel, instant } = op {
            let spec = &plan.kernels[*kernel];
            if spec.output == next {
                if *instant != Instant::Next {
                    return None;
                }
                end.push(spec);
            }
        }
    }
    let start_specs: Vec<&KernelSpec> = start.iter().map(|i| kernel_of(plan, *i)).collect();
    let (start_faces, end_faces) = (last_occurrences(&start_specs), last_occurrences(&end));
    let repeated = start_faces.len() == end_faces.len()
        && start_faces
            .iter()
            .zip(&end_faces)
            .all(|(a, b)| same_face(a, b));
    repeated.then_some(start)
}

fn kernel_of(plan: &Plan, op: usize) -> &KernelSpec {
    match &plan.ops[op] {
        Op::Kernel { kernel, .. } => &plan.kernels[*kernel],
        _ => unreachable!("the start faces are kernels"),
    }
}
