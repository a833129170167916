//! Fusion of the ghost columns of the innermost axis into the sweep that reads them.
//!
//! The ghost layers of the innermost axis hold one element per row of the padded grid, so a box
//! kernel that fills one of them touches one cache line per row of the whole grid. When the update
//! sweep of a step reads those ghost elements only from its own row, it can compute them itself at
//! the start of every row, as a row prologue, while the row sits in cache.
//!
//! A set of ghost kernels `G` of a state buffer `A` is fused into the next kernel `T` that reads
//! `A` when:
//! - every kernel of `G` writes one column of the innermost axis outside the interior, with no
//!   output shift, and loads only interior elements of `A` on its own row;
//! - no operation between the first kernel of `G` and `T` touches `A`;
//! - every load of `T` that can reach a column written by `G` reads the row of `T`'s point shifted
//!   by one common displacement `s`, and `s` equals `T`'s output shift on axis 0;
//! - `T`'s rows shifted by `s` lie inside the rows of every kernel of `G`;
//! - no other kernel of the plan reads a column written by `G`, and no operation other than a
//!   kernel refers to `A`.
//!
//! The ghost elements outside `T`'s rows (the corners with the ghost rows of the outer axes) are
//! then never read, so they are no longer computed. Every element that is read gets the value the
//! ghost kernel would have stored, computed by the same operations.

use crate::codegen::{KernelSpec, RowStore};
use crate::kexpr::Kexpr;
use crate::plan::{Op, Plan};

/// Fuses the innermost ghost columns of every evolved state into the sweep that reads them and
/// returns the number of ghost kernels removed.
pub fn fuse_ghost_columns(plan: &mut Plan) -> usize {
    let mut removed = Vec::new();
    for update in plan.updates.clone() {
        if let Some(fused) = fuse_buffer(plan, update.current, &update.shift) {
            removed.extend(fused);
        }
    }
    if removed.is_empty() {
        return 0;
    }
    let count = removed.len();
    drop_kernels(plan, &removed, &mut []);
    count
}

/// Returns the column range `[first, last]` a load with innermost offset `offset` reaches over the
/// innermost range `region` of its kernel.
fn columns(region: (isize, isize), offset: isize) -> (isize, isize) {
    (region.0 + offset, region.1 - 1 + offset)
}

/// Returns the loads of `buffer` in a kernel's expressions, as offsets.
fn loads_of(spec: &KernelSpec, buffer: usize) -> Vec<Vec<isize>> {
    let mut offsets = Vec::new();
    for expr in spec.exprs() {
        expr.walk(&mut |e| {
            if let Kexpr::Load {
                buffer: b, offset, ..
            } = e
            {
                if *b == buffer {
                    offsets.push(offset.clone());
                }
            }
        });
    }
    offsets
}

/// Returns the column a ghost kernel of `buffer` writes, when it is one.
fn ghost_column(spec: &KernelSpec, buffer: usize, interior: (isize, isize)) -> Option<isize> {
    let rank = spec.rank();
    let p = rank.checked_sub(1)?;
    if spec.output != buffer
        || rank < 2
        || !spec.row_prologue.is_empty()
        || spec.output_shift.iter().any(|s| *s != 0)
    {
        return None;
    }
    let (at, end) = spec.region[p];
    if end != at + 1 || (interior.0..interior.1).contains(&at) {
        return None;
    }
    let mut local = true;
    for expr in spec.exprs() {
        expr.walk(&mut |e| match e {
            Kexpr::Load {
                buffer: b, offset, ..
            } => {
                let column = at + offset[p];
                local &= *b == buffer
                    && offset[..p].iter().all(|o| *o == 0)
                    && (interior.0..interior.1).contains(&column);
            }
            // Another buffer's loads would have to be checked for writers between the ghost
            // kernel and the sweep.
            Kexpr::Uniform { .. } => local = false,
            _ => {}
        });
    }
    local.then_some(at)
}

/// Returns true when the operation reads or writes `buffer`.
fn touches(plan: &Plan, op: &Op, buffer: usize) -> bool {
    match op {
        Op::Kernel { kernel, .. } => {
            let spec = &plan.kernels[*kernel];
            spec.output == buffer
                || spec
                    .row_prologue
                    .iter()
                    .chain(&spec.row_epilogue)
                    .any(|s| s.buffer == buffer)
                || !loads_of(spec, buffer).is_empty()
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

/// Fuses the innermost ghost kernels of `buffer` into the sweep after them; returns the kernels
/// removed from the operations.
fn fuse_buffer(plan: &mut Plan, buffer: usize, shift: &[isize]) -> Option<Vec<usize>> {
    let extents = plan.layouts[buffer].extents.clone();
    let rank = extents.len();
    if rank < 2 || shift.len() != rank {
        return None;
    }
    let p = rank - 1;
    let interior = (shift[p], extents[p] as isize - shift[p]);

    // The ghost kernels and their columns, in operation order.
    let mut ghosts: Vec<(usize, usize, isize)> = Vec::new();
    for (index, op) in plan.ops.iter().enumerate() {
        if let Op::Kernel { kernel, .. } = op {
            if let Some(at) = ghost_column(&plan.kernels[*kernel], buffer, interior) {
                ghosts.push((index, *kernel, at));
            }
        }
    }
    let (first, _, _) = *ghosts.first()?;
    let ghost_ops: Vec<usize> = ghosts.iter().map(|(i, _, _)| *i).collect();
    let ghost_columns: Vec<isize> = ghosts.iter().map(|(_, _, at)| *at).collect();
    let reaches_ghost = |spec: &KernelSpec, offset: &[isize]| {
        let (low, high) = columns(spec.region[p], offset[p]);
        ghost_columns.iter().any(|c| (low..=high).contains(c))
    };

    // The sweep: the first operation after the first ghost kernel that touches the buffer
    // without being a ghost kernel of it.
    let target_op = (first..plan.ops.len())
        .find(|i| !ghost_ops.contains(i) && touches(plan, &plan.ops[*i], buffer))?;
    if ghost_ops.iter().any(|i| *i > target_op) {
        return None;
    }
    let Op::Kernel {
        kernel: target,
        instant,
    } = plan.ops[target_op]
    else {
        return None;
    };
    // The kernels share the time argument.
    let same_instant = ghost_ops
        .iter()
        .all(|i| matches!(plan.ops[*i], Op::Kernel { instant: other, .. } if other == instant));
    if !same_instant {
        return None;
    }
    let spec = &plan.kernels[target];
    if spec.rank() != rank
        || spec.output == buffer
        || !spec.readonly_inputs
        || !spec.row_prologue.is_empty()
    {
        return None;
    }
    let mut row_shift: Option<Vec<isize>> = None;
    for offset in loads_of(spec, buffer) {
        if reaches_ghost(spec, &offset) {
            match &row_shift {
                None => row_shift = Some(offset[..p].to_vec()),
                Some(s) if s[..] == offset[..p] => {}
                Some(_) => return None,
            }
        }
    }
    let row_shift = row_shift?;
    if row_shift[0] != spec.output_shift[0] {
        return None;
    }
    for (_, kernel, _) in &ghosts {
        let region = &plan.kernels[*kernel].region;
        let covered = (0..p).all(|q| {
            spec.region[q].0 + row_shift[q] >= region[q].0
                && spec.region[q].1 + row_shift[q] <= region[q].1
        });
        if !covered {
            return None;
        }
    }

    // No other kernel reads or writes the ghost columns, and only kernels refer to the buffer.
    for (index, op) in plan.ops.iter().enumerate() {
        match op {
            Op::Kernel { kernel, .. } => {
                if index == target_op || ghost_ops.contains(&index) {
                    continue;
                }
                let other = &plan.kernels[*kernel];
                if !touches(plan, op, buffer) {
                    continue;
                }
                let stores = other.row_prologue.iter().chain(&other.row_epilogue);
                if other.rank() != rank || stores.into_iter().any(|s| s.buffer == buffer) {
                    return None;
                }
                let reads = loads_of(other, buffer)
                    .iter()
                    .any(|offset| reaches_ghost(other, offset));
                let writes = other.output == buffer && reaches_ghost(other, &other.output_shift);
                if reads || writes {
                    return None;
                }
            }
            _ if touches(plan, op, buffer) => return None,
            _ => {}
        }
    }

    let mut stores = Vec::new();
    for (_, kernel, at) in &ghosts {
        let ghost = &plan.kernels[*kernel];
        let mut offset = row_shift.clone();
        offset.push(*at);
        for (channel, expr) in &ghost.channels {
            stores.push(RowStore {
                buffer,
                channel: *channel,
                offset: offset.clone(),
                expr: into_row_frame(expr, &row_shift, *at),
            });
        }
    }
    plan.kernels[target].row_prologue = stores;
    Some(ghost_ops)
}

/// Rewrites a ghost kernel's expression, whose frame is the buffer frame at column `at`, into the
/// frame of a sweep whose row `i` is the buffer row `i + row_shift`, at innermost index 0.
fn into_row_frame(expr: &Kexpr, row_shift: &[isize], at: isize) -> Kexpr {
    let p = row_shift.len();
    let recurse = |e: &Kexpr| Box::new(into_row_frame(e, row_shift, at));
    match expr {
        Kexpr::Load {
            buffer,
            channel,
            offset,
        } => {
            let mut moved: Vec<isize> = offset[..p]
                .iter()
                .zip(row_shift)
                .map(|(o, s)| o + s)
                .collect();
            moved.push(offset[p] + at);
            Kexpr::Load {
                buffer: *buffer,
                channel: *channel,
                offset: moved,
            }
        }
        // The same operations in f64 as the code generator's, so the constant is bit-identical.
        Kexpr::Coordinate {
            axis,
            origin,
            spacing,
            shift,
        } if *axis == p => Kexpr::Const(origin + (at + shift) as f64 * spacing),
        Kexpr::Coordinate {
            axis,
            origin,
            spacing,
            shift,
        } => Kexpr::Coordinate {
            axis: *axis,
            origin: *origin,
            spacing: *spacing,
            shift: shift + row_shift[*axis],
        },
        Kexpr::Uniform { .. } | Kexpr::Const(_) | Kexpr::Time => expr.clone(),
        Kexpr::Unary(op, a) => Kexpr::Unary(*op, recurse(a)),
        Kexpr::Binary(op, a, b) => Kexpr::Binary(*op, recurse(a), recurse(b)),
        Kexpr::Call(function, args) => Kexpr::Call(
            *function,
            args.iter()
                .map(|a| into_row_frame(a, row_shift, at))
                .collect(),
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

/// Removes the operations at `ops` and the kernels only they ran, renumbering the rest. The
/// kernels in `kept_kernels` stay even without an operation, and get their new numbers.
pub(crate) fn drop_kernels(plan: &mut Plan, ops: &[usize], kept_kernels: &mut [usize]) {
    let mut index = 0;
    plan.ops.retain(|_| {
        let keep = !ops.contains(&index);
        index += 1;
        keep
    });
    let used: Vec<bool> = (0..plan.kernels.len())
        .map(|k| {
            kept_kernels.contains(&k)
                || plan
                    .ops
                    .iter()
                    .any(|op| matches!(op, Op::Kernel { kernel, .. } if *kernel == k))
        })
        .collect();
    let mut renumbered = vec![usize::MAX; plan.kernels.len()];
    let mut kept = Vec::new();
    for (k, spec) in std::mem::take(&mut plan.kernels).into_iter().enumerate() {
        if used[k] {
            renumbered[k] = kept.len();
            kept.push(spec);
        }
    }
    plan.kernels = kept;
    for op in &mut plan.ops {
        if let Op::Kernel { kernel, .. } = op {
            *kernel = renumbered[*kernel];
        }
    }
    for kernel in kept_kernels {
        *kernel = renumbered[*kernel];
    }
}
