//! Dirichlet faces of the innermost axis written by the rows of the update sweep.
//!
//! After the update of a step writes the new state, one box kernel per Dirichlet face stores the
//! boundary values. A face normal to the innermost axis is one column, so its kernel touches one
//! cache line per row of the whole grid. The update writes that column of every row anyway, so it
//! can store the face value itself at the end of each row (a row epilogue).
//!
//! A face kernel `F` of the next buffer `B` moves into the update `T` when:
//! - `T` is the last operation that reads `B` or writes it other than as a face, it has one
//!   channel and at least two axes, and `F` comes after it;
//! - `F` stores a function of the coordinates only (no load, no time, no parameter) into one
//!   column `c` of the innermost axis, inside `T`'s columns, with `T`'s output shift and exactly
//!   `T`'s rows;
//! - every other face between `T` and `F` that covers column `c` starts or ends there. Such a face
//!   loses that column, because `F`, which runs after it, overwrote it there.
//!
//! Every element of `B` then ends the step with the same value as before.

use crate::codegen::RowStore;
use crate::kexpr::Kexpr;
use crate::plan::{Op, Plan};
use crate::step_faces::{pure_face, uses};

/// Moves the innermost-axis faces of every evolved state into the row epilogue of its update and
/// returns the number of face operations removed. The kernels in `kept_kernels` stay compiled and
/// get their new numbers.
pub fn fuse_face_columns(plan: &mut Plan, kept_kernels: &mut [usize]) -> usize {
    let mut removed = Vec::new();
    for update in plan.updates.clone() {
        removed.extend(fuse_buffer(plan, update.next));
    }
    removed.sort_unstable();
    let count = removed.len();
    if count > 0 {
        crate::ghost_columns::drop_kernels(plan, &removed, kept_kernels);
    }
    count
}

/// Moves the faces of `buffer` that qualify into its update's epilogue; returns their operations.
fn fuse_buffer(plan: &mut Plan, buffer: usize) -> Vec<usize> {
    let Some(last_use) = plan.ops.iter().rposition(|op| uses(plan, op, buffer)) else {
        return Vec::new();
    };
    let Op::Kernel { kernel: target, .. } = plan.ops[last_use] else {
        return Vec::new();
    };
    let spec = &plan.kernels[target];
    let rank = spec.rank();
    if spec.output != buffer || spec.channels.len() != 1 || rank < 2 {
        return Vec::new();
    }
    let p = rank - 1;
    let channel = spec.channels[0].0;

    let mut fused = Vec::new();
    for index in last_use + 1..plan.ops.len() {
        let Op::Kernel { kernel, .. } = plan.ops[index] else {
            continue;
        };
        let face = &plan.kernels[kernel];
        let target_spec = &plan.kernels[target];
        let (column, end) = face.region.get(p).copied().unwrap_or((0, 0));
        let fits = face.output == buffer
            && face.rank() == rank
            && pure_face(face)
            && end == column + 1
            && (target_spec.region[p].0..target_spec.region[p].1).contains(&column)
            && face.output_shift == target_spec.output_shift
            && face.region[..p] == target_spec.region[..p]
            && face.channels.len() == 1
            && face.channels[0].0 == channel;
        if !fits {
            continue;
        }

        // The faces between the update and this one that cover the column lose it.
        let mut clipped = Vec::new();
        for between in last_use + 1..index {
            let Op::Kernel { kernel: other, .. } = plan.ops[between] else {
                continue;
            };
            let other_spec = &plan.kernels[other];
            if fused.contains(&between) || other_spec.output != buffer {
                continue;
            }
            let (low, high) = other_spec.region[p];
            if !(low..high).contains(&column) {
                continue;
            }
            if column == low {
                clipped.push((other, (low + 1, high)));
            } else if column == high - 1 {
                clipped.push((other, (low, high - 1)));
            } else {
                clipped.clear();
                break;
            }
        }
        let blocked = (last_use + 1..index).any(|between| {
            let Op::Kernel { kernel: other, .. } = plan.ops[between] else {
                return false;
            };
            let other_spec = &plan.kernels[other];
            !fused.contains(&between)
                && other_spec.output == buffer
                && (other_spec.region[p].0..other_spec.region[p].1).contains(&column)
                && !clipped.iter().any(|(k, _)| *k == other)
        });
        if blocked {
            continue;
        }
        for (other, columns) in clipped {
            plan.kernels[other].region[p] = columns;
        }

        let shift = &plan.kernels[target].output_shift;
        let mut offset = shift[..p].to_vec();
        offset.push(shift[p] + column);
        let expr = into_row_frame(&plan.kernels[kernel].channels[0].1, p, column);
        plan.kernels[target].row_epilogue.push(RowStore {
            buffer,
            channel,
            offset,
            expr,
        });
        fused.push(index);
    }

    // A face that lost all its columns stores nothing.
    for index in last_use + 1..plan.ops.len() {
        if let Op::Kernel { kernel, .. } = plan.ops[index] {
            let (low, high) = plan.kernels[kernel]
                .region
                .get(p)
                .copied()
                .unwrap_or((0, 1));
            if plan.kernels[kernel].output == buffer && low >= high && !fused.contains(&index) {
                fused.push(index);
            }
        }
    }
    fused
}

/// Rewrites a face value at column `column` of the innermost axis `p` for a row epilogue, whose
/// expressions have no innermost index: the innermost coordinate becomes a constant.
fn into_row_frame(expr: &Kexpr, p: usize, column: isize) -> Kexpr {
    let recurse = |e: &Kexpr| Box::new(into_row_frame(e, p, column));
    match expr {
        // The same operations in f64 as the code generator's, so the constant is bit-identical.
        Kexpr::Coordinate {
            axis,
            origin,
            spacing,
            shift,
        } if *axis == p => Kexpr::Const(origin + (column + shift) as f64 * spacing),
        Kexpr::Load { .. }
        | Kexpr::Uniform { .. }
        | Kexpr::Const(_)
        | Kexpr::Coordinate { .. }
        | Kexpr::Time => expr.clone(),
        Kexpr::Unary(op, a) => Kexpr::Unary(*op, recurse(a)),
        Kexpr::Binary(op, a, b) => Kexpr::Binary(*op, recurse(a), recurse(b)),
        Kexpr::Call(function, args) => Kexpr::Call(
            *function,
            args.iter().map(|a| into_row_frame(a, p, column)).collect(),
        ),
        Kexpr::Select {
            op,
            left,
            right,
            then,
            otherwise,
        } => Kexpr::Select {
            op: *op,
            left: recurse(left),
            right: recurse(right),
            then: recurse(then),
            otherwise: recurse(otherwise),
        },
    }
}
