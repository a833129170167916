//! Kernels of a fused Euler step whose every written element is dead.
//!
//! A step writes some elements that nothing reads before they are written again. With a Dirichlet
//! side on axis 0, the update computes the boundary plane of the new state, and the face kernel
//! after it overwrites that plane. The update of that plane is the only reader of the outermost
//! ghost layer of axis 0 (at order 2, of the only one), so the ghost kernel that fills the layer
//! does dead work. It also lengthens the delays of temporal blocking ([`crate::blocking`]): its
//! one-sided extrapolation reads several planes, and the next step's update must wait for them.
//!
//! A backward pass over the operations keeps, per buffer, a set of boxes that contains every
//! element read before it is written again (the live elements). A kernel's loads count only from
//! the rows of axis 0 where it writes a live element: the other rows produce values that nothing
//! reads. A kernel that writes no live element is removed. Kernels keep their regions, so the
//! update still computes the boundary plane (from stale ghost values) before the face overwrites
//! it, and the fusions of [`crate::ghost_columns`] and [`crate::face_columns`] still apply.
//!
//! Live after a step: the interior of every new state (what the caller reads), and what the next
//! step reads before writing it, with the current and next buffers traded. The pass repeats until
//! that set stops changing. Every live element gets the same value from the same operations as
//! before, so results are bit-identical.
//!
//! The live rows are a range of axis 0 per kernel, so only kernels dead on every row go: those
//! along axis 0 (ghost layers, faces written twice), not ghost layers of the inner axes.

use crate::codegen::KernelSpec;
use crate::kexpr::Kexpr;
use crate::plan::{Op, Plan};
use npdec_symbolic::FieldId;

/// A box of buffer elements, one half-open range per axis of the buffer.
type Cells = Vec<(isize, isize)>;

/// A buffer's live set merges into one bounding box when it has more boxes than this.
const MAX_BOXES: usize = 64;

/// The maximum number of passes that look for the elements a step reads before writing them.
const MAX_ROUNDS: usize = 8;

/// Removes the kernels of a fused step plan that write no live element and returns how many it
/// removed. `shapes` contains the shape (channels, then points per axis) of every evolved field.
/// Plans with an operation other than a box kernel, or with row prologues or epilogues, stay as
/// they are.
pub fn remove_dead_kernels(plan: &mut Plan, shapes: &[(FieldId, Vec<usize>)]) -> usize {
    if plan.updates.is_empty() || !analyzable(plan) {
        return 0;
    }
    let mut interiors = Vec::new();
    for update in &plan.updates {
        let Some((_, shape)) = shapes.iter().find(|(f, _)| *f == update.field) else {
            return 0;
        };
        if shape.len() != update.shift.len() + 1 {
            return 0;
        }
        let interior: Cells = update
            .shift
            .iter()
            .zip(&shape[1..])
            .map(|(s, n)| (*s, *s + *n as isize))
            .collect();
        interiors.push(interior);
    }

    let buffers = plan.layouts.len();
    let mut live_out = vec![Vec::new(); buffers];
    for (update, interior) in plan.updates.iter().zip(&interiors) {
        live_out[update.next].push(interior.clone());
    }
    let mut converged = false;
    for _ in 0..MAX_ROUNDS {
        let (live_in, _) = backward(plan, &live_out);
        let mut next_out = live_in.clone();
        for (update, interior) in plan.updates.iter().zip(&interiors) {
            let mut new_state = vec![interior.clone()];
            for cells in &live_in[update.current] {
                include(&mut new_state, cells.clone());
            }
            next_out[update.next] = new_state;
            next_out[update.current] = live_in[update.next].clone();
        }
        if next_out == live_out {
            converged = true;
            break;
        }
        live_out = next_out;
    }
    if !converged {
        return 0;
    }

    let (_, live_ops) = backward(plan, &live_out);
    let dead: Vec<usize> = (0..plan.ops.len()).filter(|i| !live_ops[*i]).collect();
    if !dead.is_empty() {
        crate::ghost_columns::drop_kernels(plan, &dead, &mut []);
    }
    dead.len()
}

/// Returns true when every operation runs a box kernel that no other operation runs, without row
/// stores, whose region has the rank of its output buffer.
fn analyzable(plan: &Plan) -> bool {
    let mut seen = vec![false; plan.kernels.len()];
    for op in &plan.ops {
        let Op::Kernel { kernel, .. } = op else {
            return false;
        };
        if std::mem::replace(&mut seen[*kernel], true) {
            return false;
        }
        let spec = &plan.kernels[*kernel];
        let rank = spec.rank();
        if rank == 0
            || !spec.row_prologue.is_empty()
            || !spec.row_epilogue.is_empty()
            || spec.output_shift.len() != rank
            || plan.layouts[spec.output].extents.len() != rank
        {
            return false;
        }
    }
    true
}

/// Runs the operations backward from the elements live after the step. Returns the elements live
/// before it and, per operation, whether it writes a live element. An operation that writes none
/// counts as if it did not run.
fn backward(plan: &Plan, live_out: &[Vec<Cells>]) -> (Vec<Vec<Cells>>, Vec<bool>) {
    let mut live = live_out.to_vec();
    let mut live_ops = vec![true; plan.ops.len()];
    for (index, op) in plan.ops.iter().enumerate().rev() {
        let Op::Kernel { kernel, .. } = op else {
            unreachable!("analyzable plans have box kernels only");
        };
        let spec = &plan.kernels[*kernel];
        let written = shifted(&spec.region, &spec.output_shift);
        let Some((first, last)) = live_rows(&live[spec.output], &written) else {
            live_ops[index] = false;
            continue;
        };

        if writes_every_channel(plan, spec) {
            live[spec.output] = std::mem::take(&mut live[spec.output])
                .into_iter()
                .filter_map(|cells| subtract(cells, &written))
                .collect();
        }
        // Loads only count from the rows whose output is live.
        let mut region = spec.region.clone();
        region[0] = (first - spec.output_shift[0], last - spec.output_shift[0]);
        for (buffer, cells) in reads(plan, spec, &region) {
            include(&mut live[buffer], cells);
        }
    }
    (live, live_ops)
}

/// Returns the range of axis-0 rows of `written` that hold a live element, when there is one.
fn live_rows(live: &[Cells], written: &Cells) -> Option<(isize, isize)> {
    let mut rows: Option<(isize, isize)> = None;
    for cells in live {
        if let Some(common) = intersect(cells, written) {
            let (first, last) = common[0];
            rows = Some(rows.map_or((first, last), |(a, b)| (a.min(first), b.max(last))));
        }
    }
    rows
}

/// Returns true when a kernel writes every channel of its output buffer.
fn writes_every_channel(plan: &Plan, spec: &KernelSpec) -> bool {
    let channels = plan.layouts[spec.output].channels;
    (0..channels).all(|c| spec.channels.iter().any(|(written, _)| *written == c))
}

/// Returns the buffer elements of a kernel-frame region, shifted by `shift`.
fn shifted(region: &[(isize, isize)], shift: &[isize]) -> Cells {
    region
        .iter()
        .zip(shift)
        .map(|((first, last), s)| (first + s, last + s))
        .collect()
}

/// Returns the elements a kernel's loads reach over `region`, per buffer. A load whose offset
/// does not have the rank of the region and of its buffer, and an element of a uniform buffer,
/// count as reading the whole buffer.
fn reads(plan: &Plan, spec: &KernelSpec, region: &[(isize, isize)]) -> Vec<(usize, Cells)> {
    let mut boxes: Vec<(usize, Cells)> = Vec::new();
    for expr in spec.exprs() {
        expr.walk(&mut |e| {
            let (buffer, offset) = match e {
                Kexpr::Load { buffer, offset, .. } => (*buffer, Some(offset)),
                Kexpr::Uniform { buffer, .. } => (*buffer, None),
                _ => return,
            };
            let extents = &plan.layouts[buffer].extents;
            let cells = match offset {
                Some(offset) if offset.len() == region.len() && extents.len() == region.len() => {
                    shifted(region, offset)
                }
                _ => extents.iter().map(|e| (0, *e as isize)).collect(),
            };
            if !boxes.iter().any(|(b, c)| *b == buffer && *c == cells) {
                boxes.push((buffer, cells));
            }
        });
    }
    boxes
}

/// Returns the common elements of two boxes of one buffer, when there are any.
fn intersect(a: &[(isize, isize)], b: &[(isize, isize)]) -> Option<Cells> {
    let common: Cells = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x.0.max(y.0), x.1.min(y.1)))
        .collect();
    common
        .iter()
        .all(|(first, last)| first < last)
        .then_some(common)
}

/// Returns the elements of `live` outside `written`: `None` when `written` covers all of them,
/// and `live` unchanged when the rest is not a box (which keeps the set a superset).
fn subtract(live: Cells, written: &Cells) -> Option<Cells> {
    let Some(common) = intersect(&live, written) else {
        return Some(live);
    };
    let partial: Vec<usize> = (0..live.len()).filter(|q| common[*q] != live[*q]).collect();
    match partial.as_slice() {
        [] => None,
        [q] => {
            let q = *q;
            let mut rest = live.clone();
            if common[q].0 == live[q].0 {
                rest[q].0 = common[q].1;
            } else if common[q].1 == live[q].1 {
                rest[q].1 = common[q].0;
            }
            Some(rest)
        }
        _ => Some(live),
    }
}

/// Adds a box to a live set, unless a box of the set contains it. Past [`MAX_BOXES`] boxes the
/// set becomes their bounding box.
fn include(set: &mut Vec<Cells>, cells: Cells) {
    if set
        .iter()
        .any(|c| intersect(c, &cells).as_ref() == Some(&cells))
    {
        return;
    }
    set.push(cells);
    if set.len() > MAX_BOXES {
        let mut bounds = set[0].clone();
        for c in &set[1..] {
            for (b, r) in bounds.iter_mut().zip(c) {
                *b = (b.0.min(r.0), b.1.max(r.1));
            }
        }
        *set = vec![bounds];
    }
}
