//! Ghost-cell padding of field states by their boundary conditions, and Dirichlet imposition.
//!
//! Follows the rules of [`npdec_ir::graph::GhostRule`]. Dirichlet values are written into the
//! boundary nodes first. Then ghost layers are filled axis by axis, each axis over the padded range of
//! the axes before it and the interior range of the axes after it.

use crate::pointwise::{evaluate_pointwise, Region};
use crate::value::{Element, Real, Value};
use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, Slice};
use npdec_ir::graph::{AxisPadding, DirichletFace, GhostRule, Graph, PointwiseExpr};
use npdec_symbolic::{AxisId, Side};

/// Returns the state padded with ghost layers.
pub fn pad<T: Real, E: Element<T>>(
    graph: &Graph,
    axes: &[AxisId],
    paddings: &[AxisPadding],
    state: &ArrayD<E>,
    time: T,
) -> ArrayD<E> {
    let halo: Vec<usize> = paddings.iter().map(|p| p.halo).collect();
    let points: Vec<usize> = axes.iter().map(|a| graph.axis(*a).points).collect();
    let mut shape = vec![state.shape()[0]];
    shape.extend(points.iter().zip(&halo).map(|(n, h)| n + 2 * h));
    let mut out = ArrayD::<E>::zeros(ndarray::IxDyn(&shape));
    out.slice_each_axis_mut(|d| {
        let i = d.axis.index();
        if i == 0 {
            Slice::from(..)
        } else {
            Slice::from(halo[i - 1]..halo[i - 1] + points[i - 1])
        }
    })
    .assign(state);

    let faces: Vec<(usize, Side, &PointwiseExpr)> = paddings
        .iter()
        .enumerate()
        .flat_map(|(p, padding)| [(p, Side::Min, &padding.min), (p, Side::Max, &padding.max)])
        .filter_map(|(p, side, rule)| match rule {
            GhostRule::Dirichlet { value, .. } => Some((p, side, value)),
            GhostRule::Unconstrained | GhostRule::Periodic | GhostRule::Robin { .. } => None,
        })
        .collect();
    write_dirichlet(graph, axes, &halo, &faces, &mut out, time);

    for (p, padding) in paddings.iter().enumerate() {
        if padding.halo > 0 {
            fill_ghosts(graph, axes, &halo, &points, p, padding, &mut out, time);
        }
    }
    out
}

/// Writes Dirichlet values into the boundary nodes of a state without halo.
pub fn impose_dirichlet<T: Real, E: Element<T>>(
    graph: &Graph,
    axes: &[AxisId],
    faces: &[DirichletFace],
    state: &mut ArrayD<E>,
    time: T,
) {
    let faces: Vec<(usize, Side, &PointwiseExpr)> =
        faces.iter().map(|f| (f.axis, f.side, &f.value)).collect();
    write_dirichlet(graph, axes, &vec![0; axes.len()], &faces, state, time);
}

fn write_dirichlet<T: Real, E: Element<T>>(
    graph: &Graph,
    axes: &[AxisId],
    halo: &[usize],
    faces: &[(usize, Side, &PointwiseExpr)],
    out: &mut ArrayD<E>,
    time: T,
) {
    let points: Vec<usize> = axes.iter().map(|a| graph.axis(*a).points).collect();
    for (p, side, value) in faces {
        let index = match side {
            Side::Min => 0,
            Side::Max => points[*p] - 1,
        };
        let region = Region {
            axes: axes.to_vec(),
            start: (0..axes.len())
                .map(|q| if q == *p { index as isize } else { 0 })
                .collect(),
            len: (0..axes.len())
                .map(|q| if q == *p { 1 } else { points[q] })
                .collect(),
        };
        let mut view = out.slice_each_axis_mut(|d| {
            let i = d.axis.index();
            if i == 0 {
                Slice::from(..)
            } else if i - 1 == *p {
                Slice::from(halo[i - 1] + index..halo[i - 1] + index + 1)
            } else {
                Slice::from(halo[i - 1]..halo[i - 1] + points[i - 1])
            }
        });
        let mut shape = vec![1];
        shape.extend(&region.len);
        let values = E::array_of(&evaluate_pointwise(
            graph,
            value,
            &[],
            Some(&region),
            time,
            &shape,
        ));
        if let Some(values) = values.broadcast(view.raw_dim()) {
            view.assign(&values);
        }
    }
}

/// Returns the slice of `array` at positions `index` along axis position `p`, over the ranges that
/// the fill of axis `p` covers on the other axes.
fn lane_ranges(halo: &[usize], points: &[usize], p: usize) -> Vec<(usize, usize)> {
    (0..halo.len())
        .map(|q| {
            if q < p {
                (0, points[q] + 2 * halo[q])
            } else {
                (halo[q], halo[q] + points[q])
            }
        })
        .collect()
}

fn lane<'a, E>(
    array: &'a ArrayD<E>,
    ranges: &[(usize, usize)],
    p: usize,
    index: usize,
) -> ArrayViewD<'a, E> {
    array.slice_each_axis(|d| {
        let i = d.axis.index();
        if i == 0 {
            Slice::from(..)
        } else if i - 1 == p {
            Slice::from(index..index + 1)
        } else {
            Slice::from(ranges[i - 1].0..ranges[i - 1].1)
        }
    })
}

fn lane_mut<'a, E>(
    array: &'a mut ArrayD<E>,
    ranges: &[(usize, usize)],
    p: usize,
    index: usize,
) -> ArrayViewMutD<'a, E> {
    array.slice_each_axis_mut(|d| {
        let i = d.axis.index();
        if i == 0 {
            Slice::from(..)
        } else if i - 1 == p {
            Slice::from(index..index + 1)
        } else {
            Slice::from(ranges[i - 1].0..ranges[i - 1].1)
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn fill_ghosts<T: Real, E: Element<T>>(
    graph: &Graph,
    axes: &[AxisId],
    halo: &[usize],
    points: &[usize],
    p: usize,
    padding: &AxisPadding,
    out: &mut ArrayD<E>,
    time: T,
) {
    let ranges = lane_ranges(halo, points, p);
    let h = halo[p];
    let n = points[p];
    for side in [Side::Min, Side::Max] {
        let rule = match side {
            Side::Min => &padding.min,
            Side::Max => &padding.max,
        };
        // Padded index of node `k` counted inward from this side, and of ghost `j` counted outward.
        let node = |k: usize| match side {
            Side::Min => h + k,
            Side::Max => h + n - 1 - k,
        };
        let ghost = |j: usize| match side {
            Side::Min => h - j,
            Side::Max => h + n - 1 + j,
        };
        match rule {
            GhostRule::Unconstrained => {}
            GhostRule::Periodic => {
                for j in 1..=h {
                    let source = match side {
                        Side::Min => h + n - j,
                        Side::Max => h + j - 1,
                    };
                    let values = lane(out, &ranges, p, source).to_owned();
                    lane_mut(out, &ranges, p, ghost(j)).assign(&values);
                }
            }
            GhostRule::Dirichlet { weights, .. } => {
                for (j, row) in weights.iter().enumerate() {
                    let mut values = lane(out, &ranges, p, node(0))
                        .to_owned()
                        .mapv(|x| x.scale(T::of(row[0])));
                    for (k, w) in row.iter().enumerate().skip(1) {
                        values.zip_mut_with(&lane(out, &ranges, p, node(k)), |v, x| {
                            *v += x.scale(T::of(*w))
                        });
                    }
                    lane_mut(out, &ranges, p, ghost(j + 1)).assign(&values);
                }
            }
            GhostRule::Robin {
                alpha,
                beta,
                value,
                weights,
                slope_weights,
                spacing,
                ..
            } => {
                let region = Region {
                    axes: axes.to_vec(),
                    start: ranges
                        .iter()
                        .enumerate()
                        .map(|(q, r)| {
                            if q == p {
                                (n - 1) as isize * isize::from(side == Side::Max)
                            } else {
                                r.0 as isize - halo[q] as isize
                            }
                        })
                        .collect(),
                    len: ranges
                        .iter()
                        .enumerate()
                        .map(|(q, r)| if q == p { 1 } else { r.1 - r.0 })
                        .collect(),
                };
                let mut shape = vec![1];
                shape.extend(&region.len);
                let eval = |e: &PointwiseExpr| {
                    E::array_of(&evaluate_pointwise(
                        graph,
                        e,
                        &[],
                        Some(&region),
                        time,
                        &shape,
                    ))
                };
                let (alpha, beta, value) = (eval(alpha), eval(beta), eval(value));
                // The inward slope per node, s = −h (g − α u₀) / β.
                let boundary = lane(out, &ranges, p, node(0)).to_owned();
                let minus_h = T::of(-*spacing);
                let mut slope = boundary.clone();
                ndarray::Zip::from(&mut slope)
                    .and_broadcast(&alpha)
                    .and_broadcast(&beta)
                    .and_broadcast(&value)
                    .for_each(|s, a, b, g| {
                        *s = ((*g - *a * *s) / *b).scale(minus_h);
                    });
                for (j, row) in weights.iter().enumerate() {
                    let mut values = slope.mapv(|s| s.scale(T::of(slope_weights[j])));
                    for (k, w) in row.iter().enumerate() {
                        values.zip_mut_with(&lane(out, &ranges, p, node(k)), |v, x| {
                            *v += x.scale(T::of(*w))
                        });
                    }
                    lane_mut(out, &ranges, p, ghost(j + 1)).assign(&values);
                }
            }
        }
    }
}

/// Returns the padded state of a field as a value of the field's kind.
pub fn pad_value<T: Real>(
    graph: &Graph,
    axes: &[AxisId],
    paddings: &[AxisPadding],
    state: &Value<T>,
    time: T,
) -> Value<T> {
    match state {
        Value::Real(a) => Value::Real(pad(graph, axes, paddings, a, time)),
        Value::Complex(a) => Value::Complex(pad(graph, axes, paddings, a, time)),
    }
}
