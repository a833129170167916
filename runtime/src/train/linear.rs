//! Spatial operators as sparse matrices: a stencil composed with the ghost-cell rules of a field's
//! boundary conditions, so that its adjoint is the transposed matrix.
//!
//! The rules follow the IR's `Boundary` node (see `npdec_ir::graph`). Dirichlet values are written
//! into the boundary nodes first. Ghost layers are then filled axis by axis in axis order, each
//! axis over the already padded range of the axes before it. A ghost `j` layers outside a side is
//! the polynomial extrapolation of `npdec_ir::ghost_cells`: `Σ_k w[j−1][k] · node_k` for Dirichlet,
//! plus `slope_w[j−1] · s` with `s = −h · (g − α · node_0) / β` for Robin and Neumann. Boundary
//! values may depend on the coordinates but not on time, parameters or fields, so the operator is
//! affine, `y = A u + c`, and `c` holds them. Like the interpreter, a value that a ghost needs is
//! evaluated at that ghost's position on the axes filled before it, outside the grid at corners.

use ndarray::Array2;
use npdec_ir::ghost_cells::{dirichlet_weights, extrapolation_degree, robin_degree, robin_weights};
use npdec_ir::simplify::constant_value;
use npdec_symbolic::{BoundaryKind, Expr, FieldId, Model, Side};

/// An affine map `y = A u + c` stored row by row (compressed sparse rows). Rows and columns are
/// the points of two grids of the same rank, flattened in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseOperator {
    rows: usize,
    columns: usize,
    row_extents: Vec<usize>,
    column_extents: Vec<usize>,
    row_start: Vec<usize>,
    column: Vec<usize>,
    weight: Vec<f64>,
    constant: Vec<f64>,
}

impl SparseOperator {
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Returns the extents of the grid the rows are the points of.
    pub fn row_extents(&self) -> &[usize] {
        &self.row_extents
    }

    /// Returns the extents of the grid the columns are the points of.
    pub fn column_extents(&self) -> &[usize] {
        &self.column_extents
    }

    /// Returns `Aᵀ` with no constant part: the operator whose [`Self::apply`] is this one's
    /// [`Self::apply_transpose`].
    pub fn transpose(&self) -> SparseOperator {
        let mut rows: Vec<Vec<(usize, f64)>> = vec![Vec::new(); self.columns];
        for r in 0..self.rows {
            for (c, w) in self.row_entries(r) {
                rows[c].push((r, w));
            }
        }
        let mut builder = Builder::new(&self.row_extents);
        for row in rows {
            builder.push_row(row, 0.0);
        }
        builder.finish(&self.column_extents)
    }

    /// Returns the entries `(column, weight)` of row `row`.
    pub fn row_entries(&self, row: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let range = self.row_start[row]..self.row_start[row + 1];
        self.column[range.clone()]
            .iter()
            .copied()
            .zip(self.weight[range].iter().copied())
    }

    /// Returns the constant part of each row.
    pub fn constants(&self) -> &[f64] {
        &self.constant
    }

    /// Applies the operator to each of `channels` channels of every row of `u`
    /// (`[batch, channels · columns]` → `[batch, channels · rows]`).
    pub fn apply(&self, u: &Array2<f64>, channels: usize) -> Array2<f64> {
        let mut out = Array2::zeros((u.nrows(), channels * self.rows));
        for (input, mut output) in u.rows().into_iter().zip(out.rows_mut()) {
            for c in 0..channels {
                let input_base = c * self.columns;
                let output_base = c * self.rows;
                for r in 0..self.rows {
                    let mut sum = self.constant[r];
                    for e in self.row_start[r]..self.row_start[r + 1] {
                        sum += self.weight[e] * input[input_base + self.column[e]];
                    }
                    output[output_base + r] = sum;
                }
            }
        }
        out
    }

    /// Applies `A` without the constant part: the derivative of [`Self::apply`] in a direction.
    pub fn apply_linear(&self, u: &Array2<f64>, channels: usize) -> Array2<f64> {
        let mut out = self.apply(u, channels);
        for mut row in out.rows_mut() {
            for c in 0..channels {
                for r in 0..self.rows {
                    row[c * self.rows + r] -= self.constant[r];
                }
            }
        }
        out
    }

    /// Applies `Aᵀ` (without the constant) channel by channel: the adjoint of [`Self::apply`].
    pub fn apply_transpose(&self, adjoint: &Array2<f64>, channels: usize) -> Array2<f64> {
        let mut out = Array2::zeros((adjoint.nrows(), channels * self.columns));
        for (input, mut output) in adjoint.rows().into_iter().zip(out.rows_mut()) {
            for c in 0..channels {
                let input_base = c * self.rows;
                let output_base = c * self.columns;
                for r in 0..self.rows {
                    let g = input[input_base + r];
                    if g == 0.0 {
                        continue;
                    }
                    for e in self.row_start[r]..self.row_start[r + 1] {
                        output[output_base + self.column[e]] += self.weight[e] * g;
                    }
                }
            }
        }
        out
    }
}

/// The value `g` of a Dirichlet, Neumann or Robin condition.
#[derive(Clone, Debug, PartialEq)]
pub enum SideValue {
    Constant(f64),
    /// Values of an expression of the coordinates at every point of the grid widened by `halo`
    /// ghost layers per axis, in row-major order.
    Grid {
        values: Vec<f64>,
        halo: Vec<usize>,
        padded_extents: Vec<usize>,
    },
}

impl SideValue {
    /// Returns the value at grid index `index`, which may lie in the ghost layers. An index beyond
    /// the ghost layers takes the value of the nearest ghost.
    pub fn at(&self, index: &[i64]) -> f64 {
        match self {
            SideValue::Constant(value) => *value,
            SideValue::Grid {
                values,
                halo,
                padded_extents,
            } => {
                let padded: Vec<i64> = index
                    .iter()
                    .zip(halo.iter().zip(padded_extents))
                    .map(|(i, (h, n))| (i + *h as i64).clamp(0, *n as i64 - 1))
                    .collect();
                values[flatten(&padded, padded_extents)]
            }
        }
    }

    fn scaled(self, factor: f64) -> SideValue {
        match self {
            SideValue::Constant(value) => SideValue::Constant(value * factor),
            SideValue::Grid {
                values,
                halo,
                padded_extents,
            } => SideValue::Grid {
                values: values.into_iter().map(|v| v * factor).collect(),
                halo,
                padded_extents,
            },
        }
    }
}

/// The rule that fills the ghosts outside one side of one axis.
#[derive(Clone, Debug, PartialEq)]
pub enum SideRule {
    /// No condition: reading outside is an error when the operator is built.
    None,
    Periodic,
    /// Ghosts copy the boundary node: how a grid parameter is read in ghost layers.
    Nearest,
    Dirichlet {
        value: SideValue,
        weights: Vec<Vec<f64>>,
    },
    Robin {
        alpha: f64,
        beta: f64,
        value: SideValue,
        weights: Vec<Vec<f64>>,
        slope_weights: Vec<f64>,
        spacing: f64,
    },
}

/// The grid of a field with the rules of both sides of each axis.
#[derive(Clone, Debug, PartialEq)]
pub struct BoundedGrid {
    pub extents: Vec<usize>,
    /// `rules[axis] = [min side, max side]`.
    pub rules: Vec<[SideRule; 2]>,
}

impl BoundedGrid {
    /// Builds the rules of a field's boundary conditions for ghost layers `halo[axis]` deep.
    pub fn of_field(
        model: &Model,
        field: FieldId,
        halo: &[usize],
        space_order: usize,
    ) -> Result<BoundedGrid, String> {
        let declared = model.field(field);
        let mut extents = Vec::new();
        let mut rules = Vec::new();
        for (position, axis_id) in declared.axes.iter().enumerate() {
            let axis = model.axis(*axis_id);
            extents.push(axis.points);
            let depth = halo.get(position).copied().unwrap_or(0);
            let mut sides = [SideRule::None, SideRule::None];
            for (slot, side) in [Side::Min, Side::Max].into_iter().enumerate() {
                let Some(condition) = model.boundary(field, *axis_id, side) else {
                    continue;
                };
                let constant = |expr: &Expr, what: &str| -> Result<f64, String> {
                    match constant_value(&npdec_ir::simplify(expr)) {
                        Some((re, 0.0)) => Ok(re),
                        _ => Err(format!(
                            "the {what} of the boundary condition of `{}` on `{}` must be a real constant in a trained model",
                            declared.name, axis.name
                        )),
                    }
                };
                let side_value = |expr: &Expr| -> Result<SideValue, String> {
                    let simplified = npdec_ir::simplify(expr);
                    if let Some((re, 0.0)) = constant_value(&simplified) {
                        return Ok(SideValue::Constant(re));
                    }
                    let boundary_value_error = |what: &str| {
                        format!(
                            "the value of the boundary condition of `{}` on `{}` depends on {what}, but boundary values of a trained model may depend only on the coordinates",
                            declared.name, axis.name
                        )
                    };
                    if simplified.any(|e| matches!(e, Expr::Time)) {
                        return Err(boundary_value_error("the time `t`"));
                    }
                    if simplified.any(|e| matches!(e, Expr::Param(_))) {
                        return Err(boundary_value_error("a parameter"));
                    }
                    if simplified.any(|e| {
                        matches!(
                            e,
                            Expr::Field(_)
                                | Expr::Channel(..)
                                | Expr::Input(_)
                                | Expr::Label(_)
                                | Expr::Sequence(_)
                                | Expr::Complex(..)
                        )
                    }) {
                        return Err(boundary_value_error("a field, data or a complex number"));
                    }
                    let values =
                        crate::train::lower::padded_grid_values(model, field, &simplified, halo)?;
                    Ok(SideValue::Grid {
                        values,
                        halo: halo.to_vec(),
                        padded_extents: declared
                            .axes
                            .iter()
                            .zip(halo)
                            .map(|(a, h)| model.axis(*a).points + 2 * h)
                            .collect(),
                    })
                };
                sides[slot] = match &condition.kind {
                    BoundaryKind::Periodic => SideRule::Periodic,
                    BoundaryKind::Dirichlet(value) => SideRule::Dirichlet {
                        value: side_value(value)?,
                        weights: dirichlet_weights(
                            depth,
                            extrapolation_degree(space_order, axis.points),
                        ),
                    },
                    BoundaryKind::Neumann(value) => {
                        let (weights, slope_weights) =
                            robin_weights(depth, robin_degree(space_order, axis.points));
                        SideRule::Robin {
                            alpha: 0.0,
                            beta: 1.0,
                            value: side_value(value)?,
                            weights,
                            slope_weights,
                            spacing: axis.spacing(),
                        }
                    }
                    BoundaryKind::Robin { alpha, beta, value } => {
                        let (alpha, beta) = (constant(alpha, "alpha")?, constant(beta, "beta")?);
                        let value = side_value(value)?;
                        if beta == 0.0 {
                            SideRule::Dirichlet {
                                value: value.scaled(1.0 / alpha),
                                weights: dirichlet_weights(
                                    depth,
                                    extrapolation_degree(space_order, axis.points),
                                ),
                            }
                        } else {
                            let (weights, slope_weights) =
                                robin_weights(depth, robin_degree(space_order, axis.points));
                            SideRule::Robin {
                                alpha,
                                beta,
                                value,
                                weights,
                                slope_weights,
                                spacing: axis.spacing(),
                            }
                        }
                    }
                };
            }
            rules.push(sides);
        }
        Ok(BoundedGrid { extents, rules })
    }

    pub fn points(&self) -> usize {
        self.extents.iter().product()
    }

    /// Returns the flat indices and values of the Dirichlet boundary nodes, which time stepping
    /// keeps at their values.
    pub fn dirichlet_nodes(&self) -> Vec<(usize, f64)> {
        let mut nodes = Vec::new();
        let mut index = vec![0i64; self.extents.len()];
        for flat in 0..self.points() {
            unflatten(flat, &self.extents, &mut index);
            if let Some(value) = self.dirichlet_value_at(&index) {
                nodes.push((flat, value));
            }
        }
        nodes
    }

    /// Returns the Dirichlet value of a boundary node. At a corner of two Dirichlet sides the later
    /// axis wins, as in the interpreter, which writes the faces in axis order.
    fn dirichlet_value_at(&self, index: &[i64]) -> Option<f64> {
        for (axis, &i) in index.iter().enumerate().rev() {
            let last = self.extents[axis] as i64 - 1;
            let slot = if i == 0 {
                0
            } else if i == last {
                1
            } else {
                continue;
            };
            if let SideRule::Dirichlet { value, .. } = &self.rules[axis][slot] {
                return Some(value.at(index));
            }
        }
        None
    }

    /// Adds `weight ·` (the padded value at `index`) to a row, resolving ghosts recursively.
    fn resolve(
        &self,
        index: &mut [i64],
        weight: f64,
        row: &mut Vec<(usize, f64)>,
        constant: &mut f64,
    ) -> Result<(), String> {
        if weight == 0.0 {
            return Ok(());
        }
        let outside = (0..index.len())
            .rev()
            .find(|&a| index[a] < 0 || index[a] >= self.extents[a] as i64);
        let Some(axis) = outside else {
            if let Some(value) = self.dirichlet_value_at(index) {
                *constant += weight * value;
            } else {
                row.push((flatten(index, &self.extents), weight));
            }
            return Ok(());
        };
        let n = self.extents[axis] as i64;
        let original = index[axis];
        let (slot, ghost) = if original < 0 {
            (0, (-original) as usize)
        } else {
            (1, (original - (n - 1)) as usize)
        };
        // Node k counted inward from the side's boundary node.
        let node = |k: usize| -> i64 {
            if slot == 0 {
                k as i64
            } else {
                n - 1 - k as i64
            }
        };
        match &self.rules[axis][slot] {
            SideRule::None => {
                return Err(format!(
                    "a stencil reads {ghost} point(s) beyond the {} end of axis {} but no boundary condition is declared there",
                    if slot == 0 { "lower" } else { "upper" },
                    axis + 1
                ))
            }
            SideRule::Periodic => {
                index[axis] = original.rem_euclid(n);
                self.resolve(index, weight, row, constant)?;
            }
            SideRule::Nearest => {
                index[axis] = node(0);
                self.resolve(index, weight, row, constant)?;
            }
            SideRule::Dirichlet { weights, .. } => {
                // The boundary node resolves like any other, so that it takes the value the
                // interpreter writes there (the later axis's at a corner of two Dirichlet sides).
                let w = weights.get(ghost - 1).ok_or("ghost layer deeper than the halo")?;
                for (k, wk) in w.iter().enumerate() {
                    index[axis] = node(k);
                    self.resolve(index, weight * wk, row, constant)?;
                }
            }
            SideRule::Robin {
                alpha,
                beta,
                value,
                weights,
                slope_weights,
                spacing,
            } => {
                let w = weights.get(ghost - 1).ok_or("ghost layer deeper than the halo")?;
                let slope = slope_weights[ghost - 1];
                index[axis] = node(0);
                *constant += weight * slope * (-spacing * value.at(index) / beta);
                let node0_extra = slope * spacing * alpha / beta;
                for (k, wk) in w.iter().enumerate() {
                    let extra = if k == 0 { node0_extra } else { 0.0 };
                    index[axis] = node(k);
                    self.resolve(index, weight * (wk + extra), row, constant)?;
                }
            }
        }
        index[axis] = original;
        Ok(())
    }

    /// Builds the grid of a grid parameter on `axes`: ghosts wrap on periodic axes and copy the
    /// boundary node on the others.
    pub fn of_param_axes(model: &Model, axes: &[npdec_symbolic::AxisId]) -> BoundedGrid {
        BoundedGrid {
            extents: axes.iter().map(|a| model.axis(*a).points).collect(),
            rules: axes
                .iter()
                .map(|a| {
                    if model.axis(*a).periodic {
                        [SideRule::Periodic, SideRule::Periodic]
                    } else {
                        [SideRule::Nearest, SideRule::Nearest]
                    }
                })
                .collect(),
        }
    }

    /// Builds `Σ weight · u[i + offset]` at every grid point.
    pub fn stencil_operator(&self, taps: &[(Vec<i64>, f64)]) -> Result<SparseOperator, String> {
        self.stencil_operator_padded(&vec![0; self.extents.len()], taps)
    }

    /// Builds `Σ weight · u[i + offset]` at every point of the grid widened by `halo[axis]` on
    /// both sides: the stencil applied to the field padded by its ghost-cell rules.
    pub fn stencil_operator_padded(
        &self,
        halo: &[usize],
        taps: &[(Vec<i64>, f64)],
    ) -> Result<SparseOperator, String> {
        let padded: Vec<usize> = self
            .extents
            .iter()
            .zip(halo)
            .map(|(n, h)| n + 2 * h)
            .collect();
        let points: usize = padded.iter().product();
        let mut builder = Builder::new(&self.extents);
        let mut index = vec![0i64; self.extents.len()];
        let mut shifted = index.clone();
        for flat in 0..points {
            unflatten(flat, &padded, &mut index);
            let mut row = Vec::new();
            let mut constant = 0.0;
            for (offset, weight) in taps {
                for a in 0..index.len() {
                    shifted[a] = index[a] - halo[a] as i64 + offset[a];
                }
                self.resolve(&mut shifted, *weight, &mut row, &mut constant)?;
            }
            builder.push_row(row, constant);
        }
        Ok(builder.finish(&padded))
    }

    /// Builds the padding map from the grid to the grid widened by `halo[axis]` on both sides.
    pub fn padding_operator(&self, halo: &[usize]) -> Result<SparseOperator, String> {
        let padded: Vec<usize> = self
            .extents
            .iter()
            .zip(halo)
            .map(|(n, h)| n + 2 * h)
            .collect();
        let rows: usize = padded.iter().product();
        let mut builder = Builder::new(&self.extents);
        let mut index = vec![0i64; padded.len()];
        for flat in 0..rows {
            unflatten(flat, &padded, &mut index);
            for (i, h) in index.iter_mut().zip(halo) {
                *i -= *h as i64;
            }
            let mut row = Vec::new();
            let mut constant = 0.0;
            self.resolve(&mut index, 1.0, &mut row, &mut constant)?;
            builder.push_row(row, constant);
        }
        Ok(builder.finish(&padded))
    }
}

/// Builds the matrix of `pool` (the mean of each block of `factor` points per axis; rows are the
/// coarse points) or `upsample` (each fine point copies the coarse point of its block; rows are
/// the fine points) for a grid of `fine` points per axis, each a multiple of `factor`.
pub fn resample_operator(fine: &[usize], factor: usize, pool: bool) -> SparseOperator {
    let coarse: Vec<usize> = fine.iter().map(|n| n / factor).collect();
    let fine_points: usize = fine.iter().product();
    let coarse_points: usize = coarse.iter().product();
    let mut fine_index = vec![0i64; fine.len()];
    let mut coarse_index = vec![0i64; fine.len()];
    if pool {
        let mut rows = vec![Vec::new(); coarse_points];
        let weight = 1.0 / (factor.pow(fine.len() as u32)) as f64;
        for flat in 0..fine_points {
            unflatten(flat, fine, &mut fine_index);
            for a in 0..fine.len() {
                coarse_index[a] = fine_index[a] / factor as i64;
            }
            rows[flatten(&coarse_index, &coarse)].push((flat, weight));
        }
        let mut builder = Builder::new(fine);
        for row in rows {
            builder.push_row(row, 0.0);
        }
        builder.finish(&coarse)
    } else {
        let mut builder = Builder::new(&coarse);
        for flat in 0..fine_points {
            unflatten(flat, fine, &mut fine_index);
            for a in 0..fine.len() {
                coarse_index[a] = fine_index[a] / factor as i64;
            }
            builder.push_row(vec![(flatten(&coarse_index, &coarse), 1.0)], 0.0);
        }
        builder.finish(fine)
    }
}

/// Builds `Σ weight · u[i + shrink + offset]` on a grid of `in_extents − 2 · shrink` points from
/// values on a grid of `in_extents` points: a stencil on an already padded value. Every tap must
/// stay inside the input (`|offset[axis]| ≤ shrink[axis]`).
pub fn tap_operator(
    in_extents: &[usize],
    shrink: &[usize],
    taps: &[(Vec<i64>, f64)],
) -> Result<SparseOperator, String> {
    let out_extents: Vec<usize> = in_extents
        .iter()
        .zip(shrink)
        .map(|(n, s)| n.saturating_sub(2 * s))
        .collect();
    let points: usize = out_extents.iter().product();
    let mut builder = Builder::new(in_extents);
    let mut index = vec![0i64; in_extents.len()];
    let mut shifted = index.clone();
    for flat in 0..points {
        unflatten(flat, &out_extents, &mut index);
        let mut row = Vec::new();
        for (offset, weight) in taps {
            for a in 0..index.len() {
                shifted[a] = index[a] + shrink[a] as i64 + offset[a];
                if shifted[a] < 0 || shifted[a] >= in_extents[a] as i64 {
                    return Err("a stencil reads beyond the ghost layers of its operand".into());
                }
            }
            row.push((flatten(&shifted, in_extents), *weight));
        }
        builder.push_row(row, 0.0);
    }
    Ok(builder.finish(&out_extents))
}

struct Builder {
    columns: usize,
    column_extents: Vec<usize>,
    row_start: Vec<usize>,
    column: Vec<usize>,
    weight: Vec<f64>,
    constant: Vec<f64>,
}

impl Builder {
    fn new(column_extents: &[usize]) -> Builder {
        Builder {
            columns: column_extents.iter().product(),
            column_extents: column_extents.to_vec(),
            row_start: vec![0],
            column: Vec::new(),
            weight: Vec::new(),
            constant: Vec::new(),
        }
    }

    fn push_row(&mut self, mut row: Vec<(usize, f64)>, constant: f64) {
        row.sort_by_key(|(c, _)| *c);
        let mut merged: Vec<(usize, f64)> = Vec::with_capacity(row.len());
        for (c, w) in row {
            match merged.last_mut() {
                Some((last, total)) if *last == c => *total += w,
                _ => merged.push((c, w)),
            }
        }
        for (c, w) in merged {
            if w != 0.0 {
                self.column.push(c);
                self.weight.push(w);
            }
        }
        self.row_start.push(self.column.len());
        self.constant.push(constant);
    }

    fn finish(self, row_extents: &[usize]) -> SparseOperator {
        debug_assert_eq!(row_extents.iter().product::<usize>(), self.constant.len());
        SparseOperator {
            rows: self.constant.len(),
            columns: self.columns,
            row_extents: row_extents.to_vec(),
            column_extents: self.column_extents,
            row_start: self.row_start,
            column: self.column,
            weight: self.weight,
            constant: self.constant,
        }
    }
}

fn flatten(index: &[i64], extents: &[usize]) -> usize {
    index
        .iter()
        .zip(extents)
        .fold(0, |flat, (i, n)| flat * n + *i as usize)
}

fn unflatten(mut flat: usize, extents: &[usize], index: &mut [i64]) {
    for a in (0..extents.len()).rev() {
        index[a] = (flat % extents[a]) as i64;
        flat /= extents[a];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn periodic_line(points: usize) -> BoundedGrid {
        BoundedGrid {
            extents: vec![points],
            rules: vec![[SideRule::Periodic, SideRule::Periodic]],
        }
    }

    #[test]
    fn periodic_second_difference_wraps() {
        let grid = periodic_line(4);
        let op = grid
            .stencil_operator(&[(vec![-1], 1.0), (vec![0], -2.0), (vec![1], 1.0)])
            .unwrap();
        let u = Array2::from_shape_vec((1, 4), vec![1.0, 2.0, 4.0, 8.0]).unwrap();
        let y = op.apply(&u, 1);
        assert_eq!(
            y.as_slice().unwrap(),
            &[
                8.0 - 2.0 + 2.0,
                1.0 - 4.0 + 4.0,
                2.0 - 8.0 + 8.0,
                4.0 - 16.0 + 1.0
            ]
        );
    }

    #[test]
    fn neumann_ghost_mirrors_at_order_two() {
        let (weights, slope_weights) = robin_weights(1, robin_degree(2, 5));
        let rule = SideRule::Robin {
            alpha: 0.0,
            beta: 1.0,
            value: SideValue::Constant(0.0),
            weights,
            slope_weights,
            spacing: 1.0,
        };
        let grid = BoundedGrid {
            extents: vec![5],
            rules: vec![[rule.clone(), rule]],
        };
        let pad = grid.padding_operator(&[1]).unwrap();
        let u = Array2::from_shape_vec((1, 5), vec![1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        let padded = pad.apply(&u, 1);
        assert!((padded[[0, 0]] - 2.0).abs() < 1e-12);
        assert!((padded[[0, 6]] - 4.0).abs() < 1e-12);
    }

    #[test]
    fn missing_condition_is_an_error() {
        let grid = BoundedGrid {
            extents: vec![3],
            rules: vec![[SideRule::None, SideRule::None]],
        };
        assert!(grid.stencil_operator(&[(vec![-1], 1.0)]).is_err());
    }
}
