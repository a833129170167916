//! Ghost-cell weights for boundary conditions on node-centered grids.
//!
//! The boundary node is grid point 0 of an axis side; ghost `j` sits at `−j` (counted outward) and
//! interior node `k` at `+k`, all in units of the spacing. A ghost value is the value at `−j` of a
//! polynomial fitted to the nodes and the boundary condition, so composing it with a centered stencil
//! gives a one-sided formula of the same polynomial degree.
//!
//! For Dirichlet conditions the degree is the space order plus one: a second-derivative stencil
//! divides the ghost error `O(h^(order+2))` by `h²`, which keeps the truncation error next to the
//! boundary at `O(h^order)`. For Neumann and Robin conditions the degree is the space order, so the
//! boundary node itself has a truncation error one order lower; that keeps the global order
//! (B. Gustafsson, "The convergence rate for difference approximations to mixed initial boundary
//! value problems", Math. Comp. 29, 1975), reduces to the classic mirror formula
//! `u₋₁ = u₁ − 2h·∂u/∂x` at order 2, and converged at the full order from coarser grids in the heat
//! tests than degree `order + 1`.

use crate::fornberg::derivative_weights;

/// Returns the degree of the polynomial that fills ghosts for a given space order, capped so that the
/// polynomial only uses nodes that exist on an axis of `points` nodes.
pub fn extrapolation_degree(space_order: usize, points: usize) -> usize {
    (space_order + 1).min(points.saturating_sub(1)).max(1)
}

/// Returns the degree of the polynomial that fills Neumann and Robin ghosts.
pub fn robin_degree(space_order: usize, points: usize) -> usize {
    space_order.min(points.saturating_sub(1)).max(2)
}

/// Returns `weights[j−1][k]` for ghosts `j = 1 ..= halo` from nodes `k = 0 ..= degree` (node 0 being the
/// boundary node, which holds the Dirichlet value).
pub fn dirichlet_weights(halo: usize, degree: usize) -> Vec<Vec<f64>> {
    let nodes: Vec<f64> = (0..=degree).map(|k| k as f64).collect();
    (1..=halo)
        .map(|j| derivative_weights(-(j as f64), &nodes, 0))
        .collect()
}

/// Returns `(weights, slope_weights)` for the polynomial `P` of the given degree with `P(k) = node_k`
/// for `k = 0 .. degree` and `P′(0) = s`: ghost `j` is `Σ_k weights[j−1][k] · node_k + slope_weights[j−1] · s`.
pub fn robin_weights(halo: usize, degree: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
    // Monomial coefficients c_m of P solve: Σ_m c_m k^m = node_k for k < degree, and c_1 = s.
    // Column `k` of the inverse gives the coefficients for a unit value at node k; the last column
    // those for a unit slope.
    let size = degree + 1;
    let mut matrix = vec![vec![0.0; size]; size];
    for (k, row) in matrix.iter_mut().enumerate().take(degree) {
        for (m, entry) in row.iter_mut().enumerate() {
            *entry = (k as f64).powi(m as i32);
        }
    }
    matrix[degree][1] = 1.0;
    let inverse = invert(matrix);

    let mut weights = Vec::with_capacity(halo);
    let mut slope_weights = Vec::with_capacity(halo);
    for j in 1..=halo {
        let x = -(j as f64);
        let powers: Vec<f64> = (0..size).map(|m| x.powi(m as i32)).collect();
        let value_of =
            |column: usize| -> f64 { (0..size).map(|m| powers[m] * inverse[m][column]).sum() };
        weights.push((0..degree).map(value_of).collect());
        slope_weights.push(value_of(degree));
    }
    (weights, slope_weights)
}

/// Inverts a small nonsingular matrix by Gauss–Jordan elimination with partial pivoting.
fn invert(mut matrix: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
    let n = matrix.len();
    let mut inverse: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    for column in 0..n {
        let pivot = (column..n)
            .max_by(|a, b| {
                matrix[*a][column]
                    .abs()
                    .total_cmp(&matrix[*b][column].abs())
            })
            .unwrap_or(column);
        matrix.swap(column, pivot);
        inverse.swap(column, pivot);
        let scale = matrix[column][column];
        for j in 0..n {
            matrix[column][j] /= scale;
            inverse[column][j] /= scale;
        }
        for row in 0..n {
            if row != column {
                let factor = matrix[row][column];
                if factor != 0.0 {
                    for j in 0..n {
                        matrix[row][j] -= factor * matrix[column][j];
                        inverse[row][j] -= factor * inverse[column][j];
                    }
                }
            }
        }
    }
    inverse
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirichlet_ghost_reproduces_polynomial() {
        let degree = 4;
        let weights = dirichlet_weights(2, degree);
        let p = |x: f64| 1.0 + x - 0.5 * x.powi(3) + 0.1 * x.powi(4);
        for (j, row) in weights.iter().enumerate() {
            let ghost: f64 = row.iter().enumerate().map(|(k, w)| w * p(k as f64)).sum();
            assert!((ghost - p(-(j as f64) - 1.0)).abs() < 1e-10);
        }
    }

    #[test]
    fn robin_ghost_reproduces_polynomial() {
        let degree = 3;
        let (weights, slope_weights) = robin_weights(2, degree);
        let p = |x: f64| 2.0 - 0.7 * x + 0.3 * x * x + 0.05 * x.powi(3);
        let slope = -0.7;
        for j in 0..2 {
            let ghost: f64 = weights[j]
                .iter()
                .enumerate()
                .map(|(k, w)| w * p(k as f64))
                .sum::<f64>()
                + slope_weights[j] * slope;
            assert!(
                (ghost - p(-(j as f64) - 1.0)).abs() < 1e-10,
                "ghost {j}: {ghost}"
            );
        }
    }

    #[test]
    fn second_order_neumann_ghost_is_exact_for_quadratics() {
        // With degree 3 the ghost reproduces every cubic, so in particular the classic mirror formula
        // u₋₁ = u₁ − 2s holds for quadratics.
        let (weights, slope_weights) = robin_weights(1, 3);
        let p = |x: f64| 1.0 + 0.5 * x + 2.0 * x * x;
        let ghost: f64 = weights[0]
            .iter()
            .enumerate()
            .map(|(k, w)| w * p(k as f64))
            .sum::<f64>()
            + slope_weights[0] * 0.5;
        assert!((ghost - (p(1.0) - 2.0 * 0.5)).abs() < 1e-12);
    }
}
